"""Smoke tests of benchmarks/: the corpus is deterministic, both yardsticks agree with the pipeline.

Figures are not tested here (no timings); `make bench` prints them.
"""

import ast
import gzip
import hashlib
import random
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # benchmarks/ is a folder of the repo, not an installed package

import orjson  # noqa: E402

from benchmarks import (  # noqa: E402
    agree,
    bench,
    corpus,
    fuzz,
    measure,
    plain_loop,
    profile_stages,
    reference,
)
from pipeline.cli import main as pipeline_main  # noqa: E402
from transforms.reasons import Kind  # noqa: E402
from transforms.rules import RuleConfig, classify  # noqa: E402

LINES = 2_000
FILES = 8


def _files(folder: Path) -> dict[str, tuple[bytes, float]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime) for p in sorted((folder / "data").iterdir())}


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> corpus.Corpus:
    return corpus.generate(tmp_path_factory.mktemp("corpus") / "c", LINES, FILES, seed=7)


@pytest.fixture(scope="module")
def outputs(small_corpus, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("outputs")
    out = {name: root / name for name in ("reference", "plain-loop", "pipeline")}
    reference.run([small_corpus.pattern], str(out["reference"]), corpus.REFERENCE_SECONDS)
    plain_loop.run([small_corpus.pattern], str(out["plain-loop"]), corpus.REFERENCE_SECONDS)
    status = pipeline_main(
        ["--input", small_corpus.pattern, "--output", str(out["pipeline"]),
         "--reference-time", small_corpus.reference_time]
    )
    assert status == 0
    return out


@pytest.fixture(scope="module")
def both_outputs(outputs) -> tuple[Path, Path]:
    return outputs["reference"], outputs["pipeline"]


def _data_files(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every data file (not the top-level _SUMMARY.json and such)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file() and p.parent != root
    }


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


@pytest.mark.parametrize("module", ["plain_loop", "plain_rules"])
def test_plain_loop_imports_nothing_of_the_product(module):
    """The independent yardstick must not share code with what it measures: its two modules
    import the standard library, orjson and each other, nothing else."""
    source = (REPO / "benchmarks" / f"{module}.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports"
            imported.add(node.module)
    others = {name for name in imported if name.split(".")[0] not in sys.stdlib_module_names}
    assert others - {"benchmarks.plain_loop", "benchmarks.plain_rules"} <= {"orjson"}, others
    assert "importlib" not in {name.split(".")[0] for name in imported} and "__import__" not in source


def test_plain_loop_writes_the_pipelines_files_byte_for_byte(outputs):
    plain, pipe = outputs["plain-loop"], outputs["pipeline"]
    files = _data_files(pipe)
    assert len(files) >= 28 and "rejects/part-00000-of-00001.ndjson.gz" in files
    assert _data_files(plain) == files
    assert agree.differences(agree.digest_output(plain), agree.digest_output(pipe)) == []


def test_reference_writes_the_pipelines_files_byte_for_byte(outputs):
    assert _data_files(outputs["reference"]) == _data_files(outputs["pipeline"])


def _pipeline_fate(line: bytes, reference_time: int) -> tuple:
    fate = classify(line, RuleConfig(reference_time))
    if fate.kind == Kind.REJECT:
        return ("reject", fate.reason.value, fate.detail)
    if fate.kind == Kind.BLANK:
        return ("blank",)
    return (fate.kind.name.lower(), fate.line, fate.day, fate.normalised)


def _plain_fate(line: bytes, reference_time: int) -> tuple:
    fate = plain_loop.classify(line, reference_time)
    kind = ("blank", "event", "profile", "group", "reject")[fate[0]]
    if kind == "reject":
        return (kind, fate[1], fate[2])
    if kind == "blank":
        return (kind,)
    if kind == "event":
        return (kind, fate[1], plain_loop._day(fate[2]), fate[4])
    return (kind, fate[1], "", fate[3])


def test_plain_loop_classifies_hostile_lines_as_the_pipeline():
    """Every fate, reject detail, written line and normalisation flag, on fuzz lines."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))  # as plain_loop.main does
    lines = fuzz.generate(4_000, seed=11)
    differ = [
        (line[:120], ours, theirs)
        for line in lines
        if (ours := _plain_fate(line, fuzz.REFERENCE_SECONDS))
        != (theirs := _pipeline_fate(line, fuzz.REFERENCE_SECONDS))
    ]
    assert differ == []


def _time_values(rng: random.Random) -> list[object]:
    ref = corpus.REFERENCE_SECONDS
    edges: list[object] = [
        0, -1, 31_535_999, 31_536_000, ref + 3600, ref + 3601, 10**11 - 1, 10**11, -(10**11),
        31_536_000_000, 31_535_999_999, (ref + 3600) * 1000 + 999, (ref + 3601) * 1000, 2**63 - 1,
        1.5, -0.5, 31_536_000.0, 31_535_999.999, 1e11, 99_999_999_999.9, 1_717_000_000.999,
        1_717_000_000_999.9999, 1e300, True, None, [], {}, "", " ", "1717000000", "-0", "+1",
        "0001717000000.5", "1717000000000.0001", "-31536000000.5", "9" * 30, "-" + "9" * 30,
        "2024-05-31", "2024-05-31T23:59", "2024-05-31 23:59:59.999Z", "2024-05-31T24:00:00",
        "2024-02-30T00:00:00", "2024-05-31T23:59:59+24:00", "2024-05-31T23:59:59-05:30",
        "2024-05-31T23:59:59+05", "2024-05-31t23:59:59", "0000-01-01", "1970-12-31T23:59:59Z",
    ]
    values = list(edges)
    for _ in range(3_000):
        whole = str(rng.choice([31_536_000, ref, ref + 3601, 10**11, rng.randrange(10**13)]))
        text = ("-" if rng.random() < 0.3 else "") + "0" * rng.randrange(2) + whole
        if rng.random() < 0.5:
            text += "." + str(rng.randrange(10**rng.randrange(1, 6)))
        offset = rng.choice(["", "Z", "+00:00", "-05:30", "+23:59", "-00:60", "+05"])
        day, hour, minute = rng.randrange(1, 33), rng.randrange(25), rng.randrange(61)
        iso = f"2024-05-{day:02d}T{hour:02d}:{minute:02d}{offset}"
        values += [text, iso, rng.uniform(-1e13, 1e13), rng.randrange(-(10**12), 10**13)]
    return values


def test_plain_loop_reads_times_as_the_pipeline():
    rng = random.Random(3)
    lines = [
        orjson.dumps({"event": "E", "properties": {"time": value, "distinct_id": "u1"}})
        for value in _time_values(rng)
    ]
    ref = corpus.REFERENCE_SECONDS
    assert [_plain_fate(x, ref) for x in lines] == [_pipeline_fate(x, ref) for x in lines]


def test_bench_runs_and_checks_every_implementation(tmp_path, capsys):
    """`make bench` end to end on a tiny corpus; pipeline-mp2 is left out here to stay fast
    (tests/test_multiprocessing.py pins that mode's output to the in-process one)."""
    status = bench.main([
        "--lines", "300", "--files", "4", "--runs", "1", "--data-dir", str(tmp_path),
        "--implementations", "pipeline,plain-loop,reference",
    ])
    printed = capsys.readouterr().out
    assert status == 0, printed
    for implementation in ("plain-loop", "reference", "pipeline"):
        assert f"median  {implementation} " in printed
    assert "pipeline / plain-loop" in printed and "pipeline / reference" in printed
    assert "wall <= 1.3x plain-loop" in printed and "peak RSS <= 3x input" in printed
    assert "outputs identical: yes, all 3 outputs" in printed
    assert not any((tmp_path / "runs").iterdir())  # outputs are removed unless --keep


def test_bench_names_the_multi_processing_mode(small_corpus, tmp_path):
    line = bench.command("pipeline-mp2", small_corpus, tmp_path, ["--range-bytes", "1000"])
    assert line[1:3] == ["-m", "pipeline"]
    assert line[-4:] == [*bench.MULTI_PROCESSING_ARGS, "--range-bytes", "1000"]
    assert bench.MULTI_PROCESSING_ARGS == (
        "--direct_running_mode=multi_processing", "--direct_num_workers=2"
    )
    assert "--direct_running_mode=multi_processing" not in bench.command(
        "pipeline", small_corpus, tmp_path, []
    )
    assert bench.command("plain-loop", small_corpus, tmp_path, ["--x"])[1].endswith("plain_loop.py")


def test_bench_runs_the_pipeline_without_the_schema_report_and_with_the_same_data(small_corpus, outputs, tmp_path):
    # The tool has no option for it: the child builds its plan with collect_schema=False.
    out = tmp_path / "no-schema"
    line = bench.command(bench.WITHOUT_SCHEMA, small_corpus, out, [])
    assert subprocess.run(line, cwd=REPO, capture_output=True, check=False).returncode == 0
    assert (out / "_SUCCESS").exists() and (out / "_SUMMARY.json").exists()
    assert not (out / "_SCHEMA.json").exists()
    assert _data_files(out) == _data_files(outputs["pipeline"])


def test_bench_prints_both_yardsticks_ratios_and_targets(small_corpus):
    usage = measure.Usage
    medians = {
        "plain-loop": usage(10.0, 10.0, 100_000_000, 0),
        "reference": usage(12.0, 11.0, 100_000_000, 0),
        "pipeline": usage(15.0, 16.0, 200_000_000, 0),
        "pipeline-mp2": usage(9.0, 20.0, 400_000_000, 0),
    }
    ratios = "\n".join(bench.ratio_lines(medians))
    assert "pipeline / plain-loop       wall  1.50x   CPU  1.60x   peak RSS  2.00x" in ratios
    assert "pipeline-mp2 / reference    wall  0.75x" in ratios
    targets = "\n".join(bench.target_lines(medians, small_corpus, busy=False))
    assert "1 process (pipeline)        wall <= 1.3x plain-loop: 1.50x (MISSED)" in targets
    assert "2 processes (pipeline-mp2)  wall <= 1.0x plain-loop: 0.90x (met)" in targets


def test_bench_scaling_compares_3m_with_1m(small_corpus, capsys):
    """--scaling prints each size's medians and each pipeline mode's 3M/1M throughput."""
    def result(lines: int, times: dict[str, tuple[float, float]]) -> bench.SizeResult:
        runs = [bench.Run(1, name, measure.Usage(wall, cpu, 10**8, 0), 0.0) for name, (wall, cpu) in times.items()]
        return bench.SizeResult(small_corpus._replace(lines=lines), runs, True)

    bench.print_scaling([
        result(1_000_000, {"plain-loop": (30.0, 30.0), "pipeline": (40.0, 40.0), "pipeline-mp2": (30.0, 45.0)}),
        result(3_000_000, {"plain-loop": (90.0, 90.0), "pipeline": (150.0, 120.0), "pipeline-mp2": (90.0, 150.0)}),
    ])
    printed = capsys.readouterr().out
    assert (
        "pipeline throughput at 3M / at 1M lines: 0.80 (target >= 0.85) (MISSED); lines per CPU second: 1.00\n"
    ) in printed
    assert (
        "pipeline-mp2 throughput at 3M / at 1M lines: 1.00 (target >= 0.85) (met); lines per CPU second: 0.90\n"
    ) in printed
    assert "plain-loop throughput at 3M / at 1M lines: 1.00; lines per CPU second: 1.00\n" in printed


def test_bench_sees_a_changed_byte(outputs, tmp_path):
    files = bench.file_digests(outputs["pipeline"])
    changed = dict(files)
    changed["rejects/part-00000-of-00001.ndjson.gz"] = "0" * 64
    assert bench.byte_differences(files, files) == []
    assert bench.byte_differences(files, changed) == ["rejects/part-00000-of-00001.ndjson.gz"]


def test_measure_counts_the_memory_of_child_processes(tmp_path):
    """ru_maxrss is the largest single process; two processes holding 60 MB each are 120 MB."""
    hold = "x = bytearray(60_000_000); import time; time.sleep(1.5)"
    parent = (
        f"import subprocess, sys; {hold.split(';', maxsplit=1)[0]}; "
        f"subprocess.run([sys.executable, '-c', {hold!r}])"
    )
    usage = measure.measure([sys.executable, "-c", parent], str(tmp_path / "log"))
    assert usage.exit_code == 0
    assert usage.peak_rss_bytes >= 120_000_000


def _line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_profile_stages_groups_sampled_stacks(tmp_path):
    """The profile's stages: builtins by the rules' line that calls them, start-up by phase."""
    ps = profile_stages
    running = ("FnApiRunner.run_stages", "apache_beam/runners/portability/fn_api_runner/fn_runner.py", 404)
    rules = REPO / "transforms" / "rules.py"
    records = REPO / "transforms" / "records.py"
    cases = {
        ps.LOADS: [("classify", "transforms/rules.py", _line_of(rules, "= _loads(line)"))],
        ps.HASHING: [("_classify_event", "transforms/rules.py", _line_of(rules, "digest.update(canonical)"))],
        ps.SERIALISE: [("serialise", "transforms/jsontext.py", 1)],
        ps.RULES: [("_classify_event", "transforms/rules.py", _line_of(rules, "def _classify_event"))],
        ps.BOOKKEEPING: [("classify_batch", "transforms/records.py", 1)],
        ps.SCHEMA: [("classify_batch", "transforms/records.py", _line_of(records, "types.add_event(")),
                    ("TypeTally.partials", "transforms/schema.py", 1)],
        ps.PACKING: [("pack", "transforms/batches.py", 1)],
        ps.DEDUPE: [("process", "transforms/dedupe.py", 1), ("pick_latest", "transforms/batches.py", 1)],
        ps.READ: [("batches", "transforms/read.py", 1), ("_GzipReader.read", "gzip.py", 1)],
        ps.WRITE: [("process", "transforms/write.py", 1), ("GzipFile.write", "gzip.py", 1)],
        ps.CODERS: [("encode", "apache_beam/coders/coder_impl.py", 1)],
        ps.RUNNER: [("process", "apache_beam/runners/worker/operations.py", 1)],
    }
    for stage, frames in cases.items():
        assert ps.stack_stage([running, *frames]) == stage, stage
    assert ps.stack_stage([("_find_and_load", "<frozen importlib._bootstrap>", 1)]) == ps.STARTUP
    raw = tmp_path / "spy.txt"
    raw.write_text(
        "main (pipeline/cli.py:10) 7\n"
        "run_stages (apache_beam/runners/portability/fn_api_runner/fn_runner.py:404);"
        "pack (transforms/batches.py:300) 3\n"
    )
    assert profile_stages.group_spy(raw) == {ps.MAIN_PROCESS: {ps.STARTUP: 7, ps.PACKING: 3}}
    raw.write_text(
        'process 1:"python -m pipeline";process 2:"python -m sdk_worker_main";'
        "Thread._bootstrap (threading.py:1002);pack (transforms/batches.py:300) 4\n"
    )
    assert profile_stages.group_spy(raw) == {ps.WORKER_PROCESSES: {ps.PACKING: 4}}
