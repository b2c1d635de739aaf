"""Properties of the record rules and of whole runs, on generated input (hypothesis).

test_rules.py checks that classify() is total on random bytes and on generated
records; this file adds what those do not reach: JSON-like text that no
serialiser would write (NaN, huge and malformed numbers, escapes, truncations,
stray bytes, deep nesting), the accounting of whole batches, the round trip
of valid records, and idempotence: prepared output, prepared again, is
unchanged, with nothing rejected.
"""

import base64
import datetime
import string
import tempfile
from pathlib import Path

import orjson
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from e2e import run_cli, summary, write_input
from rule_lines import GOOD_EVENTS, RECORDS, check_fate
from transforms import records as rec
from transforms.limits import is_placeholder
from transforms.reasons import Kind, Reason
from transforms.rules import MIN_TIME, RuleConfig, classify
from transforms.updates import OPERATIONS

REFERENCE = 1_706_745_600  # 2024-02-01T00:00:00Z, test_rules' reference time too
REF = "2024-02-01T00:00:00Z"
CONFIG = RuleConfig(REFERENCE)
CONFIG_MS = RuleConfig(REFERENCE, "ms")
MS_THRESHOLD = 100_000_000_000  # DESIGN.md §2: |t| >= 1e11 is milliseconds

# --- JSON-like text, hostile ----------------------------------------------------------------

_ODD_SCALARS = [
    b"null", b"true", b"false", b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400",
    b"1e-400", b"18446744073709551616", b"-9223372036854775809", b"9" * 5000, b"-0", b"01",
    b"1.", b".5", b"+1", b"0x10", b"1_000", b'"\\ud800"', b'"\\udc00x"', b'"\\u0000"',
    b'"\x00"', b'"\x1f"', b'"\xff\xfe"', b'"\xc3"', b'"\xed\xa0\x80"', b'"\\"', b'"a\\qb"',
    b'"1704067200"', b'"1704067200.9999"', b'"-1"', b'"1' + b"0" * 30 + b'"',
    b'"2024-01-01T00:00:00Z"', b'"2024-02-30"', b'"2024-01-01 25:00"', b'"9999-12-31T23:59:59-23:59"',
    b'""', b'" "', b'"null"', b'"0"', b'"anon"', b'"\xef\xbb\xbf"', b"1704067200", b"1704067200000",
    b"1704067200.5", b"1.7e9", b"31535999", b"-31536000", b"[]", b"{}",
]
_KEYS = [
    "event", "properties", "time", "distinct_id", "$insert_id", "$device_id", "$user_id",
    "$distinct_id", "$group_key", "$group_id", *OPERATIONS, "$token", "$ip", "$time", "x", "",
]
SCALARS = st.one_of(
    st.sampled_from(_ODD_SCALARS),
    st.integers(-(2**70), 2**70).map(lambda n: str(n).encode()),
    st.floats(allow_nan=False, allow_infinity=False).map(orjson.dumps),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12).map(orjson.dumps),
)
KEYS = st.one_of(
    st.sampled_from(_KEYS), st.text(st.characters(blacklist_categories=("Cs",)), max_size=6)
).map(orjson.dumps)


def _object(values):  # type: ignore[no-untyped-def]
    pairs = st.lists(st.tuples(KEYS, values), max_size=6)
    return pairs.map(lambda kvs: b"{" + b",".join(k + b":" + v for k, v in kvs) + b"}")


def _array(values):  # type: ignore[no-untyped-def]
    return st.lists(values, max_size=6).map(lambda vs: b"[" + b",".join(vs) + b"]")


def _deep(levels: int) -> bytes:
    objects, lists = levels // 2, levels - levels // 2
    return b'{"a":' * objects + b"[" * lists + b"1" + b"]" * lists + b"}" * objects


JSONISH_VALUES = st.recursive(
    SCALARS | st.integers(1, 1500).map(_deep), lambda c: _object(c) | _array(c), max_leaves=16
)
# Shaped like records, so that the rules get past parsing and into their rows.
EVENT_TEXT = st.builds(
    lambda name, props, extra: b'{"event":' + name + b',"properties":' + props + extra + b"}",
    SCALARS | KEYS,
    _object(JSONISH_VALUES) | SCALARS,
    st.sampled_from([b"", b',"event":"again"', b',"extra":1', b',"properties":{}']),
)
UPDATE_TEXT = st.builds(
    lambda head, op, value: b"{" + head + b"," + orjson.dumps(op) + b":" + value + b"}",
    st.sampled_from([b'"$distinct_id":"u1"', b'"$distinct_id":7', b'"$distinct_id":""',
                     b'"$group_key":"company","$group_id":42', b'"$group_key":"","$group_id":"x"']),
    st.sampled_from([*OPERATIONS, "$nope"]),
    JSONISH_VALUES,
)


@st.composite
def mutated(draw, base) -> bytes:  # type: ignore[no-untyped-def]
    """A line of `base`, then cut, spliced with stray bytes, or wrapped in odd whitespace."""
    line: bytes = draw(base)
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(line)))
        how = draw(st.sampled_from(["cut", "insert", "delete"]))
        if how == "cut":
            line = line[:at]
        elif how == "insert":
            byte = draw(st.sampled_from([b"\x00", b"\xff", b"\r", b"\n", b",", b"}", b'"', b"\\", b"\xc3"]))
            line = line[:at] + byte + line[at:]
        else:
            line = line[:at] + line[at + 1 :]
    prefix = draw(st.sampled_from([b"", b" ", b"\t", b"\xef\xbb\xbf"]))
    suffix = draw(st.sampled_from([b"", b" ", b"\r", b"\r\r", b" x"]))
    return prefix + line + suffix


HOSTILE_LINES = st.one_of(
    st.binary(max_size=64),
    mutated(JSONISH_VALUES),
    mutated(EVENT_TEXT),
    mutated(UPDATE_TEXT),
    RECORDS.map(orjson.dumps),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(HOSTILE_LINES)
def test_any_line_gets_exactly_one_fate_and_never_raises(line):
    check_fate(line, classify(line, CONFIG))
    check_fate(line, classify(line, CONFIG_MS), CONFIG_MS)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(HOSTILE_LINES, max_size=25), st.integers(0, 5))
def test_every_line_of_a_batch_is_counted_once_and_a_reject_keeps_it_byte_for_byte(lines, rank):
    offsets = list(range(7, 7 + 1000 * len(lines), 1000))
    result = rec.classify_batch(rank, "gs://b/in.ndjson", offsets, lines, CONFIG)
    t = result.tallies
    outputs = [*result.events.values(), result.profiles, result.groups, result.rejects]
    batches = [b for b in outputs if b is not None]
    placed = [offset for b in batches for offset in b[1]]
    assert len(placed) == len(set(placed)), "a line placed twice"
    assert t[rec.LINES] == len(lines)
    assert t[rec.LINES] == (
        t[rec.BLANK_LINES] + t[rec.EVENTS_ACCEPTED] + t[rec.PROFILES] + t[rec.GROUPS] + t[rec.REJECTED]
    )
    assert len(placed) == len(lines) - t[rec.BLANK_LINES]
    by_offset = dict(zip(offsets, lines, strict=True))
    if result.rejects is not None:
        for offset, written in zip(result.rejects[1], result.rejects[3], strict=True):
            reject = orjson.loads(written)
            if "line" in reject:
                kept = reject["line"].encode("utf-8")
            else:
                kept = base64.b64decode(reject["line_base64"], validate=True)
            assert kept == by_offset[offset] and reject["offset"] == offset
            assert reject["source"] == "gs://b/in.ndjson" and reject["reason"] and reject["detail"]
    for b in batches:
        assert b[0] == rank and b[1] == sorted(b[1])


# --- round trip and idempotence ------------------------------------------------------------

_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_SCALAR_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False), _TEXT,
)
_LISTS = st.lists(_SCALAR_VALUES, max_size=5)
# Objects nested at most 3 levels below a property, as the rules allow.
_NESTED = st.dictionaries(
    _TEXT,
    _SCALAR_VALUES
    | _LISTS
    | st.dictionaries(_TEXT, _SCALAR_VALUES | st.dictionaries(_TEXT, _LISTS, max_size=2), max_size=3),
    max_size=3,
)
_RESERVED = {"time", "distinct_id", "$insert_id", "$device_id", "$user_id"}
NORMAL_EVENTS = st.builds(
    lambda name, time, distinct_id, insert_id, extra: {
        "event": name,
        "properties": {
            "time": time,
            **({"distinct_id": distinct_id} if distinct_id is not None else {"$device_id": "d1"}),
            **{k: v for k, v in extra.items() if k not in _RESERVED},
            "$insert_id": insert_id,
        },
    },
    st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=255).filter(str.strip),
    st.integers(MIN_TIME, REFERENCE + 3600),
    st.none()
    | st.text(st.characters(blacklist_categories=("Cs",)), max_size=255).filter(lambda s: not is_placeholder(s)),
    st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=36).filter(
        lambda s: not is_placeholder(s)
    ),
    st.dictionaries(_TEXT, _SCALAR_VALUES | _LISTS | _NESTED, max_size=8),
)
NORMAL_UPDATES = st.one_of(
    st.builds(lambda who, op, value: {"$distinct_id": who, op: value},
              st.text("abcdef0123456789@.", min_size=2, max_size=20).filter(lambda s: not is_placeholder(s)),
              st.sampled_from(["$set", "$set_once", "$append", "$remove"]),
              st.dictionaries(_TEXT, _SCALAR_VALUES, min_size=1, max_size=5)),
    st.builds(lambda who, value: {"$group_key": "company", "$group_id": who, "$unset": value},
              st.text("abcdef0123456789", min_size=2, max_size=20).filter(lambda s: not is_placeholder(s)),
              st.lists(_TEXT, min_size=1, max_size=4)),
)


@settings(max_examples=400, deadline=None)
@given(NORMAL_EVENTS | NORMAL_UPDATES)
def test_valid_records_survive_the_round_trip_unchanged(record):
    line = orjson.dumps(record)
    fate = classify(line, CONFIG)
    assert fate.kind in (Kind.EVENT, Kind.PROFILE, Kind.GROUP), (fate.reason, fate.detail)
    assert fate.line == line and orjson.loads(fate.line) == record
    assert fate.normalised == 0


@st.composite
def denormalised(draw, record) -> dict:  # type: ignore[no-untyped-def]
    """A valid event as raw data comes: times as floats, ms, strings; integer ids; no $insert_id."""
    event = draw(record)
    properties = event["properties"]
    seconds = properties["time"]
    properties["time"] = draw(st.sampled_from([
        seconds, seconds + 0.25, seconds * 1000 + 999, str(seconds), f"{seconds}.5", str(seconds * 1000),
        datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.123Z"),
        datetime.datetime.fromtimestamp(seconds + 3600, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M+01:00"),
    ]))
    if draw(st.booleans()):
        properties["distinct_id"] = draw(st.integers(1, 2**63))
    if draw(st.booleans()):
        del properties["$insert_id"]
    return event


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(denormalised(NORMAL_EVENTS).map(orjson.dumps), GOOD_EVENTS.map(orjson.dumps),
                 NORMAL_UPDATES.map(orjson.dumps), RECORDS.map(orjson.dumps), mutated(UPDATE_TEXT)),
       st.sampled_from([CONFIG, CONFIG_MS]))
def test_an_accepted_line_is_a_fixed_point_of_the_rules(line, config):
    first = classify(line, config)
    assume(first.kind in (Kind.EVENT, Kind.PROFILE, Kind.GROUP))
    if first.kind == Kind.EVENT and config.time_unit == "ms":
        # See test_time_unit_ms_before_1973_is_read_back_as_seconds.
        assume(orjson.loads(first.line)["properties"]["time"] >= MS_THRESHOLD)
    again = classify(first.line, config)
    assert (again.kind, again.line, again.key, again.day, again.name) == (
        first.kind, first.line, first.key, first.day, first.name
    )
    assert again.normalised == 0, "normalising a normalised record changed it"


def test_time_unit_ms_before_1973_is_the_documented_limit_of_idempotence():
    """DESIGN.md reads |t| >= 1e11 as milliseconds, so --time-unit ms writes times before
    1973-03-03T09:46:40Z as numbers that read back as seconds (Mixpanel reads them the same
    way). docs/guarantees.md says so; this pins exactly what happens."""
    line = orjson.dumps({"event": "e", "properties": {"time": 40_000_000, "distinct_id": "u", "$insert_id": "a"}})
    first = classify(line, CONFIG_MS)
    assert first.kind == Kind.EVENT
    assert orjson.loads(first.line)["properties"]["time"] == 40_000_000_000
    again = classify(first.line, CONFIG_MS)
    assert (again.kind, again.reason) == (Kind.REJECT, Reason.TIME_OUT_OF_RANGE)


# --- idempotence of whole runs -------------------------------------------------------------

CORPUS_LINES = st.one_of(
    NORMAL_EVENTS.map(orjson.dumps), NORMAL_UPDATES.map(orjson.dumps), GOOD_EVENTS.map(orjson.dumps),
    RECORDS.map(orjson.dumps), mutated(EVENT_TEXT), st.sampled_from([b"", b"  ", b"\t\r"]),
)


def _clean_files(root: Path) -> dict[str, bytes]:
    """The bytes of every events, profiles and groups file under `root`."""
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.ndjson*"))}
    return {name: data for name, data in files.items() if name.startswith(("events/", "profiles/", "groups/"))}


@settings(max_examples=3, deadline=None, derandomize=True, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.lists(CORPUS_LINES, min_size=1, max_size=60), min_size=1, max_size=3),
       st.sampled_from(["s", "ms"]))
def test_preparing_prepared_output_again_changes_nothing_and_rejects_nothing(files, time_unit):
    config = RuleConfig(REFERENCE, time_unit)

    def readable_back(line: bytes) -> bool:
        # The documented limit of --time-unit ms (see the test above).
        fate = classify(line, config)
        return not (fate.kind == Kind.EVENT and time_unit == "ms"
                    and orjson.loads(fate.line)["properties"]["time"] < MS_THRESHOLD)

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for i, lines in enumerate(files):
            name = f"upload-{i}.ndjson" + (".gz" if i == 1 else "")
            write_input(root / "raw" / name, [line for line in lines if readable_back(line)], mtime=1_700_000_000 + i)
        first, second = root / "first", root / "second"
        flags = ("--reference-time", REF, "--time-unit", time_unit)
        assert run_cli("--input", str(root / "raw" / "*"), "--output", str(first), *flags) == 0
        prepared = [p for p in ("events/**", "profiles/*", "groups/*") if (first / p.split("/")[0]).exists()]
        s1 = summary(first)
        assume(prepared)
        args = [arg for p in prepared for arg in ("--input", str(first / p))]
        assert run_cli(*args, "--output", str(second), "--upload-order", "name", *flags) == 0

        s2 = summary(second)
        assert _clean_files(second) == _clean_files(first)
        assert s2["input"]["lines"] == s1["output"]["events"] + s1["output"]["profiles"] + s1["output"]["groups"]
        assert (s2["output"]["rejected"], s2["output"]["superseded"], s2["input"]["blank_lines"]) == (0, 0, 0)
        assert s2["normalised"] == {"time": 0, "distinct_id": 0, "insert_id_generated": 0, "duplicate_keys": 0}
