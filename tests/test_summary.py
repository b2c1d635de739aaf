"""Tests of pipeline/summary.py: the figures, the checks, and the run's last step."""

import os

import apache_beam as beam
import orjson
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from e2e import run_cli, write_input
from pipeline import TOOL_NAME, __version__
from pipeline import summary as summary_module
from pipeline.summary import (
    CollectReportFigures,
    MergeTallies,
    WriteSummary,
    build_details,
    build_summary,
    read_summary,
)
from transforms.schema import EVENTS, NameTypes
from transforms.schema_document import document_bytes, document_of
from transforms.write import WrittenFile

DAY1 = "events/day=2024-01-01"
DAY2 = "events/day=2024-01-02"
RUN_ID = "20240201T000000Z-abcd1234"

HEADER = {
    "run_id": RUN_ID,
    "reference_time": "2024-02-01T00:00:00Z",
    "options": {"input": ["/raw/*"], "compression": "gzip"},
    "input": {"files": 2, "bytes": 1234},
}

# Day 1 in two parts (3 + 2 events), day 2 one event, 2 profiles, 1 group, 3 rejects.
FILES = [
    WrittenFile(DAY1, f"{DAY1}/part-00001-of-00002.ndjson.gz", 2, 200),
    WrittenFile(DAY1, f"{DAY1}/part-00000-of-00002.ndjson.gz", 3, 300),
    WrittenFile(DAY2, f"{DAY2}/part-00000-of-00001.ndjson.gz", 1, 100),
    WrittenFile("profiles", "profiles/part-00000-of-00001.ndjson.gz", 2, 90),
    WrittenFile("groups", "groups/part-00000-of-00001.ndjson.gz", 1, 60),
    WrittenFile("rejects", "rejects/part-00000-of-00001.ndjson.gz", 3, 500),
]

# 18 lines = 6 events + 2 superseded + 2 profiles + 1 group + 3 rejects + 4 blank.
TALLIES = {
    "lines": 18,
    "blank_lines": 4,
    "events_accepted": 8,
    "superseded": 2,
    "profiles": 2,
    "groups": 1,
    "rejected": 3,
    "rejected_invalid_json": 2,
    "rejected_missing_time": 1,
    "rejected_invalid_utf8": 0,
    "normalised_time": 3,
    "normalised_distinct_id": 1,
    "normalised_duplicate_keys": 2,
    "operation_profiles_$set": 2,
    "operation_groups_$unset": 1,
}

EXPECTED_SUMMARY = {
    "tool": {"name": TOOL_NAME, "version": __version__},
    "run_id": RUN_ID,
    "reference_time": "2024-02-01T00:00:00Z",
    "options": {"input": ["/raw/*"], "compression": "gzip"},
    "input": {"files": 2, "bytes": 1234, "lines": 18, "blank_lines": 4},
    "output": {
        "events": 6,
        "events_by_day": {"2024-01-01": 5, "2024-01-02": 1},
        "profiles": 2,
        "groups": 1,
        "superseded": 2,
        "rejected": 3,
        "rejected_by_reason": {"invalid_json": 2, "missing_time": 1},
        "excluded": 0,
        "files": [
            {"path": f"{DAY1}/part-00000-of-00002.ndjson.gz", "lines": 3, "bytes": 300},
            {"path": f"{DAY1}/part-00001-of-00002.ndjson.gz", "lines": 2, "bytes": 200},
            {"path": f"{DAY2}/part-00000-of-00001.ndjson.gz", "lines": 1, "bytes": 100},
            {"path": "groups/part-00000-of-00001.ndjson.gz", "lines": 1, "bytes": 60},
            {"path": "profiles/part-00000-of-00001.ndjson.gz", "lines": 2, "bytes": 90},
            {"path": "rejects/part-00000-of-00001.ndjson.gz", "lines": 3, "bytes": 500},
        ],
    },
    "normalised": {"time": 3, "distinct_id": 1, "insert_id_generated": 0, "duplicate_keys": 2},
    "privacy": {"dropped": {}, "hashed": {}, "excluded": {"events": 0, "profiles": 0}, "listed_ids": 0},
    "balanced": True,
    "checks": {
        "balanced": True,
        "dedupe_consistent": True,
        "reject_ratio": 0.214286,  # 3 / 14
        "max_reject_ratio": None,
        "reject_ratio_ok": True,
    },
    "passed": True,
    "details": {
        "top_events": [],
        "reject_examples": {},
        "duplicate_key_examples": [],
        "updates_by_operation": {"profiles": {"$set": 2}, "groups": {"$unset": 1}},
    },
}


def test_build_summary_exact():
    assert build_summary(HEADER, TALLIES, FILES, None) == EXPECTED_SUMMARY


def test_build_summary_is_json():
    summary = build_summary(HEADER, TALLIES, FILES, 0.5)
    assert orjson.loads(orjson.dumps(summary)) == summary


@pytest.mark.parametrize(
    "change, balanced, dedupe_consistent",
    [
        pytest.param({"lines": 19}, False, True, id="one_line_unaccounted_for"),
        pytest.param({"lines": 17}, False, True, id="one_line_too_many_written"),
        pytest.param({"blank_lines": 5}, False, True, id="blank_count_off"),
        pytest.param({"superseded": 1}, False, False, id="superseded_count_off"),
        pytest.param({"events_accepted": 9}, True, False, id="accepted_events_lost_after_dedupe"),
        pytest.param({"excluded_profiles": 1}, False, True, id="an_exclusion_of_no_line"),
        pytest.param({"excluded_events": 1, "lines": 19}, True, False, id="an_excluded_event_never_accepted"),
    ],
)
def test_build_summary_books_off(change, balanced, dedupe_consistent):
    summary = build_summary(HEADER, {**TALLIES, **change}, FILES, None)
    assert summary["balanced"] is balanced
    assert summary["checks"]["balanced"] is balanced
    assert summary["checks"]["dedupe_consistent"] is dedupe_consistent
    assert summary["passed"] is False


# The same files, from 21 lines of which 2 events and 1 profile update were excluded.
EXCLUDED_TALLIES = {**TALLIES, "lines": 21, "events_accepted": 10, "excluded_events": 2,
                    "excluded_profiles": 1, "excluded_listed_ids": 40}


def test_build_summary_excluded_records_balance_the_books():
    header = {**HEADER, "options": {**HEADER["options"], "drop_property": ["phone", "email"],
                                    "hash_property": ["distinct_id"]}}
    tallies = {**EXCLUDED_TALLIES, "privacy_dropped_email": 4, "privacy_hashed_distinct_id": 9}
    summary = build_summary(header, tallies, FILES, None)
    assert summary["output"]["excluded"] == 3
    assert summary["privacy"] == {
        "dropped": {"email": 4, "phone": 0},
        "hashed": {"distinct_id": 9},
        "excluded": {"events": 2, "profiles": 1},
        "listed_ids": 40,
    }
    assert summary["balanced"] is True and summary["checks"]["dedupe_consistent"] is True
    assert summary["passed"] is True
    assert summary["checks"]["reject_ratio"] == round(3 / 17, 6)  # excluded lines are not blank


def test_build_summary_a_lost_file_unbalances_the_books():
    summary = build_summary(HEADER, TALLIES, FILES[1:], None)
    assert summary["output"]["events"] == 4
    assert summary["balanced"] is False
    assert summary["passed"] is False


@pytest.mark.parametrize(
    "max_ratio, ok",
    [
        pytest.param(None, True, id="no_gate"),
        pytest.param(1.0, True, id="everything_allowed"),
        pytest.param(0.25, True, id="under"),
        pytest.param(3 / 14, True, id="exactly_at_limit"),
        pytest.param(0.2, False, id="over"),
        pytest.param(0.0, False, id="zero_tolerance"),
    ],
)
def test_build_summary_reject_ratio_gate(max_ratio, ok):
    summary = build_summary(HEADER, TALLIES, FILES, max_ratio)
    assert summary["checks"]["max_reject_ratio"] == max_ratio
    assert summary["checks"]["reject_ratio_ok"] is ok
    assert summary["passed"] is ok
    assert summary["balanced"] is True


def test_build_summary_only_blank_lines():
    tallies = {"lines": 3, "blank_lines": 3, "events_accepted": 0}
    summary = build_summary(HEADER, tallies, [], 0.0)
    assert summary["checks"]["reject_ratio"] == 0.0
    assert summary["passed"] is True
    assert summary["output"] == {
        "events": 0,
        "events_by_day": {},
        "profiles": 0,
        "groups": 0,
        "superseded": 0,
        "rejected": 0,
        "rejected_by_reason": {},
        "excluded": 0,
        "files": [],
    }


def test_build_details():
    examples = {
        "invalid_json": [(1, 50, {"line": "b"}), (0, 900, {"line": "a"}), (1, 7, {"line": "c"})],
        "invalid_utf8": [(0, 0, {"line_base64": "/w=="})],
    }
    duplicates = [(2, 5, {"line": "z"}), (0, 10, {"line": "x"}), (2, 1, {"line": "y"})]
    assert build_details(TALLIES, [("Signup", 5), ("Play", 2)], examples, duplicates) == {
        "top_events": [{"name": "Signup", "count": 5}, {"name": "Play", "count": 2}],
        "reject_examples": {
            "invalid_json": [{"line": "a"}, {"line": "c"}, {"line": "b"}],
            "invalid_utf8": [{"line_base64": "/w=="}],
        },
        "duplicate_key_examples": [{"line": "x"}, {"line": "y"}, {"line": "z"}],
        "updates_by_operation": {"profiles": {"$set": 2}, "groups": {"$unset": 1}},
    }


def test_build_summary_counts_duplicate_keys_apart_from_the_books():
    # Lines that gave a key twice were accepted: they change no other figure.
    without = build_summary(HEADER, {k: v for k, v in TALLIES.items() if k != "normalised_duplicate_keys"}, FILES, None)
    assert without["normalised"]["duplicate_keys"] == 0
    with_them = build_summary(HEADER, TALLIES, FILES, None)
    assert with_them["normalised"]["duplicate_keys"] == 2
    with_them["normalised"]["duplicate_keys"] = 0
    assert with_them == without


def example(rank, offset):
    return (rank, offset, {"source": f"f{rank}", "offset": offset, "line": "{}"})


def test_collect_report_figures_exact():
    with TestPipeline(runner="FnApiRunner") as p:
        split = {
            "event_names": p | "Names" >> beam.Create([[("Play", 2), ("Signup", 1)], [("Play", 3)]]),
            "reject_examples": p
            | "Rejects"
            >> beam.Create(
                [
                    ("invalid_json", [example(1, 9)]),
                    ("invalid_json", [example(0, 50)]),
                    ("missing_time", [example(0, 7)]),
                ]
            ),
            # Batches in no particular order; the first five lines in upload order win.
            "duplicate_key_examples": p
            | "Duplicates"
            >> beam.Create(
                [
                    [example(2, 0), example(2, 40)],
                    [example(0, 300), example(0, 310), example(0, 320), example(0, 330), example(0, 340)],
                    [example(0, 5), example(1, 77)],
                ]
            ),
        }
        figures = split | CollectReportFigures()
        assert_that(figures["top_events"], equal_to([[("Play", 5), ("Signup", 1)]]), label="CheckTopEvents")
        assert_that(
            figures["reject_examples"],
            equal_to([("invalid_json", [example(0, 50), example(1, 9)]), ("missing_time", [example(0, 7)])]),
            label="CheckRejectExamples",
        )
        assert_that(
            figures["duplicate_key_examples"],
            equal_to([[example(0, 5), example(0, 300), example(0, 310), example(0, 320), example(0, 330)]]),
            label="CheckDuplicateKeyExamples",
        )


def test_collect_report_figures_of_nothing():
    with TestPipeline(runner="FnApiRunner") as p:
        split = {
            name: p | name >> beam.Create([])
            for name in ("event_names", "reject_examples", "duplicate_key_examples")
        }
        figures = split | CollectReportFigures()
        assert_that(figures["top_events"], equal_to([[]]), label="CheckTopEvents")
        assert_that(figures["reject_examples"], equal_to([]), label="CheckRejectExamples")
        assert_that(figures["duplicate_key_examples"], equal_to([[]]), label="CheckDuplicateKeyExamples")


def test_merge_tallies():
    fn = MergeTallies()
    first = fn.add_input(fn.add_input(fn.create_accumulator(), {"lines": 3, "blank_lines": 1}), {"lines": 2})
    second = fn.add_input(fn.create_accumulator(), {"superseded": 4, "lines": 1})
    merged = fn.merge_accumulators([first, second, fn.create_accumulator()])
    assert fn.extract_output(merged) == {"lines": 6, "blank_lines": 1, "superseded": 4}
    assert fn.extract_output(fn.create_accumulator()) == {}


# WriteSummary ----------------------------------------------------------------------


def touch(root, relative, data=b"x"):
    path = os.path.join(root, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


def listing(root):
    """(files, folders) under root, relative and sorted."""
    files, folders = [], []
    for folder, subfolders, names in os.walk(root):
        folders.extend(os.path.relpath(os.path.join(folder, s), root) for s in subfolders)
        files.extend(os.path.relpath(os.path.join(folder, n), root) for n in names)
    return sorted(files), sorted(folders)


PREVIOUS_RUN = [
    "_SUMMARY.json",
    "events/day=2023-12-31/part-00000-of-00001.ndjson.gz",  # not written again: stale
    "superseded/day=2023-12-31/part-00000-of-00001.ndjson.gz",  # stale, and its parent empties
    f"{DAY1}/part-00000-of-00001.ndjson.gz",  # this run writes day 1 in two parts
    "rejects/part-00000-of-00001.ndjson.gz",  # written again by this run
]


@pytest.fixture
def replaced_run(tmp_path):
    """An output folder as WritePartitions leaves it over a previous run: the
    previous run's files, this run's FILES, and the run's empty temp folders."""
    root = str(tmp_path / "out")
    for relative in PREVIOUS_RUN:
        touch(root, relative, b"old")
    for f in FILES:
        touch(root, f.path, b"new")
    os.makedirs(os.path.join(root, "_temporary", RUN_ID, DAY1))
    os.makedirs(os.path.join(root, "_temporary", RUN_ID, "rejects"))
    return root


def run_write_summary(root, tallies_parts, max_reject_ratio=None, stale=()):
    with TestPipeline(runner="FnApiRunner") as p:
        files = p | "Files" >> beam.Create(FILES)
        tallies = p | "Tallies" >> beam.Create(tallies_parts) | beam.CombineGlobally(MergeTallies())
        figures = {
            "top_events": p | "TopEvents" >> beam.Create([[("Signup", 5)]]),
            "reject_examples": p
            | "Examples" >> beam.Create([("invalid_json", [(0, 3, {"source": "a", "offset": 3, "line": "{"})])]),
            "duplicate_key_examples": p
            | "DuplicateKeyExamples" >> beam.Create([[(1, 8, {"source": "b", "offset": 8, "line": "{}"})]]),
        }
        summary = files | WriteSummary(
            root, RUN_ID, HEADER, tallies, figures, stale_files=stale, max_reject_ratio=max_reject_ratio
        )
        expected = build_summary(
            HEADER,
            {**TALLIES, "rejected_invalid_utf8": 0},
            FILES,
            max_reject_ratio,
            {
                "top_events": [{"name": "Signup", "count": 5}],
                "reject_examples": {"invalid_json": [{"source": "a", "offset": 3, "line": "{"}]},
                "duplicate_key_examples": [{"source": "b", "offset": 8, "line": "{}"}],
                "updates_by_operation": {"profiles": {"$set": 2}, "groups": {"$unset": 1}},
            },
        )
        assert_that(summary, equal_to([expected]), label="CheckSummary")
    return expected


# TALLIES split in three parts, as they come from batches and the dedupe.
TALLY_PARTS = [
    {k: v for k, v in TALLIES.items() if k not in ("superseded", "lines")} | {"lines": 10},
    {"lines": 8},
    {"superseded": 2},
]


def test_write_summary_passed_run_replaces_previous(replaced_run):
    root = replaced_run
    expected = run_write_summary(root, TALLY_PARTS, stale=PREVIOUS_RUN)
    assert expected["passed"] is True
    files, folders = listing(root)
    assert files == sorted([f.path for f in FILES] + ["_REPORT.html", "_SUMMARY.json", "_SUCCESS"])
    # The stale day folders (and "superseded", left empty), the temporary folder: gone.
    assert folders == ["events", DAY1, DAY2, "groups", "profiles", "rejects"]
    with open(os.path.join(root, "_SUMMARY.json"), "rb") as handle:
        assert orjson.loads(handle.read()) == expected
    assert read_summary(root) == expected
    # Files this run wrote are kept, not deleted as the previous run's.
    with open(os.path.join(root, "rejects/part-00000-of-00001.ndjson.gz"), "rb") as handle:
        assert handle.read() == b"new"


def test_write_summary_failed_gate_writes_summary_without_success(replaced_run):
    root = replaced_run
    expected = run_write_summary(root, TALLY_PARTS, max_reject_ratio=0.1, stale=PREVIOUS_RUN)
    assert expected["passed"] is False
    assert expected["checks"]["reject_ratio_ok"] is False
    files, folders = listing(root)
    assert files == sorted([f.path for f in FILES] + ["_REPORT.html", "_SUMMARY.json"])
    assert "_temporary" not in folders
    assert read_summary(root) == expected


def test_write_summary_new_location_unbalanced(tmp_path):
    """No previous run, books that do not balance (a line too many): no _SUCCESS."""
    root = str(tmp_path / "out")
    for f in FILES:
        touch(root, f.path)
    os.makedirs(os.path.join(root, "_temporary", RUN_ID, DAY2))
    parts = [dict(p) for p in TALLY_PARTS]
    parts[1]["lines"] = 9
    with TestPipeline(runner="FnApiRunner") as p:
        files = p | "Files" >> beam.Create(FILES)
        tallies = p | "Tallies" >> beam.Create(parts) | beam.CombineGlobally(MergeTallies())
        figures = {
            "top_events": p | "TopEvents" >> beam.Create([[]]),
            "reject_examples": p | "Examples" >> beam.Create([]),
            "duplicate_key_examples": p | "DuplicateKeyExamples" >> beam.Create([[]]),
        }
        summary = files | WriteSummary(root, RUN_ID, HEADER, tallies, figures)
        assert_that(
            summary | beam.Map(lambda s: (s["balanced"], s["passed"], s["input"]["lines"])),
            equal_to([(False, False, 19)]),
            label="CheckChecks",
        )
    files, folders = listing(root)
    assert files == sorted([f.path for f in FILES] + ["_REPORT.html", "_SUMMARY.json"])
    assert "_temporary" not in folders


def test_write_summary_refuses_header_without_input():
    with pytest.raises(ValueError, match="input"):
        WriteSummary("out", RUN_ID, {"run_id": RUN_ID}, None, {})


def test_write_summary_writes_the_schema_with_drift_and_gates_a_type_change(tmp_path):
    """_SCHEMA.json beside the summary; a type change against the previous schema fails the checks."""


    root = str(tmp_path / "out")
    for f in FILES:
        touch(root, f.path)
    names = [((EVENTS, "Signup"), NameTypes(2, {"plan": {"string": 1, "integer": 1}}, {},
                                            {("plan", "string"): (0, 0, "a"), ("plan", "integer"): (0, 9, "a")}))]
    previous = {"Signup": {"plan": ("string",)}, "Gone": {}}
    with TestPipeline(runner="FnApiRunner") as p:
        files = p | "Files" >> beam.Create(FILES)
        tallies = p | "Tallies" >> beam.Create(TALLY_PARTS) | beam.CombineGlobally(MergeTallies())
        figures = {
            "top_events": p | "TopEvents" >> beam.Create([[]]),
            "reject_examples": p | "Examples" >> beam.Create([]),
            "duplicate_key_examples": p | "DuplicateKeyExamples" >> beam.Create([[]]),
        }
        schema = p | "Schema" >> beam.Create(names)
        summary = files | WriteSummary(
            root, RUN_ID, HEADER, tallies, figures, schema=schema, previous_schema=previous, fail_on_type_change=True
        )
        assert_that(
            summary | beam.Map(lambda s: (s["balanced"], s["checks"]["type_changes_ok"], s["passed"])),
            equal_to([(True, False, False)]),
        )
    files, _ = listing(root)
    assert files == sorted([f.path for f in FILES] + ["_REPORT.html", "_SCHEMA.json", "_SUMMARY.json"])
    expected = document_of(names)
    expected["drift"] = {
        "new_events": [], "removed_events": ["Gone"], "new_properties": {}, "removed_properties": {},
        "type_changes": {"Signup": {"plan": {"before": ["string"], "after": ["integer", "string"]}}},
    }
    with open(os.path.join(root, "_SCHEMA.json"), "rb") as handle:
        assert handle.read() == document_bytes(expected)
    with open(os.path.join(root, "_REPORT.html"), encoding="utf-8") as handle:
        assert 'data-drift="removed_events"' in handle.read()


def test_write_summary_refuses_drift_without_the_schema():
    with pytest.raises(ValueError, match="need the schema"):
        WriteSummary("out", RUN_ID, HEADER, None, {}, fail_on_type_change=True)


# The run files' order, and a report that cannot be rendered ---------------------------------

SCHEMA_NAMES = [((EVENTS, "Signup"), NameTypes(1, {"plan": {"string": 1}}, {}, {("plan", "string"): (0, 0, "a")}))]


def finish_run(root, monkeypatch):
    """The run's last step, called as a runner calls it; returns (summary, the run files in written order)."""
    written = []
    real_write = summary_module.write_run_file

    def recording(output, run_id, name, data):
        written.append(name)
        real_write(output, run_id, name, data)

    monkeypatch.setattr(summary_module, "write_run_file", recording)
    monkeypatch.setattr("pipeline.output.write_run_file", recording)  # what mark_success calls
    for f in FILES:
        touch(root, f.path)
    finish = summary_module._FinishRun(root, RUN_ID, HEADER, [], None)
    (summary,) = finish.process(FILES, TALLIES, [], {}, schema=SCHEMA_NAMES)
    return summary, written


def test_the_run_files_are_written_summary_then_schema_then_report_then_success(tmp_path, monkeypatch):
    root = str(tmp_path / "out")
    summary, written = finish_run(root, monkeypatch)
    assert summary["passed"] is True
    assert written == ["_SUMMARY.json", "_SCHEMA.json", "_REPORT.html", "_SUCCESS"]
    assert "report_rendered" not in summary["checks"]  # only there when it failed


def test_a_report_that_cannot_be_rendered_keeps_summary_and_schema_and_fails_the_run(tmp_path, monkeypatch, caplog):
    def broken(summary, document):
        raise KeyError("a bug in the report")

    monkeypatch.setattr(summary_module, "render_report", broken)
    root = str(tmp_path / "out")
    summary, written = finish_run(root, monkeypatch)
    assert written == ["_SUMMARY.json", "_SCHEMA.json"]
    assert summary["checks"]["report_rendered"] is False and summary["passed"] is False
    assert read_summary(root) == summary  # the summary says why the run failed
    files, folders = listing(root)
    assert files == sorted([f.path for f in FILES] + ["_SCHEMA.json", "_SUMMARY.json"])
    assert "_temporary" not in folders
    assert ("the run report (_REPORT.html) cannot be rendered: the run fails; _SUMMARY.json and _SCHEMA.json "
            "are still written, _SUCCESS is not") in caplog.text


def test_the_cli_fails_a_run_whose_report_cannot_be_rendered(tmp_path, monkeypatch, capsys, caplog):
    def broken(summary, document):
        raise KeyError("a bug in the report")

    monkeypatch.setattr(summary_module, "render_report", broken)
    write_input(
        tmp_path / "in" / "a.ndjson", [b'{"event": "A", "properties": {"time": 1704067200, "distinct_id": "u"}}']
    )
    out = tmp_path / "out"
    assert run_cli("--input", str(tmp_path / "in" / "*"), "--output", str(out),
                   "--reference-time", "2024-02-01T00:00:00Z") == 1
    assert sorted(p.name for p in out.iterdir()) == ["_SCHEMA.json", "_SUMMARY.json", "events"]
    assert "_REPORT.html) cannot be rendered" in caplog.text
    err = capsys.readouterr().err
    assert "checks          FAILED (report_rendered)" in err
    assert "cloud-import-prep: the run failed its checks: {" in err and "'report_rendered': False}" in err
