"""The run summary: figures that balance, the quality gate, and the run's last step."""


import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import apache_beam as beam
import orjson
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.typehints.decorators import no_annotations

from pipeline import TOOL_NAME, __version__
from pipeline.output import (
    REPORT_FILE,
    SCHEMA_FILE,
    SUCCESS_FILE,
    SUMMARY_FILE,
    close_output,
    mark_success,
    remove_replaced_files,
    write_run_file,
)
from pipeline.report import render_report
from pipeline.schema import complete_schema
from transforms import layout, pause_point, read_all
from transforms import records as rec
from transforms.dedupe import SUPERSEDED_COUNT
from transforms.privacy import excluded, summary_section
from transforms.schema_document import Outline, document_bytes
from transforms.write import WrittenFile

_LOG = logging.getLogger(__name__)
TOP_EVENTS = 20
# The check a run fails when its report cannot be rendered (in the summary only then).
REPORT_CHECK = "report_rendered"


def _most_first(item: tuple[str, int]) -> tuple[int, tuple[int, ...]]:
    """Top key: higher counts first, then names in ascending order."""
    name, count = item
    # Negated bytes invert the name order; the trailing 1 puts a prefix first.
    return count, tuple(-b for b in name.encode("utf-8")) + (1,)


def _explode_examples(element: tuple[str, list[Any]]) -> Iterator[tuple[str, Any]]:
    reason, examples = element
    for example in examples:
        yield reason, example


class CollectReportFigures(beam.PTransform):
    """Figures for the run report that the tallies cannot hold.

    Input: {"event_names": ..., "reject_examples": ...,
    "duplicate_key_examples": ...}, those outputs of ValidateAndSplit.
    Output: a dict of three PCollections: "top_events", one list of up to 20
    (name, count) pairs, most counted first; "reject_examples", (reason,
    [(rank, offset, example)]) with the first few rejects of each reason in
    upload order; "duplicate_key_examples", one list of the first few
    (rank, offset, example) accepted lines, in upload order, that gave a key
    twice.

    All are combiners, so they cost little and work on every runner.
    """

    @no_annotations  # Beam takes no dict as a stage's input or output hint (it logs a warning)
    def expand(self, split: Mapping[str, beam.PCollection[Any]]) -> dict[str, beam.PCollection[Any]]:
        top_events = (
            split["event_names"]
            | "FlattenNameCounts" >> beam.FlatMap(lambda pairs: pairs)
            | "CountPerName" >> beam.CombinePerKey(sum)
            | "TopEventNames" >> beam.combiners.Top.Of(TOP_EVENTS, key=_most_first)
        )
        examples = (
            split["reject_examples"]
            | "FlattenExamples" >> beam.FlatMap(_explode_examples)
            | "FirstExamplesPerReason" >> beam.combiners.Top.SmallestPerKey(rec.EXAMPLES_PER_REASON)
        )
        # Ranks and offsets are unique, so the examples themselves are never compared.
        duplicate_keys = (
            split["duplicate_key_examples"]
            | "FlattenDuplicateKeyExamples" >> beam.FlatMap(lambda examples: examples)
            | "FirstDuplicateKeyExamples" >> beam.combiners.Top.Smallest(rec.DUPLICATE_KEY_EXAMPLES)
        )
        return {
            "top_events": top_events,
            "reject_examples": examples,
            "duplicate_key_examples": duplicate_keys,
        }


def _in_upload_order(examples: Iterable[Any]) -> list[Any]:
    """The examples of (rank, offset, example) triples, in upload order."""
    return [example for _, _, example in sorted(examples, key=lambda e: (e[0], e[1]))]


def build_details(
    tallies: Mapping[str, int],
    top_events: Sequence[tuple[str, int]],
    reject_examples: Mapping[str, Sequence[Any]],
    duplicate_key_examples: Sequence[Any] = (),
) -> dict[str, Any]:
    """The summary's "details": what the run report shows beyond the totals."""
    operations: dict[str, dict[str, int]] = {"profiles": {}, "groups": {}}
    for name, count in sorted(tallies.items()):
        if name.startswith(rec.PROFILE_OPERATION_PREFIX):
            operations["profiles"][name[len(rec.PROFILE_OPERATION_PREFIX) :]] = count
        elif name.startswith(rec.GROUP_OPERATION_PREFIX):
            operations["groups"][name[len(rec.GROUP_OPERATION_PREFIX) :]] = count
    return {
        "top_events": [{"name": name, "count": count} for name, count in top_events],
        "reject_examples": {
            reason: _in_upload_order(examples) for reason, examples in sorted(reject_examples.items())
        },
        "duplicate_key_examples": _in_upload_order(duplicate_key_examples),
        "updates_by_operation": operations,
    }


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
    details: Mapping[str, Any] | None = None,
    unreadable_files: Iterable[Sequence[Any]] | None = None,
) -> dict[str, Any]:
    """Assembles _SUMMARY.json from the run's counts and written files.

    Events, profiles, groups and rejects are counted from the files actually
    written; lines, blank lines, superseded and excluded records are counted
    upstream, so `balanced` checks that nothing was lost between reading and
    writing.

    Args:
      header: tool-independent parts: "reference_time", "options", "input"
        (with "files", "bytes" and "skipped_output_files"), "run_id".
      tallies: merged counts from ValidateAndSplit and DeduplicateEvents.
      files: every file written.
      max_reject_ratio: the quality gate, or None.
      details: the figures of build_details(), for the report.
      unreadable_files: with --skip-unreadable-files, the (path, start,
        error, lines_read) of every input range that could not be read to its
        end (transforms.read.UnreadableFile); they become
        input.unreadable_files, one entry per file. None leaves the key out.
    """
    by_route: Counter[str] = Counter()
    for f in files:
        by_route[f.route] += f.lines
    events_by_day = {
        route[len(layout.EVENTS_PREFIX) :]: n
        for route, n in sorted(by_route.items())
        if route.startswith(layout.EVENTS_PREFIX)
    }
    events = sum(events_by_day.values())
    profiles = by_route[layout.PROFILES_ROUTE]
    groups = by_route[layout.GROUPS_ROUTE]
    rejected = by_route[layout.REJECTS_ROUTE]
    superseded = tallies.get(SUPERSEDED_COUNT, 0)
    lines = tallies.get(rec.LINES, 0)
    blank = tallies.get(rec.BLANK_LINES, 0)
    options = header.get("options", {})
    # Removed by --exclude-users after they were accepted (DESIGN.md §5, §7).
    excluded_events, excluded_profiles = excluded(tallies)
    excluded_lines = excluded_events + excluded_profiles
    balanced = lines == events + superseded + profiles + groups + rejected + excluded_lines + blank
    dedupe_consistent = tallies.get(rec.EVENTS_ACCEPTED, 0) == events + superseded + excluded_events
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
        "input": {
            **header["input"],
            "lines": lines,
            "blank_lines": blank,
            **(
                {"unreadable_files": unreadable_entries(unreadable_files)}
                if unreadable_files is not None
                else {}
            ),
        },
        "output": {
            "events": events,
            "events_by_day": events_by_day,
            "profiles": profiles,
            "groups": groups,
            "superseded": superseded,
            "rejected": rejected,
            "rejected_by_reason": by_reason,
            "excluded": excluded_lines,
            "files": [
                {"path": f.path, "lines": f.lines, "bytes": f.bytes}
                for f in sorted(files, key=lambda f: f.path)
            ],
        },
        "normalised": {
            "time": tallies.get(rec.NORMALISED_PREFIX + "time", 0),
            "distinct_id": tallies.get(rec.NORMALISED_PREFIX + "distinct_id", 0),
            "insert_id_generated": tallies.get(rec.NORMALISED_PREFIX + "insert_id_generated", 0),
            "duplicate_keys": tallies.get(rec.NORMALISED_PREFIX + "duplicate_keys", 0),
        },
        "privacy": summary_section(options.get("drop_property") or [], options.get("hash_property") or [], tallies),
        "balanced": balanced,
        "checks": {
            "balanced": balanced,
            "dedupe_consistent": dedupe_consistent,
            "reject_ratio": round(reject_ratio, 6),
            "max_reject_ratio": max_reject_ratio,
            "reject_ratio_ok": gate_ok,
        },
        "passed": balanced and dedupe_consistent and gate_ok,
        "details": dict(details) if details is not None else build_details(tallies, [], {}),
    }


def unreadable_entries(unreadable_files: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """One summary entry per unreadable file, by path: its first error, the lines read.

    `lines_read` adds up the lines that the file's failed ranges gave before
    their error (those lines are in the run and its counts); an uncompressed
    file is read in ranges, and ranges of it read to their end are in the run
    too.
    """
    entries: dict[str, dict[str, Any]] = {}
    for path, _, error, lines_read in sorted(unreadable_files, key=lambda u: (u[0], u[1])):
        entry = entries.setdefault(path, {"path": path, "error": error, "lines_read": 0})
        entry["lines_read"] += lines_read
    return list(entries.values())


def read_summary(output: str) -> dict[str, Any] | None:
    """The _SUMMARY.json under `output`, or None if there is none."""
    path = FileSystems.join(output, SUMMARY_FILE)
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        data = read_all(handle)
    summary: dict[str, Any] = orjson.loads(data)
    return summary


def render_or_fail(summary: dict[str, Any], document: dict[str, Any] | None) -> bytes | None:
    """_REPORT.html's bytes; None, with the summary failed (REPORT_CHECK), when it cannot be rendered.

    The report is made from the summary and the schema alone, so whatever
    breaks it is a bug of this tool. It must not cost the figures: the
    summary and the schema are still written, and the run fails its checks
    (no _SUCCESS, exit status 1) instead of passing without its report.
    """
    try:
        return render_report(summary, document).encode("utf-8")
    except Exception:  # noqa: BLE001 (a bug, logged with its traceback; the run fails below)
        _LOG.exception(
            "the run report (%s) cannot be rendered: the run fails; %s and %s are still written, %s is not",
            REPORT_FILE, SUMMARY_FILE, SCHEMA_FILE, SUCCESS_FILE,
        )
        summary["checks"][REPORT_CHECK] = False
        summary["passed"] = False
        return None


class _FinishRun(beam.DoFn):
    def __init__(
        self,
        output: str,
        run_id: str,
        header: Mapping[str, Any],
        stale_files: Sequence[str],
        max_reject_ratio: float | None,
        previous_schema: Outline | None = None,
        fail_on_type_change: bool = False,
    ) -> None:
        super().__init__()
        self._output = output
        self._run_id = run_id
        self._header = dict(header)
        self._stale = list(stale_files)
        self._max_reject_ratio = max_reject_ratio
        self._previous_schema = previous_schema
        self._fail_on_type_change = fail_on_type_change

    def process(
        self,
        files: list[WrittenFile],
        tallies: Mapping[str, int],
        top_events: Sequence[tuple[str, int]],
        reject_examples: Mapping[str, Sequence[Any]],
        unreadable_files: Sequence[Sequence[Any]] | None = None,
        duplicate_key_examples: Sequence[Any] = (),
        schema: Iterable[Any] | None = None,
    ) -> Iterator[dict[str, Any]]:
        details = build_details(tallies, top_events, reject_examples, duplicate_key_examples)
        summary = build_summary(
            self._header, tallies, files, self._max_reject_ratio, details, unreadable_files
        )
        document = None
        if schema is not None:  # drift, and its check, before the summary is written
            document = complete_schema(schema, self._previous_schema, summary, self._fail_on_type_change)
        skipped = summary["input"].get("unreadable_files")
        if skipped:
            _LOG.warning(
                "%d input files could not be read to their end and were skipped from the "
                "error on (--skip-unreadable-files): %s",
                len(skipped),
                ", ".join(entry["path"] for entry in skipped),
            )
        # The report is rendered first, for the summary to say if it cannot be.
        report = render_or_fail(summary, document)
        remove_replaced_files(self._output, self._stale, (f.path for f in files))
        pause_point("finish")
        # The summary first, then the schema, the report and _SUCCESS: each
        # whole or not at all, so that a fault on the way costs only what follows.
        summary_bytes = orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n"
        write_run_file(self._output, self._run_id, SUMMARY_FILE, summary_bytes)
        if document is not None:
            write_run_file(self._output, self._run_id, SCHEMA_FILE, document_bytes(document))
        if report is not None:
            write_run_file(self._output, self._run_id, REPORT_FILE, report)
        if summary["passed"]:
            mark_success(self._output, self._run_id)
        else:
            _LOG.error("run failed its checks: %s", summary["checks"])
        close_output(self._output, self._run_id)
        yield summary


class WriteSummary(beam.PTransform):
    """Finishes a run: _SUMMARY.json, _SCHEMA.json, _REPORT.html, _SUCCESS if it passed its checks, then unlocks.

    Input: the WrittenFile elements of WritePartitions. Side inputs: `tallies`,
    a singleton dict of merged counts, `figures`, the dict of
    CollectReportFigures, `schema`, the figures per name of CollectSchema, and
    `unreadable_files` (only with --skip-unreadable-files), ReadRawLines'
    `unreadable` output. Output: the summary dict (one element).

    Runs once all files are in place; removes the replaced run's files that
    were not written again, writes the summary, then the schema (with its
    drift against `previous_schema`, when given), then the report (each whole
    or not at all), then `_SUCCESS`, only when the books balance, the reject
    ratio is within the gate and, with `fail_on_type_change`, no type
    changed; removes the temporary folder, and last the run's lock
    (pipeline/output.py's close_output), passed or not. A report that cannot
    be rendered (a bug) is not written, and fails the run's checks
    (REPORT_CHECK): the summary and the schema are kept, `_SUCCESS` is not
    written (see render_or_fail).
    """

    def __init__(
        self,
        output: str,
        run_id: str,
        header: Mapping[str, Any],
        tallies: beam.PCollection,
        figures: Mapping[str, beam.PCollection],
        stale_files: Sequence[str] = (),
        max_reject_ratio: float | None = None,
        unreadable_files: beam.PCollection | None = None,
        schema: beam.PCollection | None = None,
        previous_schema: Outline | None = None,
        fail_on_type_change: bool = False,
    ) -> None:
        super().__init__()
        if "input" not in header:
            raise ValueError("header must hold 'input'")
        if (previous_schema is not None or fail_on_type_change) and schema is None:
            raise ValueError("previous_schema and fail_on_type_change need the schema")
        self._finish = _FinishRun(
            output, run_id, header, stale_files, max_reject_ratio, previous_schema, fail_on_type_change
        )
        self._tallies = tallies
        self._figures = figures
        self._unreadable = unreadable_files
        self._schema = schema

    def expand(self, files: beam.PCollection[WrittenFile]) -> beam.PCollection[dict[str, Any]]:
        side_inputs = {
            "tallies": beam.pvalue.AsSingleton(self._tallies),
            "top_events": beam.pvalue.AsSingleton(self._figures["top_events"]),
            "reject_examples": beam.pvalue.AsDict(self._figures["reject_examples"]),
            "duplicate_key_examples": beam.pvalue.AsSingleton(self._figures["duplicate_key_examples"]),
        }
        if self._unreadable is not None:
            side_inputs["unreadable_files"] = beam.pvalue.AsList(self._unreadable)
        if self._schema is not None:
            # Streamed: the last step keeps the largest names as they come.
            side_inputs["schema"] = beam.pvalue.AsIter(self._schema)
        return (
            files
            | "ListWrittenFiles" >> beam.combiners.ToList()
            | "WriteSummaryFiles" >> beam.ParDo(self._finish, **side_inputs)
        )
