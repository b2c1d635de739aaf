"""The independent yardstick: Cloud Import Prep's contract as one plain single-process loop.

Not part of the product, and deliberately independent of it: it imports nothing
from pipeline/ or transforms/ (tests/test_benchmarks.py checks), and its rules
were written from DESIGN.md, not copied from transforms/rules.py (where the two
look alike, as in the operation checks, it is the same contract written twice on
purpose: sharing it would put the pipeline's cost on both sides). It is the
straightforward, fast loop a data engineer would write for the same job:
orjson, one pass over the files in upload order, a dict for dedupe, gzip out.
`make bench` times the pipeline against it, so the ratio charges the pipeline
for everything it does beyond the job itself — Beam's machinery and its own
core's extra work alike. (benchmarks/reference.py, the other yardstick,
reuses the pipeline's core and so measures the machinery alone.)

What it does (DESIGN.md §2–§5):
  - reads every file the --input globs match, in upload order (mtime, path),
    gzip recognised by its magic bytes, `\\n` or `\\r\\n` endings, a BOM skipped
    and counted in offsets;
  - classifies every line by all of §2's rules, first broken row decides,
    with the pipeline's reason codes and detail sentences (the rejects files
    hold them, and must be the same bytes);
  - normalises time (floored integer seconds), integer distinct_id → string,
    a missing $insert_id → 32 hex of BLAKE2b-128 over the canonical JSON
    [name, distinct_id or "", seconds, properties with sorted keys], and counts
    lines that gave a JSON key twice (a colon count flags the candidates, the
    stdlib parser decides);
  - keeps the latest event per (event, distinct_id, $insert_id, UTC day);
  - writes events/day=…, profiles, groups and rejects as gzip (level 6,
    mtime 0, no name) with the pipeline's names and file cuts, then
    `_SUMMARY.json` with the figures benchmarks/agree.py compares.

Two facts are taken from the pipeline's output rather than from DESIGN.md,
which leaves them open, so that the files compare byte for byte: profile and
group updates are ordered by the BLAKE2b-128 digest of their identity's JSON
list (`["<distinct_id>"]`, `["<group_key>","<group_id>"]`), then upload order;
and events and rejects are in upload order.

Scope (narrower than the product): local files and `*`/`**` globs; gzip or
plain input; default options plus --reference-time and --max-file-mb; gzip
output only; no --keep-superseded, privacy flags, schema or report; no
locking, --overwrite or _SUCCESS. File cuts are those of one shard per
folder: the pipeline's too, as long as every folder is smaller than
min(--max-file-mb, 256 MiB) — beyond that the pipeline spreads a folder over
hash shards and the cuts differ (the lines still agree as multisets).

  python benchmarks/plain_loop.py --input 'data/*' --output out \\
      --reference-time 2024-06-01T00:00:00Z
"""

import argparse
import base64
import datetime
import glob
import gzip
import hashlib
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

MIB = 1 << 20
CHUNK = 16 << 20
WRITE_SLICE = 4 << 20
GZIP_LEVEL = 6
BOM = b"\xef\xbb\xbf"

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


def list_inputs(patterns: Sequence[str]) -> list[tuple[str, int]]:
    """(path, size) of each file the globs match, once per file, in upload order (mtime, path)."""
    found: dict[tuple[int, int], tuple[float, str, int]] = {}
    for pattern in patterns:
        matched = [p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
        if not matched:
            raise SystemExit(f"plain_loop.py: error: input pattern {pattern!r} matches no file")
        for path in matched:
            info = os.stat(path)
            entry = (info.st_mtime, path, info.st_size)
            identity = (info.st_dev, info.st_ino)
            if identity not in found or path < found[identity][1]:
                found[identity] = entry
    return [(path, size) for _, path, size in sorted(found.values())]


def read_lines(path: str) -> Iterator[tuple[int, bytes]]:
    """(offset, line) of every line of a file, gzip or plain; endings and a BOM removed."""
    with open(path, "rb") as raw:
        stream = gzip.GzipFile(fileobj=raw) if raw.read(2) == b"\x1f\x8b" else raw
        raw.seek(0)
        offset = 0
        data = stream.read(CHUNK)
        if data.startswith(BOM):
            data, offset = data[3:], 3
        while data:
            chunk = stream.read(CHUNK)
            lines = data.split(b"\n")
            tail = lines.pop()
            if tail and not chunk:  # the last line, without a newline
                lines.append(tail)
                tail = b""
            for line in lines:
                yield offset, line[:-1] if line.endswith(b"\r") else line
                offset += len(line) + 1
            data = tail + chunk


def _split_into_files(lines: list[bytes], keys: list[bytes] | None, limit: int) -> list[list[bytes]]:
    """Lines cut into files of at most `limit` bytes (with newlines), only where the key changes."""
    if sum(map(len, lines)) + len(lines) <= limit:
        return [lines] if lines else []
    files: list[list[bytes]] = []
    current: list[bytes] = []
    size = 0
    group: list[bytes] = []  # the lines of the current key, not yet placed
    group_size = 0
    for i, line in enumerate(lines):
        if keys is None or (i and keys[i] != keys[i - 1]):
            current += group
            size += group_size
            group, group_size = [], 0
        length = len(line) + 1
        if size + group_size + length > limit and current:
            files.append(current)
            current, size = [], 0
        group.append(line)
        group_size += length
    current += group
    if current:
        files.append(current)
    return files


def write_folder(output: Path, folder: str, lines: list[bytes], keys: list[bytes] | None,
                 limit: int) -> list[dict[str, Any]]:
    """Writes one output folder as gzip part files; returns what was written."""
    files = _split_into_files(lines, keys, limit)
    (output / folder).mkdir(parents=True, exist_ok=True)
    written = []
    for index, part in enumerate(files):
        name = f"{folder}/part-{index:05d}-of-{len(files):05d}.ndjson.gz"
        size = 0
        with open(output / name, "wb") as raw, gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0
        ) as sink:
            step = max(1, WRITE_SLICE // max(1, len(part[0])))
            for start in range(0, len(part), step):
                data = b"\n".join(part[start:start + step]) + b"\n"
                sink.write(data)
                size += len(data)
        written.append({"path": name, "lines": len(part), "bytes": size})
    return written


def run(patterns: Sequence[str], output: str, reference: int, max_file_bytes: int = 1024 * MIB) -> dict:
    """The whole job; returns the summary it wrote to `output/_SUMMARY.json`."""
    out = Path(output)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"plain_loop.py: error: {output} is not empty")
    inputs = list_inputs(patterns)
    days: dict[int, dict[tuple[str, str, str], bytes]] = {}
    profiles: list[tuple[bytes, bytes]] = []
    groups: list[tuple[bytes, bytes]] = []
    rejects: list[bytes] = []
    by_reason: Counter[str] = Counter()
    flags_seen: Counter[int] = Counter()
    lines = blank = accepted = superseded = 0
    for path, _ in inputs:
        for offset, raw in read_lines(path):
            lines += 1
            fate = classify(raw, reference)
            kind = fate[0]
            if kind == EVENT:
                _, line, day, key, flags = fate
                events = days.get(day)
                if events is None:
                    events = days[day] = {}
                # Files come in upload order and lines in offset order: the latest
                # wins, and re-inserting it keeps the dict in survivors' upload order.
                if events.pop(key, None) is not None:
                    superseded += 1
                events[key] = line
                accepted += 1
                if flags:
                    flags_seen[flags] += 1
            elif kind == REJECT:
                reason, detail = fate[1], fate[2]
                by_reason[reason] += 1
                rejects.append(_reject_line(reason, detail, path, offset, raw))
            elif kind == BLANK:
                blank += 1
            else:
                _, line, order, flags = fate
                (profiles if kind == PROFILE else groups).append((order, line))
                if flags:
                    flags_seen[flags] += 1

    written = []
    for day in sorted(days):
        written += write_folder(out, f"events/day={_day(day)}", list(days[day].values()), None,
                                max_file_bytes)
    for folder, updates in (("profiles", profiles), ("groups", groups)):
        if updates:
            updates.sort(key=lambda u: u[0])  # stable: upload order within an identity
            written += write_folder(out, folder, [u[1] for u in updates], [u[0] for u in updates],
                                    max_file_bytes)
    if rejects:
        written += write_folder(out, "rejects", rejects, None, max_file_bytes)

    profile_count, group_count = len(profiles), len(groups)
    summary = {
        "tool": {"name": "benchmark-plain-loop"},
        "reference_time": reference,
        "input": {"files": len(inputs), "bytes": sum(size for _, size in inputs),
                  "lines": lines, "blank_lines": blank},
        "output": {
            "events": accepted - superseded,
            "events_by_day": {_day(day): len(days[day]) for day in sorted(days)},
            "profiles": profile_count,
            "groups": group_count,
            "superseded": superseded,
            "rejected": len(rejects),
            "rejected_by_reason": dict(sorted(by_reason.items())),
            "excluded": 0,
            "files": sorted(written, key=lambda f: f["path"]),
        },
        "normalised": {
            name: sum(n for flags, n in flags_seen.items() if flags & bit)
            for name, bit in (("time", TIME), ("distinct_id", DISTINCT_ID),
                              ("insert_id_generated", INSERT_ID), ("duplicate_keys", DUP_KEYS))
        },
    }
    summary["balanced"] = lines == (accepted + profile_count + group_count + len(rejects) + blank)
    out.mkdir(parents=True, exist_ok=True)
    (out / "_SUMMARY.json").write_bytes(dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    return summary


def _day(day_number: int) -> str:
    return datetime.date.fromordinal(day_number + EPOCH_ORDINAL).isoformat()


def _reject_line(reason: str, detail: str, path: str, offset: int, raw: bytes) -> bytes:
    record: dict[str, Any] = {"reason": reason, "detail": detail, "source": path, "offset": offset}
    try:
        record["line"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        record["line_base64"] = base64.b64encode(raw).decode("ascii")
    return join((dumps(record), b""))


def parse_reference_time(text: str) -> int:
    """ISO-8601 (no offset means UTC) or UNIX seconds, as whole UNIX seconds."""
    try:
        return int(float(text))
    except ValueError:
        pass
    parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return int(parsed.timestamp())


def yardstick_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The command line both yardsticks take (benchmarks/reference.py too): the bench's flags."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--input", action="append", required=True,
                        help="Glob of input files; repeat for more. Example: --input 'data/*'")
    parser.add_argument("--output", required=True,
                        help="Empty folder to write to. Example: --output out")
    parser.add_argument("--reference-time", required=True,
                        help="As the pipeline's flag. Example: --reference-time 2024-06-01T00:00:00Z")
    parser.add_argument("--max-file-mb", type=int, default=1024,
                        help="Largest uncompressed output file, MiB. Example: --max-file-mb 512")
    return parser


def main(argv: Sequence[str]) -> int:
    parser = yardstick_parser(
        "plain_loop.py", "The independent benchmark yardstick: the contract as one plain Python loop."
    )
    args = parser.parse_args(argv)
    # Objects may nest 1,024 levels (orjson's limit): the stdlib parser and the
    # deep serialiser recurse once per level.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    summary = run(args.input, args.output, parse_reference_time(args.reference_time),
                  args.max_file_mb * MIB)
    print(dumps({k: summary[k] for k in ("input", "normalised", "balanced")}).decode())
    return 0 if summary["balanced"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
