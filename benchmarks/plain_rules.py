"""The independent yardstick's rules: one input line classified and normalised as DESIGN.md says.

Part of benchmarks/plain_loop.py's yardstick and, like it, independent of the
product: the standard library and orjson only (tests/test_benchmarks.py
checks), written from DESIGN.md §2–§4 rather than copied from the pipeline's
rules. classify() is the whole of it; the loop around it reads, deduplicates
and writes.
"""

import datetime
import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

import orjson

# Kinds of line, as small ints for the hot path.
BLANK, EVENT, PROFILE, GROUP, REJECT = range(5)
# Normalisation flags.
TIME, DISTINCT_ID, INSERT_ID, DUP_KEYS = 1, 2, 4, 8

MIN_TIME = 31_536_000  # 1971-01-01T00:00:00Z
MS_FROM = 100_000_000_000  # |t| >= 1e11 is milliseconds
PLACEHOLDERS = frozenset((
    "00000000-0000-0000-0000-000000000000", "anon", "anonymous", "nil", "none", "null",
    "n/a", "na", "undefined", "unknown", "<nil>", "0", "-1", "true", "false", "[]", "{}",
    "lmy47d",
))
OPERATIONS = ("$set", "$set_once", "$add", "$union", "$append", "$remove", "$unset", "$delete")
MODIFIERS = ("$token", "$ip", "$ignore_time", "$ignore_alias", "$time")
PROFILE_FIELDS = frozenset(("$distinct_id", *MODIFIERS, *OPERATIONS))
GROUP_FIELDS = frozenset(("$group_key", "$group_id", *MODIFIERS, *OPERATIONS))
MISSING = object()

NUMERIC = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")
ISO = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.[0-9]+)?)?)?"
    r"(?:Z|([+-])([0-9]{2})(?::([0-9]{2}))?)?"
)
TYPE_NAMES = {
    dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number",
    bool: "a boolean", type(None): "null",
}
EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()

loads = orjson.loads
dumps = orjson.dumps
# orjson.dumps returns bytes whose allocation is 4 KiB or more, never shrunk:
# a line held until the end is copied to its exact size first (6 GB -> 1 GB
# peak RSS at 1M lines).
join = b"".join
blake2b = hashlib.blake2b
SORT_KEYS = orjson.OPT_SORT_KEYS


def _type(value: object) -> str:
    return TYPE_NAMES.get(type(value), "an unknown value")


def _quoted(name: str) -> str:
    return dumps(name[:40]).decode()


def _placeholder(text: str) -> bool:
    return text.strip().lower() in PLACEHOLDERS


def _serialise(value: Any, option: int = 0) -> bytes:
    try:
        return dumps(value, option=option)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (it reads deeper)
        return _serialise_deep(value, bool(option & SORT_KEYS))


def _serialise_deep(value: Any, sort: bool) -> bytes:
    if type(value) is dict:
        items = sorted(value.items()) if sort else value.items()
        return b"{" + b",".join(dumps(k) + b":" + _serialise_deep(v, sort) for k, v in items) + b"}"
    if type(value) is list:
        return b"[" + b",".join(_serialise_deep(v, sort) for v in value) + b"]"
    return dumps(value)


def _gave_a_key_twice(line: bytes) -> bool:
    """Whether any object of a (valid) JSON line holds a key twice."""
    twice = False

    def check(pairs: list[tuple[str, Any]]) -> None:
        nonlocal twice
        if len(pairs) > 1 and len({k for k, _ in pairs}) != len(pairs):
            twice = True

    json.loads(line, object_pairs_hook=check)
    return twice


def _colons_differ(raw: bytes, out: bytes, adjust: int) -> bool:
    """Whether the line may have given a key twice: parsing dropped a pair (and its colon).

    A written line has the raw line's colons (one per key, and those inside
    strings: orjson writes ":" as is) adjusted by `adjust`, unless a pair was
    dropped; an escaped colon (\\u003a) in the raw line hides one, so such a
    line always counts as a candidate.
    """
    return out.count(b":") != raw.count(b":") + adjust or b"\\u003" in raw


def _time_seconds(value: Any) -> int | str:
    """Floored UNIX seconds of an event time, or the detail of why it is invalid."""
    kind = type(value)
    if kind is int:
        return value if -MS_FROM < value < MS_FROM else value // 1000
    if kind is float:
        # floor() of the float itself: exact below 2**53, and the float's shortest
        # decimal (its JSON text) never lies across an integer from it.
        whole = int(value // 1)
        return whole if abs(value) < MS_FROM else whole // 1000
    if kind is str:
        return _string_seconds(value)
    if kind is bool:
        return "properties.time is a boolean"
    return f"properties.time is {_type(value)}, not a number or a string"


def _string_seconds(text: str) -> int | str:
    if not text:
        return "properties.time is an empty string"
    number = NUMERIC.fullmatch(text)
    if number is not None:
        sign, whole_text, fraction = number.groups()
        whole_text = whole_text.lstrip("0")
        if len(whole_text) > 20:  # far out of range either way; spares int() huge digits
            return -(10**30) if sign else 10**30
        whole = int(whole_text or "0")
        seconds, milliseconds = divmod(whole, 1000) if whole >= MS_FROM else (whole, 0)
        if not sign:
            return seconds
        # floor(-x) = -floor(x) - 1 when x is not whole.
        return -seconds - (1 if milliseconds or (fraction and fraction.strip("0")) else 0)
    iso = ISO.fullmatch(text)
    if iso is None:
        return "properties.time is a string that is neither a number nor an ISO-8601 date-time"
    year, month, day, hour, minute, second, sign, off_hour, off_minute = iso.groups()
    try:
        ordinal = datetime.date(int(year), int(month), int(day)).toordinal()
    except ValueError:
        return "properties.time is not a valid calendar date"
    h, m, s = int(hour or 0), int(minute or 0), int(second or 0)
    if h > 23 or m > 59 or s > 59:
        return "properties.time is not a valid time of day"
    seconds = (ordinal - EPOCH_ORDINAL) * 86400 + h * 3600 + m * 60 + s
    if sign:
        oh, om = int(off_hour), int(off_minute or 0)
        if oh > 23 or om > 59:
            return "properties.time has an invalid UTC offset"
        seconds += -(oh * 3600 + om * 60) if sign == "+" else oh * 3600 + om * 60
    return seconds  # a fraction of a second never changes the floored second


def _shape_problem(properties: dict[str, Any]) -> tuple[str, str] | None:
    """(reason, detail) for the first of nesting / wide object / long list, or None."""
    wide = long = None
    for name, value in properties.items():
        if type(value) is not dict and type(value) is not list:
            continue
        stack = [(value, 0)]
        children: Iterable[Any]
        while stack:
            node, depth = stack.pop()
            if type(node) is dict:
                depth += 1
                if depth > 3:
                    return "nesting_too_deep", (
                        f"property {_quoted(name)} holds an object nested more than 3 levels deep"
                    )
                if len(node) > 254 and wide is None:
                    wide = (name, len(node))
                children = node.values()
            else:
                if len(node) > 254 and long is None:
                    long = (name, len(node))
                children = node
            stack.extend((c, depth) for c in children if type(c) is dict or type(c) is list)
    if wide is not None:
        return "too_many_keys", (
            f"property {_quoted(wide[0])} holds an object with {wide[1]} keys; "
            "at most 254 are allowed"
        )
    if long is not None:
        return "list_too_long", (
            f"property {_quoted(long[0])} holds a list with {long[1]} elements; "
            "at most 254 are allowed"
        )
    return None


def classify(line: bytes, reference: int) -> tuple:
    """One input line as (BLANK,), (REJECT, reason, detail),
    (EVENT, out, day_number, dedupe_key, flags) or (PROFILE|GROUP, out, identity, flags)."""
    try:
        record = loads(line)
    except orjson.JSONDecodeError as error:
        if not line.strip(b" \t\r"):
            return (BLANK,)
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as bad:
            return REJECT, "invalid_utf8", f"the line is not valid UTF-8 (byte {bad.start} is invalid)"
        if "depth" in error.msg or "recursion" in error.msg.lower():
            return REJECT, "invalid_json", "nesting exceeds the JSON parser's limit of 1024 levels"
        return (REJECT, "invalid_json",
                f"the line is not valid JSON: {error.msg} at character {error.pos}")
    if type(record) is not dict:
        return REJECT, "not_an_object", f"the line is {_type(record)}, not a JSON object"
    if "event" in record:
        return _event(line, record, reference)
    if "$group_key" in record:
        return _update(line, record, GROUP)
    if "$distinct_id" in record:
        return _update(line, record, PROFILE)
    if "properties" in record:
        return _event(line, record, reference)
    return (REJECT, "unknown_record_type",
            "the object has none of the keys event, properties, $distinct_id and $group_key")


def _event(line: bytes, record: dict[str, Any], reference: int) -> tuple:
    name = record.get("event")
    if name is None:
        return REJECT, "missing_event_name", (
            "the event name is null" if "event" in record else "the record has no event name")
    if type(name) is not str:
        return REJECT, "invalid_event_name", f"the event name is {_type(name)}, not a string"
    if not name.strip():
        return REJECT, "missing_event_name", "the event name is blank"
    if len(name) > 255:
        return (REJECT, "invalid_event_name",
                f"the event name is {len(name)} characters; the limit is 255")
    props = record.get("properties", MISSING)
    if type(props) is not dict:
        if props is MISSING:
            return REJECT, "invalid_properties", "the event has no properties"
        return REJECT, "invalid_properties", f"properties is {_type(props)}, not an object"

    raw_time = props.get("time")
    if raw_time is None:
        return REJECT, "missing_time", (
            "properties.time is null" if "time" in props else "properties.time is missing")
    if type(raw_time) is int and MIN_TIME <= raw_time < MS_FROM and raw_time <= reference + 3600:
        seconds = raw_time  # the common case: whole seconds in range
        flags = 0
    else:
        parsed = _time_seconds(raw_time)
        if type(parsed) is str:
            return REJECT, "invalid_time", parsed
        seconds = int(parsed)
        if seconds < MIN_TIME:
            return REJECT, "time_out_of_range", "properties.time is before 1971-01-01T00:00:00Z"
        if seconds > reference + 3600:
            return (REJECT, "time_out_of_range",
                    "properties.time is more than 1 hour after the reference time")
        flags = 0
        if type(raw_time) is not int or raw_time != seconds:
            props["time"] = seconds
            flags = TIME

    did = props.get("distinct_id", MISSING)
    if type(did) is str:
        if len(did) > 255:
            return REJECT, "invalid_distinct_id", (
                f"properties.distinct_id is {len(did)} characters; the limit is 255")
        if _placeholder(did):
            return REJECT, "invalid_distinct_id", "properties.distinct_id is a placeholder value"
    elif did is MISSING:
        if "$device_id" not in props and "$user_id" not in props:
            return REJECT, "missing_distinct_id", "properties has no distinct_id, $device_id or $user_id"
        did = ""
    elif type(did) is int:
        did = str(did)
        if _placeholder(did):
            return REJECT, "invalid_distinct_id", "properties.distinct_id is a placeholder value"
        props["distinct_id"] = did
        flags |= DISTINCT_ID
    else:
        return REJECT, "invalid_distinct_id", (
            f"properties.distinct_id is {_type(did)}; it must be a string or an integer")

    insert_id = props.get("$insert_id", MISSING)
    if insert_id is not MISSING:
        if type(insert_id) is not str:
            return (REJECT, "invalid_insert_id",
                    f"properties.$insert_id is {_type(insert_id)}, not a string")
        if not insert_id:
            return REJECT, "invalid_insert_id", "properties.$insert_id is an empty string"
        if len(insert_id) > 36:
            return REJECT, "invalid_insert_id", "properties.$insert_id is longer than 36 bytes"
        if not (insert_id.isascii() and insert_id.replace("-", "a").isalnum()):
            return REJECT, "invalid_insert_id", (
                "properties.$insert_id has characters other than A-Z, a-z, 0-9 and -")
        if insert_id.lower() in PLACEHOLDERS:
            return REJECT, "invalid_insert_id", "properties.$insert_id is a placeholder value"

    count = len(props) + (insert_id is MISSING)
    if count > 254:
        return REJECT, "too_many_properties", (
            f"the event has {count} properties"
            + (" (counting the generated $insert_id)" if insert_id is MISSING else "")
            + "; at most 254 are allowed")
    # Only a line with a "[" or a third "{" can hold a list or a nested object.
    if line.count(b"{") > 2 or b"[" in line:
        problem = _shape_problem(props)
        if problem is not None:
            return REJECT, *problem

    if insert_id is MISSING:
        canonical = _serialise([name, did, seconds, props], SORT_KEYS)
        insert_id = blake2b(canonical, digest_size=16).hexdigest()
        props["$insert_id"] = insert_id
        flags |= INSERT_ID

    out = _serialise({"event": name, "properties": props})
    size = len(out)
    if size < 1_000_000 and len(record) > 2:
        size = len(_serialise(record))  # extra keys are part of the record measured
    if size >= 1_000_000:
        return REJECT, "record_too_large", (
            f"the normalised record is {size} bytes; it must be under 1000000")
    if len(record) > 2:
        extra = next(k for k in record if k not in ("event", "properties"))
        return REJECT, "unexpected_field", (
            f"unexpected top-level key {_quoted(extra)}; an event has only event and properties")

    if out != line:
        adjust = (1 if flags & INSERT_ID else 0) - (raw_time.count(":") if type(raw_time) is str else 0)
        if _colons_differ(line, out, adjust) and _gave_a_key_twice(line):
            flags |= DUP_KEYS
    return EVENT, join((out, b"")), seconds // 86400, (name, did, insert_id), flags


def _update(line: bytes, record: dict[str, Any], kind: int) -> tuple:
    flags = 0
    if kind == PROFILE:
        field, reason, allowed = "$distinct_id", "invalid_distinct_id", PROFILE_FIELDS
        identity = record["$distinct_id"]
    else:
        field, reason, allowed = "$group_id", "invalid_group", GROUP_FIELDS
        group_key = record["$group_key"]
        if type(group_key) is not str:
            return REJECT, reason, f"$group_key is {_type(group_key)}, not a string"
        if not group_key.strip():
            return REJECT, reason, "$group_key is empty"
        identity = record.get("$group_id", MISSING)
        if identity is MISSING:
            return REJECT, reason, "the group update has no $group_id"
    if type(identity) is int:
        identity = str(identity)
        flags = DISTINCT_ID
    elif type(identity) is not str:
        return REJECT, reason, f"{field} is {_type(identity)}; it must be a string or an integer"
    if not identity.strip():
        return REJECT, reason, f"{field} is empty"
    if len(identity) > 255:
        return REJECT, reason, f"{field} is {len(identity)} characters; the limit is 255"
    if _placeholder(identity):
        return REJECT, reason, f"{field} is a placeholder value"

    operations = [k for k in record if k in OPERATIONS]
    if not operations:
        return (REJECT, "missing_operation",
                "the update has none of the operations " + ", ".join(OPERATIONS))
    if len(operations) > 1:
        return REJECT, "multiple_operations", (
            f"the update has {len(operations)} operations ({', '.join(operations)}); "
            "exactly one is allowed")
    operation = operations[0]
    value = record[operation]
    problem = _operation_problem(operation, value)
    if problem:
        return REJECT, "invalid_operation", problem
    if kind == GROUP and operation in ("$add", "$append"):
        return REJECT, "unsupported_operation", f"{operation} is not supported on group profiles"
    for key in record:
        if key not in allowed:
            return REJECT, "unexpected_field", (
                f"unexpected top-level key {_quoted(key)} in a "
                + ("profile" if kind == PROFILE else "group") + " update")
    if (type(value) is dict or type(value) is list) and len(value) > 1999:
        return (REJECT, "too_many_properties",
                f"{operation} has {len(value)} entries; at most 1999 are allowed")

    if flags:
        record[field] = identity  # in place: the record keeps its key order
    out = _serialise(record)
    if len(out) >= 1_000_000:
        return (REJECT, "record_too_large",
                f"the normalised record is {len(out)} bytes; it must be under 1000000")
    if out != line and _colons_differ(line, out, 0) and _gave_a_key_twice(line):
        flags |= DUP_KEYS
    parts = [identity] if kind == PROFILE else [group_key, identity]
    # The written order of updates: by this digest of the identity (see the docstring).
    order = blake2b(dumps(parts), digest_size=16).digest()
    return kind, join((out, b"")), order, flags


def _operation_problem(operation: str, value: Any) -> str:
    if operation == "$delete":
        return ""
    if operation == "$unset":
        if type(value) is not list or not value:
            return "$unset must be a non-empty list of property names"
        if any(type(v) is not str for v in value):
            return "$unset must list property names as strings"
        return ""
    if type(value) is not dict or not value:
        return f"{operation} must be a non-empty object"
    if operation == "$add" and any(type(v) is not int and type(v) is not float for v in value.values()):
        return "$add must map every property to a number"
    if operation == "$union" and any(type(v) is not list or not v for v in value.values()):
        return "$union must map every property to a non-empty list"
    return ""
