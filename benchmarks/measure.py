"""Wall time, CPU time and peak RSS of one command, measured from a small launcher process.

Why a launcher: on Linux a child started with fork/vfork + exec inherits the
parent's RSS high-water mark into its own ru_maxrss (exec records the old
address space's peak). Measured straight from the benchmark driver, every
child would report at least the driver's peak. So the driver starts this
small script, which starts the command and reports the command's rusage
from os.wait4: its peak is then at least this launcher's (~10 MB), no more.

Run as `python measure.py LOG -- COMMAND...`; prints one JSON object.
"""


import json
import os
import subprocess
import sys
import time
from typing import NamedTuple


class Usage(NamedTuple):
    """What one run of a command cost."""

    wall_s: float
    cpu_s: float  # user + system, of the command and its waited-for children
    peak_rss_bytes: int
    exit_code: int


def measure(command: list[str], log_path: str, env: dict[str, str] | None = None) -> Usage:
    """Runs `command` through the launcher; its stdout and stderr go to `log_path`."""
    launcher = [sys.executable, os.path.abspath(__file__), log_path, "--", *command]
    done = subprocess.run(launcher, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the measuring launcher failed: {done.stderr.strip()}")
    return Usage(**json.loads(done.stdout))


def _launch(log_path: str, command: list[str]) -> dict[str, float | int]:
    with open(log_path, "wb") as log:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped: Popen must not wait again
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_bytes": usage.ru_maxrss * 1024,  # KiB on Linux
        "exit_code": child.returncode,
    }


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: measure.py LOG -- COMMAND...")
    print(json.dumps(_launch(sys.argv[1], sys.argv[3:])))
