"""Tables for the record rules (transforms/rules.py) against DESIGN.md §2 and §3: classify() and the events table."""

import json
import os
import subprocess
import sys
import tracemalloc

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rule_lines import (
    CONFIG,
    CONFIG_MS,
    HEX32,
    RECORDS,
    REFERENCE,
    WIDE,
    WIDE_OK,
    P,
    T,
    check_fate,
    dumps,
    dup_event,
    event,
    generated_id,
    group,
    has_duplicate_keys,
    key_of,
    nest,
    profile,
    props,
    reason_of,
    without,
)
from transforms.reasons import (
    DUPLICATE_KEYS,
    INSERT_ID_GENERATED,
    NORMALISED_DISTINCT_ID,
    NORMALISED_TIME,
    Fate,
    Kind,
    Reason,
)
from transforms.rules import RuleConfig, classify

# ---------------------------------------------------------------- interface


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


# ---------------------------------------------------------------- record types and written lines


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


def test_duplicate_keys_deep_in_lists_written_by_the_deep_writer() -> None:
    # Lists deeper than orjson writes go through jsontext._serialise_deep; the count holds there too.
    inner = b'{"a:":1,"a:":{"b":"c:d"}}'
    deep = b"[" * 600 + inner + b"]" * 600
    line = dup_event(P + b',"l":' + deep)
    fate = classify(line, CONFIG)
    assert (fate.kind, fate.normalised) == (Kind.EVENT, DUPLICATE_KEYS)
    assert fate.line == dup_event(P + b',"l":' + b"[" * 600 + b'{"a:":{"b":"c:d"}}' + b"]" * 600)
    clean = classify(dup_event(P + b',"l":' + b"[" * 600 + b'{"a:":{"b":"c:d"}}' + b"]" * 600), CONFIG)
    assert (clean.kind, clean.normalised) == (Kind.EVENT, 0)


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


def test_generated_insert_id_does_not_depend_on_the_written_time_unit():
    line = b'{"event": "Play", "properties": {"distinct_id": "u1", "time": 1704067200, "song": "a"}}'
    in_seconds = classify(line, RuleConfig(reference_time=1706745600, time_unit="s"))
    in_ms = classify(line, RuleConfig(reference_time=1706745600, time_unit="ms"))
    seconds_props = orjson.loads(in_seconds.line)["properties"]
    ms_props = orjson.loads(in_ms.line)["properties"]
    assert (seconds_props["time"], ms_props["time"]) == (1704067200, 1704067200000)
    assert seconds_props["$insert_id"] == ms_props["$insert_id"]
    assert in_seconds.key == in_ms.key
