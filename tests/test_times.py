"""Tables for event times (transforms/times.py) against DESIGN.md §2: what a time may be, how it is written, its day."""

import pytest

from rule_lines import CONFIG, CONFIG_MS, REFERENCE, T, event, props, reason_of
from transforms.reasons import NORMALISED_TIME, Kind, Reason
from transforms.rules import classify

# ---------------------------------------------------------------- reading times


@pytest.mark.parametrize(
    "time",
    [
        True,
        False,
        "",
        "abc",
        " 1704067200",
        "1704067200 ",
        "1.7e9",
        "1704067200e0",
        "0x10",
        "+1704067200",
        "1704067200.",
        ".5",
        "-",
        "1,704,067,200",
        "１７０４０６７２００",  # full-width digits are not [0-9]
        "1704067200٫5",
        [],
        [T],
        {},
        {"time": T},
        "2024-02-30",  # no such day
        "2023-02-29",  # not a leap year
        "2024-13-01",
        "2024-00-10",
        "2024-01-00",
        "0000-01-01",  # no year 0 in the calendar
        "2024-01-01T24:00:00Z",
        "2024-01-01T23:60",
        "2024-01-01T23:59:60Z",  # leap seconds are not accepted
        "2024-01-01T00:00:00.Z",
        "2024-01-01T00:00:00.",
        "2024-01-01T00:00:00+0100",  # basic-form offset
        "2024-01-01T00:00:00+1",
        "2024-01-01T00:00:00+01:00:00",
        "2024-01-01T00:00:00+24:00",
        "2024-01-01T00:00:00+01:60",
        "2024-01-01t00:00:00z",  # lower-case designators
        "2024-01-01T00:00:00z",
        "2024-01-01T00:00:00 Z",
        "2024-01-01T00:00:00ZZ",
        "2024-01-01T00",
        "2024-01-01T0:00",
        "2024-01-01T00:00:0",
        "2024-01-01T",
        "20240101T000000Z",
        "2024-1-01",
        "24-01-01",
        "2024/01/01",
        "2024-01-01 ",
        " 2024-01-01",
        "2024-01-01\n",
        "12024-01-01",
        "Mon, 01 Jan 2024 00:00:00 GMT",
    ],
)
def test_invalid_time(time: object) -> None:
    assert reason_of(event(props(time=time))) == Reason.INVALID_TIME


@pytest.mark.parametrize(
    "time",
    [
        0,
        -1,
        -T,
        31_535_999,  # one second before 1971-01-01T00:00:00Z
        31_535_999.999,
        "31535999",
        "31535999.999",
        "-0",
        "-1704067200",
        -1e11,
        "1970-12-31T23:59:59Z",
        "1970-12-31T23:59:59.999Z",
        "1971-01-01T00:59:59+01:00",  # 1970-12-31T23:59:59Z
        "1000-01-01",
        "0001-01-01T00:00:00Z",
        REFERENCE + 3601,
        (REFERENCE + 3601) * 1000,  # as milliseconds
        float(REFERENCE + 3601),
        str(REFERENCE + 3601),
        "2024-02-01T01:00:01Z",
        "2024-02-01T02:00:01+01:00",
        "9999-12-31T23:59:59Z",
        99_999_999_999,  # just under 1e11: seconds, the year 5138
        1e300,
        -1e300,
        1.7976931348623157e308,
        2**64 - 1,
        -(2**63),
        "9" * 30,
        "9" * 5000,  # longer than int() reads
        "-" + "9" * 5000,
        "0" * 5000 + "1",  # leading zeros: the value 1
        "20240101",  # a numeric string (1970-08-23), not a basic-form date
        31_536_000_000,  # under 1e11, so seconds (the year 2969), not milliseconds
    ],
)
def test_time_out_of_range(time: object) -> None:
    assert reason_of(event(props(time=time))) == Reason.TIME_OUT_OF_RANGE


@pytest.mark.parametrize(
    "time",
    [
        31_536_000,  # 1971-01-01T00:00:00Z exactly
        31_536_000.0,
        "31536000",
        "1971-01-01T00:00:00Z",
        "1971-01-01",
        "1971-01-01T01:00:00+01:00",
        T * 1000,  # milliseconds
        REFERENCE + 3600,
        REFERENCE + 3600.999,  # floors to the limit
        str(REFERENCE + 3600) + ".999999",
        (REFERENCE + 3600) * 1000 + 999,
        "2024-02-01T01:00:00Z",
        "2024-02-01T01:00:00.999Z",
        100_000_000_000,  # 1e11 exactly is milliseconds: 1973-03-03
    ],
)
def test_time_range_boundaries_that_pass(time: object) -> None:
    assert classify(event(props(time=time)), CONFIG).kind == Kind.EVENT


# ---------------------------------------------------------------- written times and days


TIMES_IN_SECONDS = [
    # (time as given, written time, NORMALISED_TIME set)
    (T, T, False),
    (T + 0.0, T, True),
    (T + 0.999, T, True),
    (1704067200.999, T, True),
    (T * 1000, T, True),  # milliseconds, recognised by magnitude
    (T * 1000 + 999, T, True),
    (1704067200999.9, T, True),
    (str(T), T, True),
    ("1704067200.999", T, True),
    ("1704067200.9999999999999999999", T, True),
    ("1704067200999", T, True),
    ("1704067200999.999", T, True),
    ("0001704067200", T, True),
    ("1704067200.000", T, True),
    ("2024-01-01", T, True),
    ("2024-01-01T00:00", T, True),
    ("2024-01-01T00:00:00", T, True),
    ("2024-01-01 00:00:00", T, True),
    ("2024-01-01T00:00:00Z", T, True),
    ("2024-01-01T00:00:00.999999999Z", T, True),
    ("2024-01-01T00:00:00.5", T, True),
    ("2024-01-01T01:00:00+01:00", T, True),
    ("2024-01-01T01:00+01:00", T, True),
    ("2024-01-01T01:00:00+01", T, True),
    ("2023-12-31T23:00:00-01:00", T, True),
    ("2024-01-01T05:30:00+05:30", T, True),
    ("2023-12-31T14:15:00-09:45", T, True),
    ("2024-01-01T00:00:00+00:00", T, True),
    ("2024-01-01T00:00:00-00:00", T, True),
    ("2024-01-01Z", T, True),  # the grammar allows a zone after a bare date
    ("2020-02-29T12:00:00Z", 1582977600, True),  # leap day
    ("2000-02-29", 951782400, True),
    (100_000_000_000, 100_000_000, True),  # 1e11: milliseconds
    (100_000_000_000.0, 100_000_000, True),
    ("100000000000", 100_000_000, True),
    (1_000_000_000, 1_000_000_000, False),  # 2001-09-09, already whole seconds
]


@pytest.mark.parametrize("given, written, changed", TIMES_IN_SECONDS)
def test_time_written_in_seconds(given: object, written: int, changed: bool) -> None:
    fate = classify(event(props(time=given)), CONFIG)
    assert fate.kind == Kind.EVENT, fate.detail
    assert fate.line == event(props(time=written))  # in place, as an integer
    assert bool(fate.normalised & NORMALISED_TIME) is changed


TIMES_IN_MILLISECONDS = [
    (T, T * 1000, True),
    (T * 1000, T * 1000, False),
    (T * 1000 + 123, T * 1000 + 123, False),
    (T + 0.5, T * 1000 + 500, True),
    (1704067200.999, T * 1000 + 999, True),  # as written, not the binary .99899...
    (1704067200.0005, T * 1000, True),
    (1704067200123.9, T * 1000 + 123, True),
    (float(T * 1000), T * 1000, True),
    (str(T), T * 1000, True),
    ("1704067200.1239", T * 1000 + 123, True),
    ("1704067200.12", T * 1000 + 120, True),
    ("1704067200.1", T * 1000 + 100, True),
    ("1704067200123", T * 1000 + 123, True),
    ("1704067200123.9", T * 1000 + 123, True),
    ("2024-01-01T00:00:00Z", T * 1000, True),
    ("2024-01-01T00:00:00.1239Z", T * 1000 + 123, True),
    ("2024-01-01T00:00:00.1", T * 1000 + 100, True),
    ("2024-01-01T01:00:00.5+01:00", T * 1000 + 500, True),
]


@pytest.mark.parametrize("given, written, changed", TIMES_IN_MILLISECONDS)
def test_time_written_in_milliseconds(given: object, written: int, changed: bool) -> None:
    fate = classify(event(props(time=given)), CONFIG_MS)
    assert fate.kind == Kind.EVENT, fate.detail
    assert fate.line == event(props(time=written))
    assert bool(fate.normalised & NORMALISED_TIME) is changed
    assert fate.day == "2024-01-01"


def test_time_unit_leaves_the_range_check_in_seconds() -> None:
    assert reason_of(event(props(time=REFERENCE + 3601)), CONFIG_MS) == Reason.TIME_OUT_OF_RANGE
    assert reason_of(event(props(time=REFERENCE + 3600)), CONFIG_MS) is None
    assert reason_of(event(props(time=31_535_999_999)), CONFIG_MS) == Reason.TIME_OUT_OF_RANGE


@pytest.mark.parametrize(
    "time, day",
    [
        (T - 1, "2023-12-31"),
        (T, "2024-01-01"),
        (T + 86399, "2024-01-01"),
        (T + 86400, "2024-01-02"),
        (31_536_000, "1971-01-01"),
        ("2024-01-01T00:30:00+01:00", "2023-12-31"),
        ((T - 1) * 1000 + 999, "2023-12-31"),
    ],
)
def test_day_is_the_utc_day_of_the_floored_time(time: object, day: str) -> None:
    assert classify(event(props(time=time)), CONFIG).day == day
