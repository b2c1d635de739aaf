"""`make bench`: the pipeline's speed and memory beside a plain single-process loop.

Generates (or reuses, under --data-dir) a deterministic corpus, then runs the
reference loop (benchmarks/reference.py) and the pipeline's real CLI
(`python -m pipeline`, FnApiRunner in memory) alternately, each in a fresh
child process, and prints per run and as medians: wall time, CPU time
(user + system), lines/s, MB/s of uncompressed input, peak RSS and how many
CPUs other processes kept busy meanwhile ("others": wall times are only
comparable when it is near 0), then the pipeline/reference ratios. The pipeline runs twice per round: as users
run it, and built without the schema report (_SCHEMA.json), which gives what
the schema costs. Every output is checked to agree with the reference's
(see benchmarks/agree.py). Figures only:
it asserts nothing about speed; the exit status is 1 when a run fails or the
outputs disagree.

Examples:
  make bench
  make bench ARGS='--lines 200000 --runs 1'
  make bench ARGS='--scaling'
  make bench ARGS="--pipeline-args '--range-bytes 16777216'"
"""


import argparse
import os
import shlex
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

if __package__ in (None, ""):
    # Run as a script (python benchmarks/bench.py): make the package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import agree  # noqa: E402
from benchmarks.corpus import DEFAULT_SEED, REFERENCE_TIME, Corpus, ensure_corpus  # noqa: E402
from benchmarks.measure import Usage, measure  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
REFERENCE_SCRIPT = REPO / "benchmarks" / "reference.py"
SCALING_LINES = (200_000, 1_000_000, 3_000_000)
MB = 1_000_000  # figures are in decimal megabytes
# "pipeline-no-schema": the same CLI with pipeline.run.COLLECT_SCHEMA off, set in
# the child process (the tool has no option for it).
WITHOUT_SCHEMA = "pipeline-no-schema"
IMPLEMENTATIONS = ("reference", "pipeline", WITHOUT_SCHEMA)
_NO_SCHEMA_MAIN = (
    "import sys; from pipeline import cli; cli._use_utc(); import pipeline.run as r; "
    "r.COLLECT_SCHEMA = False; sys.exit(cli.main())"
)
# The targets, printed beside the figures (not asserted).
TARGET_WALL_RATIO = 1.5
TARGET_RSS_PER_INPUT = 3.0
TARGET_SCALING = 0.8
TARGET_SCHEMA_COST = 0.08  # what the schema report may add to the pipeline's time
BUSY_OTHERS = 0.5  # CPUs used by other processes during a run, on average


class Run(NamedTuple):
    number: int
    implementation: str
    usage: Usage
    others: float  # CPUs other processes kept busy during the run, on average


class SizeResult(NamedTuple):
    corpus: Corpus
    runs: list[Run]
    agreed: bool


def _command(implementation: str, corpus: Corpus, output: Path, pipeline_args: list[str]) -> list[str]:
    common = ["--input", corpus.pattern, "--output", str(output), "--reference-time", corpus.reference_time]
    if implementation == "reference":
        return [sys.executable, str(REFERENCE_SCRIPT), *common]
    if implementation == WITHOUT_SCHEMA:
        return [sys.executable, "-c", _NO_SCHEMA_MAIN, *common, *pipeline_args]
    return [sys.executable, "-m", "pipeline", *common, *pipeline_args]


def bench_size(
    lines: int, files: int, runs: int, data_dir: Path, seed: int, keep: bool, pipeline_args: list[str]
) -> SizeResult:
    """Runs both implementations `runs` times on one corpus and prints the figures."""
    started = time.perf_counter()
    corpus = ensure_corpus(data_dir, lines, files, seed)
    took = time.perf_counter() - started
    print(
        f"\n== {corpus.lines:,} lines in {corpus.files} files ({corpus.gzip_files} gzip): "
        f"{corpus.uncompressed_bytes / MB:,.1f} MB uncompressed, {corpus.stored_bytes / MB:,.1f} MB "
        f"stored; seed {corpus.seed}; corpus ready in {took:.1f} s ==",
        flush=True,
    )
    print(_header() + f" {'others':>6}", flush=True)
    env = {**os.environ, "TZ": "UTC"}
    out_root = data_dir / "runs" / corpus.folder.name
    shutil.rmtree(out_root, ignore_errors=True)
    out_root.mkdir(parents=True)
    results: list[Run] = []
    problems: list[str] = []
    baseline: dict[str, agree.OutputDigest] = {}
    for number in range(1, runs + 1):
        digests = {}
        for implementation in IMPLEMENTATIONS:
            output = out_root / f"{implementation}-{number}"
            log = out_root / f"{implementation}-{number}.log"
            command = _command(implementation, corpus, output, pipeline_args)
            before = _machine_cpu_seconds()
            usage = measure(command, str(log), env)
            others = max(0.0, (_machine_cpu_seconds() - before - usage.cpu_s) / usage.wall_s)
            results.append(Run(number, implementation, usage, others))
            print(_row(str(number), implementation, usage, corpus) + f" {others:6.2f}", flush=True)
            if usage.exit_code != 0:
                problems.append(f"{implementation} run {number} exited {usage.exit_code}; see {log}")
                continue
            digests[implementation] = agree.digest_output(output)
            if not keep:
                shutil.rmtree(output)
                log.unlink()
        for implementation in IMPLEMENTATIONS[1:]:
            if "reference" in digests and implementation in digests:
                diff = agree.differences(digests["reference"], digests[implementation])
                problems += [f"run {number}, {implementation}: {d}" for d in diff]
        for implementation, digest in digests.items():
            first = baseline.setdefault(implementation, digest)
            if digest != first:
                problems.append(f"{implementation} run {number} differs from its first run")
    busy = _was_busy(results)
    _print_medians(results, corpus, busy)
    if busy:
        print(
            f"warning: the machine was busy (other processes kept up to "
            f"{max(r.others for r in results):.2f} of {os.cpu_count()} CPUs busy during a run): "
            "wall times and their ratio are unreliable; CPU times are the steadier figure"
        )
    agreed = not problems and len(baseline) == len(IMPLEMENTATIONS)
    if agreed:
        folders = baseline["pipeline"].folders
        print(
            f"outputs agree: yes, in all {runs} runs ({len(folders)} folders, "
            f"{sum(f.lines for f in folders.values()):,} lines; summary figures equal)"
        )
    else:
        print("outputs agree: NO")
        for problem in problems[:20]:
            print(f"  {problem}")
    if not any(out_root.iterdir()):
        out_root.rmdir()
    return SizeResult(corpus, results, agreed)


def _machine_cpu_seconds() -> float:
    """CPU time every process has used since boot (Linux /proc/stat; 0 elsewhere)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:9]]
    except OSError:
        return 0.0
    # user nice system idle iowait irq softirq steal: all but idle and iowait
    # (steal is time another virtual machine took from us).
    busy = sum(fields) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


def _was_busy(runs: Sequence[Run]) -> bool:
    # The figures are for a machine where nothing else runs: half a CPU of
    # other work is enough to slow a run that keeps one CPU busy.
    return max(r.others for r in runs) > BUSY_OTHERS


def _header(label: str = "run", width: int = 6) -> str:
    return (
        f"{label:>{width}}  {'implementation':<18} {'wall s':>8} {'CPU s':>8} {'lines/s':>10} "
        f"{'MB/s':>7} {'peak RSS MB':>12} {'RSS/input':>10}"
    )


def _row(label: str, implementation: str, usage: Usage, corpus: Corpus, width: int = 6) -> str:
    wall = usage.wall_s
    return (
        f"{label:>{width}}  {implementation:<18} {wall:8.2f} {usage.cpu_s:8.2f} "
        f"{corpus.lines / wall:10,.0f} {corpus.uncompressed_bytes / MB / wall:7.2f} "
        f"{usage.peak_rss_bytes / MB:12,.1f} {usage.peak_rss_bytes / corpus.uncompressed_bytes:9.2f}x"
        + ("" if usage.exit_code == 0 else f"  exit {usage.exit_code}")
    )


def median_usage(runs: Sequence[Run], implementation: str) -> Usage | None:
    """Medians of each figure over the successful runs of one implementation."""
    ok = [r.usage for r in runs if r.implementation == implementation and r.usage.exit_code == 0]
    if not ok:
        return None
    return Usage(
        statistics.median(u.wall_s for u in ok),
        statistics.median(u.cpu_s for u in ok),
        int(statistics.median(u.peak_rss_bytes for u in ok)),
        0,
    )


def _print_medians(runs: Sequence[Run], corpus: Corpus, busy: bool) -> None:
    medians = {i: median_usage(runs, i) for i in IMPLEMENTATIONS}
    for implementation, usage in medians.items():
        if usage is not None:
            print(_row("median", implementation, usage, corpus))
    ref, pipe = medians["reference"], medians["pipeline"]
    if ref is None or pipe is None:
        return
    wall = pipe.wall_s / ref.wall_s
    rss_per_input = pipe.peak_rss_bytes / corpus.uncompressed_bytes
    print(
        f"pipeline / reference (medians): wall {wall:.2f}x, CPU {pipe.cpu_s / ref.cpu_s:.2f}x, "
        f"peak RSS {pipe.peak_rss_bytes / ref.peak_rss_bytes:.2f}x"
    )
    without = medians[WITHOUT_SCHEMA]
    if without is not None:
        cpu_cost = pipe.cpu_s / without.cpu_s - 1
        print(
            f"schema report (medians): CPU {pipe.cpu_s:.2f} s with, {without.cpu_s:.2f} s without "
            f"({cpu_cost:+.1%}); wall {pipe.wall_s:.2f} s with, {without.wall_s:.2f} s without "
            f"({pipe.wall_s / without.wall_s - 1:+.1%}); target <= +{TARGET_SCHEMA_COST:.0%} CPU: "
            f"{_verdict(cpu_cost <= TARGET_SCHEMA_COST)}"
        )
    print(
        f"targets: wall <= {TARGET_WALL_RATIO}x reference: {wall:.2f}x "
        f"{_verdict(wall <= TARGET_WALL_RATIO, busy)}; pipeline peak RSS <= {TARGET_RSS_PER_INPUT:g}x "
        f"uncompressed input: {rss_per_input:.2f}x {_verdict(rss_per_input <= TARGET_RSS_PER_INPUT)}"
    )


def _verdict(met: bool, busy: bool = False) -> str:
    verdict = "met" if met else "MISSED"
    return f"({verdict}, machine busy)" if busy else f"({verdict})"


def print_scaling(results: Sequence[SizeResult]) -> None:
    """The medians of every size side by side, and the 3M/1M throughput ratio."""
    print("\n== scaling (medians) ==")
    print(_header("lines", 10) + f" {'wall vs ref':>12}")
    throughput: dict[int, float] = {}
    for result in results:
        corpus = result.corpus
        ref = median_usage(result.runs, "reference")
        for implementation in IMPLEMENTATIONS:
            usage = median_usage(result.runs, implementation)
            if usage is None:
                continue
            ratio = f" {usage.wall_s / ref.wall_s:11.2f}x" if ref is not None else ""
            print(_row(f"{corpus.lines:,}", implementation, usage, corpus, 10) + ratio)
            if implementation == "pipeline":
                throughput[corpus.lines] = corpus.lines / usage.wall_s
    busy = any(_was_busy(r.runs) for r in results)
    if 1_000_000 in throughput and 3_000_000 in throughput:
        ratio = throughput[3_000_000] / throughput[1_000_000]
        print(
            f"pipeline throughput at 3M / at 1M lines: {ratio:.2f} "
            f"(target >= {TARGET_SCALING}) {_verdict(ratio >= TARGET_SCALING, busy)}"
        )


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.py",
        description="Benchmarks the pipeline against a plain single-process Python loop.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:" + __doc__.split("Examples:", 1)[1],
    )
    parser.add_argument("--lines", type=int, default=1_000_000,
                        help="Corpus size in lines (default 1,000,000). Example: --lines 200000")
    parser.add_argument("--files", type=int, default=20,
                        help="Input files the lines are spread over; every 4th is gzipped "
                        "(default 20). Example: --files 40")
    parser.add_argument("--runs", type=int, default=3,
                        help="Runs of each implementation, interleaved (default 3). Example: --runs 5")
    parser.add_argument("--scaling", action="store_true",
                        help="Benchmark at 200k, 1M and 3M lines instead of --lines, then print "
                        "the medians side by side. Example: --scaling")
    parser.add_argument("--keep", action="store_true",
                        help="Keep every run's output and log under DATA_DIR/runs/. Example: --keep")
    parser.add_argument("--data-dir", type=Path, default=REPO / "bench-data",
                        help="Where corpora are cached (by size, files and seed) and runs write "
                        "(default ./bench-data). Example: --data-dir /mnt/fast/bench")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"Corpus seed (default {DEFAULT_SEED}). Example: --seed 7")
    parser.add_argument("--pipeline-args", default="",
                        help="Extra flags for the pipeline's CLI, one shell-quoted string. "
                        "Example: --pipeline-args '--range-bytes 16777216'")
    args = parser.parse_args(argv)
    if args.lines <= 0 or args.runs <= 0 or args.files <= 0:
        parser.error("--lines, --files and --runs must be positive")
    sizes = SCALING_LINES if args.scaling else (args.lines,)
    print(
        f"Cloud Import Prep benchmark: {args.runs} runs each, interleaved; reference time "
        f"{REFERENCE_TIME}; {os.cpu_count()} CPUs; Python {sys.version.split()[0]}. "
        "MB = 10^6 bytes; MB/s and RSS/input use the uncompressed input size."
    )
    results = [
        bench_size(lines, args.files, args.runs, args.data_dir.resolve(), args.seed, args.keep,
                   shlex.split(args.pipeline_args))
        for lines in sizes
    ]
    if args.scaling:
        print_scaling(results)
    failed = any(not r.agreed for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
