"""Tests of pipeline/placeholders.py: {date} tokens in --input/--output, and --run-date."""

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from e2e import read_json_lines, run_cli, summary, write_input
from pipeline import placeholders
from pipeline.placeholders import (
    MAX_OFFSET_DAYS,
    PlaceholderError,
    format_date,
    parse_run_date,
    resolve,
    resolve_all,
)

REF = "2024-02-01T00:00:00Z"
T_DAY1 = 1704067200  # 2024-01-01T00:00:00Z

TODAY = date(2024, 2, 1)


# --- tokens and day arithmetic --------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "run_date", "expected"),
    [
        # no token: unchanged
        ("gs://raw/events/*.json", date(2024, 2, 1), "gs://raw/events/*.json"),
        ("gs://raw/{date}/*", date(2024, 2, 1), "gs://raw/2024-02-01/*"),
        # month boundary
        ("gs://raw/{date-1}/*", date(2024, 2, 1), "gs://raw/2024-01-31/*"),
        ("gs://raw/{date-1}/*", date(2024, 5, 1), "gs://raw/2024-04-30/*"),
        # year boundary, both ways
        ("gs://raw/{date-1}/*", date(2024, 1, 1), "gs://raw/2023-12-31/*"),
        ("gs://raw/{date+1}/*", date(2023, 12, 31), "gs://raw/2024-01-01/*"),
        # leap day: exists in 2024, not in 2023 or 2100
        ("{date-1}", date(2024, 3, 1), "2024-02-29"),
        ("{date-1}", date(2023, 3, 1), "2023-02-28"),
        ("{date-1}", date(2100, 3, 1), "2100-02-28"),
        ("{date-1}", date(2000, 3, 1), "2000-02-29"),
        ("{date+1}", date(2024, 2, 28), "2024-02-29"),
        ("{date+0}", date(2024, 2, 29), "2024-02-29"),
        ("{date-366}", date(2024, 12, 31), "2023-12-31"),
        ("{date+7}", date(2024, 12, 28), "2025-01-04"),
        # formats
        ("gs://raw/{date-1:%Y/%m/%d}/*", date(2024, 1, 1), "gs://raw/2023/12/31/*"),
        ("year={date:%Y}/month={date:%m}/day={date:%d}", date(2024, 3, 5), "year=2024/month=03/day=05"),
        ("{date:%Y%m%d}", date(2024, 3, 5), "20240305"),
        ("{date:%y-%j}", date(2024, 12, 31), "24-366"),
        ("{date:%j}", date(2023, 1, 1), "001"),
        ("{date:%%Y is %Y}", date(2024, 3, 5), "%Y is 2024"),
        ("{date:%Y}", date(987, 6, 5), "0987"),
        # several tokens, and escaped braces
        ("gs://raw/{date-2}..{date-1}", date(2024, 3, 1), "gs://raw/2024-02-28..2024-02-29"),
        ("gs://raw/{{date}}/{date}", date(2024, 3, 1), "gs://raw/{date}/2024-03-01"),
        ("a}}b{{c", date(2024, 3, 1), "a}b{c"),
    ],
)
def test_resolve(pattern, run_date, expected):
    assert resolve(pattern, run_date) == expected


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("gs://raw/{dat-1}/*", "unknown placeholder {dat-1}"),
        ("gs://raw/{yesterday}/*", "unknown placeholder {yesterday}"),
        ("gs://raw/{Date}/*", "unknown placeholder {Date}"),
        ("gs://raw/{date - 1}/*", "unknown placeholder {date - 1}"),
        ("gs://raw/{date-1d}/*", "unknown placeholder {date-1d}"),
        ("gs://raw/{}/*", "unknown placeholder {}"),
        ("gs://raw/{date:}/*", "unknown placeholder {date:}"),
        ("gs://raw/{date/*", "unclosed '{' at position 9"),
        ("gs://raw/date}/*", "unmatched '}' at position 13"),
        ("gs://raw/{date:%B}/*", "uses %B"),
        ("gs://raw/{date:%H}/*", "uses %H"),
        ("gs://raw/{date:%Y%}/*", "a lone '%' at the end"),
        (f"gs://raw/{{date-{MAX_OFFSET_DAYS + 1}}}/*", f"is over {MAX_OFFSET_DAYS}"),
    ],
)
def test_malformed_placeholders_are_refused_naming_the_flag(pattern, message):
    with pytest.raises(PlaceholderError) as err:
        resolve(pattern, TODAY, "--output")
    assert str(err.value).startswith(f"--output {pattern!r}: ")
    assert message in str(err.value)


@pytest.mark.parametrize(
    "pattern",
    [
        # {date-1:%Y/%m/%d} after Dataflow Data Pipelines substituted its own date (2024-03-01).
        "gs://raw/{date-1:2024/03/01}/*",
        "gs://raw/{date-1:2024}/{date-1:03}/*",
        "gs://raw/{date:20240301}/*",
        # Only a literal percent sign is no date either.
        "gs://raw/{date:100%%}/*",
    ],
)
def test_a_format_without_a_date_directive_is_refused_as_already_substituted(pattern):
    with pytest.raises(PlaceholderError) as err:
        resolve(pattern, TODAY, "--input")
    assert str(err.value).startswith(f"--input {pattern!r}: {{date")
    assert "has a format without a date directive (%Y %m %d %y %j): were its %-directives substituted" in str(err.value)


def test_the_cli_refuses_a_substituted_format_before_any_work(tmp_path, capsys):
    _raw_day(tmp_path, "2024-02-29", "first")
    args = ["--input", str(tmp_path / "raw" / "2024-02-29" / "*"),
            "--output", str(tmp_path / "out" / "{date-1:2024/03/01}"), "--run-date", "2024-03-01"]
    assert run_cli(*args) == 2
    assert "{date-1:2024/03/01} has a format without a date directive" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_offset_past_the_calendar_is_refused():
    with pytest.raises(PlaceholderError, match="outside the calendar"):
        resolve("{date+10}", date(9999, 12, 25))
    assert resolve("{date+6}", date(9999, 12, 25)) == "9999-12-31"


@given(st.dates(min_value=date(1971, 1, 1), max_value=date(9000, 1, 1)), st.integers(-400, 400))
def test_offsets_agree_with_calendar_arithmetic(run_date, offset):
    expected = date.fromordinal(run_date.toordinal() + offset)
    assert resolve(f"{{date{offset:+d}}}", run_date) == expected.isoformat()
    assert resolve(f"{{date{offset:+d}:%Y/%m/%d}}", run_date) == expected.strftime("%Y/%m/%d")


@given(st.dates(min_value=date(1000, 1, 1)))
def test_format_matches_strftime_for_the_allowed_directives(day):
    fmt = "%Y|%m|%d|%y|%j|%%"
    assert format_date(day, fmt) == day.strftime(fmt)


@given(st.text(alphabet="ab/*?[]-_.%:", max_size=30))
def test_text_without_braces_is_unchanged(text):
    assert resolve(text, TODAY) == text


# --- the run date ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, TODAY),
        ("", TODAY),
        ("  ", TODAY),
        ("2024-02-29", date(2024, 2, 29)),
        (" 2023-12-31 ", date(2023, 12, 31)),
    ],
)
def test_run_date(text, expected):
    assert parse_run_date(text, TODAY) == expected


@pytest.mark.parametrize(
    "text", ["2023-02-29", "2024-13-01", "2024-00-10", "2024-1-5", "20240105", "2024/01/05",
             "2024-01-05T00:00:00Z", "yesterday", "2024-01-05x"]
)
def test_bad_run_dates_are_refused_naming_the_flag(text):
    with pytest.raises(PlaceholderError, match=r"^--run-date .* YYYY-MM-DD"):
        parse_run_date(text, TODAY)


# --- one run: inputs, output, run date ------------------------------------------------------


def test_resolve_all_uses_today_when_no_run_date_is_given():
    inputs, output, run_date = resolve_all(
        ["gs://raw/a/{date-1}/*", "gs://raw/b/{date-1}/*"], "gs://out/{date-1}", None, date(2024, 3, 1)
    )
    assert inputs == ["gs://raw/a/2024-02-29/*", "gs://raw/b/2024-02-29/*"]
    assert output == "gs://out/2024-02-29"
    assert run_date == "2024-03-01"


def test_a_rerun_of_a_run_date_gets_the_same_paths_whatever_day_it_runs():
    args = (["gs://raw/{date-1}/**"], "gs://out/{date-1:%Y/%m/%d}", "2024-01-01")
    first = resolve_all(*args, today=date(2024, 1, 1))
    rerun_later = resolve_all(*args, today=date(2024, 6, 30))
    assert first == rerun_later == (["gs://raw/2023-12-31/**"], "gs://out/2023/12/31", "2024-01-01")


def test_consecutive_scheduled_runs_process_consecutive_days():
    outputs = [
        resolve_all(None, "gs://out/{date-1}", None, today=date(2024, 2, d))[1] for d in (28, 29)
    ] + [resolve_all(None, "gs://out/{date-1}", None, today=date(2024, 3, 1))[1]]
    assert outputs == ["gs://out/2024-02-27", "gs://out/2024-02-28", "gs://out/2024-02-29"]


def test_missing_values_stay_missing_for_the_usage_checks():
    assert resolve_all(None, None, "2024-02-01", TODAY) == (None, None, "2024-02-01")


def test_errors_name_the_flag_of_the_bad_value():
    with pytest.raises(PlaceholderError, match=r"^--input 'gs://raw/\{x\}'"):
        resolve_all(["gs://raw/{date}", "gs://raw/{x}"], "gs://out/{date}", None, TODAY)
    with pytest.raises(PlaceholderError, match=r"^--output 'gs://out/\{x\}'"):
        resolve_all(["gs://raw/{date}"], "gs://out/{x}", None, TODAY)
    with pytest.raises(PlaceholderError, match=r"^--run-date"):
        resolve_all(["gs://raw/{date}"], "gs://out/{date}", "2024-02-30", TODAY)


def test_the_module_is_pure():
    """Pure core (STYLE.md 1): no Beam import."""
    assert "apache_beam" not in Path(placeholders.__file__).read_text(encoding="utf-8")


# --- through the CLI: resolved once at launch, recorded in the summary ----------------------


def _raw_day(root: Path, day: str, version: str) -> None:
    line = orjson.dumps({"event": "Signup", "properties": {
        "distinct_id": "u1", "time": T_DAY1, "$insert_id": "abc-123", "version": version}})
    write_input(root / "raw" / day / "part.ndjson", [line])


def test_the_cli_resolves_placeholders_and_the_summary_records_the_result(tmp_path):
    _raw_day(tmp_path, "2024-02-29", "first")
    args = ["--input", str(tmp_path / "raw" / "{date-1}" / "*"),
            "--output", str(tmp_path / "out" / "{date-1:%Y/%m/%d}"),
            "--run-date", "2024-03-01", "--reference-time", REF]
    assert run_cli(*args) == 0
    out = tmp_path / "out" / "2024" / "02" / "29"
    options = summary(out)["options"]
    assert options["input"] == [str(tmp_path / "raw" / "2024-02-29" / "*")]
    assert options["output"] == str(out)
    assert options["run_date"] == "2024-03-01"
    assert [e["properties"]["version"] for e in read_json_lines(out, "events/")] == ["first"]

    # A rerun of the same run date, after the raw day changed, replaces that day's output.
    _raw_day(tmp_path, "2024-02-29", "second")
    assert run_cli(*args, "--overwrite") == 0
    assert [e["properties"]["version"] for e in read_json_lines(out, "events/")] == ["second"]
    assert sorted(p.name for p in (tmp_path / "out").rglob("_SUMMARY.json")) == ["_SUMMARY.json"]


def test_without_a_run_date_the_cli_uses_today_in_utc(tmp_path):
    before = datetime.now(timezone.utc).date()
    _raw_day(tmp_path, before.isoformat(), "today")
    _raw_day(tmp_path, (before + timedelta(days=1)).isoformat(), "today")  # midnight during the test
    assert run_cli("--input", str(tmp_path / "raw" / "{date}" / "*"),
                   "--output", str(tmp_path / "out" / "{date}"), "--reference-time", REF) == 0
    (out,) = (tmp_path / "out").iterdir()
    assert out.name in (before.isoformat(), (before + timedelta(days=1)).isoformat())
    assert summary(out)["options"]["run_date"] == out.name


def test_the_cli_refuses_a_bad_placeholder_before_any_work(tmp_path, capsys):
    assert run_cli("--input", str(tmp_path / "{dat-1}" / "*"), "--output", str(tmp_path / "out")) == 2
    assert "unknown placeholder {dat-1}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert run_cli("--input", str(tmp_path / "*"), "--output", str(tmp_path / "out"),
                   "--run_date", "2024-02-30") == 2
    assert "--run-date '2024-02-30' is not a calendar date" in capsys.readouterr().err
