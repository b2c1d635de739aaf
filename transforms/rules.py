"""The record rules: one input line becomes an event, a profile or group update, or a reject (pure; no Beam).

classify() parses a line and applies the rules of its record type: the events
table here, the profile and group updates of transforms/updates.py. Times are
read by transforms/times.py, and every reject's reason and detail come from
transforms/reasons.py.
"""

import dataclasses
from typing import Any

import orjson

from transforms.jsontext import KEY_HASH as _KEY_HASH
from transforms.jsontext import NOTHING as _NOTHING
from transforms.jsontext import SORT_KEYS, colons, serialise
from transforms.jsontext import dumps as _dumps
from transforms.jsontext import join_bytes as _join
from transforms.limits import (
    MAX_EVENT_NAME_CHARS,
    MAX_ID_CHARS,
    MAX_INSERT_ID_BYTES,
    MAX_LIST_ELEMENTS,
    MAX_NESTING,
    MAX_OBJECT_KEYS,
    MAX_PROPERTIES,
    MAX_RECORD_BYTES,
    PLACEHOLDERS,
    is_placeholder,
)
from transforms.reasons import (
    DUPLICATE_KEYS,
    INSERT_ID_GENERATED,
    NORMALISED_DISTINCT_ID,
    NORMALISED_TIME,
    Fate,
    Kind,
    Reason,
    field_name,
    reject,
    type_name,
)
from transforms.reasons import new_fate as _new_fate
from transforms.times import day_of, read_time
from transforms.updates import classify_update

MIN_TIME = 31_536_000  # 1971-01-01T00:00:00Z
FUTURE_SLACK_SECONDS = 3600
# The latest reference time whose future limit still has a four-digit year,
# so that every accepted time has a "YYYY-MM-DD" day.
MAX_REFERENCE_TIME = 253_402_300_799 - FUTURE_SLACK_SECONDS

_MISSING = object()

@dataclasses.dataclass(frozen=True)
class RuleConfig:
    """The per-run settings of the rules.

    Attributes:
      reference_time: UNIX seconds, fixed once per run; times more than an hour
        after it are out of range.
      time_unit: the unit of the written `time`: "s" (seconds) or "ms".
    """

    reference_time: int
    time_unit: str = "s"

    def __post_init__(self) -> None:
        if self.time_unit not in ("s", "ms"):
            raise ValueError(f"time_unit must be 's' or 'ms', got {self.time_unit!r}")
        # bool is an int subclass, and a float would make the range check inexact.
        if type(self.reference_time) is not int:
            raise ValueError(
                "reference_time must be an integer number of UNIX seconds, "
                f"got {self.reference_time!r}"
            )
        if self.reference_time > MAX_REFERENCE_TIME:
            raise ValueError(
                f"reference_time must be at most {MAX_REFERENCE_TIME} "
                f"(9999-12-31T22:59:59Z), got {self.reference_time}"
            )


# Module-level aliases: attribute lookups on enum classes cost on the hot path.
# Those shared with transforms/updates.py (_new_fate, _dumps, _join, _NOTHING,
# _KEY_HASH) are imported above, under the same names.
_EVENT = Kind.EVENT
_PROFILE = Kind.PROFILE
_GROUP = Kind.GROUP
_BLANK = Fate(Kind.BLANK)
_loads = orjson.loads


def classify(line: bytes, config: RuleConfig) -> Fate:
    """Classifies and normalises one input line, following DESIGN.md §2.

    Total: every byte string gives a Fate, none raises.

    Args:
      line: one line without its line ending (and without a file's BOM).
      config: the run's rule settings.

    Returns:
      A Fate of kind BLANK, EVENT, PROFILE, GROUP or REJECT.
    """
    try:
        record = _loads(line)
    except orjson.JSONDecodeError as error:
        # Blank lines and bad encodings are rare, so they are looked for only
        # once the parser has refused the line.
        if not line.strip(b" \t\r"):
            return _BLANK
        return _unparsable(line, error)
    if type(record) is not dict:
        return reject(Reason.NOT_AN_OBJECT, f"the line is {type_name(record)}, not a JSON object")
    # DESIGN.md's record-type order: event, group, profile, then a nameless event.
    if "event" in record:
        return _classify_event(line, record, config)
    if "$group_key" in record:
        return classify_update(line, record, _GROUP)
    if "$distinct_id" in record:
        return classify_update(line, record, _PROFILE)
    if "properties" in record:
        return _classify_event(line, record, config)
    return reject(
        Reason.UNKNOWN_RECORD_TYPE,
        "the object has none of the keys event, properties, $distinct_id and $group_key",
    )



def _unparsable(line: bytes, error: orjson.JSONDecodeError) -> Fate:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        return reject(
            Reason.INVALID_UTF8, f"the line is not valid UTF-8 (byte {bad.start} is invalid)"
        )
    if "depth" in error.msg or "recursion" in error.msg.lower():
        return reject(
            Reason.INVALID_JSON, "nesting exceeds the JSON parser's limit of 1024 levels"
        )
    # orjson's messages name the problem and position only, never the content.
    return reject(
        Reason.INVALID_JSON, f"the line is not valid JSON: {error.msg} at character {error.pos}"
    )


def _classify_event(line: bytes, record: dict[str, Any], config: RuleConfig) -> Fate:
    """The events table of DESIGN.md §2, row by row; the first broken row decides."""
    name = record.get("event")
    if name is None:
        return reject(
            Reason.MISSING_EVENT_NAME,
            "the event name is null" if "event" in record else "the record has no event name",
        )
    if type(name) is not str:
        return reject(
            Reason.INVALID_EVENT_NAME, f"the event name is {type_name(name)}, not a string"
        )
    # Blank outranks too long: the missing_event_name row comes first.
    if not name.strip():
        return reject(Reason.MISSING_EVENT_NAME, "the event name is blank")
    if len(name) > MAX_EVENT_NAME_CHARS:
        return reject(
            Reason.INVALID_EVENT_NAME,
            f"the event name is {len(name)} characters; the limit is {MAX_EVENT_NAME_CHARS}",
        )

    properties = record.get("properties", _MISSING)
    if type(properties) is not dict:
        if properties is _MISSING:
            return reject(Reason.INVALID_PROPERTIES, "the event has no properties")
        return reject(
            Reason.INVALID_PROPERTIES,
            f"properties is {type_name(properties)}, not an object",
        )

    raw_time = properties.get("time")
    if raw_time is None:
        return reject(
            Reason.MISSING_TIME,
            "properties.time is null" if "time" in properties else "properties.time is missing",
        )
    milliseconds = read_time(raw_time)
    if isinstance(milliseconds, str):
        return reject(Reason.INVALID_TIME, milliseconds)
    seconds = milliseconds // 1000
    if seconds < MIN_TIME:
        return reject(Reason.TIME_OUT_OF_RANGE, "properties.time is before 1971-01-01T00:00:00Z")
    if seconds > config.reference_time + FUTURE_SLACK_SECONDS:
        return reject(
            Reason.TIME_OUT_OF_RANGE,
            "properties.time is more than 1 hour after the reference time",
        )
    written_time = milliseconds if config.time_unit == "ms" else seconds
    flags = 0
    # A value written differently, in type or in number, is a normalisation
    # (so the float 1704067200.0 counts, the integer 1704067200 does not).
    if type(raw_time) is not int or raw_time != written_time:
        properties["time"] = written_time
        flags = NORMALISED_TIME

    distinct_id = properties.get("distinct_id", _MISSING)
    if distinct_id is _MISSING:
        if "$device_id" not in properties and "$user_id" not in properties:
            return reject(
                Reason.MISSING_DISTINCT_ID,
                "properties has no distinct_id, $device_id or $user_id",
            )
        distinct_id = ""  # the overwrite key's "distinct_id or empty"
    elif type(distinct_id) is str:
        if len(distinct_id) > MAX_ID_CHARS:
            return reject(
                Reason.INVALID_DISTINCT_ID,
                f"properties.distinct_id is {len(distinct_id)} characters; "
                f"the limit is {MAX_ID_CHARS}",
            )
        if is_placeholder(distinct_id):
            return reject(
                Reason.INVALID_DISTINCT_ID, "properties.distinct_id is a placeholder value"
            )
    elif type(distinct_id) is int:
        distinct_id = str(distinct_id)
        if is_placeholder(distinct_id):
            return reject(
                Reason.INVALID_DISTINCT_ID, "properties.distinct_id is a placeholder value"
            )
        properties["distinct_id"] = distinct_id
        flags |= NORMALISED_DISTINCT_ID
    else:
        return reject(
            Reason.INVALID_DISTINCT_ID,
            f"properties.distinct_id is {type_name(distinct_id)}; "
            "it must be a string or an integer",
        )

    insert_id = properties.get("$insert_id", _MISSING)
    if insert_id is not _MISSING:
        problem = _insert_id_problem(insert_id)
        if problem:
            return reject(Reason.INVALID_INSERT_ID, problem)

    count = len(properties) + (insert_id is _MISSING)
    if count > MAX_PROPERTIES:
        return reject(
            Reason.TOO_MANY_PROPERTIES,
            f"the event has {count} properties"
            + (" (counting the generated $insert_id)" if insert_id is _MISSING else "")
            + f"; at most {MAX_PROPERTIES} are allowed",
        )
    if not _is_flat(line):
        problem_fate = _shape_problem(properties)
        if problem_fate is not None:
            return problem_fate

    if insert_id is _MISSING:
        insert_id = generated_insert_id(name, distinct_id, seconds, properties, config.time_unit)
        properties["$insert_id"] = insert_id
        flags |= INSERT_ID_GENERATED

    out = serialise({"event": name, "properties": properties})
    size = len(out)
    if size <= MAX_RECORD_BYTES and len(record) > 2:
        # A record with extra keys is measured whole: the size row comes before
        # the unexpected-field row, so the extra keys are still part of it.
        size = len(serialise(record))
    if size > MAX_RECORD_BYTES:
        return reject(
            Reason.RECORD_TOO_LARGE,
            f"the normalised record is {size} bytes; it must be under {MAX_RECORD_BYTES + 1}",
        )
    if len(record) > 2:
        extra = next(k for k in record if k not in ("event", "properties"))
        return reject(
            Reason.UNEXPECTED_FIELD,
            f"unexpected top-level key {field_name(extra)}; an event has only event and properties",
        )

    # Duplicate keys (see jsontext.colons). A line written back byte for byte, or
    # with only a generated $insert_id added before its last two bytes ("}}"),
    # gave no key twice: its keys are all keys of the written line, in the
    # same objects, where each key is given once (two bytes can hold no key).
    # Any other event has the raw line's colons, plus the generated
    # $insert_id's, less those of a time string made a number.
    if out != line and not (flags & INSERT_ID_GENERATED and out.startswith(line[:-2])):
        expected = colons(line)
        if type(raw_time) is str:
            expected -= raw_time.count(":")
        if flags & INSERT_ID_GENERATED:
            expected += 1
        if out.count(b":") != expected:
            flags |= DUPLICATE_KEYS

    day = day_of(seconds)
    key = event_key(name, distinct_id, insert_id, day)
    return _new_fate(Fate, (_EVENT, _join((out, _NOTHING)), day, key, name, flags, None, "", properties))


def generated_insert_id(
    name: str, distinct_id: str, seconds: int, properties: dict[str, Any], time_unit: str
) -> str:
    """The $insert_id generated for an event given without one (32 lowercase hex).

    The canonical form: name, distinct_id ("" when absent), floored seconds
    and the normalised properties (without $insert_id) with sorted keys, so
    that the same event gets the same id on every run and every runner. The
    time inside is in seconds whatever --time-unit writes: data prepared
    once with "s" and once with "ms" must not become two events in Mixpanel.
    """
    hashed = properties if time_unit == "s" else {**properties, "time": seconds}
    canonical = serialise([name, distinct_id, seconds, hashed], SORT_KEYS)
    digest = _KEY_HASH.copy()
    digest.update(canonical)
    return digest.hexdigest()


def event_key(name: str, distinct_id: str, insert_id: str, day: str) -> bytes:
    """An event's overwrite key (DESIGN.md §3) as a 16-byte digest."""
    digest = _KEY_HASH.copy()
    digest.update(_dumps([name, distinct_id, insert_id, day]))
    return digest.digest()



def _insert_id_problem(insert_id: object) -> str:
    """Why an $insert_id given in the input is invalid, or "" when it is valid."""
    if type(insert_id) is not str:
        return f"properties.$insert_id is {type_name(insert_id)}, not a string"
    if not insert_id:
        return "properties.$insert_id is an empty string"
    # Characters never outnumber UTF-8 bytes, so this catches long ids before
    # the pattern scans them; a short non-ASCII id fails the pattern instead.
    if len(insert_id) > MAX_INSERT_ID_BYTES:
        return f"properties.$insert_id is longer than {MAX_INSERT_ID_BYTES} bytes"
    # [A-Za-z0-9-]+ without a regex: an ASCII string is alphanumeric exactly
    # when it is made of A-Z, a-z and 0-9.
    if not (insert_id.isascii() and insert_id.replace("-", "0").isalnum()):
        return "properties.$insert_id has characters other than A-Z, a-z, 0-9 and -"
    if insert_id.lower() in PLACEHOLDERS:  # only [A-Za-z0-9-]: nothing to trim
        return "properties.$insert_id is a placeholder value"
    return ""



def _is_flat(line: bytes) -> bool:
    """Whether the raw line holds no objects but the record and its properties, and no lists.

    A cheap byte scan (memchr) that spares most events the tree walk: a "{" or
    "[" inside a string only sends a line through the walk needlessly.
    """
    # find() rather than `in`: bytes.__contains__ first tries the needle as an int.
    first = line.find(b"{")
    second = line.find(b"{", first + 1)
    return second > 0 and line.find(b"{", second + 1) < 0 and line.find(b"[") < 0


def _shape_problem(properties: dict[str, Any]) -> Fate | None:
    """The first of nesting_too_deep, too_many_keys and list_too_long the properties break.

    The whole tree is walked (without recursion: lists may nest up to the
    parser's 1024 levels), since a deep object anywhere outranks a long list
    or a wide object seen earlier.
    """
    wide_object: tuple[str, int] | None = None
    long_list: tuple[str, int] | None = None
    for property_name, value in properties.items():
        kind = type(value)
        if kind is not dict and kind is not list:
            continue
        # Depth counts objects only: a property's object is level 1.
        stack = [(value, 0)]
        while stack:
            node, depth = stack.pop()
            if type(node) is dict:
                depth += 1
                if depth > MAX_NESTING:
                    return reject(
                        Reason.NESTING_TOO_DEEP,
                        f"property {field_name(property_name)} holds an object nested more "
                        f"than {MAX_NESTING} levels deep",
                    )
                if len(node) > MAX_OBJECT_KEYS and wide_object is None:
                    wide_object = (property_name, len(node))
                children = node.values()
            else:
                if len(node) > MAX_LIST_ELEMENTS and long_list is None:
                    long_list = (property_name, len(node))
                children = node
            for child in children:
                kind = type(child)
                if kind is dict or kind is list:
                    stack.append((child, depth))
    if wide_object is not None:
        return reject(
            Reason.TOO_MANY_KEYS,
            f"property {field_name(wide_object[0])} holds an object with {wide_object[1]} keys; "
            f"at most {MAX_OBJECT_KEYS} are allowed",
        )
    if long_list is not None:
        return reject(
            Reason.LIST_TOO_LONG,
            f"property {field_name(long_list[0])} holds a list with {long_list[1]} elements; "
            f"at most {MAX_LIST_ELEMENTS} are allowed",
        )
    return None

