"""A deterministic benchmark corpus: raw NDJSON files with a realistic mix of records.

The same (lines, files, seed) always gives the same file names, bytes and
modification times. The lines come from benchmarks/corpus_lines.py, which
describes their mix. A quarter of the files are gzipped; one file has CRLF
endings, one a UTF-8 BOM, one no final newline. Event times lie in the 30 days
before the reference time, so the output has about 30 day folders.
"""

import gzip
import os
import random
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

import orjson

if __package__ in (None, ""):
    # Run as a script (python benchmarks/corpus.py): make the package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.corpus_lines import LineMaker

# Bump when the generator's output changes: cached corpora are keyed by it.
CORPUS_VERSION = 3
DEFAULT_SEED = 20240601
REFERENCE_TIME = "2024-06-01T00:00:00Z"
REFERENCE_SECONDS = 1_717_200_000  # REFERENCE_TIME as UNIX seconds
MANIFEST = "corpus.json"
DATA_FOLDER = "data"
GZIP_LEVEL = 6
BOM = b"\xef\xbb\xbf"
# Files are "uploaded" over the day before the reference time, one every 10 min.
_UPLOAD_START = REFERENCE_SECONDS - 86_400
_UPLOAD_STEP = 600


class Corpus(NamedTuple):
    """A generated corpus on disk, as its manifest describes it."""

    folder: Path  # holds MANIFEST and DATA_FOLDER
    pattern: str  # glob of the input files, for --input
    lines: int
    files: int
    gzip_files: int
    stored_bytes: int  # on disk
    uncompressed_bytes: int  # what the readers decompress, BOM and endings included
    seed: int
    reference_time: str


def corpus_folder(data_dir: Path, lines: int, files: int, seed: int) -> Path:
    """Where the corpus of these parameters is cached."""
    return Path(data_dir) / f"corpus-v{CORPUS_VERSION}-{lines}l-{files}f-s{seed}"


def ensure_corpus(data_dir: Path, lines: int, files: int, seed: int = DEFAULT_SEED) -> Corpus:
    """The cached corpus of these parameters, generated first if missing or incomplete."""
    folder = corpus_folder(data_dir, lines, files, seed)
    manifest = folder / MANIFEST
    if manifest.exists():
        return _load(folder)
    if folder.exists():
        shutil.rmtree(folder)  # an interrupted generation
    return generate(folder, lines, files, seed)


def _load(folder: Path) -> Corpus:
    meta = orjson.loads((folder / MANIFEST).read_bytes())
    return Corpus(folder=folder, pattern=str(folder.resolve() / DATA_FOLDER / "*"), **meta)


def line_maker(seed: int) -> LineMaker:
    """What makes the lines of the corpus of `seed`, from its first line on."""
    return LineMaker(random.Random(seed), random.Random(seed + 2), REFERENCE_SECONDS)


def generate(folder: Path, lines: int, files: int, seed: int = DEFAULT_SEED) -> Corpus:
    """Writes a corpus into `folder` (which must not exist) and its manifest last.

    Args:
      folder: the corpus folder; input files go to `folder/data/`.
      lines: total lines, blank and rejected ones included; must be positive.
      files: how many files the lines are spread over; 1 to `lines`.
      seed: the random seed; same arguments, same bytes and mtimes.
    """
    if lines <= 0:
        raise ValueError(f"lines must be positive, got {lines}")
    if not 1 <= files <= lines:
        raise ValueError(f"files must be between 1 and lines ({lines}), got {files}")
    data = Path(folder) / DATA_FOLDER
    data.mkdir(parents=True)
    maker = line_maker(seed)
    mtimes = _upload_times(files, random.Random(seed + 1))
    stored = uncompressed = gzip_files = 0
    for index in range(files):
        count = lines // files + (1 if index < lines % files else 0)
        compressed = index % 4 == 3
        ending = b"\r\n" if index == 1 else b"\n"
        body = ending.join(maker.line() for _ in range(count))
        if index != 2:  # one file's last line has no newline
            body += ending
        if index == 5:
            body = BOM + body
        uncompressed += len(body)
        name = f"dump-{index:04d}.ndjson"
        if compressed:
            name += ".gz"
            body = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
            gzip_files += 1
        path = data / name
        path.write_bytes(body)
        os.utime(path, (mtimes[index], mtimes[index]))
        stored += len(body)
    meta = {
        "lines": lines,
        "files": files,
        "gzip_files": gzip_files,
        "stored_bytes": stored,
        "uncompressed_bytes": uncompressed,
        "seed": seed,
        "reference_time": REFERENCE_TIME,
    }
    (Path(folder) / MANIFEST).write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
    return _load(Path(folder))


def _upload_times(files: int, rng: random.Random) -> list[int]:
    """Mostly in name order, with some late uploads and one tie (broken by path)."""
    times = [_UPLOAD_START + index * _UPLOAD_STEP for index in range(files)]
    for index in range(0, files - 1, 5):
        if rng.random() < 0.6:  # a file uploaded after its successor
            times[index], times[index + 1] = times[index + 1], times[index]
    if files >= 3:
        times[-1] = times[-2]
    return times


def main(argv: list[str]) -> int:
    """`python benchmarks/corpus.py FOLDER LINES FILES [SEED]`: writes one corpus."""
    if len(argv) not in (3, 4):
        print(__doc__.splitlines()[0], file=sys.stderr)
        print("usage: corpus.py FOLDER LINES FILES [SEED]", file=sys.stderr)
        return 2
    seed = int(argv[3]) if len(argv) == 4 else DEFAULT_SEED
    corpus = generate(Path(argv[0]), int(argv[1]), int(argv[2]), seed)
    print(orjson.dumps(corpus._asdict(), default=str).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
