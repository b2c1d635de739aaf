"""Tables for the record rules (transforms/rules.py) against DESIGN.md §2 and §3."""

import hashlib
import json
import os
import re
import subprocess
import sys
import tracemalloc

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms import rules
from transforms.rules import (
    DUPLICATE_KEYS,
    INSERT_ID_GENERATED,
    NORMALISED_DISTINCT_ID,
    NORMALISED_TIME,
    REASON_MEANINGS,
    Fate,
    Kind,
    Reason,
    RuleConfig,
    classify,
)

REFERENCE = 1706745600  # 2024-02-01T00:00:00Z
CONFIG = RuleConfig(REFERENCE)
CONFIG_MS = RuleConfig(REFERENCE, "ms")
T = 1704067200  # 2024-01-01T00:00:00Z
HEX32 = re.compile(r"[0-9a-f]{32}")


def event(properties: object = None, name: object = "Signed up", **extra: object) -> bytes:
    """A compact event line; `properties` defaults to a valid set."""
    if properties is None:
        properties = {"time": T, "distinct_id": "u1", "$insert_id": "id-1"}
    return orjson.dumps({"event": name, "properties": properties, **extra})


def props(**values: object) -> dict[str, object]:
    """Valid event properties, some replaced or added; the keyword insert_id is "$insert_id"."""
    base: dict[str, object] = {"time": T, "distinct_id": "u1", "$insert_id": "id-1"}
    for key, value in values.items():
        base["$insert_id" if key == "insert_id" else key] = value
    return base


def without(key: str, **values: object) -> dict[str, object]:
    """Valid event properties without `key`."""
    result = props(**values)
    del result[key]
    return result


def dumps(value: object) -> bytes:
    return orjson.dumps(value)


def reason_of(line: bytes, config: RuleConfig = CONFIG) -> Reason | None:
    fate = classify(line, config)
    assert (fate.kind == Kind.REJECT) == (fate.reason is not None)
    return fate.reason


def generated_id(name: str, distinct_id: str, seconds: int, properties: dict[str, object]) -> str:
    """The documented recipe of a generated $insert_id."""
    canonical = orjson.dumps([name, distinct_id, seconds, properties], option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(canonical, digest_size=16).hexdigest()


# ---------------------------------------------------------------- interface


def test_reasons_are_the_closed_set_of_design_md() -> None:
    assert [r.value for r in Reason] == [
        "invalid_utf8",
        "invalid_json",
        "not_an_object",
        "unknown_record_type",
        "missing_event_name",
        "invalid_event_name",
        "invalid_properties",
        "missing_time",
        "invalid_time",
        "time_out_of_range",
        "invalid_distinct_id",
        "missing_distinct_id",
        "invalid_insert_id",
        "too_many_properties",
        "nesting_too_deep",
        "too_many_keys",
        "list_too_long",
        "record_too_large",
        "unexpected_field",
        "invalid_group",
        "missing_operation",
        "multiple_operations",
        "invalid_operation",
        "unsupported_operation",
    ]


@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_has_a_meaning(reason: Reason) -> None:
    assert reason.meaning == REASON_MEANINGS[reason]
    assert reason.meaning.endswith(".") and len(reason.meaning) > 20


def test_interface_shapes() -> None:
    assert [k.value for k in Kind] == [0, 1, 2, 3, 4]
    assert (NORMALISED_TIME, NORMALISED_DISTINCT_ID, INSERT_ID_GENERATED, DUPLICATE_KEYS) == (
        1,
        2,
        4,
        8,
    )
    assert Fate._fields == (
        "kind",
        "line",
        "day",
        "key",
        "name",
        "normalised",
        "reason",
        "detail",
        "values",
    )


def test_values_are_what_the_written_line_holds(rule_config) -> None:
    """Fate.values is the parsed, normalised record the line was written from (the schema counts it)."""
    event = classify(b'{"event": "E", "properties": {"time": "2024-01-01T00:00:00Z", "distinct_id": 7, "a": 1.0}}',
                     rule_config)
    assert event.values == orjson.loads(event.line)["properties"]
    assert event.values["time"] == 1704067200 and event.values["distinct_id"] == "7" and "$insert_id" in event.values
    update = classify(b'{"$distinct_id": 7, "$set": {"plan": "pro"}}', rule_config)
    assert update.values == {"plan": "pro"} == orjson.loads(update.line)["$set"]
    assert classify(b"{broken", rule_config).values is None
    assert Reason.INVALID_JSON == "invalid_json"


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"reference_time": REFERENCE, "time_unit": "sec"}, "time_unit"),
        ({"reference_time": REFERENCE, "time_unit": "S"}, "time_unit"),
        ({"reference_time": float(REFERENCE)}, "reference_time"),
        ({"reference_time": True}, "reference_time"),
        ({"reference_time": "1706745600"}, "reference_time"),
        ({"reference_time": 253_402_300_799}, "reference_time"),
    ],
)
def test_rule_config_is_checked(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        RuleConfig(**kwargs)  # type: ignore[arg-type]


def test_rule_config_defaults_to_seconds() -> None:
    assert RuleConfig(REFERENCE).time_unit == "s"
    assert RuleConfig(REFERENCE, "ms").time_unit == "ms"


# ---------------------------------------------------------------- blank lines


@pytest.mark.parametrize("line", [b"", b" ", b"\t", b"\r", b" \t\r \t", b"\r\r"])
def test_blank_lines(line: bytes) -> None:
    assert classify(line, CONFIG) == Fate(Kind.BLANK)


@pytest.mark.parametrize(
    "line",
    [
        b"\x0b",  # vertical tab: not one of the blank characters
        b"\x0c",
        b"\xc2\xa0",  # no-break space
        b" \n ",  # a newline never reaches the rules; it is not blank here
        b"\x00",
    ],
)
def test_other_whitespace_is_not_blank(line: bytes) -> None:
    assert reason_of(line) == Reason.INVALID_JSON


# ---------------------------------------------------------------- reader's business


def test_bom_is_not_skipped_here() -> None:
    # The reader strips the BOM at the start of a file; the rules see it as junk.
    assert reason_of(b"\xef\xbb\xbf" + event()) == Reason.INVALID_JSON


def test_trailing_cr_is_the_readers_business() -> None:
    # The reader drops one "\r"; one left over is JSON whitespace, not a change of fate.
    assert classify(event() + b"\r", CONFIG) == classify(event(), CONFIG)


# ---------------------------------------------------------------- rejects: parse stage

INVALID_UTF8 = [
    b"\xff",
    b"\xfe\xff",
    b'{"event":"\xff","properties":{}}',
    b'{"event":"a\xc0\x80","properties":{}}',  # overlong NUL
    b'"\xed\xa0\x80"',  # a surrogate encoded in UTF-8
    b'"\xe2\x82"',  # truncated sequence
    b'"\xf8\x88\x80\x80\x80"',  # five-byte form
    b"\xff{",  # not UTF-8 and not JSON: the first row wins
    b"\x80" + event(),
]


@pytest.mark.parametrize("line", INVALID_UTF8)
def test_invalid_utf8(line: bytes) -> None:
    assert reason_of(line) == Reason.INVALID_UTF8


INVALID_JSON = [
    b"NaN",
    b'{"event":"e","properties":{"time":NaN}}',
    b'{"a":Infinity}',
    b'{"a":-Infinity}',
    b"{} x",
    b"{}{}",
    event() + b" trailing",
    b'{"a":1,}',
    b"[1,]",
    b"{a:1}",
    b"{'a':1}",
    b'"\\ud800"',  # escaped lone high surrogate
    b'"\\udc00"',  # escaped lone low surrogate
    b'{"event":"\\ud800","properties":{}}',
    b"1e400",  # overflows a double
    b'{"event":"e","properties":{"time":-1e400}}',
    b"{",
    b'{"event":"a\x00"}',  # raw NUL inside a string
    b"{}\x00",
    b"\x00",
    b"\x7f",
    b"[" * 1025 + b"]" * 1025,  # deeper than the parser reads
    b"[" * 100_000,
    b'{"a":' * 2000 + b"1" + b"}" * 2000,
]


@pytest.mark.parametrize("line", INVALID_JSON)
def test_invalid_json(line: bytes) -> None:
    assert reason_of(line) == Reason.INVALID_JSON


def test_parser_depth_limit_has_its_own_detail() -> None:
    fate = classify(b"[" * 1025 + b"]" * 1025, CONFIG)
    assert fate.reason == Reason.INVALID_JSON
    assert "nesting exceeds the JSON parser's limit" in fate.detail


@pytest.mark.parametrize(
    "line",
    [b"[]", b"1", b"-0.5", b'"event"', b"null", b"true", b"false", b'[{"event":"x"}]'],
)
def test_not_an_object(line: bytes) -> None:
    assert reason_of(line) == Reason.NOT_AN_OBJECT


@pytest.mark.parametrize(
    "record",
    [
        {},
        {"name": "x"},
        {"Event": "x", "Properties": {}},
        {"distinct_id": "u1"},
        {"$set": {"a": 1}},
        {"time": T},
    ],
)
def test_unknown_record_type(record: dict[str, object]) -> None:
    assert reason_of(dumps(record)) == Reason.UNKNOWN_RECORD_TYPE


# ---------------------------------------------------------------- rejects: events table

EVENT_REJECTS = [
    # missing_event_name
    (dumps({"properties": props()}), Reason.MISSING_EVENT_NAME),
    (event(name=None), Reason.MISSING_EVENT_NAME),
    (event(name=""), Reason.MISSING_EVENT_NAME),
    (event(name="   "), Reason.MISSING_EVENT_NAME),
    (event(name="\t\n"), Reason.MISSING_EVENT_NAME),
    (event(name=" " * 300), Reason.MISSING_EVENT_NAME),  # blank wins over too long
    # invalid_event_name
    (event(name=5), Reason.INVALID_EVENT_NAME),
    (event(name=True), Reason.INVALID_EVENT_NAME),
    (event(name=["a"]), Reason.INVALID_EVENT_NAME),
    (event(name={"a": 1}), Reason.INVALID_EVENT_NAME),
    (event(name="x" * 256), Reason.INVALID_EVENT_NAME),
    (event(name="é" * 256), Reason.INVALID_EVENT_NAME),  # characters, not bytes
    # invalid_properties
    (dumps({"event": "e"}), Reason.INVALID_PROPERTIES),
    (dumps({"event": "e", "properties": None}), Reason.INVALID_PROPERTIES),
    (dumps({"event": "e", "properties": []}), Reason.INVALID_PROPERTIES),
    (dumps({"event": "e", "properties": "time=1"}), Reason.INVALID_PROPERTIES),
    (dumps({"event": "e", "properties": 1}), Reason.INVALID_PROPERTIES),
    # missing_time
    (event(without("time")), Reason.MISSING_TIME),
    (event(props(time=None)), Reason.MISSING_TIME),
    (event({}), Reason.MISSING_TIME),
    # missing_distinct_id
    (event(without("distinct_id")), Reason.MISSING_DISTINCT_ID),
    (event(without("distinct_id", device_id="d")), Reason.MISSING_DISTINCT_ID),  # no "$"
    (event(without("distinct_id", **{"$Device_id": "d"})), Reason.MISSING_DISTINCT_ID),
]


@pytest.mark.parametrize("line, reason", EVENT_REJECTS)
def test_event_rejects(line: bytes, reason: Reason) -> None:
    assert reason_of(line) == reason


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


@pytest.mark.parametrize(
    "distinct_id",
    [
        None,
        True,
        False,
        1.5,
        1.0,  # a float, even a whole one
        [],
        ["u1"],
        {},
        "x" * 256,
        "é" * 256,
        0,  # placeholder in its string form
        -1,
        "00000000-0000-0000-0000-000000000000",
        "anon",
        "anonymous",
        "nil",
        "none",
        "null",
        "n/a",
        "na",
        "undefined",
        "unknown",
        "<nil>",
        "0",
        "-1",
        "true",
        "false",
        "[]",
        "{}",
        "lmy47d",
        "NULL",
        "  Null  ",
        "\tundefined\n",
        "N/A",
        "NA",
        "<NIL>",
        "LMY47D",
        "Anonymous",
        "00000000-0000-0000-0000-000000000000 ",
        " 0",
        "FALSE",
    ],
)
def test_invalid_distinct_id(distinct_id: object) -> None:
    assert reason_of(event(props(distinct_id=distinct_id))) == Reason.INVALID_DISTINCT_ID


@pytest.mark.parametrize("digits", [b"123456789012345678901234567890", b"-9223372036854775809"])
def test_integer_distinct_id_beyond_64_bits(digits: bytes) -> None:
    # The parser reads integers beyond 64 bits as floats, and a float is invalid.
    line = event(props(distinct_id=0)).replace(b'"distinct_id":0', b'"distinct_id":' + digits)
    assert reason_of(line) == Reason.INVALID_DISTINCT_ID


@pytest.mark.parametrize(
    "insert_id",
    [
        None,
        "",
        5,
        True,
        ["a"],
        {"a": 1},
        "a" * 37,
        "é",
        "abcé",
        "abc_def",
        "abc def",
        " abc",
        "abc.def",
        "abc/def",
        "ａｂｃ",  # full-width letters
        "null",
        "NULL",
        "None",
        "0",
        "-1",
        "na",
        "undefined",
        "anon",
        "Unknown",
        "true",
        "lmy47d",
        "00000000-0000-0000-0000-000000000000",
    ],
)
def test_invalid_insert_id(insert_id: object) -> None:
    assert reason_of(event(props(insert_id=insert_id))) == Reason.INVALID_INSERT_ID


@pytest.mark.parametrize(
    "insert_id",
    ["a" * 36, "---", "-", "A-z-0", "0-0", "00000000-0000-0000-0000-000000000001"],
)
def test_valid_insert_ids(insert_id: str) -> None:
    fate = classify(event(props(insert_id=insert_id)), CONFIG)
    assert fate.kind == Kind.EVENT
    assert orjson.loads(fate.line)["properties"]["$insert_id"] == insert_id
    assert not fate.normalised & INSERT_ID_GENERATED


def many(count: int, **base: object) -> dict[str, object]:
    """Valid properties padded with p0, p1, ... up to `count` properties in all."""
    result = dict(base) if base else props()
    for index in range(count - len(result)):
        result[f"p{index}"] = index
    return result


@pytest.mark.parametrize(
    "properties, reason",
    [
        (many(254), None),
        (many(255), Reason.TOO_MANY_PROPERTIES),
        (many(300), Reason.TOO_MANY_PROPERTIES),
        # the generated $insert_id counts: 253 given + 1 generated passes, 254 + 1 does not
        (many(253, time=T, distinct_id="u1"), None),
        (many(254, time=T, distinct_id="u1"), Reason.TOO_MANY_PROPERTIES),
    ],
)
def test_property_count(properties: dict[str, object], reason: Reason | None) -> None:
    assert reason_of(event(properties)) == reason


def nest(depth: int, leaf: object = 1) -> object:
    """`depth` objects, one inside the other, around `leaf`."""
    value = leaf
    for _ in range(depth):
        value = {"k": value}
    return value


WIDE = {f"k{i}": i for i in range(255)}
WIDE_OK = {f"k{i}": i for i in range(254)}


@pytest.mark.parametrize(
    "value, reason",
    [
        # nesting: a property's object is level 1; lists are not a level
        (nest(3), None),
        (nest(3, {}), Reason.NESTING_TOO_DEEP),
        (nest(4), Reason.NESTING_TOO_DEEP),
        (nest(10), Reason.NESTING_TOO_DEEP),
        ([nest(3)], None),
        ([[[[[[nest(3)]]]]]], None),
        ([nest(4)], Reason.NESTING_TOO_DEEP),
        ({"a": [{"b": {}}]}, None),
        ({"a": [{"b": {"c": {}}}]}, Reason.NESTING_TOO_DEEP),
        ([[[[[[[[[[1]]]]]]]]]], None),
        ({"a": [[[[[[[[[[{"b": {}}]]]]]]]]]]}, None),
        # too_many_keys: at any depth, inside lists too
        (WIDE_OK, None),
        (WIDE, Reason.TOO_MANY_KEYS),
        (nest(2, WIDE), Reason.TOO_MANY_KEYS),
        ([WIDE], Reason.TOO_MANY_KEYS),
        ([[1], {"a": [WIDE]}], Reason.TOO_MANY_KEYS),
        # list_too_long: at any depth
        (list(range(254)), None),
        (list(range(255)), Reason.LIST_TOO_LONG),
        ({"a": list(range(255))}, Reason.LIST_TOO_LONG),
        ([list(range(255))], Reason.LIST_TOO_LONG),
        (nest(3, list(range(255))), Reason.LIST_TOO_LONG),
        # among the three, the table order decides, wherever they are
        ({"wide": WIDE, "deep": nest(4)}, Reason.NESTING_TOO_DEEP),
        ([list(range(300)), WIDE], Reason.TOO_MANY_KEYS),
        ({"long": list(range(300)), "deep": nest(5)}, Reason.NESTING_TOO_DEEP),
        (nest(4, WIDE), Reason.NESTING_TOO_DEEP),
    ],
)
def test_nested_values(value: object, reason: Reason | None) -> None:
    assert reason_of(event(props(extra=value))) == reason


def test_shape_limits_across_properties_follow_the_table() -> None:
    line = event(props(a=list(range(300)), b=WIDE, c=nest(4)))
    assert reason_of(line) == Reason.NESTING_TOO_DEEP
    line = event(props(a=list(range(300)), b=WIDE))
    assert reason_of(line) == Reason.TOO_MANY_KEYS


def test_shape_limits_are_not_fooled_by_brackets_in_strings() -> None:
    # The fast path skips the walk only for lines with no "[" and two "{".
    assert reason_of(event(props(text="{[{[", extra=nest(4)))) == Reason.NESTING_TOO_DEEP
    assert reason_of(event(props(text="{[{["))) is None


def padded(properties: dict[str, object], total: int, name: str = "e") -> dict[str, object]:
    """Adds a "pad" string so that the compact event record is `total` bytes."""
    result = dict(properties, pad="")
    size = len(dumps({"event": name, "properties": result}))
    result["pad"] = "x" * (total - size)
    return result


@pytest.mark.parametrize(
    "total, reason",
    [(999_999, None), (1_000_000, Reason.RECORD_TOO_LARGE), (1_500_000, Reason.RECORD_TOO_LARGE)],
)
def test_record_size_boundary(total: int, reason: Reason | None) -> None:
    line = event(padded(props(), total), name="e")
    assert len(line) == total
    fate = classify(line, CONFIG)
    assert fate.reason == reason
    if reason is None:
        assert len(fate.line) == total


def test_record_size_includes_the_generated_insert_id() -> None:
    # 999,950 bytes as given; the generated "$insert_id" adds 48 (to 999,998) or more.
    given = padded(without("$insert_id"), 999_950)
    fate = classify(event(given, name="e"), CONFIG)
    assert fate.kind == Kind.EVENT
    assert len(fate.line) == 999_950 + len(',"$insert_id":""') + 32
    given = padded(without("$insert_id"), 999_999 - 47)
    assert len(event(given, name="e")) == 999_952
    assert reason_of(event(given, name="e")) == Reason.RECORD_TOO_LARGE


def test_record_size_is_measured_after_normalisation() -> None:
    # An ISO time (22 bytes) becomes 10 digits: the written record is smaller.
    given = padded(props(time="2024-01-01T00:00:00Z"), 1_000_005)
    line = event(given, name="e")
    assert len(line) == 1_000_005
    fate = classify(line, CONFIG)
    assert fate.kind == Kind.EVENT
    assert len(fate.line) == 1_000_005 - 12


def test_record_size_is_measured_compact() -> None:
    compact = event(padded(props(), 999_000), name="e")
    spaced = compact.replace(b",", b" , ").replace(b":", b" : ")[:-1] + b" " * 5000 + b"}"
    assert len(spaced) > 1_000_000
    assert classify(spaced, CONFIG) == classify(compact, CONFIG)


@pytest.mark.parametrize(
    "extra",
    [
        {"foo": 1},
        {"distinct_id": "u1"},
        {"$distinct_id": "u1"},
        {"time": T},
        {"$insert_id": "x"},
        {"Properties": {}},
        {"$group_key": "company"},
        {"$set": {"a": 1}},
        {"": None},
    ],
)
def test_unexpected_field_on_events(extra: dict[str, object]) -> None:
    assert reason_of(event(**extra)) == Reason.UNEXPECTED_FIELD


def test_unexpected_field_names_the_key_cut_to_40_characters() -> None:
    fate = classify(event(**{"k" * 100: 1}), CONFIG)
    assert fate.reason == Reason.UNEXPECTED_FIELD
    assert '"' + "k" * 40 + '"' in fate.detail
    assert "k" * 41 not in fate.detail


# One line per row, each breaking its own row and every later one it can.
EVENT_PRECEDENCE = [
    (b"\xff[", Reason.INVALID_UTF8),
    (b"[1", Reason.INVALID_JSON),
    (b"[]", Reason.NOT_AN_OBJECT),
    (dumps({"foo": 1}), Reason.UNKNOWN_RECORD_TYPE),
    (dumps({"event": "", "properties": [], "foo": 1}), Reason.MISSING_EVENT_NAME),
    (dumps({"event": None, "foo": 1}), Reason.MISSING_EVENT_NAME),
    (dumps({"properties": {"time": "bad"}, "foo": 1}), Reason.MISSING_EVENT_NAME),
    (dumps({"event": 1, "properties": None, "foo": 1}), Reason.INVALID_EVENT_NAME),
    (dumps({"event": "e", "properties": [], "foo": 1}), Reason.INVALID_PROPERTIES),
    (event({"time": None, "distinct_id": None, "$insert_id": ""}, foo=1), Reason.MISSING_TIME),
    (event({"time": "bad", "distinct_id": None}, foo=1), Reason.INVALID_TIME),
    (event({"time": 0, "distinct_id": None}, foo=1), Reason.TIME_OUT_OF_RANGE),
    (
        event(props(distinct_id=None, insert_id="", extra=nest(5)), foo=1),
        Reason.INVALID_DISTINCT_ID,
    ),
    (event(without("distinct_id", insert_id=""), foo=1), Reason.MISSING_DISTINCT_ID),
    (event(many(300, **props(insert_id="")), foo=1), Reason.INVALID_INSERT_ID),
    (event(many(300, **props(extra=nest(5))), foo=1), Reason.TOO_MANY_PROPERTIES),
    (event(props(extra=nest(5), wide=WIDE), foo=1), Reason.NESTING_TOO_DEEP),
    (event(props(wide=WIDE, long=list(range(300))), foo=1), Reason.TOO_MANY_KEYS),
    (event(padded(props(long=list(range(300))), 1_200_000), foo=1), Reason.LIST_TOO_LONG),
    (event(padded(props(), 1_200_000), foo=1), Reason.RECORD_TOO_LARGE),
    (event(props(), foo=1), Reason.UNEXPECTED_FIELD),
]


@pytest.mark.parametrize("line, reason", EVENT_PRECEDENCE)
def test_event_reason_precedence(line: bytes, reason: Reason) -> None:
    assert reason_of(line) == reason


def test_unexpected_fields_count_toward_the_record_size() -> None:
    # The size row comes before the unexpected-field row, so the whole record is measured.
    line = event(props(), foo="x" * 1_000_000)
    assert reason_of(line) == Reason.RECORD_TOO_LARGE


# ---------------------------------------------------------------- events: accepted output


def test_event_written_exactly() -> None:
    line = (
        b'{"event": "Signed up", "properties": {"time": 1704067200, "distinct_id": "u1",'
        b' "$insert_id": "id-1", "plan": "pro"}}'
    )
    fate = classify(line, CONFIG)
    assert fate == Fate(
        Kind.EVENT,
        b'{"event":"Signed up","properties":{"time":1704067200,"distinct_id":"u1",'
        b'"$insert_id":"id-1","plan":"pro"}}',
        "2024-01-01",
        fate.key,
        "Signed up",
        0,
        values={"time": 1704067200, "distinct_id": "u1", "$insert_id": "id-1", "plan": "pro"},
    )
    assert len(fate.key) == 16


def test_event_written_with_every_normalisation_in_place() -> None:
    line = dumps(
        {
            "properties": {"a": 1, "time": "2024-01-01T01:00:00+01:00", "distinct_id": 7, "b": [2]},
            "event": "e",
        }
    )
    fate = classify(line, CONFIG)
    expected_id = generated_id("e", "7", T, {"a": 1, "time": T, "distinct_id": "7", "b": [2]})
    assert fate.line == (
        b'{"event":"e","properties":{"a":1,"time":1704067200,"distinct_id":"7","b":[2],'
        b'"$insert_id":"' + expected_id.encode() + b'"}}'
    )
    assert fate.normalised == NORMALISED_TIME | NORMALISED_DISTINCT_ID | INSERT_ID_GENERATED
    assert (fate.kind, fate.day, fate.name) == (Kind.EVENT, "2024-01-01", "e")


def test_event_values_are_written_as_given() -> None:
    properties = {
        "time": T,
        "distinct_id": "",
        "$insert_id": "x",
        "float": 1.5,
        "big": 2**64 - 1,
        "unicode": "é😀\u0000",
        "null": None,
        "nested": {"a": [1, {"b": None}]},
    }
    line = b'{"event":"  spaced name ","properties":' + dumps(properties) + b"}"
    fate = classify(line, CONFIG)
    assert fate.line == line
    assert fate.name == "  spaced name "
    assert fate.normalised == 0


def test_duplicate_keys_last_wins() -> None:
    line = (
        b'{"event":"a","event":"b","properties":'
        b'{"time":1,"time":1704067200,"distinct_id":"u1","$insert_id":"x"}}'
    )
    fate = classify(line, CONFIG)
    assert fate.name == "b"
    assert fate.line == (
        b'{"event":"b","properties":{"time":1704067200,"distinct_id":"u1","$insert_id":"x"}}'
    )
    assert fate.normalised == DUPLICATE_KEYS  # never silent: see "duplicate keys" below


@pytest.mark.parametrize(
    "name",
    ["x" * 255, "é" * 255, "😀" * 255, " x ", "\u0000", "null", "0"],
)
def test_valid_event_names(name: str) -> None:
    fate = classify(event(name=name), CONFIG)
    assert (fate.kind, fate.name) == (Kind.EVENT, name)


@pytest.mark.parametrize(
    "properties",
    [
        props(distinct_id=""),  # an event tied to no user
        props(distinct_id="   "),  # blank, but not a placeholder
        props(distinct_id="x" * 255),
        props(distinct_id="é" * 255),
        props(distinct_id="anonymous-1"),
        props(distinct_id="nullable"),
        props(distinct_id="1"),
        without("distinct_id", **{"$device_id": "d1"}),
        without("distinct_id", **{"$user_id": "u1"}),
        without("distinct_id", **{"$device_id": None}),  # present is present
    ],
)
def test_valid_distinct_ids(properties: dict[str, object]) -> None:
    fate = classify(event(properties), CONFIG)
    assert fate.kind == Kind.EVENT
    assert not fate.normalised & NORMALISED_DISTINCT_ID


@pytest.mark.parametrize(
    "distinct_id, written",
    [
        (7, "7"),
        (1, "1"),
        (-2, "-2"),
        (2**64 - 1, "18446744073709551615"),
        (-(2**63), str(-(2**63))),
    ],
)
def test_integer_distinct_id_becomes_a_string(distinct_id: int, written: str) -> None:
    fate = classify(event(props(distinct_id=distinct_id)), CONFIG)
    assert fate.line == event(props(distinct_id=written))
    assert fate.normalised == NORMALISED_DISTINCT_ID


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


# ---------------------------------------------------------------- generated $insert_id


def test_generated_insert_id_follows_the_documented_recipe() -> None:
    given = {"time": "1704067200.5", "distinct_id": 42, "plan": "pro", "a": {"z": 1, "b": 2}}
    fate = classify(event(given, name="Paid"), CONFIG)
    written = {"time": T, "distinct_id": "42", "plan": "pro", "a": {"z": 1, "b": 2}}
    insert_id = generated_id("Paid", "42", T, written)
    assert orjson.loads(fate.line)["properties"] == {**written, "$insert_id": insert_id}
    assert list(orjson.loads(fate.line)["properties"])[-1] == "$insert_id"
    assert fate.normalised & INSERT_ID_GENERATED


def test_generated_insert_id_and_key_are_pinned() -> None:
    # Same content, same id, on every run: a change here re-keys every stored event.
    fate = classify(event(without("$insert_id"), name="Signed up"), CONFIG)
    assert orjson.loads(fate.line)["properties"]["$insert_id"] == (
        generated_id("Signed up", "u1", T, {"time": T, "distinct_id": "u1"})
    )
    assert orjson.loads(fate.line)["properties"]["$insert_id"] == (
        "8ddf070e54163b2223bacb97eec89c88"
    )
    assert fate.key.hex() == "8318b71ab2fc24d5017f7a81117b7f98"


def generated(line: bytes, config: RuleConfig = CONFIG) -> str:
    fate = classify(line, config)
    assert fate.kind == Kind.EVENT and fate.normalised & INSERT_ID_GENERATED
    return str(orjson.loads(fate.line)["properties"]["$insert_id"])


def test_generated_insert_id_format() -> None:
    assert HEX32.fullmatch(generated(event(without("$insert_id"))))


SAME_CONTENT = [
    # Pairs that are one event once normalised.
    (
        event({"time": T, "distinct_id": "u1", "a": 1, "b": 2}),
        event({"b": 2, "a": 1, "distinct_id": "u1", "time": T}),
    ),
    (
        event({"time": T, "distinct_id": "7"}),
        event({"time": T, "distinct_id": 7}),
    ),
    (
        event({"time": T, "distinct_id": "u1"}),
        event({"time": "2024-01-01T00:00:00Z", "distinct_id": "u1"}),
    ),
    (
        event({"time": T, "distinct_id": "u1"}),
        event({"time": T * 1000, "distinct_id": "u1"}),
    ),
    (
        event({"time": T, "distinct_id": "u1", "o": {"x": 1, "y": 2}}),
        b'{"event" : "Signed up", "properties" : '
        b'{"time":1704067200,"distinct_id":"u1","o":{"y":2,"x":1}}}',
    ),
]


@pytest.mark.parametrize("first, second", SAME_CONTENT)
def test_same_content_same_insert_id(first: bytes, second: bytes) -> None:
    assert generated(first) == generated(second)


DIFFERENT_CONTENT = [
    (event({"time": T, "distinct_id": "u1"}), event({"time": T + 1, "distinct_id": "u1"})),
    (event({"time": T, "distinct_id": "u1"}), event({"time": T, "distinct_id": "u2"})),
    (event({"time": T, "distinct_id": "u1"}), event({"time": T, "distinct_id": "u1"}, name="x")),
    (
        event({"time": T, "distinct_id": "u1", "a": 1}),
        event({"time": T, "distinct_id": "u1", "a": "1"}),
    ),
    (
        event({"time": T, "distinct_id": "u1", "a": 1}),
        event({"time": T, "distinct_id": "u1", "a": 1.0}),
    ),
    (
        event({"time": T, "distinct_id": "u1"}),
        event({"time": T, "distinct_id": "u1", "a": None}),
    ),
    (
        event({"time": T, "distinct_id": ""}),
        event({"time": T, "$device_id": "d"}),
    ),
]


@pytest.mark.parametrize("first, second", DIFFERENT_CONTENT)
def test_different_content_different_insert_id(first: bytes, second: bytes) -> None:
    assert generated(first) != generated(second)


def test_generated_insert_id_does_not_depend_on_the_source_unit() -> None:
    # Milliseconds and seconds that floor to the same second in "s" mode are one event.
    line_s = event({"time": T + 0.2, "distinct_id": "u1"})
    line_ms = event({"time": T * 1000 + 200, "distinct_id": "u1"})
    assert generated(line_s) == generated(line_ms)
    assert generated(line_s, CONFIG_MS) == generated(line_ms, CONFIG_MS)


def test_given_insert_id_is_kept() -> None:
    fate = classify(event(props(insert_id="Given-1")), CONFIG)
    assert orjson.loads(fate.line)["properties"]["$insert_id"] == "Given-1"
    assert fate.normalised == 0


# ---------------------------------------------------------------- dedupe keys


def key_of(line: bytes, config: RuleConfig = CONFIG) -> bytes:
    fate = classify(line, config)
    assert fate.kind != Kind.REJECT, fate.detail
    assert len(fate.key) == 16
    return fate.key


SAME_EVENT_KEY = [
    # (event, distinct_id or "", $insert_id, day) is the overwrite key; nothing else counts.
    (event(props(time=T)), event(props(time=T + 86399, other=1))),
    (event(props(distinct_id=7)), event(props(distinct_id="7"))),
    (
        event(without("distinct_id", **{"$device_id": "d1"})),
        event(props(distinct_id="")),
    ),
    (
        event(without("distinct_id", **{"$user_id": "a"})),
        event(without("distinct_id", **{"$device_id": "b"})),
    ),
    (event(props(time=T)), event(props(time="2024-01-01T23:59:59Z"))),
    (event(props(time=T)), event(props(time=T * 1000 + 5))),
]


@pytest.mark.parametrize("first, second", SAME_EVENT_KEY)
def test_same_event_key(first: bytes, second: bytes) -> None:
    assert key_of(first) == key_of(second)


DIFFERENT_EVENT_KEY = [
    (event(props(time=T)), event(props(time=T + 86400))),
    (event(props(time=T)), event(props(time=T - 1))),
    (event(props(distinct_id="u1")), event(props(distinct_id="u2"))),
    (event(props(insert_id="a")), event(props(insert_id="A"))),
    (event(name="a"), event(name="A")),
    # no separator ambiguity between the key's parts
    (event(props(distinct_id="b c"), name="a"), event(props(distinct_id="c"), name="a b")),
    (event(props(insert_id="b-c"), name="a"), event(props(insert_id="c"), name="a")),
]


@pytest.mark.parametrize("first, second", DIFFERENT_EVENT_KEY)
def test_different_event_key(first: bytes, second: bytes) -> None:
    assert key_of(first) != key_of(second)


def test_event_key_ignores_the_time_unit() -> None:
    assert key_of(event(), CONFIG) == key_of(event(), CONFIG_MS)


def test_identity_keys() -> None:
    profile_set = dumps({"$distinct_id": "u1", "$set": {"a": 1}})
    profile_unset = dumps({"$distinct_id": "u1", "$unset": ["a"], "$token": "t"})
    assert key_of(profile_set) == key_of(profile_unset)
    assert key_of(dumps({"$distinct_id": 5, "$set": {"a": 1}})) == key_of(
        dumps({"$distinct_id": "5", "$set": {"a": 1}})
    )
    assert key_of(profile_set) != key_of(dumps({"$distinct_id": "u2", "$set": {"a": 1}}))
    group_one = dumps({"$group_key": "a", "$group_id": "bc", "$set": {"x": 1}})
    group_two = dumps({"$group_key": "ab", "$group_id": "c", "$set": {"x": 1}})
    assert key_of(group_one) != key_of(group_two)
    assert key_of(dumps({"$group_key": "c", "$group_id": 5, "$delete": None})) == key_of(
        dumps({"$group_key": "c", "$group_id": "5", "$set": {"y": 2}})
    )


def test_keys_are_stable_across_processes() -> None:
    script = (
        "import sys; from transforms.rules import RuleConfig, classify;"
        "c = RuleConfig(1706745600);"
        "lines = sys.stdin.buffer.read().split(b'\\n');"
        "print(' '.join(classify(l, c).key.hex() for l in lines))"
    )
    lines = [event(), dumps({"$distinct_id": "u1", "$set": {"a": 1}})]
    lines.append(dumps({"$group_key": "k", "$group_id": "g", "$set": {"a": 1}}))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", script],
        input=b"\n".join(lines),
        capture_output=True,
        check=True,
        cwd=root,
        env={**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": root},
    ).stdout.split()
    assert [bytes.fromhex(k.decode()) for k in out] == [key_of(line) for line in lines]


# ---------------------------------------------------------------- profile updates


def profile(**fields: object) -> bytes:
    return dumps({"$distinct_id": "u1", **fields})


def group(**fields: object) -> bytes:
    return dumps({"$group_key": "company", "$group_id": "acme", **fields})


VALID_OPERATIONS = [
    ("$set", {"a": 1}),
    ("$set", {"a": {"b": [1, 2]}, "c": None}),
    ("$set_once", {"a": 1}),
    ("$add", {"n": 1}),
    ("$add", {"n": -2.5, "m": 0, "big": 2**64 - 1}),
    ("$union", {"l": [1]}),
    ("$union", {"l": ["a", "b"], "m": [None]}),
    ("$append", {"l": 1}),
    ("$append", {"l": [1, 2]}),
    ("$remove", {"l": "x"}),
    ("$unset", ["a"]),
    ("$unset", ["a", "b", ""]),
    ("$delete", ""),
    ("$delete", None),
    ("$delete", {}),
    ("$delete", []),
    ("$delete", "whatever"),
]


@pytest.mark.parametrize("operation, value", VALID_OPERATIONS)
def test_valid_profile_operations(operation: str, value: object) -> None:
    line = profile(**{operation: value})
    fate = classify(line, CONFIG)
    assert (fate.kind, fate.line, fate.name, fate.normalised) == (
        Kind.PROFILE,
        line,
        operation,
        0,
    )
    assert fate.day == "" and fate.reason is None and len(fate.key) == 16


@pytest.mark.parametrize(
    "operation, value",
    [(op, value) for op, value in VALID_OPERATIONS if op not in ("$add", "$append")],
)
def test_valid_group_operations(operation: str, value: object) -> None:
    line = group(**{operation: value})
    fate = classify(line, CONFIG)
    assert (fate.kind, fate.line, fate.name, fate.normalised) == (Kind.GROUP, line, operation, 0)


def test_profile_written_as_given_but_compact_and_with_a_string_id() -> None:
    line = (
        b'{ "$token": "t", "$distinct_id": 42, "$set": {"b": 1, "a": 1.50},'
        b' "$ip": "1.2.3.4", "$ignore_time": true, "$ignore_alias": false, "$time": 1 }'
    )
    fate = classify(line, CONFIG)
    assert fate == Fate(
        Kind.PROFILE,
        b'{"$token":"t","$distinct_id":"42","$set":{"b":1,"a":1.5},"$ip":"1.2.3.4",'
        b'"$ignore_time":true,"$ignore_alias":false,"$time":1}',
        "",
        fate.key,
        "$set",
        NORMALISED_DISTINCT_ID,
        values={"b": 1, "a": 1.5},
    )


def test_group_written_as_given_but_with_a_string_id() -> None:
    line = dumps({"$set_once": {"a": 1}, "$group_id": 9, "$group_key": "company", "$token": "t"})
    fate = classify(line, CONFIG)
    assert fate == Fate(
        Kind.GROUP,
        b'{"$set_once":{"a":1},"$group_id":"9","$group_key":"company","$token":"t"}',
        "",
        fate.key,
        "$set_once",
        NORMALISED_DISTINCT_ID,
        values={"a": 1},
    )


@pytest.mark.parametrize(
    "distinct_id",
    [
        None,
        True,
        False,
        1.5,
        1.0,
        [],
        {},
        "",
        "   ",  # blank is empty
        "x" * 256,
        0,
        -1,
        "null",
        " Anonymous ",
        "00000000-0000-0000-0000-000000000000",
        "{}",
    ],
)
def test_invalid_profile_distinct_id(distinct_id: object) -> None:
    line = dumps({"$distinct_id": distinct_id, "$set": {"a": 1}})
    assert reason_of(line) == Reason.INVALID_DISTINCT_ID


@pytest.mark.parametrize("distinct_id", ["x" * 255, "é" * 255, 1, 2**63, "0x", " u1 "])
def test_valid_profile_distinct_id(distinct_id: object) -> None:
    line = dumps({"$distinct_id": distinct_id, "$set": {"a": 1}})
    assert classify(line, CONFIG).kind == Kind.PROFILE


@pytest.mark.parametrize(
    "fields",
    [
        {"$group_key": 5},
        {"$group_key": None},
        {"$group_key": ""},
        {"$group_key": "  "},
        {"$group_key": ["company"]},
        {"$group_id": None},
        {"$group_id": True},
        {"$group_id": 1.5},
        {"$group_id": ["acme"]},
        {"$group_id": {}},
        {"$group_id": ""},
        {"$group_id": " "},
        {"$group_id": "x" * 256},
        {"$group_id": "null"},
        {"$group_id": "N/A"},
        {"$group_id": 0},
        {"$group_id": -1},
    ],
)
def test_invalid_group(fields: dict[str, object]) -> None:
    record = {"$group_key": "company", "$group_id": "acme", "$set": {"a": 1}, **fields}
    assert reason_of(dumps(record)) == Reason.INVALID_GROUP


def test_group_without_group_id() -> None:
    assert reason_of(dumps({"$group_key": "company", "$set": {"a": 1}})) == Reason.INVALID_GROUP


UPDATE_REJECTS = [
    # missing_operation
    (profile(), Reason.MISSING_OPERATION),
    (profile(**{"$token": "t", "$ip": "1.2.3.4"}), Reason.MISSING_OPERATION),
    (profile(**{"$Set": {"a": 1}}), Reason.MISSING_OPERATION),
    (group(), Reason.MISSING_OPERATION),
    # multiple_operations
    (profile(**{"$set": {"a": 1}, "$unset": ["b"]}), Reason.MULTIPLE_OPERATIONS),
    (profile(**{"$set": {"a": 1}, "$set_once": {"b": 1}}), Reason.MULTIPLE_OPERATIONS),
    (group(**{"$set": {"a": 1}, "$delete": None}), Reason.MULTIPLE_OPERATIONS),
    # invalid_operation
    (profile(**{"$set": {}}), Reason.INVALID_OPERATION),
    (profile(**{"$set": []}), Reason.INVALID_OPERATION),
    (profile(**{"$set": [["a", 1]]}), Reason.INVALID_OPERATION),
    (profile(**{"$set": "a"}), Reason.INVALID_OPERATION),
    (profile(**{"$set": None}), Reason.INVALID_OPERATION),
    (profile(**{"$set_once": {}}), Reason.INVALID_OPERATION),
    (profile(**{"$set_once": 1}), Reason.INVALID_OPERATION),
    (profile(**{"$add": {}}), Reason.INVALID_OPERATION),
    (profile(**{"$add": {"n": "1"}}), Reason.INVALID_OPERATION),
    (profile(**{"$add": {"n": True}}), Reason.INVALID_OPERATION),
    (profile(**{"$add": {"n": None}}), Reason.INVALID_OPERATION),
    (profile(**{"$add": {"n": 1, "m": [1]}}), Reason.INVALID_OPERATION),
    (profile(**{"$add": [1]}), Reason.INVALID_OPERATION),
    (profile(**{"$union": {}}), Reason.INVALID_OPERATION),
    (profile(**{"$union": {"l": []}}), Reason.INVALID_OPERATION),
    (profile(**{"$union": {"l": 1}}), Reason.INVALID_OPERATION),
    (profile(**{"$union": {"l": [1], "m": "x"}}), Reason.INVALID_OPERATION),
    (profile(**{"$union": [1]}), Reason.INVALID_OPERATION),
    (profile(**{"$append": {}}), Reason.INVALID_OPERATION),
    (profile(**{"$append": [1]}), Reason.INVALID_OPERATION),
    (profile(**{"$remove": {}}), Reason.INVALID_OPERATION),
    (profile(**{"$remove": "x"}), Reason.INVALID_OPERATION),
    (profile(**{"$unset": []}), Reason.INVALID_OPERATION),
    (profile(**{"$unset": "a"}), Reason.INVALID_OPERATION),
    (profile(**{"$unset": ["a", 1]}), Reason.INVALID_OPERATION),
    (profile(**{"$unset": [None]}), Reason.INVALID_OPERATION),
    (profile(**{"$unset": {"a": 1}}), Reason.INVALID_OPERATION),
    (group(**{"$set": {}}), Reason.INVALID_OPERATION),
    (group(**{"$unset": []}), Reason.INVALID_OPERATION),
    # unsupported_operation
    (group(**{"$add": {"n": 1}}), Reason.UNSUPPORTED_OPERATION),
    (group(**{"$append": {"l": 1}}), Reason.UNSUPPORTED_OPERATION),
    # unexpected_field
    (profile(**{"$set": {"a": 1}, "$email": "a@b.c"}), Reason.UNEXPECTED_FIELD),
    (profile(**{"$set": {"a": 1}, "properties": {}}), Reason.UNEXPECTED_FIELD),
    (profile(**{"$set": {"a": 1}, "distinct_id": "u1"}), Reason.UNEXPECTED_FIELD),
    (profile(**{"$set": {"a": 1}, "$group_id": "g"}), Reason.UNEXPECTED_FIELD),
    (profile(**{"$set": {"a": 1}, "time": T}), Reason.UNEXPECTED_FIELD),
    (group(**{"$set": {"a": 1}, "$distinct_id": "u1"}), Reason.UNEXPECTED_FIELD),
    (group(**{"$set": {"a": 1}, "$email": "a@b.c"}), Reason.UNEXPECTED_FIELD),
    # too_many_properties: 2,000 or more entries in the one operation
    (profile(**{"$set": {f"k{i}": i for i in range(2000)}}), Reason.TOO_MANY_PROPERTIES),
    (profile(**{"$unset": [f"k{i}" for i in range(2000)]}), Reason.TOO_MANY_PROPERTIES),
    (profile(**{"$delete": list(range(2000))}), Reason.TOO_MANY_PROPERTIES),
    (group(**{"$union": {f"k{i}": [i] for i in range(2500)}}), Reason.TOO_MANY_PROPERTIES),
    # record_too_large
    (profile(**{"$set": {"a": "x" * 1_000_000}}), Reason.RECORD_TOO_LARGE),
    (group(**{"$set": {"a": "x" * 1_000_000}}), Reason.RECORD_TOO_LARGE),
]


@pytest.mark.parametrize("line, reason", UPDATE_REJECTS)
def test_update_rejects(line: bytes, reason: Reason) -> None:
    assert reason_of(line) == reason


@pytest.mark.parametrize(
    "line",
    [
        profile(**{"$set": {f"k{i}": i for i in range(1999)}}),
        profile(**{"$unset": [f"k{i}" for i in range(1999)]}),
        group(**{"$set": {f"k{i}": i for i in range(1999)}}),
        # the event limits do not apply to updates
        profile(**{"$set": {"deep": nest(50), "wide": WIDE, "long": list(range(1000))}}),
    ],
)
def test_update_limits_that_pass(line: bytes) -> None:
    assert reason_of(line) is None


@pytest.mark.parametrize("kind", ["profile", "group"])
@pytest.mark.parametrize("total, reason", [(999_999, None), (1_000_000, Reason.RECORD_TOO_LARGE)])
def test_update_size_boundary(kind: str, total: int, reason: Reason | None) -> None:
    make = profile if kind == "profile" else group
    size = len(make(**{"$set": {"a": ""}}))
    line = make(**{"$set": {"a": "x" * (total - size)}})
    assert len(line) == total
    assert reason_of(line) == reason


UPDATE_PRECEDENCE = [
    (dumps({"$distinct_id": "", "$email": 1}), Reason.INVALID_DISTINCT_ID),
    (dumps({"$group_key": "", "$set": {}, "$add": {}}), Reason.INVALID_GROUP),
    (profile(**{"$email": 1, "$token": "t"}), Reason.MISSING_OPERATION),
    (profile(**{"$set": {}, "$unset": "a", "$email": 1}), Reason.MULTIPLE_OPERATIONS),
    (profile(**{"$set": {}, "$email": 1}), Reason.INVALID_OPERATION),
    (group(**{"$add": {"n": "not a number"}, "$email": 1}), Reason.INVALID_OPERATION),
    (group(**{"$append": {"l": 1}, "$email": 1}), Reason.UNSUPPORTED_OPERATION),
    (
        profile(**{"$set": {f"k{i}": "x" * 1000 for i in range(2000)}, "$email": 1}),
        Reason.UNEXPECTED_FIELD,
    ),
    (profile(**{"$set": {f"k{i}": "x" * 1000 for i in range(2000)}}), Reason.TOO_MANY_PROPERTIES),
]


@pytest.mark.parametrize("line, reason", UPDATE_PRECEDENCE)
def test_update_reason_precedence(line: bytes, reason: Reason) -> None:
    assert reason_of(line) == reason


@pytest.mark.parametrize(
    "record, kind",
    [
        # event, then $group_key, then $distinct_id, then properties
        ({"event": "e", "$group_key": "k", "$distinct_id": "u"}, Reason.INVALID_PROPERTIES),
        (
            {"$group_key": "k", "$group_id": "g", "$distinct_id": "u", "$set": {"a": 1}},
            Reason.UNEXPECTED_FIELD,
        ),
        ({"$distinct_id": "u", "properties": {}, "$set": {"a": 1}}, Reason.UNEXPECTED_FIELD),
        ({"properties": props()}, Reason.MISSING_EVENT_NAME),
        ({"$group_key": "k", "$group_id": "g", "$set": {"a": 1}}, Kind.GROUP),
        ({"$distinct_id": "u", "$set": {"a": 1}}, Kind.PROFILE),
    ],
)
def test_record_type_order(record: dict[str, object], kind: object) -> None:
    fate = classify(dumps(record), CONFIG)
    assert (fate.reason if fate.kind == Kind.REJECT else fate.kind) == kind


@pytest.mark.parametrize(
    "line", [event(), profile(**{"$set": {"a": 1}}), group(**{"$set": {"a": 1}})]
)
def test_written_lines_are_exact_size_copies(line: bytes) -> None:
    # orjson's own output takes 4 KiB or more whatever its length, and a batch
    # holds many written lines.
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [classify(line, CONFIG).line for _ in range(200)]
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(kept) == 200
    assert grown < 200 * 512


# ---------------------------------------------------------------- duplicate keys
# DESIGN.md §2: the last one wins, and an accepted line where it happened, at any
# depth, carries DUPLICATE_KEYS (counted as normalised.duplicate_keys).

P = b'"time":1704067200,"distinct_id":"u1","$insert_id":"a1"'  # valid properties, compact


def dup_event(properties: bytes, head: bytes = b'{"event":"e","properties":{') -> bytes:
    return head + properties + b"}}"


# (raw line, written line, flags): events whose written line is known exactly.
DUPLICATE_KEY_EVENTS = [
    pytest.param(dup_event(P + b',"x":1,"x":2'), dup_event(P + b',"x":2'), DUPLICATE_KEYS, id="flat"),
    pytest.param(dup_event(P + b',"x":1,"y":2'), dup_event(P + b',"x":1,"y":2'), 0, id="no_duplicate"),
    pytest.param(
        b'{ "event" : "e" , "properties" : { "time" : 1704067200 , "distinct_id" : "u1" ,'
        b' "$insert_id" : "a1" , "x" : 1 , "x" :\t2 } }',
        dup_event(P + b',"x":2'),
        DUPLICATE_KEYS,
        id="whitespace_around_colons",
    ),
    pytest.param(
        b'{"event" :"e",  "properties":\t{"time" : 1704067200,"distinct_id":"u1","$insert_id":"a1"}}',
        dup_event(P),
        0,
        id="whitespace_no_duplicate",
    ),
    pytest.param(
        dup_event(P + b',"a:b":"c:d::e","url":"http://h:80/x"'),
        dup_event(P + b',"a:b":"c:d::e","url":"http://h:80/x"'),
        0,
        id="colons_in_keys_and_values",
    ),
    pytest.param(
        dup_event(P + b',"a:b":"1:2:3","a:b":"4"'),
        dup_event(P + b',"a:b":"4"'),
        DUPLICATE_KEYS,
        id="duplicate_with_colons_in_key_and_value",
    ),
    pytest.param(
        dup_event(P + b',"o":{"a":1,"b":{"c":1,"c":{"d":2}}}'),
        dup_event(P + b',"o":{"a":1,"b":{"c":{"d":2}}}'),
        DUPLICATE_KEYS,
        id="nested",
    ),
    pytest.param(
        dup_event(P + b',"o":{"a":1},"p":{"a":1}'),
        dup_event(P + b',"o":{"a":1},"p":{"a":1}'),
        0,
        id="same_key_in_sibling_objects",
    ),
    pytest.param(
        dup_event(P + b',"l":[{"a":1},{"a":2,"a":3}]'),
        dup_event(P + b',"l":[{"a":1},{"a":3}]'),
        DUPLICATE_KEYS,
        id="in_a_list_of_objects",
    ),
    pytest.param(
        dup_event(P + b',"l":[{"a":1},{"a":2}],"m":[[{"b":1}]]'),
        dup_event(P + b',"l":[{"a":1},{"a":2}],"m":[[{"b":1}]]'),
        0,
        id="list_of_objects_no_duplicate",
    ),
    pytest.param(
        dup_event(P + b',"x":{"a":1,"a":2},"x":3'),
        dup_event(P + b',"x":3'),
        DUPLICATE_KEYS,
        id="a_duplicate_inside_a_dropped_value_counts_once",
    ),
    pytest.param(
        b'{"event":"a","event":"b","properties":{' + P + b"}}",
        b'{"event":"b","properties":{' + P + b"}}",
        DUPLICATE_KEYS,
        id="event_name",
    ),
    pytest.param(
        b'{"event":"","event":"b","properties":{' + P + b"}}",
        b'{"event":"b","properties":{' + P + b"}}",
        DUPLICATE_KEYS,
        id="blank_event_name_overridden",
    ),
    pytest.param(
        b'{"event":"e","properties":{"time":"bad"},"properties":{' + P + b"}}",
        dup_event(P),
        DUPLICATE_KEYS,
        id="properties",
    ),
    pytest.param(
        dup_event(b'"time":"2024-01-01T00:00:00Z","time":1704067200,"distinct_id":"u1","$insert_id":"a1"'),
        dup_event(P),
        DUPLICATE_KEYS,
        id="time_string_then_integer",
    ),
    pytest.param(
        dup_event(b'"time":1704067200,"time":"2024-01-01T00:00:00Z","distinct_id":"u1","$insert_id":"a1"'),
        dup_event(P),
        DUPLICATE_KEYS | NORMALISED_TIME,
        id="time_integer_then_string",
    ),
    pytest.param(
        dup_event(b'"time":"yesterday","time":1704067200,"distinct_id":"u1","$insert_id":"a1"'),
        dup_event(P),
        DUPLICATE_KEYS,
        id="invalid_time_overridden",
    ),
    pytest.param(
        dup_event(b'"time":"2024-01-01T01:00:00+01:00","distinct_id":"u1","$insert_id":"a1"'),
        dup_event(P),
        NORMALISED_TIME,
        id="time_string_with_colons_no_duplicate",
    ),
    pytest.param(
        dup_event(b'"time":1704067200,"distinct_id":"null","distinct_id":"u1","$insert_id":"a1"'),
        dup_event(P),
        DUPLICATE_KEYS,
        id="placeholder_distinct_id_overridden",
    ),
    pytest.param(
        dup_event(b'"time":1704067200,"distinct_id":"u1","distinct_id":17,"$insert_id":"a1"'),
        dup_event(b'"time":1704067200,"distinct_id":"17","$insert_id":"a1"'),
        DUPLICATE_KEYS | NORMALISED_DISTINCT_ID,
        id="distinct_id_then_integer",
    ),
    pytest.param(
        dup_event(b'"time":1704067200,"distinct_id":"u1","$insert_id":"not valid!","$insert_id":"a1"'),
        dup_event(P),
        DUPLICATE_KEYS,
        id="invalid_insert_id_overridden",
    ),
    # \u003a is a colon: these keys are the same key once read.
    pytest.param(
        dup_event(P + b',"a\\u003ab":1,"a:b":2'),
        dup_event(P + b',"a:b":2'),
        DUPLICATE_KEYS,
        id="escaped_colon_same_key",
    ),
    pytest.param(
        dup_event(P + b',"a\\u003Ab":1,"c":"\\u003a\\u003a"'),
        dup_event(P + b',"a:b":1,"c":"::"'),
        0,
        id="escaped_colons_no_duplicate",
    ),
    pytest.param(
        dup_event(P + b',"c":"\\\\u003a","d":"\\\\\\u003a"'),
        dup_event(P + b',"c":"\\\\u003a","d":"\\\\:"'),
        0,
        id="escaped_backslash_before_u003a",
    ),
    pytest.param(
        dup_event(P + b',"c":"\\\\u003a","c":1'),
        dup_event(P + b',"c":1'),
        DUPLICATE_KEYS,
        id="escaped_backslash_before_u003a_duplicate",
    ),
    pytest.param(
        dup_event(
            b'"time":"2024-01-01T00\\u003a00\\u003a00Z","distinct_id":"u1","$insert_id":"a1","\\u00e9":"\\u00e9"'
        ),
        dup_event(P + ',"é":"é"'.encode()),
        NORMALISED_TIME,
        id="time_string_with_escaped_colons",
    ),
]


@pytest.mark.parametrize("line, written, flags", DUPLICATE_KEY_EVENTS)
def test_duplicate_keys_on_events(line: bytes, written: bytes, flags: int) -> None:
    fate = classify(line, CONFIG)
    assert (fate.kind, fate.line, fate.normalised) == (Kind.EVENT, written, flags)
    assert fate.normalised & DUPLICATE_KEYS == has_duplicate_keys(line) * DUPLICATE_KEYS


def test_duplicate_keys_with_a_generated_insert_id() -> None:
    # The generated $insert_id adds a key (and a colon) that the raw line lacks.
    plain = dup_event(b'"time":1704067200,"distinct_id":"u1","x":2')
    fate = classify(dup_event(b'"time":1704067200,"distinct_id":"u1","x":1,"x":2'), CONFIG)
    assert fate.normalised == DUPLICATE_KEYS | INSERT_ID_GENERATED
    assert fate.line == classify(plain, CONFIG).line  # the winner is hashed and written
    assert classify(plain, CONFIG).normalised == INSERT_ID_GENERATED
    ms = classify(dup_event(b'"time":"2024-01-01T00:00:00Z","distinct_id":"u1","x":1,"x":2'), CONFIG_MS)
    assert ms.normalised == DUPLICATE_KEYS | INSERT_ID_GENERATED | NORMALISED_TIME
    # Compact lines whose only change is the added id skip the counts, unless a pair was dropped.
    for properties in (
        b'"time":1704067200,"distinct_id":"u1","x":1,"x":1',
        b'"x":1,"time":1704067200,"distinct_id":"u1","x":1',
    ):
        assert classify(dup_event(properties), CONFIG).normalised == DUPLICATE_KEYS | INSERT_ID_GENERATED


def test_duplicate_keys_decide_the_dedupe_key_by_the_winner() -> None:
    line = dup_event(b'"time":1704067200,"distinct_id":"u0","distinct_id":"u1","$insert_id":"a0","$insert_id":"a1"')
    assert classify(line, CONFIG).key == classify(dup_event(P), CONFIG).key


@pytest.mark.parametrize(
    "line, reason",
    [
        pytest.param(
            dup_event(b'"time":1704067200,"time":"yesterday","distinct_id":"u1"'),
            Reason.INVALID_TIME,
            id="invalid_time_wins",
        ),
        pytest.param(
            dup_event(b'"time":1704067200,"distinct_id":"u1","distinct_id":"anon"'),
            Reason.INVALID_DISTINCT_ID,
            id="placeholder_wins",
        ),
        pytest.param(
            b'{"event":"e","properties":{' + P + b'},"properties":[]}',
            Reason.INVALID_PROPERTIES,
            id="properties_list_wins",
        ),
        pytest.param(
            b'{"event":"e","event":null,"properties":{' + P + b"}}",
            Reason.MISSING_EVENT_NAME,
            id="null_name_wins",
        ),
        pytest.param(
            b'{"event":"e","properties":{' + P + b',"x":1,"x":2},"extra":1}',
            Reason.UNEXPECTED_FIELD,
            id="unexpected_field",
        ),
        pytest.param(
            b'{"$distinct_id":"u1","$set":{"a":1,"a":2},"$unset":["b"]}',
            Reason.MULTIPLE_OPERATIONS,
            id="profile_multiple_operations",
        ),
        pytest.param(
            b'{"$group_key":"c","$group_id":"acme","$group_id":"null","$set":{"a":1}}',
            Reason.INVALID_GROUP,
            id="group_placeholder_id_wins",
        ),
    ],
)
def test_rejected_lines_with_duplicate_keys_carry_no_flag(line: bytes, reason: Reason) -> None:
    # Only accepted lines are counted in normalised.duplicate_keys.
    assert has_duplicate_keys(line)
    fate = classify(line, CONFIG)
    assert (fate.kind, fate.reason, fate.normalised) == (Kind.REJECT, reason, 0)


DUPLICATE_KEY_UPDATES = [
    pytest.param(
        b'{"$distinct_id":"u1","$set":{"a":1,"a":2}}',
        b'{"$distinct_id":"u1","$set":{"a":2}}',
        DUPLICATE_KEYS,
        id="in_set_value",
    ),
    pytest.param(
        b'{"$distinct_id" : "u1", "$set" : {"a" : {"b" : [ {"c":1, "c" : 2} ]}}}',
        b'{"$distinct_id":"u1","$set":{"a":{"b":[{"c":2}]}}}',
        DUPLICATE_KEYS,
        id="deep_in_set_value_with_whitespace",
    ),
    pytest.param(
        b'{"$distinct_id":"null","$distinct_id":"u2","$set":{"a":1}}',
        b'{"$distinct_id":"u2","$set":{"a":1}}',
        DUPLICATE_KEYS,
        id="distinct_id",
    ),
    pytest.param(
        b'{"$distinct_id":"u1","$distinct_id":7,"$set":{"a":1}}',
        b'{"$distinct_id":"7","$set":{"a":1}}',
        DUPLICATE_KEYS | NORMALISED_DISTINCT_ID,
        id="distinct_id_then_integer",
    ),
    pytest.param(
        b'{"$distinct_id":"u1","$set":{"a":1},"$set":{"b":2}}',
        b'{"$distinct_id":"u1","$set":{"b":2}}',
        DUPLICATE_KEYS,
        id="operation_given_twice",
    ),
    pytest.param(
        b'{"$distinct_id":"u:1","$set":{"url":"http://h:80","t":"12:00"},"$time":"10:11"}',
        b'{"$distinct_id":"u:1","$set":{"url":"http://h:80","t":"12:00"},"$time":"10:11"}',
        0,
        id="colons_no_duplicate",
    ),
    pytest.param(
        b'{"$distinct_id":"u1","$union":{"l":[{"a":1,"a":1}]}}',
        b'{"$distinct_id":"u1","$union":{"l":[{"a":1}]}}',
        DUPLICATE_KEYS,
        id="in_union_list_of_objects_same_value",
    ),
    pytest.param(
        b'{"$distinct_id":"u1","$set":{"k\\u003a":1,"k:":2}}',
        b'{"$distinct_id":"u1","$set":{"k:":2}}',
        DUPLICATE_KEYS,
        id="escaped_colon_same_key",
    ),
    pytest.param(
        b'{"$distinct_id":"u1","$token":"t","$token":"t","$delete":""}',
        b'{"$distinct_id":"u1","$token":"t","$delete":""}',
        DUPLICATE_KEYS,
        id="modifier",
    ),
    pytest.param(
        b'{"$group_key":"company","$group_id":1,"$group_id":"acme","$set":{"n":{"a":1,"a":2}}}',
        b'{"$group_key":"company","$group_id":"acme","$set":{"n":{"a":2}}}',
        DUPLICATE_KEYS,
        id="group",
    ),
    pytest.param(
        b'{"$group_key":"x","$group_key":"company","$group_id":7,"$unset":["a:b"]}',
        b'{"$group_key":"company","$group_id":"7","$unset":["a:b"]}',
        DUPLICATE_KEYS | NORMALISED_DISTINCT_ID,
        id="group_key",
    ),
    pytest.param(
        b'{"$group_key":"company","$group_id":"acme","$set":{"a\\u003ab":"\\u003a"}}',
        b'{"$group_key":"company","$group_id":"acme","$set":{"a:b":":"}}',
        0,
        id="group_escaped_colons_no_duplicate",
    ),
]


@pytest.mark.parametrize("line, written, flags", DUPLICATE_KEY_UPDATES)
def test_duplicate_keys_on_updates(line: bytes, written: bytes, flags: int) -> None:
    fate = classify(line, CONFIG)
    assert fate.kind in (Kind.PROFILE, Kind.GROUP)
    assert (fate.line, fate.normalised) == (written, flags)
    assert fate.normalised & DUPLICATE_KEYS == has_duplicate_keys(line) * DUPLICATE_KEYS
    assert classify(written, CONFIG).normalised == 0


def test_duplicate_keys_deep_in_lists_written_by_the_deep_writer() -> None:
    # Lists deeper than orjson writes go through _serialise_deep; the count holds there too.
    inner = b'{"a:":1,"a:":{"b":"c:d"}}'
    deep = b"[" * 600 + inner + b"]" * 600
    line = dup_event(P + b',"l":' + deep)
    fate = classify(line, CONFIG)
    assert (fate.kind, fate.normalised) == (Kind.EVENT, DUPLICATE_KEYS)
    assert fate.line == dup_event(P + b',"l":' + b"[" * 600 + b'{"a:":{"b":"c:d"}}' + b"]" * 600)
    clean = classify(dup_event(P + b',"l":' + b"[" * 600 + b'{"a:":{"b":"c:d"}}' + b"]" * 600), CONFIG)
    assert (clean.kind, clean.normalised) == (Kind.EVENT, 0)


def test_duplicate_keys_deep_in_a_profile_written_by_the_deep_writer() -> None:
    deep = b'{"a":' * 1000 + b'{"x":1,"x":2}' + b"}" * 1000
    fate = classify(b'{"$distinct_id":"u1","$set":' + deep + b"}", CONFIG)
    assert (fate.kind, fate.normalised) == (Kind.PROFILE, DUPLICATE_KEYS)
    assert fate.line == b'{"$distinct_id":"u1","$set":' + b'{"a":' * 1000 + b'{"x":2}' + b"}" * 1000 + b"}"
    clean = classify(fate.line, CONFIG)
    assert (clean.kind, clean.line, clean.normalised) == (Kind.PROFILE, fate.line, 0)


@pytest.mark.parametrize(
    "text, colons",
    [
        (b"", 0),
        (b'{"a":1}', 1),
        (b'{"a:b" : "c:d"}', 3),
        (b'{"a\\u003a":1}', 2),
        (b'{"a\\u003A":1}', 2),
        (b'{"a\\u003b":1}', 1),  # ";", not a colon
        (b'{"a":"\\\\u003a"}', 1),  # a backslash, then the text u003a
        (b'{"a":"\\\\\\u003a"}', 2),  # a backslash, then a colon
        (b'{"a":"\\"\\u003a\\n\\u003a"}', 3),
    ],
)
def test_colons_counts_escaped_colons_exactly(text: bytes, colons: int) -> None:
    assert rules._colons(text) == colons
    if text:
        # The count is the one of the text as written back.
        assert orjson.dumps(json.loads(text)).count(b":") == colons


def has_duplicate_keys(line: bytes) -> bool:
    """The truth, from the standard library's parser: does any object repeat a key?"""
    found = False

    def pairs_hook(pairs: list[tuple[str, object]]) -> dict[str, object]:
        nonlocal found
        if len({key for key, _ in pairs}) != len(pairs):
            found = True
        return dict(pairs)

    json.loads(line, object_pairs_hook=pairs_hook)
    return found


# Keys from a small alphabet so that objects repeat keys by chance as well.
_DUP_KEYS = st.text(alphabet="ab:é😀\\\"", max_size=3)
_DUP_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=6) | st.sampled_from(["", ":", "a:b", "\\u003a"]),
)
# Objects are lists of pairs, so that they can give a key twice.
_DUP_TREES = st.recursive(
    _DUP_SCALARS,
    lambda children: st.lists(children, max_size=4).map(lambda items: ("list", items))
    | st.lists(st.tuples(_DUP_KEYS, children), max_size=4).map(lambda pairs: ("object", pairs)),
    max_leaves=10,
)


@st.composite
def json_text(draw: st.DrawFn, value: object) -> bytes:
    """JSON for a tree of _DUP_TREES, written with random spacing and escapes."""

    def escaped(char: str) -> str:
        if char in '"\\' and draw(st.booleans()):
            return "\\" + char
        if ord(char) > 0xFFFF:
            return json.dumps(char)[1:-1]  # a surrogate pair
        return draw(st.sampled_from(["\\u%04x", "\\u%04X"])) % ord(char)

    def space() -> str:
        return draw(st.sampled_from(["", "", " ", "\t", " \r\t "]))

    def string(text: str) -> str:
        out = []
        for char in text:
            if char == ":":
                out.append(draw(st.sampled_from([":", ":", "\\u003a", "\\u003A"])))
            elif char in '"\\' or char < " " or draw(st.integers(0, 3)) == 0:
                out.append(escaped(char))
            else:
                out.append(char)
        return '"' + "".join(out) + '"'

    def write(node: object) -> str:
        if isinstance(node, tuple):
            kind, items = node
            if kind == "list":
                return "[" + ",".join(space() + write(item) + space() for item in items) + "]"
            pairs = list(items)
            if pairs and draw(st.booleans()):
                # Insert a duplicate of one key, before or after its first use.
                at = draw(st.integers(0, len(pairs) - 1))
                where = draw(st.integers(0, len(pairs)))
                pairs.insert(where, (pairs[at][0], draw(_DUP_SCALARS)))
            return (
                "{"
                + ",".join(space() + string(k) + space() + ":" + space() + write(v) for k, v in pairs)
                + space()
                + "}"
            )
        if isinstance(node, str):
            return string(node)
        return json.dumps(node)

    return write(value).encode("utf-8")


TIME_TEXTS = st.sampled_from(
    [
        "1704067200",
        "1704067200.5",
        '"1704067200"',
        '"2024-01-01T00:00:00Z"',
        '"2024-01-01 01:00+01:00"',
        '"2024-01-01T00\\u003a00\\u003A00Z"',
    ]
)


@st.composite
def lines_with_duplicates(draw: st.DrawFn) -> bytes:
    """An event or a profile update whose values are random trees, with duplicate keys at random."""
    tree = draw(_DUP_TREES)
    extra = draw(json_text(("object", [("x", tree), ("y", tree)])))
    if draw(st.booleans()):
        return b'{"$distinct_id":"u1","$set":' + extra + b"}"
    head = [b'"time":' + draw(TIME_TEXTS).encode(), b'"distinct_id":"u1"']
    if draw(st.booleans()):
        head.append(b'"$insert_id":"a1"')
    if draw(st.booleans()):  # a duplicated rule key, overridden by a valid value
        head.insert(0, b'"distinct_id":"x:y"')
    properties = b",".join(head)
    if extra != b"{}":
        properties += b"," + extra[1:-1]
    return b'{"event":"e","properties":{' + properties + b"}}"


@settings(max_examples=500, deadline=None)
@given(lines_with_duplicates(), st.sampled_from([CONFIG, CONFIG_MS]))
def test_duplicate_keys_flag_is_the_standard_parsers_truth(line: bytes, config: RuleConfig) -> None:
    fate = classify(line, config)
    if fate.kind == Kind.REJECT:
        assert fate.normalised == 0
        return
    assert bool(fate.normalised & DUPLICATE_KEYS) == has_duplicate_keys(line)
    # The last value won, as in the standard library's parser.
    written = orjson.loads(fate.line)
    expected = json.loads(line)
    if fate.kind == Kind.EVENT:
        for name in ("time", "$insert_id"):
            written["properties"].pop(name)
            expected["properties"].pop(name, None)
    assert written == expected


# ---------------------------------------------------------------- details never leak values

SECRET = "SECRETVALUE"


@pytest.mark.parametrize(
    "line",
    [
        event(name=SECRET * 30),
        event(name=SECRET, **{"foo": SECRET}),
        event(props(time=SECRET)),
        event(props(time="2024-02-30" + SECRET)),
        event(props(distinct_id=SECRET * 30)),
        event(props(distinct_id=[SECRET])),
        event(props(insert_id=SECRET + "_")),
        event(props(insert_id=SECRET * 5)),
        event(many(300, **props(p=SECRET))),
        event(props(deep=nest(5, SECRET))),
        event(props(deep=[SECRET] * 300)),
        event(padded(props(p=SECRET), 1_000_001)),
        dumps({"$distinct_id": SECRET * 30, "$set": {"a": 1}}),
        dumps({"$distinct_id": "u1", "$set": SECRET}),
        dumps({"$distinct_id": "u1", "$add": {"n": SECRET}}),
        dumps({"$group_key": "k", "$group_id": SECRET * 30, "$set": {"a": 1}}),
        dumps({"$group_key": "k", "$group_id": "g", "$add": {"n": 1}, "x": SECRET}),
        dumps([SECRET]),
        dumps({"a": SECRET}),
        b'{"event":"' + SECRET.encode() + b'\xff"}',
        b'{"event":"' + SECRET.encode() + b'",}',
        b'{"event":"' + SECRET.encode() + b'\\ud800"}',
    ],
)
def test_details_never_hold_values(line: bytes) -> None:
    fate = classify(line, CONFIG)
    assert fate.kind == Kind.REJECT
    assert fate.detail and SECRET not in fate.detail


@pytest.mark.parametrize(
    "line, words",
    [
        (event(name="x" * 312), "312 characters; the limit is 255"),
        (event(many(300)), "300 properties"),
        (event(many(254, time=T, distinct_id="u1")), "counting the generated $insert_id"),
        (event(props(a={"b": WIDE})), 'property "a" holds an object with 255 keys'),
        (event(props(a=[list(range(256))])), 'property "a" holds a list with 256 elements'),
        (event(props(a=nest(4))), 'property "a" holds an object nested more than 3 levels'),
        (event(props(distinct_id=None)), "properties.distinct_id is null"),
        (event(props(time=True)), "properties.time is a boolean"),
        (event(props(time="2024-02-30")), "not a valid calendar date"),
        (b"\xff", "byte 0"),
        (profile(**{"$set": {}, "$add": {}}), "2 operations ($set, $add)"),
        (group(**{"$add": {"n": 1}}), "$add is not supported on group profiles"),
    ],
)
def test_details_are_specific(line: bytes, words: str) -> None:
    assert words in classify(line, CONFIG).detail


# ---------------------------------------------------------------- totality


HOSTILE = [
    b"1" * 100_000,  # a huge integer literal
    b"-" + b"9" * 5000,
    b"0." + b"0" * 100_000 + b"1",
    b"1e" + b"9" * 100,
    b"[" * 1024 + b"]" * 1024,  # the deepest the parser reads
    b"{" * 5000,
    b"\x00" * 100,
    b'{"\x00":1}',
    b'{"event":"a\\u0000b","properties":{"time":1704067200,"distinct_id":"\\u0000"}}',
    b"\xef\xbb\xbf",
    b"\xed\xa0\x80" * 10,
    bytes(range(256)),
    event(props(time="9" * 100_000)),
    event(props(time="1704067200." + "9" * 100_000)),
    event(props(time="-1." + "0" * 100_000 + "1")),
    event(props(time=1.7976931348623157e308)),
    event(props(time=5e-324)),
    event(props(time=-(2**63))),
    event(props(time=2**64 - 1)),
    event(props(distinct_id=2**64 - 1)),
    event(props(deep=0)).replace(b'"deep":0', b'"deep":' + b'{"a":' * 1000 + b"1" + b"}" * 1000),
    event(props(deep=0)).replace(b'"deep":0', b'"deep":' + b"[" * 1000 + b"]" * 1000),
    profile(**{"$set": 0}).replace(b'"$set":0', b'"$set":' + b'{"a":' * 1020 + b"1" + b"}" * 1020),
]


@pytest.mark.parametrize("line", HOSTILE)
def test_hostile_lines_never_raise(line: bytes) -> None:
    fate = classify(line, CONFIG)
    assert isinstance(fate.kind, Kind)
    assert (fate.kind == Kind.REJECT) == (fate.reason is not None)


def deep_lists(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


def test_lists_too_deep_for_orjson_to_write_are_written_anyway() -> None:
    # orjson reads 1024 levels but writes 254; lists are not a nesting level.
    deep = deep_lists(600)
    line = b'{"event":"e","properties":{"time":1704067200,"distinct_id":"u1","l":' + deep + b"}}"
    fate = classify(line, CONFIG)
    assert fate.kind == Kind.EVENT
    insert_id = orjson.loads(fate.line)["properties"]["$insert_id"]
    assert HEX32.fullmatch(insert_id)
    assert fate.line == (
        b'{"event":"e","properties":{"time":1704067200,"distinct_id":"u1","l":'
        + deep
        + b',"$insert_id":"'
        + insert_id.encode()
        + b'"}}'
    )


def test_profiles_too_deep_for_orjson_to_write_are_written_anyway() -> None:
    deep = b'{"a":' * 1000 + b"[1, 2.50, null]" + b"}" * 1000
    line = b'{"$distinct_id": "u1", "$set": ' + deep + b"}"
    fate = classify(line, CONFIG)
    assert fate.kind == Kind.PROFILE
    assert (
        fate.line
        == b'{"$distinct_id":"u1","$set":'
        + deep.replace(b", ", b",").replace(b"2.50", b"2.5")
        + b"}"
    )


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=12,
)
KEYS = st.sampled_from(
    [
        "event",
        "properties",
        "time",
        "distinct_id",
        "$insert_id",
        "$device_id",
        "$distinct_id",
        "$group_key",
        "$group_id",
        "$set",
        "$add",
        "$union",
        "$unset",
        "$delete",
        "$token",
        "x",
    ]
)
TIMES = st.one_of(
    st.integers(min_value=31_536_000, max_value=REFERENCE + 3600),
    st.integers(min_value=0, max_value=2 * 10**12),
    st.floats(min_value=0, max_value=2e12),
    st.integers(min_value=0, max_value=2 * 10**12).map(str),
    st.datetimes().map(lambda d: d.isoformat()),
    JSON_VALUES,
)
ID_VALUES = st.one_of(
    st.text(max_size=5), st.integers(-(2**63), 2**64 - 1), st.sampled_from(["", "null", " 0 "])
)
EVENTS = st.fixed_dictionaries(
    {
        "event": st.one_of(st.sampled_from(["e", "Signed up", "", " "]), st.text(max_size=5)),
        "properties": st.fixed_dictionaries(
            {"time": TIMES},
            optional={
                "distinct_id": ID_VALUES,
                "$insert_id": st.one_of(st.text("ab-_", max_size=40), JSON_VALUES),
                "$device_id": JSON_VALUES,
                "x": JSON_VALUES,
                "y": JSON_VALUES,
            },
        ),
    },
    optional={"extra": JSON_VALUES},
)
GOOD_EVENTS = st.fixed_dictionaries(
    {
        "event": st.sampled_from(["e", "Signed up"]),
        "properties": st.fixed_dictionaries(
            {
                "time": st.one_of(
                    st.integers(31_536_000, REFERENCE + 3600),
                    st.floats(31_536_000, REFERENCE + 3600),
                    st.integers(31_536_000_000, REFERENCE * 1000).map(str),
                ),
                "distinct_id": st.one_of(st.text("uv0123", min_size=2), st.integers(1, 10**6)),
                "x": JSON_VALUES,
            },
            optional={"y": JSON_VALUES, "$insert_id": st.text("ab-", min_size=1, max_size=36)},
        ),
    }
)
RECORDS = st.one_of(
    JSON_VALUES,
    st.dictionaries(KEYS, JSON_VALUES, max_size=6),
    EVENTS,
    GOOD_EVENTS,
    st.fixed_dictionaries(
        {"$distinct_id": ID_VALUES, "$set": JSON_VALUES},
        optional={"$token": JSON_VALUES, "$unset": JSON_VALUES, "$add": JSON_VALUES},
    ),
)


def check_fate(line: bytes, fate: Fate, config: RuleConfig = CONFIG) -> None:
    assert isinstance(fate, Fate) and isinstance(fate.kind, Kind)
    if fate.kind == Kind.REJECT:
        assert isinstance(fate.reason, Reason) and fate.detail
        assert fate.line == b"" and fate.key == b""
        return
    assert fate.reason is None and fate.detail == ""
    if fate.kind == Kind.BLANK:
        assert not line.strip(b" \t\r")
        return
    line.decode("utf-8")  # only UTF-8 lines are accepted
    written = orjson.loads(fate.line)
    assert len(fate.line) < 1_000_000 and len(fate.key) == 16
    if fate.kind == Kind.EVENT:
        assert list(written) == ["event", "properties"]
        properties = written["properties"]
        assert type(properties["time"]) is int
        seconds = properties["time"] // (1000 if config.time_unit == "ms" else 1)
        assert 31_536_000 <= seconds <= REFERENCE + 3600
        assert rules.day_of(seconds) == fate.day
        assert type(properties["$insert_id"]) is str
        assert type(properties.get("distinct_id", "")) is str
        assert len(properties) < 255
        assert fate.name == written["event"]
    else:
        assert fate.name in written


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_classify_is_total_on_bytes(line: bytes) -> None:
    check_fate(line, classify(line, CONFIG))


@settings(max_examples=250, deadline=None)
@given(RECORDS)
def test_classify_is_total_on_json(record: object) -> None:
    line = orjson.dumps(record)
    check_fate(line, classify(line, CONFIG))
    check_fate(line, classify(line, CONFIG_MS), CONFIG_MS)


@settings(max_examples=100, deadline=None)
@given(JSON_VALUES)
def test_deep_writer_matches_orjson(value: object) -> None:
    assert rules._serialise_deep(value, False) == orjson.dumps(value)
    assert rules._serialise_deep(value, True) == orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def test_generated_insert_id_does_not_depend_on_the_written_time_unit():
    line = b'{"event": "Play", "properties": {"distinct_id": "u1", "time": 1704067200, "song": "a"}}'
    in_seconds = classify(line, RuleConfig(reference_time=1706745600, time_unit="s"))
    in_ms = classify(line, RuleConfig(reference_time=1706745600, time_unit="ms"))
    seconds_props = orjson.loads(in_seconds.line)["properties"]
    ms_props = orjson.loads(in_ms.line)["properties"]
    assert (seconds_props["time"], ms_props["time"]) == (1704067200, 1704067200000)
    assert seconds_props["$insert_id"] == ms_props["$insert_id"]
    assert in_seconds.key == in_ms.key
