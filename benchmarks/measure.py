"""Wall time, CPU time and peak RSS of one command, measured from a small launcher process.

Why a launcher: on Linux a child started with fork/vfork + exec inherits the
parent's RSS high-water mark into its own ru_maxrss (exec records the old
address space's peak). Measured straight from the benchmark driver, every
child would report at least the driver's peak. So the driver starts this
small script, which starts the command and reports the command's rusage
from os.wait4: its peak is then at least this launcher's (~10 MB), no more.

Peak memory of a command that starts processes of its own (the pipeline with
--direct_running_mode=multi_processing) is not in ru_maxrss, which is the
largest single process: the launcher also samples the summed RSS of the
command's whole process tree every quarter second (a /proc scan, about 2 ms
of CPU) and reports the larger of the two.

Run as `python measure.py LOG -- COMMAND...`; prints one JSON object.
"""


import json
import os
import subprocess
import sys
import threading
import time
from typing import NamedTuple

SAMPLE_SECONDS = 0.25
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class Usage(NamedTuple):
    """What one run of a command cost."""

    wall_s: float
    cpu_s: float  # user + system, of the command and its waited-for children
    peak_rss_bytes: int  # the largest process, or the whole process tree sampled, if larger
    exit_code: int


def measure(command: list[str], log_path: str, env: dict[str, str] | None = None) -> Usage:
    """Runs `command` through the launcher; its stdout and stderr go to `log_path`."""
    launcher = [sys.executable, os.path.abspath(__file__), log_path, "--", *command]
    done = subprocess.run(launcher, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the measuring launcher failed: {done.stderr.strip()}")
    return Usage(**json.loads(done.stdout))


def tree_rss_bytes(root: int) -> int:
    """Summed RSS of `root` and all its descendants now (Linux /proc; 0 elsewhere)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return 0
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        pid = int(name)
        parents[pid] = int(fields[1])  # the fields after "(comm)": state, ppid, ...
        rss[pid] = int(fields[21]) * _PAGE
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total


def _launch(log_path: str, command: list[str]) -> dict[str, float | int]:
    peak_tree = 0
    done = threading.Event()

    def sample(pid: int) -> None:
        nonlocal peak_tree
        while not done.wait(SAMPLE_SECONDS):
            peak_tree = max(peak_tree, tree_rss_bytes(pid))

    with open(log_path, "wb") as log:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        sampler = threading.Thread(target=sample, args=(child.pid,), daemon=True)
        sampler.start()
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped: Popen must not wait again
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_bytes": max(usage.ru_maxrss * 1024, peak_tree),  # ru_maxrss is in KiB on Linux
        "exit_code": child.returncode,
    }


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: measure.py LOG -- COMMAND...")
    print(json.dumps(_launch(sys.argv[1], sys.argv[3:])))
