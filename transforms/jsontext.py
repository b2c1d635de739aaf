"""JSON text as the rules write it: compact at any depth, and the colons that reveal duplicate keys (pure; no Beam)."""

import hashlib
import re
from typing import Any

import orjson

SORT_KEYS = orjson.OPT_SORT_KEYS

# The rules' hot-path names (transforms/rules.py, transforms/updates.py import
# them as module globals of their own: one global lookup per call, no attribute
# lookup on orjson, bytes or hashlib).
dumps = orjson.dumps
# orjson returns bytes over-allocated to 4 KiB or more and never shrunk, and a
# written line is held by its batch: joining it with b"" makes an exact-size copy.
join_bytes = b"".join
NOTHING = b""
# The rules' keys and generated $insert_ids are 16-byte BLAKE2b digests of JSON
# text written here. Each is made by copying this state: blake2b() parses its
# keyword arguments on every call (4,100 instructions per key, 2,850 copying).
# A state that is never updated is safe to copy from several threads.
KEY_HASH = hashlib.blake2b(digest_size=16)

# An escape sequence of a JSON string; group 1 is set when it is an escaped
# colon. Every backslash of valid JSON starts an escape (inside a string), so
# matching from the left stays in step with the parser.
_ESCAPE = re.compile(rb"\\(?:(u003[aA])|.)", re.DOTALL)
_ESCAPED_COLON_PREFIX = b"\\u003"

_END = object()


def serialise(value: object, option: int = 0) -> bytes:
    """orjson.dumps, but also for values nested deeper than orjson writes (254 levels).

    orjson reads up to 1024 levels, so a record it parsed (a profile update,
    or an event's lists of lists) can be too deep for it to write back.
    """
    try:
        return dumps(value, option=option)
    except orjson.JSONEncodeError:
        return _serialise_deep(value, option & SORT_KEYS != 0)


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
            parts.append(dumps(item))

    open_value(value)
    while stack:
        frame = stack[-1]
        item: Any = next(frame[0], _END)
        if item is _END:
            parts.append(frame[1])
            stack.pop()
            continue
        if frame[3]:
            frame[3] = False
        else:
            parts.append(b",")
        if frame[2]:
            parts.append(dumps(item[0]))
            parts.append(b":")
            item = item[1]
        open_value(item)
    return b"".join(parts)


def colons(line: bytes) -> int:
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
    count = line.count(b":")
    # memchr() first: most lines hold no backslash at all.
    if line.find(b"\\") >= 0 and line.find(_ESCAPED_COLON_PREFIX) >= 0:
        escapes = _ESCAPE.findall(line)
        count += len(escapes) - escapes.count(b"")
    return count
