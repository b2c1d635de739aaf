"""Smoke tests of benchmarks/: the corpus is deterministic, the reference loop agrees with the pipeline.

Figures are not tested here (no timings); `make bench` prints them.
"""

import gzip
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # benchmarks/ is a folder of the repo, not an installed package

from benchmarks import agree, corpus, reference  # noqa: E402
from pipeline.cli import main as pipeline_main  # noqa: E402

LINES = 2_000
FILES = 8


def _files(folder: Path) -> dict[str, tuple[bytes, float]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime) for p in sorted((folder / "data").iterdir())}


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> corpus.Corpus:
    return corpus.generate(tmp_path_factory.mktemp("corpus") / "c", LINES, FILES, seed=7)


@pytest.fixture(scope="module")
def both_outputs(small_corpus, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("outputs")
    ref_out, pipe_out = root / "reference", root / "pipeline"
    reference.run([small_corpus.pattern], str(ref_out), corpus.REFERENCE_SECONDS)
    status = pipeline_main(
        ["--input", small_corpus.pattern, "--output", str(pipe_out),
         "--reference-time", small_corpus.reference_time]
    )
    assert status == 0
    return ref_out, pipe_out


def test_corpus_is_deterministic(small_corpus, tmp_path):
    again = corpus.generate(tmp_path / "again", LINES, FILES, seed=7)
    assert _files(again.folder) == _files(small_corpus.folder)
    assert again._replace(folder=None, pattern=None) == small_corpus._replace(folder=None, pattern=None)
    other = corpus.generate(tmp_path / "other", LINES, FILES, seed=8)
    assert _files(other.folder) != _files(small_corpus.folder)


def test_corpus_has_the_promised_shape(small_corpus):
    files = _files(small_corpus.folder)
    assert len(files) == FILES
    assert sorted(n for n in files if n.endswith(".gz")) == ["dump-0003.ndjson.gz", "dump-0007.ndjson.gz"]
    data = b"".join(gzip.decompress(b) if n.endswith(".gz") else b for n, (b, _) in files.items())
    assert len(data) == small_corpus.uncompressed_bytes
    assert data.count(b"\n") == LINES - 1  # one file lacks its final newline
    # Upload order is not name order everywhere, and has a tie.
    mtimes = [mtime for _, mtime in files.values()]
    assert mtimes != sorted(mtimes) and len(set(mtimes)) < len(mtimes)


def test_ensure_corpus_reuses_the_cache(tmp_path):
    first = corpus.ensure_corpus(tmp_path, 100, 2, seed=3)
    marker = first.folder / "data" / "dump-0000.ndjson"
    marker.write_bytes(b"changed\n")  # a cached corpus is not regenerated
    assert corpus.ensure_corpus(tmp_path, 100, 2, seed=3) == first
    assert marker.read_bytes() == b"changed\n"


def test_reference_and_pipeline_outputs_agree(both_outputs):
    ref_out, pipe_out = both_outputs
    ref, pipe = agree.digest_output(ref_out), agree.digest_output(pipe_out)
    assert agree.differences(ref, pipe) == []
    # Not vacuous: every kind of folder is there, and the mix has every kind of line.
    assert {"profiles", "groups", "rejects"} <= set(pipe.folders)
    assert sum(1 for f in pipe.folders if f.startswith("events/day=")) >= 25
    figures = pipe.figures
    assert figures["input.lines"] == LINES
    assert figures["input.blank_lines"] > 0 and figures["output.superseded"] > 0
    assert len(figures["output.rejected_by_reason"]) >= 10
    assert all(figures["normalised"].values())


def test_a_missing_line_is_a_difference(both_outputs, tmp_path):
    ref_out, pipe_out = both_outputs
    pipe = agree.digest_output(pipe_out)
    changed = tmp_path / "changed"
    for path in ref_out.rglob("*"):
        if path.is_file():
            target = changed / path.relative_to(ref_out)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    rejects = next((changed / "rejects").iterdir())
    lines = gzip.decompress(rejects.read_bytes()).splitlines(keepends=True)
    rejects.write_bytes(gzip.compress(b"".join(lines[1:])))
    assert agree.differences(agree.digest_output(changed), pipe) == [
        f"rejects: {len(lines) - 1} vs {len(lines)} lines, contents differ"
    ]
