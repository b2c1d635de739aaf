"""The run summary: figures that balance, the quality gate, and the run's last step."""


import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import apache_beam as beam
import orjson
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipeline import TOOL_NAME, __version__
from pipeline.output import SUCCESS_FILE, SUMMARY_FILE
from transforms import records as rec
from transforms.dedupe import SUPERSEDED_COUNT
from transforms.write import TEMP_FOLDER, WrittenFile, join_path, temp_root

_LOG = logging.getLogger(__name__)


class MergeTallies(beam.CombineFn):
    """Adds up dicts of counts."""

    def create_accumulator(self) -> Counter[str]:
        return Counter()

    def add_input(self, acc: Counter[str], tallies: Mapping[str, int]) -> Counter[str]:
        acc.update(tallies)
        return acc

    def merge_accumulators(self, accs: Iterable[Counter[str]]) -> Counter[str]:
        merged: Counter[str] = Counter()
        for acc in accs:
            merged.update(acc)
        return merged

    def extract_output(self, acc: Counter[str]) -> dict[str, int]:
        return dict(acc)


def build_summary(
    header: Mapping[str, Any],
    tallies: Mapping[str, int],
    files: Sequence[WrittenFile],
    max_reject_ratio: float | None,
) -> dict[str, Any]:
    """Assembles _SUMMARY.json from the run's counts and written files.

    Events, profiles, groups and rejects are counted from the files actually
    written; lines, blank lines and superseded events are counted upstream,
    so `balanced` checks that nothing was lost between reading and writing.

    Args:
      header: tool-independent parts: "reference_time", "options", "input"
        (with "files" and "bytes"), "run_id".
      tallies: merged counts from ValidateAndSplit and DeduplicateEvents.
      files: every file written.
      max_reject_ratio: the quality gate, or None.
    """
    by_route: Counter[str] = Counter()
    for f in files:
        by_route[f.route] += f.lines
    events_by_day = {
        route[len(rec.EVENTS_PREFIX) :]: n
        for route, n in sorted(by_route.items())
        if route.startswith(rec.EVENTS_PREFIX)
    }
    events = sum(events_by_day.values())
    profiles = by_route[rec.PROFILES_ROUTE]
    groups = by_route[rec.GROUPS_ROUTE]
    rejected = by_route[rec.REJECTS_ROUTE]
    superseded = tallies.get(SUPERSEDED_COUNT, 0)
    lines = tallies.get(rec.LINES, 0)
    blank = tallies.get(rec.BLANK_LINES, 0)
    balanced = lines == events + superseded + profiles + groups + rejected + blank
    dedupe_consistent = tallies.get(rec.EVENTS_ACCEPTED, 0) == events + superseded
    non_blank = lines - blank
    reject_ratio = rejected / non_blank if non_blank else 0.0
    gate_ok = max_reject_ratio is None or reject_ratio <= max_reject_ratio
    by_reason = {
        name[len(rec.REJECTED_PREFIX) :]: n
        for name, n in sorted(tallies.items())
        if name.startswith(rec.REJECTED_PREFIX) and n
    }
    return {
        "tool": {"name": TOOL_NAME, "version": __version__},
        **header,
        "input": {**header["input"], "lines": lines, "blank_lines": blank},
        "output": {
            "events": events,
            "events_by_day": events_by_day,
            "profiles": profiles,
            "groups": groups,
            "superseded": superseded,
            "rejected": rejected,
            "rejected_by_reason": by_reason,
            "files": [
                {"path": f.path, "lines": f.lines, "bytes": f.bytes}
                for f in sorted(files, key=lambda f: f.path)
            ],
        },
        "normalised": {
            "time": tallies.get(rec.NORMALISED_PREFIX + "time", 0),
            "distinct_id": tallies.get(rec.NORMALISED_PREFIX + "distinct_id", 0),
            "insert_id_generated": tallies.get(rec.NORMALISED_PREFIX + "insert_id_generated", 0),
        },
        "balanced": balanced,
        "checks": {
            "balanced": balanced,
            "dedupe_consistent": dedupe_consistent,
            "reject_ratio": round(reject_ratio, 6),
            "max_reject_ratio": max_reject_ratio,
            "reject_ratio_ok": gate_ok,
        },
        "passed": balanced and dedupe_consistent and gate_ok,
    }


def read_summary(output: str) -> dict[str, Any] | None:
    """The _SUMMARY.json under `output`, or None if there is none."""
    path = join_path(output, SUMMARY_FILE)
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        data = b"".join(iter(lambda: handle.read(1 << 20), b""))
    summary: dict[str, Any] = orjson.loads(data)
    return summary


def _remove_empty_local_folders(root: str, removed_files: Sequence[str]) -> None:
    # Object stores have no folders; on local disk, a replaced day folder that
    # got no new files must not remain empty.
    if FileSystems.get_scheme(root) is not None:
        return
    top = os.path.abspath(root)
    for folder in sorted({os.path.dirname(os.path.abspath(p)) for p in removed_files}, reverse=True):
        while folder.startswith(top + os.sep) and os.path.isdir(folder) and not os.listdir(folder):
            os.rmdir(folder)
            folder = os.path.dirname(folder)


def _write_bytes(path: str, data: bytes) -> None:
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.write(data)


class _FinishRun(beam.DoFn):
    def __init__(
        self,
        output: str,
        run_id: str,
        header: Mapping[str, Any],
        stale_files: Sequence[str],
        max_reject_ratio: float | None,
    ) -> None:
        super().__init__()
        self._output = output
        self._run_id = run_id
        self._header = dict(header)
        self._stale = list(stale_files)
        self._max_reject_ratio = max_reject_ratio

    def process(self, files: list[WrittenFile], tallies: Mapping[str, int]) -> Iterator[dict[str, Any]]:
        summary = build_summary(self._header, tallies, files, self._max_reject_ratio)
        # Files of the replaced run that this run did not write again.
        written = {f.path for f in files} | {SUMMARY_FILE}
        stale = [join_path(self._output, p) for p in self._stale if p not in written]
        stale = [p for p in stale if FileSystems.exists(p)]
        if stale:
            FileSystems.delete(stale)
            _remove_empty_local_folders(self._output, stale)
        self._remove_temp_folder()
        _write_bytes(
            join_path(self._output, SUMMARY_FILE),
            orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n",
        )
        if summary["passed"]:
            _write_bytes(join_path(self._output, SUCCESS_FILE), b"")
        else:
            _LOG.error("run failed its checks: %s", summary["checks"])
        yield summary

    def _remove_temp_folder(self) -> None:
        # Object stores have no folders left once the files are moved; local
        # disk keeps the empty folders, which must not remain.
        for folder in (temp_root(self._output, self._run_id), join_path(self._output, TEMP_FOLDER)):
            if FileSystems.exists(folder):
                (match,) = FileSystems.match([join_path(folder, "**")])
                if not match.metadata_list:
                    FileSystems.delete([folder])


class WriteSummary(beam.PTransform):
    """Finishes a run: _SUMMARY.json, then _SUCCESS if the run passed its checks.

    Input: the WrittenFile elements of WritePartitions. Side input: `tallies`,
    a singleton dict of merged counts. Output: the summary dict (one element).

    Runs once all files are in place; removes the replaced run's files that
    were not written again and the temporary folder, writes the summary, and
    writes `_SUCCESS` last, only when the books balance and the reject ratio
    is within the gate.
    """

    def __init__(
        self,
        output: str,
        run_id: str,
        header: Mapping[str, Any],
        tallies: beam.pvalue.AsSingleton,
        stale_files: Sequence[str] = (),
        max_reject_ratio: float | None = None,
    ) -> None:
        super().__init__()
        if "input" not in header:
            raise ValueError("header must hold 'input'")
        self._finish = _FinishRun(output, run_id, header, stale_files, max_reject_ratio)
        self._tallies = tallies

    def expand(self, files: beam.PCollection) -> beam.PCollection:
        return (
            files
            | "ListWrittenFiles" >> beam.combiners.ToList()
            | "WriteSummaryFiles" >> beam.ParDo(self._finish, tallies=self._tallies)
        )
