"""What one input line became, and why a reject was refused: Kind, Fate and the closed set of Reasons (pure; no Beam).

The rules (transforms/rules.py for events, transforms/updates.py for profile
and group updates) return a Fate for every line; a reject's Fate carries one
Reason and a detail sentence built with the helpers here.
"""

import enum
from typing import Any, NamedTuple

import orjson


class Kind(enum.IntEnum):
    """What one input line became."""

    BLANK = 0
    EVENT = 1
    PROFILE = 2
    GROUP = 3
    REJECT = 4


class Reason(str, enum.Enum):
    """The closed set of reject reasons; each value is the code written to the rejects."""

    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_RECORD_TYPE = "unknown_record_type"
    MISSING_EVENT_NAME = "missing_event_name"
    INVALID_EVENT_NAME = "invalid_event_name"
    INVALID_PROPERTIES = "invalid_properties"
    MISSING_TIME = "missing_time"
    INVALID_TIME = "invalid_time"
    TIME_OUT_OF_RANGE = "time_out_of_range"
    INVALID_DISTINCT_ID = "invalid_distinct_id"
    MISSING_DISTINCT_ID = "missing_distinct_id"
    INVALID_INSERT_ID = "invalid_insert_id"
    TOO_MANY_PROPERTIES = "too_many_properties"
    NESTING_TOO_DEEP = "nesting_too_deep"
    TOO_MANY_KEYS = "too_many_keys"
    LIST_TOO_LONG = "list_too_long"
    RECORD_TOO_LARGE = "record_too_large"
    UNEXPECTED_FIELD = "unexpected_field"
    INVALID_GROUP = "invalid_group"
    MISSING_OPERATION = "missing_operation"
    MULTIPLE_OPERATIONS = "multiple_operations"
    INVALID_OPERATION = "invalid_operation"
    UNSUPPORTED_OPERATION = "unsupported_operation"

    @property
    def meaning(self) -> str:
        """One human sentence saying what the reason means (for docs and reports)."""
        return REASON_MEANINGS[self]


REASON_MEANINGS: dict[Reason, str] = {
    Reason.INVALID_UTF8: "The line is not valid UTF-8.",
    Reason.INVALID_JSON: "The line is not valid JSON (NaN, Infinity, trailing junk, lone "
    "surrogates and numbers too large for a double included).",
    Reason.NOT_AN_OBJECT: "The line is JSON but not an object.",
    Reason.UNKNOWN_RECORD_TYPE: "The object has none of event, properties, $distinct_id "
    "and $group_key, so it is neither an event nor a profile or group update.",
    Reason.MISSING_EVENT_NAME: "The event name is missing, null or blank.",
    Reason.INVALID_EVENT_NAME: "The event name is not a string, or is over 255 characters.",
    Reason.INVALID_PROPERTIES: "The event's properties are missing or not an object.",
    Reason.MISSING_TIME: "The event has no time, or a null one.",
    Reason.INVALID_TIME: "The event time is not a number, a numeric string or an "
    "ISO-8601 date-time.",
    Reason.TIME_OUT_OF_RANGE: "The event time is before 1971-01-01T00:00:00Z or more than "
    "one hour after the run's reference time.",
    Reason.INVALID_DISTINCT_ID: "The distinct_id is not a string or integer, is too long, "
    "is empty on a profile, or is a placeholder value.",
    Reason.MISSING_DISTINCT_ID: "The event has no distinct_id and neither $device_id nor $user_id.",
    Reason.INVALID_INSERT_ID: "The $insert_id is not a non-empty string of at most 36 "
    "letters, digits and dashes, or is a placeholder value.",
    Reason.TOO_MANY_PROPERTIES: "The event has 255 or more properties, or a profile or "
    "group operation has 2,000 or more entries.",
    Reason.NESTING_TOO_DEEP: "An event property holds an object nested more than 3 levels deep.",
    Reason.TOO_MANY_KEYS: "An event property holds an object with 255 or more keys.",
    Reason.LIST_TOO_LONG: "An event property holds a list with 255 or more elements.",
    Reason.RECORD_TOO_LARGE: "The normalised record is 1,000,000 bytes or more.",
    Reason.UNEXPECTED_FIELD: "The record has a top-level key its type does not allow.",
    Reason.INVALID_GROUP: "The group update's $group_key or $group_id is missing, of the "
    "wrong type, empty, too long or a placeholder value.",
    Reason.MISSING_OPERATION: "The profile or group update has no operation.",
    Reason.MULTIPLE_OPERATIONS: "The profile or group update has more than one operation.",
    Reason.INVALID_OPERATION: "The operation's value does not have the shape the operation "
    "requires.",
    Reason.UNSUPPORTED_OPERATION: "The operation ($add or $append) is not allowed on group "
    "profiles.",
}

# Bit flags of Fate.normalised.
NORMALISED_TIME = 1
NORMALISED_DISTINCT_ID = 2
INSERT_ID_GENERATED = 4
DUPLICATE_KEYS = 8  # a key was given twice in one object, at any depth; the last one won


class Fate(NamedTuple):
    """What rules.classify() made of one line.

    Attributes:
      kind: blank, event, profile update, group update or reject.
      line: the compact UTF-8 JSON of the normalised record (not for blanks and
        rejects), without a newline.
      day: an event's UTC day, "YYYY-MM-DD".
      key: a 16-byte digest: an event's overwrite key (event, distinct_id or "",
        $insert_id, day); a profile's $distinct_id; a group's ($group_key,
        $group_id). Stable across processes and runs.
      name: an event's name; the operation of a profile or group update.
      normalised: a bitmask of NORMALISED_TIME, NORMALISED_DISTINCT_ID,
        INSERT_ID_GENERATED and DUPLICATE_KEYS.
      reason: a reject's reason.
      detail: a reject's human sentence; it names fields, never their values.
      values: what `line` holds, parsed: an event's properties, an update's
        operation value (for the schema report; never to be changed).
    """

    kind: Kind
    line: bytes = b""
    day: str = ""
    key: bytes = b""
    name: str = ""
    normalised: int = 0
    reason: Reason | None = None
    detail: str = ""
    values: Any = None


# How the rules build an accepted record's Fate (all nine fields given): NamedTuple's
# generated __new__ is a Python-level call, tuple.__new__ is not.
new_fate = tuple.__new__

_REJECT = Kind.REJECT

_JSON_TYPE_NAMES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def reject(reason: Reason, detail: str) -> Fate:
    """The Fate of a refused line: `reason`, and `detail`, a sentence that names no value."""
    return Fate(_REJECT, reason=reason, detail=detail)


def type_name(value: object) -> str:
    """What a parsed JSON value is, for a detail: "an object", "a string", "null", ..."""
    return _JSON_TYPE_NAMES.get(type(value), "an unknown value")


def field_name(name: str) -> str:
    """A field name fit for a detail: quoted and cut to 40 characters."""
    return orjson.dumps(name[:40]).decode()
