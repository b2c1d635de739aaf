"""The rules of profile and group updates (DESIGN.md §2): one operation checked and written as given (pure; no Beam)."""

from typing import Any

from transforms.jsontext import KEY_HASH as _KEY_HASH
from transforms.jsontext import NOTHING as _NOTHING
from transforms.jsontext import colons, serialise
from transforms.jsontext import dumps as _dumps
from transforms.jsontext import join_bytes as _join
from transforms.limits import MAX_ID_CHARS, MAX_OPERATION_ENTRIES, MAX_RECORD_BYTES, is_placeholder
from transforms.reasons import (
    DUPLICATE_KEYS,
    NORMALISED_DISTINCT_ID,
    Fate,
    Kind,
    Reason,
    field_name,
    reject,
    type_name,
)
from transforms.reasons import new_fate as _new_fate

OPERATIONS = ("$set", "$set_once", "$add", "$union", "$append", "$remove", "$unset", "$delete")
MODIFIERS = ("$token", "$ip", "$ignore_time", "$ignore_alias", "$time")
_OPERATIONS = frozenset(OPERATIONS)
_PROFILE_FIELDS = frozenset(("$distinct_id",) + MODIFIERS)
_GROUP_FIELDS = frozenset(("$group_key", "$group_id") + MODIFIERS)
_GROUP_UNSUPPORTED = frozenset(("$add", "$append"))

# Module-level aliases, as in transforms/rules.py: lookups cost on the hot path.
# Those shared with it (_new_fate, _dumps, _join, _NOTHING, _KEY_HASH) are imported above.
_PROFILE = Kind.PROFILE
_GROUP = Kind.GROUP
_MISSING = object()


def classify_update(line: bytes, record: dict[str, Any], kind: Kind) -> Fate:
    """A profile (kind PROFILE) or group (kind GROUP) update, per DESIGN.md §2.

    `record` is `line` parsed (and is changed: an integer id becomes a string).
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
            return reject(
                Reason.INVALID_GROUP, f"$group_key is {type_name(group_key)}, not a string"
            )
        if not group_key.strip():
            return reject(Reason.INVALID_GROUP, "$group_key is empty")
        identity = record.get("$group_id", _MISSING)
        if identity is _MISSING:
            return reject(Reason.INVALID_GROUP, "the group update has no $group_id")
        checked = _checked_id(identity, "$group_id", Reason.INVALID_GROUP)
        if isinstance(checked, Fate):
            return checked
        identity, flags = checked
        allowed = _GROUP_FIELDS
        key_parts = [group_key, identity]

    operations = [k for k in record if k in _OPERATIONS]
    if not operations:
        return reject(
            Reason.MISSING_OPERATION,
            "the update has none of the operations " + ", ".join(OPERATIONS),
        )
    if len(operations) > 1:
        return reject(
            Reason.MULTIPLE_OPERATIONS,
            f"the update has {len(operations)} operations ({', '.join(operations)}); "
            "exactly one is allowed",
        )
    operation = operations[0]
    value = record[operation]
    problem = _operation_problem(operation, value)
    if problem:
        return reject(Reason.INVALID_OPERATION, problem)
    if kind is _GROUP and operation in _GROUP_UNSUPPORTED:
        return reject(
            Reason.UNSUPPORTED_OPERATION, f"{operation} is not supported on group profiles"
        )
    if len(record) > len(key_parts) + 1:  # more than the identity fields and the operation
        for field in record:
            if field not in allowed and field != operation:
                return reject(
                    Reason.UNEXPECTED_FIELD,
                    f"unexpected top-level key {field_name(field)} in a "
                    + ("profile" if kind is _PROFILE else "group")
                    + " update",
                )
    if (type(value) is dict or type(value) is list) and len(value) > MAX_OPERATION_ENTRIES:
        return reject(
            Reason.TOO_MANY_PROPERTIES,
            f"{operation} has {len(value)} entries; at most {MAX_OPERATION_ENTRIES} are allowed",
        )

    if flags:
        # Assigning an existing key keeps its place: the record is written as given.
        record["$distinct_id" if kind is _PROFILE else "$group_id"] = identity
    out = serialise(record)
    if len(out) > MAX_RECORD_BYTES:
        return reject(
            Reason.RECORD_TOO_LARGE,
            f"the normalised record is {len(out)} bytes; it must be under {MAX_RECORD_BYTES + 1}",
        )
    # Duplicate keys (see jsontext.colons): an integer id made a string adds no colon.
    if out != line and out.count(b":") != colons(line):
        flags |= DUPLICATE_KEYS
    key = identity_key(key_parts)
    # orjson's result keeps a 4+ KiB allocation: joining it with b"" makes an exact-size copy.
    return _new_fate(Fate, (kind, _join((out, _NOTHING)), "", key, operation, flags, None, "", value))


def identity_key(parts: list[str]) -> bytes:
    """A profile's ([$distinct_id]) or group's ([$group_key, $group_id]) identity as a 16-byte digest."""
    digest = _KEY_HASH.copy()
    digest.update(_dumps(parts))
    return digest.digest()


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
        return reject(reason, f"{field} is {type_name(value)}; it must be a string or an integer")
    problem = _id_problem(value, field)
    if problem:
        return reject(reason, problem)
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
