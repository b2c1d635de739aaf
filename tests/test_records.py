"""Tests of transforms/records.py: routing, tallies, winners and file splits."""

import base64
import hashlib
import itertools
import os
import random
import subprocess
import sys

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.records import (
    GROUPS_ROUTE,
    PROFILES_ROUTE,
    REJECTS_ROUTE,
    events_route,
    order_for_writing,
    part_name,
    pick_latest,
    record_bytes,
    reject_example,
    reject_line,
    shard_count,
    shard_of,
    sort_batch,
    split_into_files,
    split_into_shards,
    superseded_route,
)
from transforms.rules import classify

PATH = "gs://raw/dump-1.ndjson"

SIGNUP = b'{"event":"Signup","properties":{"time":1704067200,"distinct_id":"u1","$insert_id":"a1"}}'
# Milliseconds, an integer distinct_id and no $insert_id: three normalisations.
PLAY_MS = b'{"event":"Play","properties":{"time":1704153600000,"distinct_id":42}}'
SIGNUP_FLOAT_TIME = (
    b'{"event":"Signup","properties":{"time":1704067200.0,"distinct_id":"u2","$insert_id":"a2"}}'
)
PROFILE_SET = b'{"$distinct_id":"u1","$set":{"plan":"pro"}}'
PROFILE_INT_ID = b'{"$distinct_id":17,"$set":{"plan":"free"}}'
GROUP_INT_ID = b'{"$group_key":"company","$group_id":7,"$set":{"name":"Acme"}}'
NOT_JSON = b"not json"
NOT_UTF8 = b'{"event":"\xff\xfe"}'
WITH_NUL = b'{"a":"x\x00y"}'
A_LIST = b"[1,2]"
NO_TIME = b'{"event":"Signup","properties":{"distinct_id":"u1"}}'

MIXED_LINES = [
    SIGNUP,  # 0
    b"",  # 1 blank
    b"  \t",  # 2 blank
    PLAY_MS,  # 3
    PROFILE_SET,  # 4
    GROUP_INT_ID,  # 5
    NOT_JSON,  # 6
    NOT_UTF8,  # 7
    WITH_NUL,  # 8
    A_LIST,  # 9
    NO_TIME,  # 10
    SIGNUP_FLOAT_TIME,  # 11
    PROFILE_INT_ID,  # 12
    b"\r",  # 13 blank
]


def offsets_of(lines, start=0):
    offsets, offset = [], start
    for line in lines:
        offsets.append(offset)
        offset += len(line) + 1
    return offsets


def record_of(rank, offset, raw, config):
    fate = classify(raw, config)
    return (rank, offset, fate.key, fate.line)


def expected_reject(reason, raw, offset, config):
    detail = classify(raw, config).detail
    assert detail, "a reject carries a human sentence"
    head = (
        b'{"reason":"' + reason.encode() + b'","detail":' + orjson.dumps(detail)
        + b',"source":' + orjson.dumps(PATH) + b',"offset":' + str(offset).encode()
    )
    try:
        return head + b',"line":' + orjson.dumps(raw.decode("utf-8")) + b"}"
    except UnicodeDecodeError:
        return head + b',"line_base64":"' + base64.b64encode(raw) + b'"}'


# sort_batch ------------------------------------------------------------------------


def test_sort_batch_mixed_lines_tallies(rule_config):
    offsets = offsets_of(MIXED_LINES, 1000)
    result = sort_batch(4, PATH, offsets, MIXED_LINES, rule_config)
    assert dict(result.tallies) == {
        "lines": 14,
        "blank_lines": 3,
        "events_accepted": 3,
        "profiles": 2,
        "groups": 1,
        "rejected": 5,
        "rejected_invalid_json": 2,
        "rejected_invalid_utf8": 1,
        "rejected_not_an_object": 1,
        "rejected_missing_time": 1,
        "normalised_time": 2,
        "normalised_distinct_id": 3,
        "normalised_insert_id_generated": 1,
        "operation_profiles_$set": 2,
        "operation_groups_$set": 1,
    }


def test_sort_batch_mixed_lines_report_figures(rule_config):
    offsets = offsets_of(MIXED_LINES, 1000)
    result = sort_batch(4, PATH, offsets, MIXED_LINES, rule_config)
    assert dict(result.event_names) == {"Signup": 2, "Play": 1}
    assert result.examples == {
        "invalid_json": [
            (4, offsets[6], {"source": PATH, "offset": offsets[6], "line": "not json"}),
            (4, offsets[8], {"source": PATH, "offset": offsets[8], "line": '{"a":"x\x00y"}'}),
        ],
        "invalid_utf8": [
            (
                4,
                offsets[7],
                {"source": PATH, "offset": offsets[7], "line_base64": base64.b64encode(NOT_UTF8).decode()},
            )
        ],
        "not_an_object": [(4, offsets[9], {"source": PATH, "offset": offsets[9], "line": "[1,2]"})],
        "missing_time": [
            (4, offsets[10], {"source": PATH, "offset": offsets[10], "line": NO_TIME.decode()})
        ],
    }


def test_sort_batch_keeps_first_five_examples_per_reason(rule_config):
    lines = [b"bad %d" % i for i in range(8)]
    offsets = offsets_of(lines)
    result = sort_batch(2, PATH, offsets, lines, rule_config)
    assert result.examples == {
        "invalid_json": [
            (2, offsets[i], {"source": PATH, "offset": offsets[i], "line": "bad %d" % i}) for i in range(5)
        ]
    }
    assert len(result.rejects) == 8


def test_sort_batch_mixed_lines_routes_and_records(rule_config):
    offsets = offsets_of(MIXED_LINES, 1000)
    result = sort_batch(4, PATH, offsets, MIXED_LINES, rule_config)

    def rec(index):
        return record_of(4, offsets[index], MIXED_LINES[index], rule_config)

    assert result.events == {
        "events/day=2024-01-01": [rec(0), rec(11)],
        "events/day=2024-01-02": [rec(3)],
    }
    assert result.profiles == [rec(4), rec(12)]
    assert result.groups == [rec(5)]
    assert [r[:3] for r in result.rejects] == [(4, offsets[i], b"") for i in (6, 7, 8, 9, 10)]
    # Keys are 16-byte digests for every accepted record.
    assert all(len(r[2]) == 16 for r in result.profiles + result.groups)
    assert all(len(r[2]) == 16 for records in result.events.values() for r in records)


def test_sort_batch_normalised_lines_written(rule_config):
    result = sort_batch(0, PATH, [0, 200, 400], [SIGNUP, PLAY_MS, GROUP_INT_ID], rule_config)
    assert result.events["events/day=2024-01-01"][0][3] == SIGNUP
    play = orjson.loads(result.events["events/day=2024-01-02"][0][3])
    insert_id = play["properties"].pop("$insert_id")
    assert play == {"event": "Play", "properties": {"time": 1704153600, "distinct_id": "42"}}
    assert len(insert_id) == 32 and int(insert_id, 16) >= 0
    assert result.groups[0][3] == b'{"$group_key":"company","$group_id":"7","$set":{"name":"Acme"}}'


@pytest.mark.parametrize(
    "index, reason",
    [
        pytest.param(6, "invalid_json", id="invalid_json"),
        pytest.param(7, "invalid_utf8", id="invalid_utf8_base64"),
        pytest.param(8, "invalid_json", id="nul_byte_kept"),
        pytest.param(9, "not_an_object", id="not_an_object"),
        pytest.param(10, "missing_time", id="missing_time"),
    ],
)
def test_sort_batch_reject_lines_exact(rule_config, index, reason):
    offsets = offsets_of(MIXED_LINES, 1000)
    result = sort_batch(4, PATH, offsets, MIXED_LINES, rule_config)
    (line,) = [r[3] for r in result.rejects if r[1] == offsets[index]]
    assert line == expected_reject(reason, MIXED_LINES[index], offsets[index], rule_config)


def test_sort_batch_invalid_utf8_reject_round_trips(rule_config):
    result = sort_batch(0, PATH, [7], [NOT_UTF8], rule_config)
    (reject,) = result.rejects
    parsed = orjson.loads(reject[3])
    assert list(parsed) == ["reason", "detail", "source", "offset", "line_base64"]
    assert base64.b64decode(parsed["line_base64"]) == NOT_UTF8
    assert (parsed["reason"], parsed["source"], parsed["offset"]) == ("invalid_utf8", PATH, 7)


def test_sort_batch_nul_reject_keeps_raw_bytes(rule_config):
    result = sort_batch(0, PATH, [0], [WITH_NUL], rule_config)
    (reject,) = result.rejects
    parsed = orjson.loads(reject[3])
    assert list(parsed) == ["reason", "detail", "source", "offset", "line"]
    assert parsed["line"].encode("utf-8") == WITH_NUL
    assert b"\\u0000" in reject[3]


def test_sort_batch_blank_lines_only(rule_config):
    lines = [b"", b" ", b"\t\t", b"\r", b" \r"]
    result = sort_batch(0, PATH, offsets_of(lines), lines, rule_config)
    assert dict(result.tallies) == {
        "lines": 5,
        "blank_lines": 5,
        "events_accepted": 0,
        "profiles": 0,
        "groups": 0,
        "rejected": 0,
    }
    assert (result.events, result.profiles, result.groups, result.rejects) == ({}, [], [], [])
    assert (dict(result.event_names), result.examples) == ({}, {})


def test_sort_batch_empty_batch(rule_config):
    result = sort_batch(0, PATH, [], [], rule_config)
    assert dict(result.tallies) == {
        "lines": 0,
        "events_accepted": 0,
        "profiles": 0,
        "groups": 0,
        "rejected": 0,
    }


def test_sort_batch_every_line_counted_once(rule_config):
    rng = random.Random(7)
    pool = MIXED_LINES + [b"{}", b'"x"', b"null", b'{"properties":{}}']
    lines = [rng.choice(pool) for _ in range(500)]
    result = sort_batch(0, PATH, offsets_of(lines), lines, rule_config)
    t = result.tallies
    events = sum(len(r) for r in result.events.values())
    assert t["lines"] == 500
    assert t["events_accepted"] == events
    assert t["profiles"] == len(result.profiles)
    assert t["groups"] == len(result.groups)
    assert t["rejected"] == len(result.rejects)
    assert t["rejected"] == sum(n for k, n in t.items() if k.startswith("rejected_"))
    assert t["lines"] == t["blank_lines"] + events + t["profiles"] + t["groups"] + t["rejected"]
    all_offsets = sorted(
        [r[1] for recs in result.events.values() for r in recs]
        + [r[1] for r in result.profiles + result.groups + result.rejects]
    )
    blank_offsets = [o for o, line in zip(offsets_of(lines), lines) if not line.strip(b" \t\r")]
    assert sorted(all_offsets + blank_offsets) == offsets_of(lines)


# reject_line and reject_example ----------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected_tail",
    [
        pytest.param(b"abc", b'"line":"abc"}', id="ascii"),
        pytest.param("é ✓ 😀".encode(), '"line":"é ✓ 😀"}'.encode(), id="utf8_kept_not_escaped"),
        pytest.param(b'a"b\\c', b'"line":"a\\"b\\\\c"}', id="json_escapes"),
        pytest.param(b"a\x00b", b'"line":"a\\u0000b"}', id="nul"),
        pytest.param(b"a\rb", b'"line":"a\\rb"}', id="cr_inside"),
        pytest.param(b"", b'"line":""}', id="empty"),
        pytest.param(b"\xff", b'"line_base64":"/w=="}', id="invalid_byte"),
        pytest.param(b"\xed\xa0\x80", b'"line_base64":"7aCA"}', id="encoded_surrogate"),
        pytest.param(b"ab\xc3", b'"line_base64":"YWLD"}', id="truncated_sequence"),
    ],
)
def test_reject_line(raw, expected_tail):
    line = reject_line("invalid_json", "the line is broken", "s3://b/k.json", 12, raw)
    head = b'{"reason":"invalid_json","detail":"the line is broken","source":"s3://b/k.json","offset":12,'
    assert line == head + expected_tail


def test_reject_line_round_trips_bytes():
    rng = random.Random(3)
    for _ in range(300):
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(12)))
        parsed = orjson.loads(reject_line("r", "d", "p", 0, raw))
        if "line" in parsed:
            assert parsed["line"].encode("utf-8") == raw
        else:
            assert base64.b64decode(parsed["line_base64"]) == raw


@pytest.mark.parametrize(
    "raw, expected",
    [
        pytest.param(b"abc", {"line": "abc"}, id="short"),
        pytest.param(b"x" * 301, {"line": "x" * 300}, id="cut_to_300_characters"),
        pytest.param("é".encode() * 301, {"line": "é" * 300}, id="cut_by_characters_not_bytes"),
        pytest.param(b"\xff" * 300, {"line_base64": base64.b64encode(b"\xff" * 225).decode()}, id="base64_cut"),
    ],
)
def test_reject_example(raw, expected):
    assert reject_example("p.json", 9, raw) == {"source": "p.json", "offset": 9, **expected}


# routes and names ------------------------------------------------------------------


def test_routes():
    assert events_route("2024-01-31") == "events/day=2024-01-31"
    assert superseded_route("events/day=2024-01-31") == "superseded/day=2024-01-31"
    assert (PROFILES_ROUTE, GROUPS_ROUTE, REJECTS_ROUTE) == ("profiles", "groups", "rejects")


@pytest.mark.parametrize(
    "index, total, compressed, expected",
    [
        (0, 1, True, "part-00000-of-00001.ndjson.gz"),
        (0, 2, True, "part-00000-of-00002.ndjson.gz"),
        (1, 2, False, "part-00001-of-00002.ndjson"),
        (41, 123, False, "part-00041-of-00123.ndjson"),
    ],
)
def test_part_name(index, total, compressed, expected):
    assert part_name(index, total, compressed) == expected


# shards ----------------------------------------------------------------------------


def key(text):
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


@pytest.mark.parametrize(
    "route_bytes, target, expected",
    [(0, 10, 1), (1, 10, 1), (10, 10, 1), (11, 10, 2), (100, 10, 10)],
)
def test_shard_count(route_bytes, target, expected):
    assert shard_count(route_bytes, target) == expected


def test_shard_of_same_key_same_shard():
    for shards in (1, 2, 3, 7, 64):
        for i in range(200):
            k = key(f"k{i}")
            first = shard_of((0, 0, k, b"a"), shards)
            assert 0 <= first < shards
            assert shard_of((9, 12345, k, b"other line"), shards) == first


def test_shard_of_spreads_keys():
    counts = [0] * 4
    for i in range(1000):
        counts[shard_of((0, i, key(f"k{i}"), b""), 4)] += 1
    assert all(150 < c < 350 for c in counts), counts


def test_shard_of_keyless_records_spread_by_position():
    shards = {shard_of((0, offset, b"", b"x"), 4) for offset in range(100)}
    assert shards == {0, 1, 2, 3}
    assert shard_of((3, 10, b"", b"x"), 5) == shard_of((3, 10, b"", b"y"), 5)


_SHARDS_SCRIPT = """
import hashlib
from transforms.records import shard_of
keys = [hashlib.sha256(str(i).encode()).digest()[:16] for i in range(64)]
print([shard_of((0, 0, k, b""), 13) for k in keys]
      + [shard_of((r, o, b"", b""), 13) for r in range(3) for o in range(0, 50, 7)])
"""


def test_shard_of_is_stable_across_processes():
    """Python's hash() of bytes changes with PYTHONHASHSEED; shard_of must not."""
    outputs = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        done = subprocess.run(
            [sys.executable, "-c", _SHARDS_SCRIPT],
            env=env,
            capture_output=True,
            check=True,
            text=True,
        )
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    keys = [hashlib.sha256(str(i).encode()).digest()[:16] for i in range(64)]
    here = [shard_of((0, 0, k, b""), 13) for k in keys] + [
        shard_of((r, o, b"", b""), 13) for r in range(3) for o in range(0, 50, 7)
    ]
    assert outputs[0].strip() == str(here)


def test_split_into_shards():
    records = [(0, i, key(f"k{i % 10}"), b"x") for i in range(100)]
    out = split_into_shards(records, 3)
    assert sorted(r for part in out.values() for r in part) == sorted(records)
    for shard, part in out.items():
        assert all(shard_of(r, 3) == shard for r in part)
    # One key's records all sit in one shard.
    for k in {r[2] for r in records}:
        assert len({s for s, part in out.items() for r in part if r[2] == k}) == 1


# pick_latest -----------------------------------------------------------------------

K1, K2 = key("one"), key("two")


@pytest.mark.parametrize(
    "records, survivors, superseded",
    [
        pytest.param([], [], [], id="nothing"),
        pytest.param([(0, 5, K1, b"a")], [(0, 5, K1, b"a")], [], id="single"),
        pytest.param(
            [(0, 900, K1, b"old"), (1, 0, K1, b"new")],
            [(1, 0, K1, b"new")],
            [(0, 900, K1, b"old")],
            id="later_rank_wins_over_larger_offset",
        ),
        pytest.param(
            [(2, 10, K1, b"early"), (2, 11, K1, b"late")],
            [(2, 11, K1, b"late")],
            [(2, 10, K1, b"early")],
            id="same_rank_later_offset_wins",
        ),
        pytest.param(
            [(0, 0, K1, b"a"), (0, 1, K2, b"b")],
            [(0, 0, K1, b"a"), (0, 1, K2, b"b")],
            [],
            id="different_keys_both_survive",
        ),
        pytest.param(
            [(0, 0, K1, b"1a"), (3, 0, K2, b"2a"), (1, 7, K1, b"1b"), (1, 3, K2, b"2b"), (1, 8, K1, b"1c")],
            [(1, 8, K1, b"1c"), (3, 0, K2, b"2a")],
            [(0, 0, K1, b"1a"), (1, 3, K2, b"2b"), (1, 7, K1, b"1b")],
            id="two_keys_interleaved",
        ),
    ],
)
def test_pick_latest(records, survivors, superseded):
    for order in itertools.permutations(records):
        assert pick_latest(list(order)) == (survivors, superseded)


def test_pick_latest_winner_is_not_decided_by_line_content():
    records = [(0, 1, K1, b"zzz"), (0, 2, K1, b"aaa")]
    assert pick_latest(records) == ([(0, 2, K1, b"aaa")], [(0, 1, K1, b"zzz")])
    assert pick_latest(records[::-1]) == ([(0, 2, K1, b"aaa")], [(0, 1, K1, b"zzz")])


def test_pick_latest_hundred_thousand_copies_of_one_key():
    records = [(i % 100, i // 100, K1, b'{"event":"e"}') for i in range(100_000)]
    random.Random(1).shuffle(records)
    survivors, superseded = pick_latest(records)
    assert survivors == [(99, 999, K1, b'{"event":"e"}')]
    assert len(superseded) == 99_999
    assert superseded == sorted(r for r in records if r != (99, 999, K1, b'{"event":"e"}'))


# order_for_writing -----------------------------------------------------------------


def test_order_for_writing_profiles_by_identity_then_upload_order():
    a, b = b"\x01" * 16, b"\x02" * 16
    records = [(1, 0, b, b"b2"), (0, 5, a, b"a1"), (0, 9, b, b"b1"), (2, 0, a, b"a3"), (1, 4, a, b"a2")]
    expected = [(0, 5, a, b"a1"), (1, 4, a, b"a2"), (2, 0, a, b"a3"), (0, 9, b, b"b1"), (1, 0, b, b"b2")]
    assert order_for_writing(PROFILES_ROUTE, records) == expected
    assert order_for_writing(GROUPS_ROUTE, records) == expected


@pytest.mark.parametrize("route", ["events/day=2024-01-01", "superseded/day=2024-01-01", REJECTS_ROUTE])
def test_order_for_writing_others_in_upload_order(route):
    a, b = b"\x01" * 16, b"\x02" * 16
    records = [(1, 0, a, b"3"), (0, 9, b, b"2"), (0, 5, a, b"1"), (2, 0, b"", b"4")]
    assert [r[3] for r in order_for_writing(route, records)] == [b"1", b"2", b"3", b"4"]


# split_into_files ------------------------------------------------------------------


def rec(i, identity, size):
    """A record whose line plus newline is `size` bytes."""
    return (0, i, identity, b"x" * (size - 1))


@pytest.mark.parametrize(
    "sizes, max_bytes, expected_sizes",
    [
        pytest.param([], 10, [], id="nothing"),
        pytest.param([5, 5], 10, [[5, 5]], id="exactly_full"),
        pytest.param([5, 5, 1], 10, [[5, 5], [1]], id="one_byte_over"),
        pytest.param([3, 3, 3, 3, 3], 7, [[3, 3], [3, 3], [3]], id="several_parts"),
        pytest.param([2, 20, 2], 10, [[2], [20], [2]], id="oversize_record_alone"),
    ],
)
def test_split_into_files_events(sizes, max_bytes, expected_sizes):
    records = [rec(i, key(f"e{i}"), s) for i, s in enumerate(sizes)]
    files = split_into_files("events/day=2024-01-01", records, max_bytes)
    assert [[len(r[3]) + 1 for r in f] for f in files] == expected_sizes
    assert [r for f in files for r in f] == records


@pytest.mark.parametrize(
    "identities, max_bytes, expected",
    [
        pytest.param("aabb", 8, ["aabb"], id="fits"),
        pytest.param("aabbb", 8, ["aa", "bbb"], id="cut_between_identities"),
        pytest.param("abbb", 6, ["a", "bbb"], id="identity_run_moved_whole"),
        pytest.param("abbbbbc", 6, ["a", "bbbbb", "c"], id="oversize_identity_own_file"),
        pytest.param("bbbbb", 4, ["bbbbb"], id="only_oversize_identity"),
        pytest.param("abbbbbbcc", 8, ["a", "bbbbbb", "cc"], id="oversize_after_small"),
        pytest.param("aabbcc", 4, ["aa", "bb", "cc"], id="one_identity_per_file"),
    ],
)
@pytest.mark.parametrize("route", [PROFILES_ROUTE, GROUPS_ROUTE])
def test_split_into_files_keeps_identities_together(route, identities, max_bytes, expected):
    # Every record is 2 bytes written.
    records = [rec(i, c.encode() * 16, 2) for i, c in enumerate(identities)]
    files = split_into_files(route, records, max_bytes)
    assert ["".join(chr(r[2][0]) for r in f) for f in files] == expected
    assert [r for f in files for r in f] == records


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    runs=st.lists(st.tuples(st.integers(0, 5), st.lists(st.integers(1, 12), min_size=1, max_size=6)), max_size=12),
    max_bytes=st.integers(1, 30),
)
def test_split_into_files_profiles_properties(runs, max_bytes):
    records = []
    for ident, sizes in runs:
        for size in sizes:
            records.append((0, len(records), bytes([ident]) * 16, b"x" * (size - 1)))
    records = order_for_writing(PROFILES_ROUTE, records)
    files = split_into_files(PROFILES_ROUTE, records, max_bytes)
    assert [r for f in files for r in f] == records
    assert all(files)
    for f in files:
        idents = {r[2] for r in f}
        if record_bytes(f) > max_bytes:
            # Only a single identity larger than the limit may exceed it.
            assert len(idents) == 1
            (ident,) = idents
            assert record_bytes(r for r in records if r[2] == ident) > max_bytes
    # No identity is split across files.
    owners = {}
    for n, f in enumerate(files):
        for r in f:
            assert owners.setdefault(r[2], n) == n


@settings(max_examples=200, deadline=None, derandomize=True)
@given(sizes=st.lists(st.integers(1, 12), max_size=40), max_bytes=st.integers(1, 30))
def test_split_into_files_events_properties(sizes, max_bytes):
    records = [(0, i, key(str(i)), b"x" * (s - 1)) for i, s in enumerate(sizes)]
    files = split_into_files("events/day=2024-01-01", records, max_bytes)
    assert [r for f in files for r in f] == records
    for f in files:
        assert f
        assert record_bytes(f) <= max_bytes or len(f) == 1
    # Greedy: a file is cut only when the next record would not fit.
    for f, nxt in zip(files, files[1:]):
        assert record_bytes(f) + len(nxt[0][3]) + 1 > max_bytes
