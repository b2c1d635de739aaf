"""`make bench`: the pipeline's speed and memory beside two plain single-process loops.

Generates (or reuses, under --data-dir) a deterministic corpus, then runs, each
in a fresh child process and interleaved (the order rotates from run to run):

  plain-loop    benchmarks/plain_loop.py: the independent yardstick, the whole
                contract in one plain loop that shares no code with the pipeline;
  reference     benchmarks/reference.py: a plain loop around the pipeline's own
                classifier, so its ratio measures Beam's machinery alone;
  pipeline      the real CLI (`python -m pipeline`), FnApiRunner in one process;
  pipeline-mp2  the same with --direct_running_mode=multi_processing
                --direct_num_workers=2 (two local worker processes);
  pipeline-no-schema  the pipeline in one process built without the schema
                report (_SCHEMA.json; the child calls cli.main(collect_schema=False):
                the tool has no option for it): what the schema costs.

It prints per run and as medians: wall time, CPU time (user + system, worker
processes included), lines/s, MB/s of uncompressed input, peak RSS (the whole
process tree's, for pipeline-mp2) and how many CPUs other processes kept busy
meanwhile ("others": wall times are only comparable when it is near 0); then
the ratios of both pipeline modes to both yardsticks, and issue 14's targets
beside the figures. Every output is checked: its data files must be the same
bytes as every other's, and agree with the pipeline's by benchmarks/agree.py
(summary figures included). Figures only: it asserts nothing about speed; the
exit status is 1 when a run fails or the outputs differ.

Examples:
  make bench
  make bench ARGS='--lines 200000 --runs 1'
  make bench ARGS='--scaling'
  make bench ARGS='--implementations plain-loop,pipeline'
  make bench ARGS="--pipeline-args '--range-bytes 16777216'"
"""


import argparse
import hashlib
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

from benchmarks import agree
from benchmarks.corpus import DEFAULT_SEED, REFERENCE_TIME, Corpus, ensure_corpus
from benchmarks.measure import Usage, measure

REPO = Path(__file__).resolve().parent.parent
PLAIN_LOOP_SCRIPT = REPO / "benchmarks" / "plain_loop.py"
REFERENCE_SCRIPT = REPO / "benchmarks" / "reference.py"
SCALING_LINES = (200_000, 1_000_000, 3_000_000)
MB = 1_000_000  # figures are in decimal megabytes

PLAIN_LOOP = "plain-loop"
REFERENCE = "reference"
PIPELINE = "pipeline"
PIPELINE_MP2 = "pipeline-mp2"
WITHOUT_SCHEMA = "pipeline-no-schema"
IMPLEMENTATIONS = (PLAIN_LOOP, REFERENCE, PIPELINE, PIPELINE_MP2, WITHOUT_SCHEMA)
_NO_SCHEMA_MAIN = "import sys; from pipeline import cli; sys.exit(cli.main(collect_schema=False))"
YARDSTICKS = (PLAIN_LOOP, REFERENCE)
PIPELINES = (PIPELINE, PIPELINE_MP2)
MULTI_PROCESSING_ARGS = ("--direct_running_mode=multi_processing", "--direct_num_workers=2")

# Issue 14's targets, printed beside the figures (never asserted).
TARGET_WALL = {PIPELINE: 1.3, PIPELINE_MP2: 1.0}  # wall / the plain loop's, same run
TARGET_RSS_PER_INPUT = 3.0  # peak RSS / uncompressed input, at 1M and 3M lines
TARGET_SCALING = 0.85  # throughput at 3M lines / at 1M: within 15 %
TARGET_SCHEMA_COST = 0.08  # issue 12: what the schema report may add to the pipeline's time
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


def command(implementation: str, corpus: Corpus, output: Path, pipeline_args: Sequence[str]) -> list[str]:
    """The command line of one implementation's run on a corpus."""
    common = ["--input", corpus.pattern, "--output", str(output), "--reference-time", corpus.reference_time]
    if implementation == PLAIN_LOOP:
        return [sys.executable, str(PLAIN_LOOP_SCRIPT), *common]
    if implementation == REFERENCE:
        return [sys.executable, str(REFERENCE_SCRIPT), *common]
    if implementation == WITHOUT_SCHEMA:
        return [sys.executable, "-c", _NO_SCHEMA_MAIN, *common, *pipeline_args]
    extra = list(MULTI_PROCESSING_ARGS) if implementation == PIPELINE_MP2 else []
    return [sys.executable, "-m", "pipeline", *common, *extra, *pipeline_args]


def file_digests(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every data file under `root` (not the top-level files)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.parent != root
    }


def byte_differences(left: dict[str, str], right: dict[str, str]) -> list[str]:
    """The data files that are not the same bytes in two outputs."""
    return sorted(
        path for path in set(left) | set(right) if left.get(path) != right.get(path)
    )


def _run_order(implementations: Sequence[str], number: int) -> list[str]:
    # Rotating the order spreads any drift (a neighbour's load, caches) evenly.
    shift = (number - 1) % len(implementations)
    return list(implementations[shift:]) + list(implementations[:shift])


def bench_size(
    lines: int,
    files: int,
    runs: int,
    data_dir: Path,
    seed: int,
    keep: bool,
    pipeline_args: list[str],
    implementations: Sequence[str] = IMPLEMENTATIONS,
) -> SizeResult:
    """Runs every implementation `runs` times on one corpus and prints the figures."""
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
    first_files: dict[str, str] | None = None  # the first output's file digests
    first_digest: agree.OutputDigest | None = None
    first_name = ""
    checked = 0
    for number in range(1, runs + 1):
        for implementation in _run_order(implementations, number):
            output = out_root / f"{implementation}-{number}"
            log = out_root / f"{implementation}-{number}.log"
            before = _machine_cpu_seconds()
            usage = measure(command(implementation, corpus, output, pipeline_args), str(log), env)
            others = max(0.0, (_machine_cpu_seconds() - before - usage.cpu_s) / usage.wall_s)
            results.append(Run(number, implementation, usage, others))
            print(_row(str(number), implementation, usage, corpus) + f" {others:6.2f}", flush=True)
            if usage.exit_code != 0:
                problems.append(f"{implementation} run {number} exited {usage.exit_code}; see {log}")
                continue
            # Every output is compared with the first one: the same bytes in every
            # data file, and the same summary figures (agree.py).
            files_now, digest = file_digests(output), agree.digest_output(output)
            if first_files is None or first_digest is None:
                first_files, first_digest, first_name = files_now, digest, f"{implementation} run {number}"
            else:
                differ = byte_differences(first_files, files_now)
                if differ:
                    problems.append(
                        f"{implementation} run {number}: {len(differ)} data files are not the bytes "
                        f"of {first_name}'s, e.g. {differ[0]}"
                    )
                problems += [
                    f"{implementation} run {number} vs {first_name}: {d}"
                    for d in agree.differences(first_digest, digest)
                ]
            checked += 1
            if not keep:
                shutil.rmtree(output)
                log.unlink()
    busy = _was_busy(results)
    _print_medians(results, corpus, busy, implementations)
    if busy:
        print(
            f"warning: the machine was busy (other processes kept up to "
            f"{max(r.others for r in results):.2f} of {os.cpu_count()} CPUs busy during a run): "
            "wall times and their ratios are unreliable; CPU times are the steadier figure"
        )
    agreed = not problems and checked == runs * len(implementations)
    if agreed and first_files is not None:
        print(
            f"outputs identical: yes, all {checked} outputs ({len(first_files)} data files, "
            "the same bytes; summary figures equal)"
        )
    else:
        print("outputs identical: NO")
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
    return bool(runs) and max(r.others for r in runs) > BUSY_OTHERS


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


def ratio_lines(medians: dict[str, Usage | None]) -> list[str]:
    """One line per (pipeline mode, yardstick) pair: wall, CPU and peak RSS ratios of the medians."""
    lines = []
    for pipeline in PIPELINES:
        for yardstick in YARDSTICKS:
            pipe, base = medians.get(pipeline), medians.get(yardstick)
            if pipe is None or base is None:
                continue
            lines.append(
                f"  {pipeline + ' / ' + yardstick:<27} wall {pipe.wall_s / base.wall_s:5.2f}x   "
                f"CPU {pipe.cpu_s / base.cpu_s:5.2f}x   peak RSS {pipe.peak_rss_bytes / base.peak_rss_bytes:5.2f}x"
            )
    return lines


def target_lines(medians: dict[str, Usage | None], corpus: Corpus, busy: bool) -> list[str]:
    """Issue 14's targets beside this run's figures (met or missed; nothing is asserted)."""
    lines = []
    plain = medians.get(PLAIN_LOOP)
    for pipeline, label in ((PIPELINE, "1 process"), (PIPELINE_MP2, "2 processes")):
        pipe = medians.get(pipeline)
        if pipe is None:
            continue
        if plain is not None:
            wall = pipe.wall_s / plain.wall_s
            target = TARGET_WALL[pipeline]
            lines.append(
                f"  {label + ' (' + pipeline + ')':<27} wall <= {target:.1f}x plain-loop: {wall:.2f}x "
                f"{_verdict(wall <= target, busy)}"
            )
        rss = pipe.peak_rss_bytes / corpus.uncompressed_bytes
        lines.append(
            f"  {label + ' (' + pipeline + ')':<27} peak RSS <= {TARGET_RSS_PER_INPUT:g}x input: "
            f"{rss:.2f}x {_verdict(rss <= TARGET_RSS_PER_INPUT)}"
        )
    return lines


def schema_cost_line(medians: dict[str, Usage | None]) -> str | None:
    """What the schema report adds to the one-process pipeline (issue 12's target: 8 %)."""
    pipe, without = medians.get(PIPELINE), medians.get(WITHOUT_SCHEMA)
    if pipe is None or without is None:
        return None
    cpu, wall = pipe.cpu_s / without.cpu_s - 1, pipe.wall_s / without.wall_s - 1
    return (
        f"schema report (medians): CPU {pipe.cpu_s:.2f} s with, {without.cpu_s:.2f} s without "
        f"({cpu:+.1%}); wall {pipe.wall_s:.2f} s with, {without.wall_s:.2f} s without ({wall:+.1%}); "
        f"target <= +{TARGET_SCHEMA_COST:.0%} CPU: {_verdict(cpu <= TARGET_SCHEMA_COST)}"
    )


def _print_medians(
    runs: Sequence[Run], corpus: Corpus, busy: bool, implementations: Sequence[str]
) -> None:
    medians = {i: median_usage(runs, i) for i in implementations}
    for implementation, usage in medians.items():
        if usage is not None:
            print(_row("median", implementation, usage, corpus))
    ratios = ratio_lines(medians)
    if ratios:
        print("ratios of the medians:")
        print("\n".join(ratios))
    schema = schema_cost_line(medians)
    if schema:
        print(schema)
    targets = target_lines(medians, corpus, busy)
    if targets:
        print("issue 14 targets (figures only, not asserted):")
        print("\n".join(targets))


def _verdict(met: bool, busy: bool = False) -> str:
    verdict = "met" if met else "MISSED"
    return f"({verdict}, machine busy)" if busy else f"({verdict})"


def print_scaling(results: Sequence[SizeResult], implementations: Sequence[str] = IMPLEMENTATIONS) -> None:
    """The medians of every size side by side, and each pipeline mode's 3M/1M throughput ratio."""
    print("\n== scaling (medians) ==")
    print(_header("lines", 10) + f" {'wall vs plain':>14}")
    throughput: dict[str, dict[int, float]] = {}
    per_cpu: dict[str, dict[int, float]] = {}
    for result in results:
        corpus = result.corpus
        plain = median_usage(result.runs, PLAIN_LOOP)
        for implementation in implementations:
            usage = median_usage(result.runs, implementation)
            if usage is None:
                continue
            versus = f" {usage.wall_s / plain.wall_s:13.2f}x" if plain is not None else ""
            print(_row(f"{corpus.lines:,}", implementation, usage, corpus, 10) + versus)
            throughput.setdefault(implementation, {})[corpus.lines] = corpus.lines / usage.wall_s
            per_cpu.setdefault(implementation, {})[corpus.lines] = corpus.lines / usage.cpu_s
    busy = any(_was_busy(r.runs) for r in results)
    for implementation in implementations:
        by_size = throughput.get(implementation, {})
        if 1_000_000 in by_size and 3_000_000 in by_size:
            ratio = by_size[3_000_000] / by_size[1_000_000]
            target = (
                f" (target >= {TARGET_SCALING}) {_verdict(ratio >= TARGET_SCALING, busy)}"
                if implementation in PIPELINES else ""
            )
            # Lines per CPU second as well: on a busy machine the wall ratio is the neighbours'.
            cpu = per_cpu[implementation]
            cpu_ratio = cpu[3_000_000] / cpu[1_000_000]
            print(
                f"{implementation} throughput at 3M / at 1M lines: {ratio:.2f}{target}; "
                f"lines per CPU second: {cpu_ratio:.2f}"
            )


def _implementations(text: str) -> list[str]:
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in IMPLEMENTATIONS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"choose from {', '.join(IMPLEMENTATIONS)} (comma-separated), got {text!r}"
        )
    return [name for name in IMPLEMENTATIONS if name in chosen]  # the documented order


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.py",
        description="Benchmarks the pipeline against two plain single-process Python loops.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:" + (__doc__ or "").split("Examples:", 1)[1],
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
    parser.add_argument("--implementations", type=_implementations, default=list(IMPLEMENTATIONS),
                        help=f"Which to run, comma-separated (default all: {','.join(IMPLEMENTATIONS)}). "
                        "Example: --implementations plain-loop,pipeline")
    parser.add_argument("--keep", action="store_true",
                        help="Keep every run's output and log under DATA_DIR/runs/. Example: --keep")
    parser.add_argument("--data-dir", type=Path, default=REPO / "bench-data",
                        help="Where corpora are cached (by size, files and seed) and runs write "
                        "(default ./bench-data). Example: --data-dir /mnt/fast/bench")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"Corpus seed (default {DEFAULT_SEED}). Example: --seed 7")
    parser.add_argument("--pipeline-args", default="",
                        help="Extra flags for the pipeline's CLI (both modes), one shell-quoted "
                        "string. Example: --pipeline-args '--range-bytes 16777216'")
    args = parser.parse_args(argv)
    if args.lines <= 0 or args.runs <= 0 or args.files <= 0:
        parser.error("--lines, --files and --runs must be positive")
    sizes = SCALING_LINES if args.scaling else (args.lines,)
    print(
        f"Cloud Import Prep benchmark: {args.runs} runs each, interleaved; reference time "
        f"{REFERENCE_TIME}; {os.cpu_count()} CPUs; Python {sys.version.split()[0]}. "
        "MB = 10^6 bytes; MB/s and RSS/input use the uncompressed input size. "
        f"{PIPELINE_MP2} = pipeline with {' '.join(MULTI_PROCESSING_ARGS)}."
    )
    results = [
        bench_size(lines, args.files, args.runs, args.data_dir.resolve(), args.seed, args.keep,
                   shlex.split(args.pipeline_args), args.implementations)
        for lines in sizes
    ]
    if args.scaling:
        print_scaling(results, args.implementations)
    failed = any(not r.agreed for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
