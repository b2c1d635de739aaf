"""The record rules: one input line becomes an event, a profile or group update, or a reject."""

import dataclasses
import datetime
import enum
import hashlib
import re
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

# Mixpanel's limits, as DESIGN.md §2 states them.
MAX_EVENT_NAME_CHARS = 255
MAX_ID_CHARS = 255
MAX_INSERT_ID_BYTES = 36
MAX_PROPERTIES = 254  # "255 or more properties" is refused
MAX_NESTING = 3
MAX_OBJECT_KEYS = 254
MAX_LIST_ELEMENTS = 254
MAX_RECORD_BYTES = 999_999  # "1,000,000 bytes or more" is refused
MAX_OPERATION_ENTRIES = 1999  # "2,000+ in one op" is refused
MIN_TIME = 31_536_000  # 1971-01-01T00:00:00Z
FUTURE_SLACK_SECONDS = 3600
# The latest reference time whose future limit still has a four-digit year,
# so that every accepted time has a "YYYY-MM-DD" day.
MAX_REFERENCE_TIME = 253_402_300_799 - FUTURE_SLACK_SECONDS

PLACEHOLDERS = frozenset(
    (
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
    )
)
_LONGEST_PLACEHOLDER = max(len(p) for p in PLACEHOLDERS)

OPERATIONS = ("$set", "$set_once", "$add", "$union", "$append", "$remove", "$unset", "$delete")
MODIFIERS = ("$token", "$ip", "$ignore_time", "$ignore_alias", "$time")
_OPERATIONS = frozenset(OPERATIONS)
_PROFILE_FIELDS = frozenset(("$distinct_id",) + MODIFIERS)
_GROUP_FIELDS = frozenset(("$group_key", "$group_id") + MODIFIERS)
_GROUP_UNSUPPORTED = frozenset(("$add", "$append"))

# Numbers at or above this magnitude are milliseconds (1e11 s is the year 5138).
_MS_THRESHOLD = 100_000_000_000
# A numeric string with more integer digits than this is far out of range; capping
# keeps int() away from its 4300-digit limit and from needless big-number work.
_MAX_TIME_DIGITS = 20
_FAR_AWAY_MS: int = 10**_MAX_TIME_DIGITS * 1000

# DESIGN.md's exact grammars. fullmatch() is used: `$` would accept a trailing "\n".
_NUMERIC_TIME = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")
_ISO_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]+))?)?)?"
    r"(?:(Z)|([+-])([0-9]{2})(?::([0-9]{2}))?)?"
)

# An escape sequence of a JSON string; group 1 is set when it is an escaped
# colon. Every backslash of valid JSON starts an escape (inside a string), so
# matching from the left stays in step with the parser.
_ESCAPE = re.compile(rb"\\(?:(u003[aA])|.)", re.DOTALL)
_ESCAPED_COLON_PREFIX = b"\\u003"

_UNIX_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
_DAY_CACHE: dict[int, str] = {}
_DAY_CACHE_LIMIT = 100_000  # about 270 years of distinct days

_JSON_TYPE_NAMES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}

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


class Fate(NamedTuple):
    """What classify() made of one line.

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


# Module-level aliases: attribute lookups on enum classes cost on the hot path.
_EVENT = Kind.EVENT
_PROFILE = Kind.PROFILE
_GROUP = Kind.GROUP
_REJECT = Kind.REJECT
_BLANK = Fate(Kind.BLANK)
# NamedTuple's generated __new__ is a Python-level call; accepted records are
# built with tuple.__new__ directly (all nine fields given).
_new_fate = tuple.__new__
_loads = orjson.loads
_dumps = orjson.dumps
# orjson returns bytes over-allocated to 4 KiB or more and never shrunk, and a
# written line is held by its batch: joining it with b"" makes an exact-size copy.
_join = b"".join
_NOTHING = b""
_blake2b = hashlib.blake2b
_SORT_KEYS = orjson.OPT_SORT_KEYS


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
        return _reject(Reason.NOT_AN_OBJECT, f"the line is {_type_name(record)}, not a JSON object")
    # DESIGN.md's record-type order: event, group, profile, then a nameless event.
    if "event" in record:
        return _classify_event(line, record, config)
    if "$group_key" in record:
        return _classify_update(line, record, _GROUP)
    if "$distinct_id" in record:
        return _classify_update(line, record, _PROFILE)
    if "properties" in record:
        return _classify_event(line, record, config)
    return _reject(
        Reason.UNKNOWN_RECORD_TYPE,
        "the object has none of the keys event, properties, $distinct_id and $group_key",
    )


def day_of(seconds: int) -> str:
    """The UTC day "YYYY-MM-DD" of a UNIX time in seconds (years 1 to 9999)."""
    days = seconds // 86400
    day = _DAY_CACHE.get(days)
    if day is None:
        if len(_DAY_CACHE) >= _DAY_CACHE_LIMIT:
            _DAY_CACHE.clear()
        day = datetime.date.fromordinal(days + _UNIX_EPOCH_ORDINAL).isoformat()
        _DAY_CACHE[days] = day
    return day


def is_placeholder(value: str) -> bool:
    """Whether a string is one of DESIGN.md's placeholder values (trimmed, any case)."""
    trimmed = value.strip()
    return len(trimmed) <= _LONGEST_PLACEHOLDER and trimmed.lower() in PLACEHOLDERS


def _reject(reason: Reason, detail: str) -> Fate:
    return Fate(_REJECT, reason=reason, detail=detail)


def _type_name(value: object) -> str:
    return _JSON_TYPE_NAMES.get(type(value), "an unknown value")


def _field(name: str) -> str:
    """A field name fit for a detail: quoted and cut to 40 characters."""
    return orjson.dumps(name[:40]).decode()


def _unparsable(line: bytes, error: orjson.JSONDecodeError) -> Fate:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        return _reject(
            Reason.INVALID_UTF8, f"the line is not valid UTF-8 (byte {bad.start} is invalid)"
        )
    if "depth" in error.msg or "recursion" in error.msg.lower():
        return _reject(
            Reason.INVALID_JSON, "nesting exceeds the JSON parser's limit of 1024 levels"
        )
    # orjson's messages name the problem and position only, never the content.
    return _reject(
        Reason.INVALID_JSON, f"the line is not valid JSON: {error.msg} at character {error.pos}"
    )


def _serialise(value: object, option: int = 0) -> bytes:
    """orjson.dumps, but also for values nested deeper than orjson writes (254 levels).

    orjson reads up to 1024 levels, so a record it parsed (a profile update,
    or an event's lists of lists) can be too deep for it to write back.
    """
    try:
        return _dumps(value, option=option)
    except orjson.JSONEncodeError:
        return _serialise_deep(value, option & _SORT_KEYS != 0)


def _serialise_deep(value: object, sort_keys: bool) -> bytes:
    """Writes JSON without recursion, byte for byte as orjson.dumps would."""
    parts: list[bytes] = []
    # Each frame: [iterator over the container's items, closing bracket, is_object, first].
    stack: list[list[Any]] = []

    def open_value(item: object) -> None:
        if type(item) is dict:
            parts.append(b"{")
            items = sorted(item.items()) if sort_keys else item.items()  # keys are unique str
            stack.append([iter(items), b"}", True, True])
        elif type(item) is list:
            parts.append(b"[")
            stack.append([iter(item), b"]", False, True])
        else:
            parts.append(_dumps(item))

    open_value(value)
    while stack:
        frame = stack[-1]
        item: Any = next(frame[0], _MISSING)
        if item is _MISSING:
            parts.append(frame[1])
            stack.pop()
            continue
        if frame[3]:
            frame[3] = False
        else:
            parts.append(b",")
        if frame[2]:
            parts.append(_dumps(item[0]))
            parts.append(b":")
            item = item[1]
        open_value(item)
    return b"".join(parts)


def _read_time(value: object) -> int | str:
    """An event time as exact, floored UNIX milliseconds, or why it is invalid.

    Floors are taken on the exact decimal value (integer arithmetic, never
    float division), so "1704067200.999" is 1704067200999 ms and floors to
    second 1704067200. Magnitudes of 1e11 and more are milliseconds.
    """
    if type(value) is int:
        if -_MS_THRESHOLD < value < _MS_THRESHOLD:
            return value * 1000
        return value
    if type(value) is float:
        return _float_milliseconds(value)
    if type(value) is str:
        return _read_time_string(value)
    if type(value) is bool:
        return "properties.time is a boolean"
    return f"properties.time is {_type_name(value)}, not a number or a string"


def _float_milliseconds(value: float) -> int:
    """Floored milliseconds of a float time, read as the decimal it was written as.

    The float's shortest repr is the JSON number as written (up to 17
    significant digits), so 1704067200.999 gives 1704067200999 ms, where the
    binary value (1704067200.99899...) would give ...998. Integer arithmetic
    on that decimal keeps the floor exact at any magnitude.
    """
    mantissa, _, exponent = repr(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    scale = int(exponent or 0) - len(fraction)
    if abs(value) < _MS_THRESHOLD:
        scale += 3  # seconds to milliseconds
    digits = int(whole + fraction)  # the sign rides on `whole`
    factor: int = 10 ** abs(scale)
    return digits * factor if scale >= 0 else digits // factor


def _read_time_string(text: str) -> int | str:
    if not text:
        return "properties.time is an empty string"
    # An ISO date has "-" at index 4; a numeric string can only have it at 0.
    if len(text) >= 10 and text[4] == "-":
        return _read_iso_time(text)
    match = _NUMERIC_TIME.fullmatch(text)
    if match is None:
        return "properties.time is a string that is neither a number nor an ISO-8601 date-time"
    negative: bool = match[1] == "-"
    whole: str = match[2].lstrip("0")
    fraction: str = match[3] or ""
    if len(whole) > _MAX_TIME_DIGITS:
        return -_FAR_AWAY_MS if negative else _FAR_AWAY_MS
    magnitude = int(whole or "0")
    if magnitude >= _MS_THRESHOLD:
        milliseconds, rest = magnitude, fraction
    else:
        milliseconds = magnitude * 1000 + int((fraction[:3] + "00")[:3])
        rest = fraction[3:]
    if negative:
        # floor(-x) is -x, less one when x has a fractional part left.
        return -milliseconds - (1 if rest.strip("0") else 0)
    return milliseconds


def _read_iso_time(text: str) -> int | str:
    match = _ISO_TIME.fullmatch(text)
    if match is None:
        return "properties.time is a string that is neither a number nor an ISO-8601 date-time"
    year, month, day, hour, minute, second, fraction, _, sign, off_hour, off_minute = match.groups()
    try:
        ordinal = datetime.date(int(year), int(month), int(day)).toordinal()
    except ValueError:
        return "properties.time is not a valid calendar date"
    hour_i = int(hour or 0)
    minute_i = int(minute or 0)
    second_i = int(second or 0)
    if hour_i > 23 or minute_i > 59 or second_i > 59:
        return "properties.time is not a valid time of day"
    seconds = (ordinal - _UNIX_EPOCH_ORDINAL) * 86400 + hour_i * 3600 + minute_i * 60 + second_i
    if sign:
        off_hour_i = int(off_hour)
        off_minute_i = int(off_minute or 0)
        if off_hour_i > 23 or off_minute_i > 59:
            return "properties.time has an invalid UTC offset"
        offset = off_hour_i * 3600 + off_minute_i * 60
        # Local time = UTC + offset, so UTC = local - offset.
        seconds += -offset if sign == "+" else offset
    milliseconds = seconds * 1000
    if fraction:
        milliseconds += int((fraction[:3] + "00")[:3])
    return milliseconds


def _classify_event(line: bytes, record: dict[str, Any], config: RuleConfig) -> Fate:
    """The events table of DESIGN.md §2, row by row; the first broken row decides."""
    name = record.get("event")
    if name is None:
        return _reject(
            Reason.MISSING_EVENT_NAME,
            "the event name is null" if "event" in record else "the record has no event name",
        )
    if type(name) is not str:
        return _reject(
            Reason.INVALID_EVENT_NAME, f"the event name is {_type_name(name)}, not a string"
        )
    # Blank outranks too long: the missing_event_name row comes first.
    if not name.strip():
        return _reject(Reason.MISSING_EVENT_NAME, "the event name is blank")
    if len(name) > MAX_EVENT_NAME_CHARS:
        return _reject(
            Reason.INVALID_EVENT_NAME,
            f"the event name is {len(name)} characters; the limit is {MAX_EVENT_NAME_CHARS}",
        )

    properties = record.get("properties", _MISSING)
    if type(properties) is not dict:
        if properties is _MISSING:
            return _reject(Reason.INVALID_PROPERTIES, "the event has no properties")
        return _reject(
            Reason.INVALID_PROPERTIES,
            f"properties is {_type_name(properties)}, not an object",
        )

    raw_time = properties.get("time")
    if raw_time is None:
        return _reject(
            Reason.MISSING_TIME,
            "properties.time is null" if "time" in properties else "properties.time is missing",
        )
    milliseconds = _read_time(raw_time)
    if isinstance(milliseconds, str):
        return _reject(Reason.INVALID_TIME, milliseconds)
    seconds = milliseconds // 1000
    if seconds < MIN_TIME:
        return _reject(Reason.TIME_OUT_OF_RANGE, "properties.time is before 1971-01-01T00:00:00Z")
    if seconds > config.reference_time + FUTURE_SLACK_SECONDS:
        return _reject(
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
            return _reject(
                Reason.MISSING_DISTINCT_ID,
                "properties has no distinct_id, $device_id or $user_id",
            )
        distinct_id = ""  # the overwrite key's "distinct_id or empty"
    elif type(distinct_id) is str:
        if len(distinct_id) > MAX_ID_CHARS:
            return _reject(
                Reason.INVALID_DISTINCT_ID,
                f"properties.distinct_id is {len(distinct_id)} characters; "
                f"the limit is {MAX_ID_CHARS}",
            )
        if is_placeholder(distinct_id):
            return _reject(
                Reason.INVALID_DISTINCT_ID, "properties.distinct_id is a placeholder value"
            )
    elif type(distinct_id) is int:
        distinct_id = str(distinct_id)
        if is_placeholder(distinct_id):
            return _reject(
                Reason.INVALID_DISTINCT_ID, "properties.distinct_id is a placeholder value"
            )
        properties["distinct_id"] = distinct_id
        flags |= NORMALISED_DISTINCT_ID
    else:
        return _reject(
            Reason.INVALID_DISTINCT_ID,
            f"properties.distinct_id is {_type_name(distinct_id)}; "
            "it must be a string or an integer",
        )

    insert_id = properties.get("$insert_id", _MISSING)
    if insert_id is not _MISSING:
        problem = _insert_id_problem(insert_id)
        if problem:
            return _reject(Reason.INVALID_INSERT_ID, problem)

    count = len(properties) + (insert_id is _MISSING)
    if count > MAX_PROPERTIES:
        return _reject(
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

    out = _serialise({"event": name, "properties": properties})
    size = len(out)
    if size <= MAX_RECORD_BYTES and len(record) > 2:
        # A record with extra keys is measured whole: the size row comes before
        # the unexpected-field row, so the extra keys are still part of it.
        size = len(_serialise(record))
    if size > MAX_RECORD_BYTES:
        return _reject(
            Reason.RECORD_TOO_LARGE,
            f"the normalised record is {size} bytes; it must be under {MAX_RECORD_BYTES + 1}",
        )
    if len(record) > 2:
        extra = next(k for k in record if k != "event" and k != "properties")
        return _reject(
            Reason.UNEXPECTED_FIELD,
            f"unexpected top-level key {_field(extra)}; an event has only event and properties",
        )

    # Duplicate keys (see _colons). A line written back byte for byte, or
    # with only a generated $insert_id added before its last two bytes ("}}"),
    # gave no key twice: its keys are all keys of the written line, in the
    # same objects, where each key is given once (two bytes can hold no key).
    # Any other event has the raw line's colons, plus the generated
    # $insert_id's, less those of a time string made a number.
    if out != line and not (flags & INSERT_ID_GENERATED and out.startswith(line[:-2])):
        colons = _colons(line)
        if type(raw_time) is str:
            colons -= raw_time.count(":")
        if flags & INSERT_ID_GENERATED:
            colons += 1
        if out.count(b":") != colons:
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
    canonical = _serialise([name, distinct_id, seconds, hashed], _SORT_KEYS)
    return _blake2b(canonical, digest_size=16).hexdigest()


def event_key(name: str, distinct_id: str, insert_id: str, day: str) -> bytes:
    """An event's overwrite key (DESIGN.md §3) as a 16-byte digest."""
    return _blake2b(_dumps([name, distinct_id, insert_id, day]), digest_size=16).digest()


def identity_key(parts: list[str]) -> bytes:
    """A profile's ([$distinct_id]) or group's ([$group_key, $group_id]) identity as a 16-byte digest."""
    return _blake2b(_dumps(parts), digest_size=16).digest()


def _insert_id_problem(insert_id: object) -> str:
    """Why an $insert_id given in the input is invalid, or "" when it is valid."""
    if type(insert_id) is not str:
        return f"properties.$insert_id is {_type_name(insert_id)}, not a string"
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


def _colons(line: bytes) -> int:
    """The colons of a parsed JSON text: one per key (the separator) and those inside strings.

    How duplicate keys are found without walking the record: in JSON, a ":"
    is either a key's separator or a character of a string (byte 0x3A is
    never part of a multi-byte UTF-8 character), and orjson writes ":" as
    is, never escaped. So a record written back has exactly the colons of
    the text it was parsed from, unless the parser dropped something: an
    object that gave a key twice keeps the last value, and the earlier
    pair's separator (and every colon inside that pair) is gone. Comparing
    the two counts is exact, at the cost of two C-speed scans. The callers
    account for the rules' own changes (a generated $insert_id adds one
    key; a time string made a number loses its colons), and skip the counts
    when the written line starts with the raw one (less its closing bytes),
    which proves the raw line gave no key twice.

    A colon can also be written as the escape \\u003a (or \\u003A); the
    rare line holding one has its escapes read one by one.
    """
    colons = line.count(b":")
    # memchr() first: most lines hold no backslash at all.
    if line.find(b"\\") >= 0 and line.find(_ESCAPED_COLON_PREFIX) >= 0:
        escapes = _ESCAPE.findall(line)
        colons += len(escapes) - escapes.count(b"")
    return colons


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
                    return _reject(
                        Reason.NESTING_TOO_DEEP,
                        f"property {_field(property_name)} holds an object nested more "
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
        return _reject(
            Reason.TOO_MANY_KEYS,
            f"property {_field(wide_object[0])} holds an object with {wide_object[1]} keys; "
            f"at most {MAX_OBJECT_KEYS} are allowed",
        )
    if long_list is not None:
        return _reject(
            Reason.LIST_TOO_LONG,
            f"property {_field(long_list[0])} holds a list with {long_list[1]} elements; "
            f"at most {MAX_LIST_ELEMENTS} are allowed",
        )
    return None


def _classify_update(line: bytes, record: dict[str, Any], kind: Kind) -> Fate:
    """A profile (kind PROFILE) or group (kind GROUP) update, per DESIGN.md §2.

    Checks run in the order of DESIGN.md's list of reasons: the identity
    (invalid_distinct_id or invalid_group), missing_operation,
    multiple_operations, invalid_operation, unsupported_operation,
    unexpected_field, too_many_properties, record_too_large. So a group $add
    whose value has the wrong shape is invalid_operation, and a well-formed
    one is unsupported_operation.
    """
    if kind is _PROFILE:
        checked = _checked_id(record["$distinct_id"], "$distinct_id", Reason.INVALID_DISTINCT_ID)
        if isinstance(checked, Fate):
            return checked
        identity, flags = checked
        allowed = _PROFILE_FIELDS
        key_parts = [identity]
    else:
        group_key = record["$group_key"]
        if type(group_key) is not str:
            return _reject(
                Reason.INVALID_GROUP, f"$group_key is {_type_name(group_key)}, not a string"
            )
        if not group_key.strip():
            return _reject(Reason.INVALID_GROUP, "$group_key is empty")
        identity = record.get("$group_id", _MISSING)
        if identity is _MISSING:
            return _reject(Reason.INVALID_GROUP, "the group update has no $group_id")
        checked = _checked_id(identity, "$group_id", Reason.INVALID_GROUP)
        if isinstance(checked, Fate):
            return checked
        identity, flags = checked
        allowed = _GROUP_FIELDS
        key_parts = [group_key, identity]

    operations = [k for k in record if k in _OPERATIONS]
    if not operations:
        return _reject(
            Reason.MISSING_OPERATION,
            "the update has none of the operations " + ", ".join(OPERATIONS),
        )
    if len(operations) > 1:
        return _reject(
            Reason.MULTIPLE_OPERATIONS,
            f"the update has {len(operations)} operations ({', '.join(operations)}); "
            "exactly one is allowed",
        )
    operation = operations[0]
    value = record[operation]
    problem = _operation_problem(operation, value)
    if problem:
        return _reject(Reason.INVALID_OPERATION, problem)
    if kind is _GROUP and operation in _GROUP_UNSUPPORTED:
        return _reject(
            Reason.UNSUPPORTED_OPERATION, f"{operation} is not supported on group profiles"
        )
    if len(record) > len(key_parts) + 1:  # more than the identity fields and the operation
        for field in record:
            if field not in allowed and field != operation:
                return _reject(
                    Reason.UNEXPECTED_FIELD,
                    f"unexpected top-level key {_field(field)} in a "
                    + ("profile" if kind is _PROFILE else "group")
                    + " update",
                )
    if (type(value) is dict or type(value) is list) and len(value) > MAX_OPERATION_ENTRIES:
        return _reject(
            Reason.TOO_MANY_PROPERTIES,
            f"{operation} has {len(value)} entries; at most {MAX_OPERATION_ENTRIES} are allowed",
        )

    if flags:
        # Assigning an existing key keeps its place: the record is written as given.
        record["$distinct_id" if kind is _PROFILE else "$group_id"] = identity
    out = _serialise(record)
    if len(out) > MAX_RECORD_BYTES:
        return _reject(
            Reason.RECORD_TOO_LARGE,
            f"the normalised record is {len(out)} bytes; it must be under {MAX_RECORD_BYTES + 1}",
        )
    # Duplicate keys (see _colons): an integer id made a string adds no colon.
    if out != line and out.count(b":") != _colons(line):
        flags |= DUPLICATE_KEYS
    key = identity_key(key_parts)
    return _new_fate(Fate, (kind, _join((out, _NOTHING)), "", key, operation, flags, None, "", value))


def _operation_problem(operation: str, value: object) -> str:
    """Why an operation's value has the wrong shape, or "" when it is fine."""
    if operation == "$delete":
        return ""
    if operation == "$unset":
        if type(value) is not list or not value:
            return "$unset must be a non-empty list of property names"
        if any(type(item) is not str for item in value):
            return "$unset must list property names as strings"
        return ""
    if type(value) is not dict or not value:
        return f"{operation} must be a non-empty object"
    if operation == "$add" and any(
        type(v) is not int and type(v) is not float for v in value.values()
    ):
        return "$add must map every property to a number"
    if operation == "$union" and any(type(v) is not list or not v for v in value.values()):
        return "$union must map every property to a non-empty list"
    return ""


def _checked_id(value: object, field: str, reason: Reason) -> tuple[str, int] | Fate:
    """A profile or group id as written (integers become strings), or its reject."""
    flags = 0
    if type(value) is int:
        value, flags = str(value), NORMALISED_DISTINCT_ID
    elif type(value) is not str:
        return _reject(reason, f"{field} is {_type_name(value)}; it must be a string or an integer")
    problem = _id_problem(value, field)
    if problem:
        return _reject(reason, problem)
    return value, flags


def _id_problem(identity: str, field: str) -> str:
    """Why a profile or group id (as a string) is invalid, or "" when it is valid."""
    # DESIGN.md: a profile's $distinct_id "must not be empty"; placeholders are
    # compared trimmed, so a whitespace-only id counts as empty too.
    if not identity.strip():
        return f"{field} is empty"
    if len(identity) > MAX_ID_CHARS:
        return f"{field} is {len(identity)} characters; the limit is {MAX_ID_CHARS}"
    if is_placeholder(identity):
        return f"{field} is a placeholder value"
    return ""
