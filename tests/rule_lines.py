"""Lines, properties and strategies shared by the rule tables (test_rules, test_updates, test_times, ...)."""

import hashlib
import json
import re

import orjson
from hypothesis import strategies as st

from transforms.reasons import Fate, Kind, Reason
from transforms.rules import RuleConfig, classify
from transforms.times import day_of

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


def nest(depth: int, leaf: object = 1) -> object:
    """`depth` objects, one inside the other, around `leaf`."""
    value = leaf
    for _ in range(depth):
        value = {"k": value}
    return value


WIDE = {f"k{i}": i for i in range(255)}
WIDE_OK = {f"k{i}": i for i in range(254)}


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


def key_of(line: bytes, config: RuleConfig = CONFIG) -> bytes:
    fate = classify(line, config)
    assert fate.kind != Kind.REJECT, fate.detail
    assert len(fate.key) == 16
    return fate.key


def profile(**fields: object) -> bytes:
    return dumps({"$distinct_id": "u1", **fields})


def group(**fields: object) -> bytes:
    return dumps({"$group_key": "company", "$group_id": "acme", **fields})


P = b'"time":1704067200,"distinct_id":"u1","$insert_id":"a1"'  # valid properties, compact


def dup_event(properties: bytes, head: bytes = b'{"event":"e","properties":{') -> bytes:
    return head + properties + b"}}"


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
        assert day_of(seconds) == fate.day
        assert type(properties["$insert_id"]) is str
        assert type(properties.get("distinct_id", "")) is str
        assert len(properties) < 255
        assert fate.name == written["event"]
    else:
        assert fate.name in written
