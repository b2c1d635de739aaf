"""What the run report's in-pipeline figures cost: the pipeline with and without them.

The report needs figures the tallies cannot hold: top event names and example
rejects (combiners in CollectReportFigures), plus _REPORT.html itself. This
script runs the real CLI on the benchmark corpus, alternately as is and with
those steps replaced by empty collections, each in a fresh child process, and
prints CPU and wall medians and the difference. The per-line counting that
feeds them (one dict increment per accepted event, inside classify_batch) stays in
both variants; it is timed on its own and printed beside.

Examples:
  python benchmarks/report_cost.py --lines 1000000 --runs 3
"""

import argparse
import os
import shutil
import statistics
import sys
import timeit
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.corpus import DEFAULT_SEED, ensure_corpus
from benchmarks.measure import measure

REPO = Path(__file__).resolve().parent.parent
WITHOUT_REPORT = "--without-report-figures"


def _run_without_report_figures(argv: list[str]) -> int:
    """The CLI with the report's figures and page replaced by nothing."""
    import apache_beam as beam  # noqa: PLC0415

    from pipeline import summary  # noqa: PLC0415

    def no_figures(self: summary.CollectReportFigures, split: dict[str, Any]) -> dict[str, Any]:
        root = split["event_names"].pipeline
        return {
            "top_events": root | "NoTopEvents" >> beam.Create([[]]),
            "reject_examples": root | "NoExamples" >> beam.Create([]),
            "duplicate_key_examples": root | "NoDuplicateKeyExamples" >> beam.Create([[]]),
        }

    def no_report(summary: Mapping[str, Any], schema: Mapping[str, Any] | None = None) -> str:
        return ""

    summary.CollectReportFigures.expand = no_figures  # type: ignore[method-assign]  # the variant measured
    summary.render_report = no_report
    from pipeline.cli import main  # noqa: PLC0415

    return main(argv)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000, help="Corpus size. Example: --lines 200000")
    parser.add_argument("--files", type=int, default=20, help="Files in the corpus. Example: --files 20")
    parser.add_argument("--runs", type=int, default=3, help="Runs of each variant. Example: --runs 3")
    parser.add_argument("--data-dir", type=Path, default=REPO / "bench-data", help="Corpus cache.")
    args = parser.parse_args(argv)
    corpus = ensure_corpus(args.data_dir, args.lines, args.files, DEFAULT_SEED)
    work = args.data_dir / "runs" / "report-cost"
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, list] = {"with": [], "without": []}
    for run in range(args.runs):
        for variant in ("with", "without"):
            out = work / f"{variant}-{run}"
            shutil.rmtree(out, ignore_errors=True)
            common = ["--input", corpus.pattern, "--output", str(out), "--reference-time", corpus.reference_time]
            command = [sys.executable, "-m", "pipeline", *common]
            if variant == "without":
                command = [sys.executable, os.path.abspath(__file__), WITHOUT_REPORT, *common]
            usage = measure(command, str(work / f"{variant}-{run}.log"))
            if usage.exit_code != 0:
                print(f"run {run} {variant}: exit status {usage.exit_code}; see {work}", file=sys.stderr)
                return 1
            results[variant].append(usage)
            print(f"run {run + 1} {variant:>7} report figures: wall {usage.wall_s:7.2f} s  CPU {usage.cpu_s:7.2f} s")
    cpu = {v: statistics.median(u.cpu_s for u in r) for v, r in results.items()}
    wall = {v: statistics.median(u.wall_s for u in r) for v, r in results.items()}
    # The counting inside classify_batch, timed alone over as many increments.
    names = [f"Event {i % 40}" for i in range(corpus.lines)]
    counting = timeit.timeit(lambda: _count(names), number=1)
    print(f"medians: with {cpu['with']:.2f} s CPU / {wall['with']:.2f} s wall; "
          f"without {cpu['without']:.2f} s CPU / {wall['without']:.2f} s wall")
    extra = cpu["with"] - cpu["without"] + counting
    print(f"report figures cost: {cpu['with'] - cpu['without']:+.2f} s CPU in the pipeline steps, "
          f"+{counting:.2f} s for the per-line counting; {100 * extra / cpu['with']:.1f}% of the run's CPU")
    return 0


def _count(names: list[str]) -> None:
    counts: Counter[str] = Counter()
    for name in names:
        counts[name] += 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == WITHOUT_REPORT:
        sys.exit(_run_without_report_figures(sys.argv[2:]))
    sys.exit(main(sys.argv[1:]))
