"""Where the CPU goes: a run of the pipeline (or of the plain loop) grouped by stage.

Two profilers, one set of stages (STAGES), so that their figures line up:

  py-spy (sampling, ~1 % overhead: the figures to quote). Record a raw profile,
  then group it:
      py-spy record --format raw --rate 100 --output spy.txt -- \\
          python -m pipeline --input 'DATA/*' --output OUT --reference-time T
      python benchmarks/profile_stages.py spy spy.txt --cpu-seconds 50.5

  cProfile (deterministic: exact call counts, but every Python call costs
  ~0.2-0.5 µs more, which inflates call-heavy code): runs the CLI in this
  process (the in-memory FnApiRunner executes bundles in the calling thread)
  and groups what it measured. It sees that thread only: the files are
  compressed and written on threads (transforms/threads.py), which only
  py-spy sees:
      python benchmarks/profile_stages.py cprofile -- --input 'DATA/*' \\
          --output OUT --reference-time T

The same works for benchmarks/plain_loop.py (`cprofile --plain-loop -- ...`, or
py-spy on `python benchmarks/plain_loop.py ...`). Only local runs: this is a
development tool, not part of the product.

A sample goes to the stage of the innermost frame that names one; builtins
(orjson, zlib, hashlib) have no frame of their own, so the line of the rules
that calls them tells loads, serialisation and hashing apart. Samples taken
outside the runner's execution of stages (imports, options, listing, graph
construction, teardown) are the fixed start-up.
"""

import argparse
import cProfile
import linecache
import pstats
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO))  # run as a script: the pipeline's packages are in the repo

STARTUP = "start-up & driver (imports, options, listing, graph, teardown)"
READ = "read: open, decompress, split lines"
LOADS = "classify: orjson.loads"
RULES = "classify: rules (Python)"
SERIALISE = "classify: serialise (orjson.dumps)"
HASHING = "classify: hashing (BLAKE2b)"
BOOKKEEPING = "classify_batch / loop bookkeeping, reject lines"
SCHEMA = "schema: counting types for _SCHEMA.json"
PACKING = "shard, pack/unpack across the shuffle"
CODERS = "coders & pickling"
RUNNER = "runner: bundles, buffers, shuffle, DoFn calls"
DEDUPE = "dedupe (pick latest)"
WRITE = "write: order, cut, gzip level 6"
SUMMARY = "summary & report"
OTHER = "other"
WAITING = "waiting (a thread blocked: wall time, not CPU; not in the total)"
STAGES = (STARTUP, READ, LOADS, RULES, SERIALISE, HASHING, BOOKKEEPING, SCHEMA, PACKING, CODERS, RUNNER,
          DEDUPE, WRITE, SUMMARY, OTHER, WAITING)

# Functions of transforms/batches.py, which serve several stages (the rest of it is packing).
_BATCHES = {"pick_latest": DEDUPE, "in_upload_order": DEDUPE, "keys_of": DEDUPE}
_PLAIN_LOOP = {
    "read_lines": READ, "list_inputs": STARTUP, "write_folder": WRITE, "_split_into_files": WRITE,
    "_reject_line": BOOKKEEPING, "run": DEDUPE, "main": STARTUP, "parse_reference_time": STARTUP,
}
_CLASSIFIERS = ("transforms/rules.py", "transforms/updates.py", "transforms/times.py", "transforms/reasons.py",
                "transforms/jsontext.py", "transforms/limits.py", "benchmarks/plain_rules.py",
                "benchmarks/plain_loop.py")
_BEAM_RUNNER = ("apache_beam/runners/", "apache_beam/transforms/", "apache_beam/utils/",
                "apache_beam/metrics/", "apache_beam/typehints/", "apache_beam/pvalue.py")
_CODERS = ("apache_beam/coders/", "/pickle.py", "cloudpickle", "dill/", "apache_beam/internal/")
_STARTUP_FILES = ("importlib", "<frozen", "pipeline/cli.py", "pipeline/run.py", "pipeline/options.py",
                  "pipeline/lock.py", "pipeline/output.py", "apache_beam/pipeline.py",
                  "apache_beam/options/", "apache_beam/portability/", "google/protobuf")
# Phase markers: a stack holding one of these is the job itself, not start-up.
_EXECUTION = ("run_stages", "_run_stage")
_WAITS = ("threading.py", "queue.py", "subprocess.py")


def _call_site(text: str) -> str:
    """The stage of a classifier's line, by the builtin it calls."""
    if "loads(" in text:
        return LOADS
    if "blake2b(" in text or "digest" in text or "_KEY_HASH" in text:
        return HASHING
    if "dumps(" in text or "serialise(" in text or "join((out" in text:
        return SERIALISE
    return RULES


def frame_stage(function: str, path: str, line: int | None) -> str | None:
    """The stage one frame names, or None to let its caller decide."""
    path = path.replace("\\", "/")
    name = function.rsplit(".", 1)[-1]
    if path.endswith(_CLASSIFIERS):
        if path.endswith("plain_loop.py") and name in _PLAIN_LOOP:
            return _PLAIN_LOOP[name]
        if name in ("serialise", "_serialise_deep"):
            return SERIALISE
        if line is None:
            return RULES
        return _call_site(linecache.getline(_source(path), line))
    if path.endswith("transforms/records.py"):
        # The C tally has no frame: its time is the line of classify_batch that calls it.
        if line is not None and "types.add_" in linecache.getline(_source(path), line):
            return SCHEMA
        return BOOKKEEPING
    if path.endswith(("transforms/schema.py", "pipeline/schema.py", "transforms/schema_document.py")):
        return SCHEMA
    if path.endswith("transforms/batches.py"):
        return _BATCHES.get(name, PACKING)
    if path.endswith("transforms/layout.py"):
        return WRITE
    if path.endswith(("transforms/shard.py",)):
        return PACKING
    if path.endswith("transforms/dedupe.py"):
        return DEDUPE
    if path.endswith("transforms/write.py"):
        return WRITE
    if path.endswith("transforms/validate.py"):
        return BOOKKEEPING
    if path.endswith(("transforms/read.py", "transforms/ranges.py", "transforms/compression.py")):
        return READ
    if path.endswith(("pipeline/summary.py", "pipeline/report.py")):
        return SUMMARY
    if path.endswith("/gzip.py") or path == "gzip.py":
        return READ if "read" in function.lower() or "Reader" in function else WRITE
    if any(part in path for part in _CODERS):
        return CODERS
    if "apache_beam/io/" in path:
        return None  # Beam's file systems: the caller says whether it reads or writes
    if any(part in path for part in _BEAM_RUNNER):
        return RUNNER
    return None


def _source(path: str) -> str:
    for base in (Path(path), REPO / path, REPO / "benchmarks" / Path(path).name):
        if base.exists():
            return str(base)
    return path


# --- py-spy --------------------------------------------------------------------------------

_FRAME = re.compile(r"^(?P<function>.*) \((?P<path>.*?)(?::(?P<line>\d+))?\)$")


def _frames(stack: str) -> list[tuple[str, str, int | None]]:
    frames: list[tuple[str, str, int | None]] = []
    for text in stack.split(";"):
        match = _FRAME.match(text)
        if match is None:
            frames.append((text, "", None))
        else:
            line = match["line"]
            frames.append((match["function"], match["path"], int(line) if line else None))
    return frames


def stack_stage(frames: Sequence[tuple[str, str, int | None]]) -> str:
    """The stage of one sampled stack (root first).

    The main thread is in start-up until it enters the runner's execution of
    stages (or the plain loop's run()). Other threads are the runner's own
    (data plane, bundle set-up): what they do is the runner's unless a frame
    names a stage; a thread caught waiting is not working at all.
    """
    if not any(path for _, path, _ in frames):
        return OTHER  # py-spy could not read the frames
    leaf_function, leaf_path, _ = frames[-1]
    if leaf_path.endswith(_WAITS) and leaf_function.endswith(("wait", "get", "acquire", "_try_wait")):
        return WAITING
    thread = frames[0][0].endswith("Thread._bootstrap")
    functions = [f for f, _, _ in frames]
    plain_loop = any(p.endswith("plain_loop.py") and f.rsplit(".", 1)[-1] == "run" for f, p, _ in frames)
    if not thread and not plain_loop and not any(f.endswith(_EXECUTION) for f in functions):
        return STARTUP
    for function, path, line in reversed(frames):
        stage = frame_stage(function, path, line)
        if stage is not None:
            return stage
    return RUNNER if thread else OTHER


MAIN_PROCESS = "main process"
WORKER_PROCESSES = "worker processes"


def group_spy(raw: Path) -> dict[str, Counter[str]]:
    """Samples per stage of a py-spy raw (collapsed stacks) file, per kind of process.

    With `py-spy record --subprocesses` every stack starts with one
    `process PID:"command"` frame per generation: the pipeline's own process,
    then (for --direct_running_mode=multi_processing) its worker processes.
    """
    samples: dict[str, Counter[str]] = {}
    for row in raw.read_text(encoding="utf-8").splitlines():
        stack, _, count = row.rpartition(" ")
        frames = _frames(stack) if stack else []
        processes = 0
        while frames and not frames[0][1] and frames[0][0].startswith("process "):
            frames.pop(0)
            processes += 1
        kind = WORKER_PROCESSES if processes > 1 else MAIN_PROCESS
        # An empty stack: a thread in native code with no Python frame to show.
        stage = stack_stage(frames) if frames else OTHER
        samples.setdefault(kind, Counter())[stage] += int(count)
    return samples


# --- cProfile ------------------------------------------------------------------------------

def _builtin_stage(name: str, caller: tuple[str, int, str]) -> str:
    path, _, function = caller
    if "acquire" in name and "lock" in name:
        return WAITING  # cProfile's clock is the wall clock: a wait is not work
    if path.endswith(_CLASSIFIERS) and _PLAIN_LOOP.get(function) is None:
        if "orjson.loads" in name:
            return LOADS
        if "orjson.dumps" in name or "join" in name:
            return SERIALISE
        if "blake2" in name or "digest" in name:
            return HASHING
        return RULES
    return _function_stage(path, function)


def _function_stage(path: str, function: str) -> str:
    stage = frame_stage(function, path, None)
    if stage is not None:
        return stage
    if any(part in path for part in _STARTUP_FILES):
        return STARTUP
    if "apache_beam" in path:
        return RUNNER
    return OTHER


def group_cprofile(execution: pstats.Stats, startup: pstats.Stats) -> Counter[str]:
    """Self seconds per stage: the job's execution by function, the rest as start-up."""
    seconds: Counter[str] = Counter()
    raw = execution.stats  # type: ignore[attr-defined]
    for (path, _, function), (_, _, self_time, _, callers) in raw.items():
        if path == "~":  # a builtin: split its time among its callers
            for caller, (_, _, share, _) in callers.items():
                seconds[_builtin_stage(function, caller)] += share
        else:
            seconds[_function_stage(path, function)] += self_time
    seconds[STARTUP] += sum(row[2] for row in startup.stats.values())  # type: ignore[attr-defined]
    return seconds


def run_cprofile(argv: Sequence[str], plain: bool, dump: str | None) -> Counter[str]:
    """Runs the CLI (or the plain loop) under cProfile; returns self seconds per stage.

    Two profilers take turns: one for the job's execution (FnApiRunner.run_stages,
    or the plain loop's run()), one for everything around it (start-up).
    """
    owner: object  # the module or the class whose `method` is timed
    if plain:
        from benchmarks import plain_loop  # noqa: PLC0415

        entry, owner, method = plain_loop.main, plain_loop, "run"
    else:
        from apache_beam.runners.portability.fn_api_runner import fn_runner  # noqa: PLC0415

        from pipeline.cli import main  # noqa: PLC0415

        entry, owner, method = main, fn_runner.FnApiRunner, "run_stages"
    startup, execution = cProfile.Profile(), cProfile.Profile()
    original = getattr(owner, method)

    def profiled(*args: Any, **kwargs: Any) -> Any:
        startup.disable()
        execution.enable()
        try:
            return original(*args, **kwargs)
        finally:
            execution.disable()
            startup.enable()

    setattr(owner, method, profiled)
    startup.enable()
    try:
        entry(list(argv))
    finally:
        startup.disable()
        setattr(owner, method, original)
    if dump:
        execution.dump_stats(dump)
    return group_cprofile(pstats.Stats(execution), pstats.Stats(startup))


PER_LINE_WORK = (
    "none", "loads", "plain-classify", "pipeline-classify", "classify-batch", "classify-batch-schema",
    "pack-pipeline", "pack-zlib1", "pack-zstd1", "pack-none",
)


def per_line_work(
    patterns: Sequence[str], reference_time: str, repeat: int = 1, limit: int = 0,
    only: str | None = None,
) -> list[tuple[str, float]]:
    """CPU µs per line of each piece of per-line work, over the input's lines, in memory.

    The lines are read first (the plain loop's reader; the first `limit` only,
    if given), so only the per-line work is timed: "loads" (orjson alone),
    both classifiers, the pipeline's classify_batch (classifier and bookkeeping)
    on batches of 8 MiB, and packing the event lines for the shuffle (pack and
    unpack in batches of 650 lines, about what one 8 MiB batch gives one day)
    with the pipeline's own batches.pack and unpack, or with zlib level 1,
    zstd level 1 or no compression alone (join and split included). The
    per-line figures of the pack items are per event line. "none" does
    nothing: under `valgrind --tool=cachegrind`, `--only NAME` less
    `--only none` counts one item's instructions. Best of `repeat` rounds.
    """
    import itertools  # noqa: PLC0415
    import time  # noqa: PLC0415
    import zlib  # noqa: PLC0415

    import zstandard  # noqa: PLC0415

    from benchmarks import plain_loop, plain_rules  # noqa: PLC0415
    from transforms.batches import pack, unpack  # noqa: PLC0415
    from transforms.records import classify_batch  # noqa: PLC0415
    from transforms.rules import RuleConfig, classify  # noqa: PLC0415
    from transforms.schema import TypeTally  # noqa: PLC0415

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    reference = plain_loop.parse_reference_time(reference_time)
    config = RuleConfig(reference)
    lines: list[bytes] = []
    for path, _ in plain_loop.list_inputs(patterns):
        lines += [line for _, line in plain_loop.read_lines(path)]
        if limit and len(lines) >= limit:
            del lines[limit:]
            break
    batches, batch, size = [], [], 0
    for line in lines:
        batch.append(line)
        size += len(line) + 1
        if size >= 8 << 20:
            batches.append(batch)
            batch, size = [], 0
    batches.append(batch)
    events = [line for line in lines if line.startswith(b'{"event"')]
    pieces = [events[i : i + 650] for i in range(0, len(events), 650)]
    loads = plain_rules.loads
    plain = plain_rules.classify
    newline = b"\n"
    zstd_in, zstd_out = zstandard.ZstdCompressor(level=1), zstandard.ZstdDecompressor()

    def each(function: Callable[[bytes], object]) -> None:
        for line in lines:
            # Not contextlib.suppress: entering it per line would be timed with the work.
            try:  # noqa: SIM105
                function(line)
            except ValueError:
                pass

    def each_batch(function: Callable[[list[bytes]], object]) -> None:
        for batch in batches:
            function(batch)  # results dropped, as the pipeline does: holding them taxes the GC

    def each_piece(pack: Callable[[bytes], bytes], unpack: Callable[[bytes], bytes]) -> None:
        for piece in pieces:
            unpack(pack(newline.join(piece))).split(newline)

    # The pipeline packs offsets with the lines: the lines' byte offsets in one file.
    piece_offsets = [list(itertools.accumulate((len(line) + 1 for line in piece[:-1]), initial=0))
                     for piece in pieces]

    def each_packed() -> None:
        for piece, offsets in zip(pieces, piece_offsets, strict=True):
            unpack(pack((0, offsets, b"", piece)))

    work = {
        "none": lambda: None,
        "loads": lambda: each(loads),
        "plain-classify": lambda: each(lambda line: plain(line, reference)),
        "pipeline-classify": lambda: each(lambda line: classify(line, config)),
        "classify-batch": lambda: each_batch(lambda b: classify_batch(0, "x", list(range(len(b))), b, config)),
        "classify-batch-schema": lambda: each_batch(
            lambda b: classify_batch(0, "x", list(range(len(b))), b, config, types=TypeTally())
        ),
        "pack-pipeline": each_packed,
        "pack-zlib1": lambda: each_piece(lambda b: zlib.compress(b, 1), zlib.decompress),
        "pack-zstd1": lambda: each_piece(zstd_in.compress, zstd_out.decompress),
        "pack-none": lambda: each_piece(lambda b: b, lambda b: b),
    }
    results = []
    for name in [only] if only else PER_LINE_WORK[1:]:
        best = float("inf")
        for _ in range(repeat):
            start = time.process_time()
            work[name]()
            best = min(best, time.process_time() - start)
        count = len(events) if name.startswith("pack") else len(lines)
        results.append((name, best * 1e6 / max(1, count)))
    return results


def print_table(figures: Counter[str], unit: str, cpu_seconds: float | None) -> None:
    """Stages in pipeline order with their share (waiting is shown, not counted)."""
    total = sum(v for k, v in figures.items() if k != WAITING)
    head = f"{'stage':<62} {unit:>10} {'%':>6}"
    if cpu_seconds:
        head += f" {'CPU s':>7}"
    print(head)
    for stage in STAGES:
        value = figures.get(stage, 0)
        if not value or stage == WAITING:
            continue
        row = f"{stage:<62} {value:10,.1f} {100 * value / total:6.1f}"
        if cpu_seconds:
            row += f" {cpu_seconds * value / total:7.2f}"
        print(row)
    row = f"{'total':<62} {total:10,.1f} {100.0:6.1f}"
    print(row + (f" {cpu_seconds:7.2f}" if cpu_seconds else ""))
    if figures.get(WAITING):
        print(f"{WAITING:<62} {figures[WAITING]:10,.1f}")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="profile_stages.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    spy = sub.add_parser("spy", help="Group a py-spy raw profile. Example: spy spy.txt --cpu-seconds 50")
    spy.add_argument("raw", type=Path, help="py-spy record --format raw output. Example: spy.txt")
    spy.add_argument("--cpu-seconds", type=float,
                     help="The run's measured CPU time, to turn shares into seconds. Example: 50.5")
    prof = sub.add_parser("cprofile", help="Run the CLI under cProfile, then group. "
                          "Example: cprofile -- --input 'd/*' --output o --reference-time 2024-06-01")
    prof.add_argument("--plain-loop", action="store_true",
                      help="Profile benchmarks/plain_loop.py instead of the pipeline. Example: --plain-loop")
    prof.add_argument("--dump", help="Also save the execution's raw cProfile stats. Example: --dump run.prof")
    prof.add_argument("args", nargs=argparse.REMAINDER, help="The run's own arguments, after --")
    per_line = sub.add_parser("per-line", help="CPU µs per line of loads, both classifiers, "
                              "classify_batch and packing. Example: per-line --input 'd/*' "
                              "--reference-time 2024-06-01")
    per_line.add_argument("--input", action="append", required=True,
                          help="Glob of input files. Example: --input 'data/*'")
    per_line.add_argument("--reference-time", required=True,
                          help="As the pipeline's flag. Example: --reference-time 2024-06-01T00:00:00Z")
    per_line.add_argument("--repeat", type=int, default=1, help="Rounds, best kept. Example: --repeat 3")
    per_line.add_argument("--lines", type=int, default=0,
                          help="Only the first N lines (default all). Example: --lines 30000")
    per_line.add_argument("--only", choices=PER_LINE_WORK,
                          help="One item alone, for an instruction count under valgrind. "
                          "Example: --only loads")
    args = parser.parse_args(argv)
    if args.mode == "per-line":
        figures = per_line_work(args.input, args.reference_time, args.repeat, args.lines, args.only)
        for name, micros in figures:
            print(f"{name:<20} {micros:7.2f} µs/line")
        return 0
    if args.mode == "spy":
        grouped = group_spy(args.raw)
        if len(grouped) == 1:
            print_table(grouped[MAIN_PROCESS], "samples", args.cpu_seconds)
            return 0
        everything: Counter[str] = Counter()
        for kind, samples in grouped.items():
            print(f"-- {kind}")
            print_table(samples, "samples", None)
            everything.update(samples)
        print("-- all processes")
        print_table(everything, "samples", args.cpu_seconds)
        return 0
    run_args = args.args[1:] if args.args[:1] == ["--"] else args.args
    print_table(run_cprofile(run_args, args.plain_loop, args.dump), "profiled s", None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
