"""Helpers for end-to-end tests: write inputs, run the real CLI, read the output back."""

import gzip
import os
import subprocess
import sys
from pathlib import Path

import orjson

from pipeline.cli import main

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "examples" / "sample"


def write_input(
    path: Path,
    lines: list[bytes],
    *,
    mtime: float | None = None,
    ending: bytes = b"\n",
    final_newline: bool = True,
) -> Path:
    """Writes lines as one file (gzip when the name ends in .gz)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = ending.join(lines) + (ending if final_newline and lines else b"")
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def run_cli(*args: str) -> int:
    """Runs the CLI in this process; returns its exit status."""
    return main([*args])


# `python -m pipeline` with the --range-bytes floor lifted, as conftest's
# small_read_ranges does in this process (the zone is set first, as the CLI does).
_SMALL_RANGES_MAIN = (
    "import sys; from pipeline import cli; cli._use_utc(); import pipeline.options as o; "
    "o.MIN_RANGE_BYTES = 1; sys.exit(cli.main())"
)


def run_cli_process(
    *args: str, env: dict[str, str] | None = None, small_read_ranges: bool = False
) -> subprocess.CompletedProcess:
    """Runs `python -m pipeline` in a child process.

    Args:
      small_read_ranges: allow --range-bytes below its 1 MiB floor, so that
        small test files are still read in many ranges.
    """
    main = ["-c", _SMALL_RANGES_MAIN] if small_read_ranges else ["-m", "pipeline"]
    return subprocess.run(
        [sys.executable, *main, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=600,
        check=False,
    )


# A child process that runs the CLI with Beam's Google credential lookup
# turned off: without credentials Beam retries for ~20 s before it goes
# anonymous (BEAM_NOTES 10), which the GCS emulator does not need.
_CLI_WITHOUT_GOOGLE_CREDENTIALS = (
    "import sys\n"
    "from apache_beam.internal.gcp import auth\n"
    "auth._Credentials._credentials_init = True\n"
    "auth._Credentials._credentials = None\n"
    "from pipeline.cli import process_main\n"
    "sys.exit(process_main())\n"
)


def start_cli_process(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Starts the CLI in a child process (stdout and stderr piped); the caller waits for it."""
    return subprocess.Popen(
        [sys.executable, "-c", _CLI_WITHOUT_GOOGLE_CREDENTIALS, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
        env={**os.environ, "TZ": "UTC", **(env or {})},
    )


def read_output(root: Path) -> dict[str, list[bytes]]:
    """Every file under `root`, relative path -> lines (gzip undone)."""
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if path.name.endswith(".gz"):
                data = gzip.decompress(data)
            files[path.relative_to(root).as_posix()] = data.splitlines()
    return files


def read_json_lines(root: Path, prefix: str) -> list[dict]:
    """The parsed lines of every file under `prefix`, file by file in name order."""
    out = []
    for name, lines in read_output(root).items():
        if name.startswith(prefix):
            out.extend(orjson.loads(line) for line in lines)
    return out


def summary(root: Path) -> dict:
    return orjson.loads((root / "_SUMMARY.json").read_bytes())


def folders(root: Path) -> list[str]:
    """Every folder under `root` (to spot empty or temporary ones)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir())
