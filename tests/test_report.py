"""Tests of the run report: figures parsed back from the HTML, escaping, edge cases, the headline."""

import copy
import datetime
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from e2e import SAMPLE, run_cli, summary
from pipeline.report import MAX_DAY_LABELS, format_headline, render_report
from transforms.reasons import REASON_MEANINGS, Reason

SCRIPT = "<script>alert(1)</script>"
ESCAPED_SCRIPT = "&lt;script&gt;alert(1)&lt;/script&gt;"


def sample_summary() -> dict[str, Any]:
    """The summary of `make run` on examples/sample, with its details section."""
    return {
        "tool": {"name": "cloud-import-prep", "version": "0.1.0"},
        "run_id": "20261126T061959Z-a2f405af",
        "reference_time": "2026-11-26T06:19:59Z",
        "options": {
            "input": ["examples/sample/*"],
            "output": "out",
            "reference_time": None,
            "time_unit": "s",
            "upload_order": "mtime",
            "keep_superseded": False,
            "compression": "gzip",
            "max_file_mb": 1024,
            "max_reject_ratio": None,
            "overwrite": True,
            "range_bytes": 67108864,
        },
        "input": {"files": 2, "bytes": 2552, "lines": 25, "blank_lines": 1},
        "output": {
            "events": 14,
            "events_by_day": {
                "2020-09-28": 1,
                "2020-09-29": 1,
                "2020-09-30": 3,
                "2020-10-01": 2,
                "2020-10-02": 2,
                "2020-10-03": 2,
                "2020-10-04": 2,
                "2020-10-25": 1,
            },
            "profiles": 6,
            "groups": 1,
            "superseded": 1,
            "rejected": 2,
            "rejected_by_reason": {"invalid_json": 1, "missing_time": 1},
            "files": [],
        },
        "normalised": {"time": 1, "distinct_id": 0, "insert_id_generated": 14, "duplicate_keys": 0},
        "balanced": True,
        "checks": {
            "balanced": True,
            "dedupe_consistent": True,
            "reject_ratio": 0.083333,
            "max_reject_ratio": None,
            "reject_ratio_ok": True,
        },
        "passed": True,
        "details": {
            "top_events": [
                {"name": "Ring Acquired", "count": 6},
                {"name": "Birth", "count": 5},
                {"name": "Death", "count": 3},
                {"name": "Council", "count": 1},
            ],
            "reject_examples": {
                "invalid_json": [
                    {
                        "source": "examples/sample/2020-10-26-resend.ndjson.gz",
                        "offset": 342,
                        "line": '{"event": "Death", "properties": {"distinct_id": "Boromir", '
                        '"time": 1601900000, "location": "Amon Hen"',
                    }
                ],
                "missing_time": [
                    {
                        "source": "examples/sample/2020-10-26-resend.ndjson.gz",
                        "offset": 255,
                        "line": '{"event": "Ring Lost", "properties": '
                        '{"distinct_id": "Isildur", "location": "Anduin"}}',
                    }
                ],
            },
            "duplicate_key_examples": [],
            "updates_by_operation": {"profiles": {"$set": 5, "$set_once": 1}, "groups": {"$set": 1}},
        },
    }


def summary_with_duplicate_keys(count: int = 3) -> dict[str, Any]:
    """The sample summary where `count` accepted lines gave a key twice (two shown)."""
    summary = sample_summary()
    summary["normalised"]["duplicate_keys"] = count
    summary["details"]["duplicate_key_examples"] = [
        {"source": "examples/sample/2020-10-01-export.ndjson", "offset": 0, "line": '{"a":1,"a":2}'},
        {"source": "examples/sample/2020-10-26-resend.ndjson.gz", "offset": 1200, "line": '{"$set":{"b":1,"b":2}}'},
    ]
    return summary


def summary_with_days(by_day: dict[str, int]) -> dict[str, Any]:
    """The sample summary with other events per day (and figures that still balance)."""
    summary = sample_summary()
    events = sum(by_day.values())
    summary["output"]["events_by_day"] = by_day
    summary["input"]["lines"] += events - summary["output"]["events"]
    summary["output"]["events"] = events
    return summary


class ReportParser(HTMLParser):
    """Collects the report's data attributes, bars, texts and script elements."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, int] = {}
        self.terms: dict[str, int] = {}
        self.bars: dict[str, list[tuple[str, int]]] = {}
        self.reasons: dict[str, dict[str, Any]] = {}
        self.top_events: list[tuple[str, int]] = []
        self.updates: dict[tuple[str, str], int] = {}
        self.options: list[str] = []
        self.duplicates: dict[str, Any] = {}
        self.day_labels: list[str] = []
        self.attrs_by_id: dict[str, dict[str, str]] = {}
        self.body: dict[str, str] = {}
        self.scripts = 0
        self.urls: list[str] = []
        self._svg: str | None = None
        self._reason: str | None = None
        self._capture: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.urls += [v for k, v in a.items() if k in ("src", "href") or v.startswith(("http:", "https:"))]
        if "id" in a:
            self.attrs_by_id[a["id"]] = a
        if tag == "body":
            self.body = a
        if tag == "script":
            self.scripts += 1
        if tag == "svg":
            self._svg = a.get("id", "")
            self.bars[self._svg] = []
        if tag == "rect" and "bar" in a.get("class", "").split():
            self.bars[self._svg or ""].append((a["data-key"], int(a["data-value"])))
        if tag == "text" and "day-label" in a.get("class", ""):
            self._capture, self._text = "day", []
        if "data-figure" in a:
            self.figures[a["data-figure"]] = int(a["data-value"])
        if "data-term" in a:
            self.terms[a["data-term"]] = int(a["data-value"])
        if a.get("id") == "duplicate-keys":
            self._reason = None
            self.duplicates = {"count": int(a["data-count"]), "examples": []}
        if self.duplicates and tag == "span" and a.get("class") in ("source mono", "offset"):
            self._capture, self._text = a["class"].split()[0], []
        if self.duplicates and tag == "pre":
            self._capture, self._text = "duplicate", []
        if "data-reason" in a:
            self._reason = a["data-reason"]
            self.reasons[self._reason] = {"count": int(a["data-count"]), "examples": []}
        if tag == "p" and a.get("class") == "meaning":
            self._capture, self._text = "meaning", []
        if tag == "pre" and self._reason:
            self._capture, self._text = "example", []
        if tag == "tr" and "data-name" in a:
            self.top_events.append((a["data-name"], int(a["data-count"])))
        if tag == "tr" and "data-operation" in a:
            self.updates[(a["data-kind"], a["data-operation"])] = int(a["data-count"])
        if tag == "tr" and "data-option" in a:
            self.options.append(a["data-option"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._svg = None
        if tag == "span" and self._capture in ("source", "offset"):
            self.duplicates["examples"].append({self._capture: "".join(self._text)})
            self._capture = None
        if tag in ("p", "pre", "text") and self._capture:
            text = "".join(self._text)
            if self._capture == "duplicate":
                # (source, offset, line) of one example: the two spans came first.
                source, offset = self.duplicates["examples"][-2:]
                self.duplicates["examples"][-2:] = [(source["source"], int(offset["offset"].replace(",", "")), text)]
            elif self._capture == "day":
                self.day_labels.append(text)
            elif self._capture == "meaning":
                self.reasons[self._reason or ""]["meaning"] = text
            else:
                self.reasons[self._reason or ""]["examples"].append(text)
            self._capture = None

    def handle_data(self, data: str) -> None:
        if self._capture:
            self._text.append(data)


def parse(document: str) -> ReportParser:
    parser = ReportParser()
    parser.feed(document)
    parser.close()
    return parser


def test_sample_report_has_the_figures_of_the_summary():
    report = parse(render_report(sample_summary()))

    assert report.figures == {"lines": 25, "events": 14, "superseded": 1, "profiles": 6, "groups": 1, "rejected": 2}
    assert report.terms == {
        "lines": 25,
        "events": 14,
        "superseded": 1,
        "profiles": 6,
        "groups": 1,
        "rejected": 2,
        "blank": 1,
    }
    assert report.attrs_by_id["books"]["data-balanced"] == "true"
    assert report.attrs_by_id["status"]["data-passed"] == "true"
    assert report.bars["events-by-day"] == [
        ("2020-09-28", 1),
        ("2020-09-29", 1),
        ("2020-09-30", 3),
        ("2020-10-01", 2),
        ("2020-10-02", 2),
        ("2020-10-03", 2),
        ("2020-10-04", 2),
        ("2020-10-25", 1),
    ]
    assert report.bars["rejects-by-reason"] == [("invalid_json", 1), ("missing_time", 1)]
    assert report.top_events == [("Ring Acquired", 6), ("Birth", 5), ("Death", 3), ("Council", 1)]
    assert report.updates == {("groups", "$set"): 1, ("profiles", "$set"): 5, ("profiles", "$set_once"): 1}
    assert report.options == sorted(sample_summary()["options"])


def test_the_sample_run_reports_what_the_fixture_holds(tmp_path):
    out = tmp_path / "out"
    assert run_cli("--input", str(SAMPLE / "*"), "--output", str(out)) == 0

    real = parse(render_report(summary(out)))

    fixture = parse(render_report(sample_summary()))
    # Not the options: the fixture holds the options of its day.
    for figures in ("figures", "terms", "bars", "reasons", "top_events", "updates", "duplicates"):
        assert getattr(real, figures) == getattr(fixture, figures), figures


def test_sample_report_gives_each_reason_its_meaning_and_examples():
    summary = sample_summary()
    report = parse(render_report(summary))

    assert report.reasons == {
        code: {
            "count": summary["output"]["rejected_by_reason"][code],
            "meaning": REASON_MEANINGS[Reason(code)],
            "examples": [ex["line"] for ex in summary["details"]["reject_examples"][code]],
        }
        for code in ("invalid_json", "missing_time")
    }
    assert "examples/sample/2020-10-26-resend.ndjson.gz" in render_report(summary)


def test_duplicate_keys_show_their_count_and_examples():
    summary = summary_with_duplicate_keys(1234)

    report = parse(render_report(summary))

    assert report.duplicates == {
        "count": 1234,
        "examples": [
            ("examples/sample/2020-10-01-export.ndjson", 0, '{"a":1,"a":2}'),
            ("examples/sample/2020-10-26-resend.ndjson.gz", 1200, '{"$set":{"b":1,"b":2}}'),
        ],
    }
    assert "duplicate-keys-empty" not in report.attrs_by_id
    # The reject examples are untouched by the section that follows them.
    assert report.reasons == parse(render_report(sample_summary())).reasons
    assert "1,234 accepted lines gave a key twice" in render_report(summary)


def test_no_duplicate_keys_say_so():
    report = parse(render_report(sample_summary()))

    assert report.duplicates == {}
    assert "duplicate-keys-empty" in report.attrs_by_id


def test_a_summary_without_the_duplicate_keys_figure_still_renders():
    summary = sample_summary()
    del summary["normalised"]["duplicate_keys"]
    del summary["details"]["duplicate_key_examples"]

    report = parse(render_report(summary))

    assert "duplicate-keys-empty" in report.attrs_by_id
    assert "duplicate keys" not in format_headline(summary)


def test_duplicate_key_examples_are_cut_to_five_and_300_characters():
    summary = summary_with_duplicate_keys(9)
    summary["details"]["duplicate_key_examples"] = [
        {"source": "a.ndjson", "offset": i, "line": "y" * 1000} for i in range(7)
    ]

    report = parse(render_report(summary))

    assert report.duplicates["examples"] == [("a.ndjson", i, "y" * 300 + "…") for i in range(5)]


def test_the_day_chart_spans_the_gaps_between_days():
    document = render_report(sample_summary())

    # 2020-09-28 .. 2020-10-25 is 28 days; labels every ceil(28 / 12) = 3 days.
    report = parse(document)
    assert report.attrs_by_id["events-by-day"]["data-label-every"] == "3"
    assert report.day_labels[:2] == ["2020-09-28", "2020-10-01"]
    assert len(report.day_labels) == 10


@pytest.mark.parametrize(
    "where",
    [
        pytest.param("event name", id="event_name"),
        pytest.param("reject example", id="reject_example"),
        pytest.param("example source", id="example_source"),
        pytest.param("option", id="option"),
        pytest.param("reason code", id="reason_code"),
        pytest.param("duplicate key example", id="duplicate_key_example"),
    ],
)
def test_markup_in_the_data_appears_escaped(where):
    summary = sample_summary()
    details = summary["details"]
    if where == "event name":
        details["top_events"].insert(0, {"name": SCRIPT, "count": 7})
    elif where == "reject example":
        details["reject_examples"]["invalid_json"][0]["line"] = '{"event": "' + SCRIPT + '"'
    elif where == "example source":
        details["reject_examples"]["invalid_json"][0]["source"] = SCRIPT
    elif where == "option":
        summary["options"]["input"] = [SCRIPT]
    elif where == "duplicate key example":
        summary["normalised"]["duplicate_keys"] = 1
        details["duplicate_key_examples"] = [{"source": SCRIPT, "offset": 0, "line": SCRIPT}]
    else:
        summary["output"]["rejected_by_reason"][SCRIPT] = 1
        details["reject_examples"][SCRIPT] = [{"source": "x", "offset": 0, "line": SCRIPT}]

    document = render_report(summary)

    report = parse(document)
    assert report.scripts == 1  # the report's own
    assert document.count("<script") == 1
    assert ESCAPED_SCRIPT in document
    if where == "event name":
        assert report.top_events[0] == (SCRIPT, 7)


def test_quotes_in_the_data_do_not_break_out_of_attributes():
    summary = sample_summary()
    summary["details"]["top_events"] = [{"name": '" onmouseover="alert(1)', "count": 1}]

    document = render_report(summary)

    assert 'onmouseover="' not in document
    assert parse(document).top_events == [('" onmouseover="alert(1)', 1)]


def test_an_example_longer_than_300_characters_is_truncated():
    summary = sample_summary()
    summary["details"]["reject_examples"]["invalid_json"][0]["line"] = "x" * 1000

    report = parse(render_report(summary))

    assert report.reasons["invalid_json"]["examples"] == ["x" * 300 + "…"]


def test_a_line_that_is_not_utf8_is_shown_in_base64():
    summary = sample_summary()
    summary["details"]["reject_examples"]["invalid_json"] = [{"source": "a.ndjson", "offset": 9, "line_base64": "/w=="}]

    report = parse(render_report(summary))

    assert report.reasons["invalid_json"]["examples"] == ["/w=="]


def test_a_reason_without_a_known_meaning_still_renders():
    summary = sample_summary()
    summary["output"]["rejected_by_reason"]["from_the_future"] = 3

    report = parse(render_report(summary))

    assert report.reasons["from_the_future"]["count"] == 3
    assert report.reasons["from_the_future"]["meaning"]


def test_every_reason_has_a_meaning():
    summary = sample_summary()
    summary["output"]["rejected_by_reason"] = {reason.value: 1 for reason in Reason}

    report = parse(render_report(summary))

    assert {code: r["meaning"] for code, r in report.reasons.items()} == {
        reason.value: meaning for reason, meaning in REASON_MEANINGS.items()
    }


def test_400_distinct_days_render_thin_bars_with_sparse_labels():
    first = datetime.date(2023, 1, 1)
    by_day = {(first + datetime.timedelta(days=i)).isoformat(): i % 50 + 1 for i in range(400)}

    report = parse(render_report(summary_with_days(by_day)))

    bars = report.bars["events-by-day"]
    assert bars == list(by_day.items())
    assert len(report.day_labels) <= MAX_DAY_LABELS
    assert report.day_labels[0] == "2023-01-01"
    assert report.attrs_by_id["events-by-day"]["data-days"] == "400"


def test_bars_stay_inside_the_chart_and_are_never_invisible():
    by_day = {"2023-01-01": 1_000_000, "2023-01-02": 1}

    document = render_report(summary_with_days(by_day))

    rects = re.findall(
        r'<rect class="bar event" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)"', document
    )
    assert len(rects) == 2
    for x, y, w, h in rects:
        assert float(w) > 0 and float(h) >= 1
        assert float(x) >= 0 and float(x) + float(w) <= 1000 and float(y) >= 0 and float(y) + float(h) <= 260


def test_days_spread_over_decades_show_only_the_days_with_events():
    by_day = {"1971-01-01": 1, "2023-06-01": 2}

    report = parse(render_report(summary_with_days(by_day)))

    assert report.bars["events-by-day"] == [("1971-01-01", 1), ("2023-06-01", 2)]
    assert report.day_labels == ["1971-01-01", "2023-06-01"]


def test_a_run_with_no_events_renders():
    summary = summary_with_days({})
    summary["details"]["top_events"] = []

    document = render_report(summary)

    report = parse(document)
    assert report.figures["events"] == 0
    assert "events-by-day" not in report.bars
    assert "events-by-day-empty" in report.attrs_by_id
    assert "top-events-empty" in report.attrs_by_id
    assert report.body["data-bars-expected"] == "2"  # the reject bars


def test_an_empty_run_renders():
    summary = summary_with_days({})
    summary["input"].update(files=0, bytes=0, lines=0, blank_lines=0)
    summary["output"].update(profiles=0, groups=0, superseded=0, rejected=0, rejected_by_reason={})
    summary["details"] = {
        "top_events": [],
        "reject_examples": {},
        "updates_by_operation": {"profiles": {}, "groups": {}},
    }

    report = parse(render_report(summary))

    assert set(report.figures.values()) == {0}
    assert report.bars == {}
    assert {"events-by-day-empty", "rejects-empty", "top-events-empty", "updates-empty"} <= set(report.attrs_by_id)
    assert report.attrs_by_id["status"]["data-passed"] == "true"


def test_a_failed_run_shows_a_red_badge_and_unbalanced_books():
    summary = sample_summary()
    summary["input"]["lines"] = 26
    summary["balanced"] = summary["checks"]["balanced"] = summary["passed"] = False

    report = parse(render_report(summary))

    assert report.attrs_by_id["status"]["class"] == "badge bad"
    assert report.attrs_by_id["status"]["data-passed"] == "false"
    assert report.attrs_by_id["books"]["data-balanced"] == "false"


def test_the_report_loads_nothing():
    summary = sample_summary()
    summary["options"]["input"] = ["https://example.com/a.ndjson"]
    document = render_report(summary)

    report = parse(document)

    assert report.urls == []
    assert not re.search(r"""(src|href)\s*=|url\(|@import""", document)


def test_the_report_counts_the_bars_it_expects_the_browser_to_draw():
    report = parse(render_report(sample_summary()))

    assert report.body["data-bars-expected"] == "10"
    assert len(report.bars["events-by-day"]) + len(report.bars["rejects-by-reason"]) == 10


def test_render_does_not_change_the_summary():
    summary = sample_summary()
    before = copy.deepcopy(summary)

    render_report(summary)
    format_headline(summary)

    assert summary == before


def test_the_headline_is_an_aligned_table():
    assert format_headline(sample_summary()) == (
        "cloud-import-prep run 20261126T061959Z-a2f405af\n"
        "  lines read      25\n"
        "  events written  14\n"
        "  superseded       1\n"
        "  profile updates  6\n"
        "  group updates    1\n"
        "  rejected         2\n"
        "  blank lines      1\n"
        "  books balance   yes: 25 = 14 + 1 + 6 + 1 + 2 + 1\n"
        "  reject ratio    8.33% (no limit)\n"
        "  checks          PASSED"
    )


def test_the_headline_counts_duplicate_keys_when_there_are_some():
    headline = format_headline(summary_with_duplicate_keys(1234)).splitlines()

    assert headline[7:9] == ["  blank lines         1", "  duplicate keys  1,234"]
    assert "duplicate keys" not in format_headline(sample_summary())


def test_the_headline_of_a_failed_run_says_what_failed():
    summary = summary_with_days({"2023-01-01": 1_234_567})
    summary["input"]["lines"] = 2_000_000
    summary["balanced"] = summary["checks"]["balanced"] = summary["passed"] = False
    summary["checks"].update(max_reject_ratio=0.05, reject_ratio=0.1, reject_ratio_ok=False)

    headline = format_headline(summary).splitlines()

    assert headline[1] == "  lines read      2,000,000"
    assert headline[2] == "  events written  1,234,567"
    assert headline[3] == "  superseded              1"
    assert headline[8] == "  books balance   NO: 2,000,000 ≠ 1,234,567 + 1 + 6 + 1 + 2 + 1"
    assert headline[9] == "  reject ratio    10.00% (limit 5.00%)"
    assert headline[10] == "  checks          FAILED (balanced, reject_ratio_ok)"


# --- privacy (DESIGN.md §7) ------------------------------------------------------------------


def summary_with_privacy() -> dict[str, Any]:
    """The sample summary of a run that dropped, hashed and excluded (3 events, 1 profile update)."""
    summary = sample_summary()
    summary["output"].update(events=11, profiles=5, excluded=4)
    summary["privacy"] = {
        "dropped": {"email": 7, "phone": 0},
        "hashed": {"distinct_id": 20},
        "excluded": {"events": 3, "profiles": 1},
        "listed_ids": 1_000_000,
    }
    return summary


def test_excluded_records_are_a_term_of_the_books():
    summary = summary_with_privacy()

    report = parse(render_report(summary))
    headline = format_headline(summary).splitlines()

    assert report.terms == {"lines": 25, "events": 11, "superseded": 1, "profiles": 5, "groups": 1,
                            "rejected": 2, "excluded": 4, "blank": 1}
    assert headline[7:9] == ["  blank lines      1", "  excluded         4"]
    assert headline[9] == "  books balance   yes: 25 = 11 + 1 + 5 + 1 + 2 + 4 + 1"


def test_the_privacy_section_lists_what_was_dropped_hashed_and_excluded():
    document = render_report(summary_with_privacy())

    section = document.split('<table id="privacy">', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr><td>(.*?)</td><td class=\"num\">([0-9,]+)</td></tr>", section)
    assert rows == [
        ("dropped <code>email</code>", "7"),
        ("dropped <code>phone</code>", "0"),
        ("hashed <code>distinct_id</code>", "20"),
        ("events excluded", "3"),
        ("profile updates excluded", "1"),
        ("distinct ids in the deletion list", "1,000,000"),
    ]


def test_a_run_without_privacy_options_shows_no_privacy_section_nor_term():
    summary = sample_summary()
    summary["output"]["excluded"] = 0
    summary["privacy"] = {"dropped": {}, "hashed": {}, "excluded": {"events": 0, "profiles": 0}, "listed_ids": 0}

    document = render_report(summary)

    assert 'id="privacy"' not in document and 'data-term="excluded"' not in document
    assert format_headline(summary) == format_headline(sample_summary())


def test_redacted_examples_show_where_a_line_is_never_what_it_holds():
    summary = summary_with_duplicate_keys(2)
    for examples in (*summary["details"]["reject_examples"].values(), summary["details"]["duplicate_key_examples"]):
        for example in examples:
            example.pop("line", None)
            example.pop("line_base64", None)

    document = render_report(summary)
    report = parse(document)

    assert all(reason["examples"] == [] for reason in report.reasons.values())
    assert "<pre" not in document
    assert document.count("(content not shown: --redact-examples)") == 4
    assert "examples/sample/2020-10-26-resend.ndjson.gz</span> at byte offset <span class=\"offset\">342" in document
    assert "Boromir" not in document and '{"a":1' not in document
