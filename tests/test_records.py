"""Tests of transforms/records.py: routing, tallies, batches, shards, winners and file splits."""

import base64
import hashlib
import itertools
import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.records import (
    GROUPS_ROUTE,
    KEY_BYTES,
    PROFILES_ROUTE,
    REJECTS_ROUTE,
    batch_bytes,
    events_route,
    in_upload_order,
    order_for_writing,
    pack,
    part_name,
    pick_latest,
    line_example,
    reject_line,
    shard_count,
    shards_of,
    sort_batch,
    split_batch,
    split_into_files,
    superseded_route,
    unpack,
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
REJECT_INDEXES = (6, 7, 8, 9, 10)
REJECT_REASONS = ("invalid_json", "invalid_utf8", "invalid_json", "not_an_object", "missing_time")


def offsets_of(lines, start=0):
    offsets, offset = [], start
    for line in lines:
        offsets.append(offset)
        offset += len(line) + 1
    return offsets


def classified_batch(rank, offsets, raws, config):
    """The RecordBatch the rules make of accepted lines, computed line by line."""
    fates = [classify(raw, config) for raw in raws]
    assert all(len(f.key) == KEY_BYTES and f.line for f in fates), raws
    return rank, list(offsets), b"".join(f.key for f in fates), [f.line for f in fates]


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


def written_size(lines):
    return sum(len(line) + 1 for line in lines)


def key(text):
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def keys_of(batch):
    keys = batch[2]
    return [keys[i : i + KEY_BYTES] for i in range(0, len(keys), KEY_BYTES)]


def records_of(batch):
    """(rank, offset, key, line) per record of a batch; key b"" when the batch has none."""
    rank, offsets, keys, lines = batch
    ks = keys_of(batch) if keys else [b""] * len(lines)
    assert len(offsets) == len(ks) == len(lines)
    return [(rank, o, k, line) for o, k, line in zip(offsets, ks, lines)]


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
    assert result.rejects == (
        2,
        offsets,
        b"",
        [expected_reject("invalid_json", raw, o, rule_config) for raw, o in zip(lines, offsets)],
    )


# Accepted lines that give a key twice, and a reject that does too.
DUP_EVENT = (
    b'{"event":"Signup","properties":{"time":1704067200,"distinct_id":"u1","$insert_id":"a1",'
    b'"plan":"free","plan":"pro"}}'
)
DUP_EVENT_WRITTEN = (
    b'{"event":"Signup","properties":{"time":1704067200,"distinct_id":"u1","$insert_id":"a1","plan":"pro"}}'
)
DUP_PROFILE = b'{"$distinct_id":"u1","$set":{"plan":"free","plan":"pro"}}'
DUP_GROUP = b'{"$group_key":"company","$group_id":7,"$set":{"n":{"a":1,"a":2}}}'
DUP_REJECT = b'{"event":"Signup","event":"Signup","properties":{"time":1704067200}}'  # missing_distinct_id


def test_sort_batch_counts_and_shows_lines_with_duplicate_keys(rule_config):
    lines = [SIGNUP, DUP_EVENT, DUP_REJECT, DUP_EVENT, DUP_PROFILE, b"", DUP_GROUP, PROFILE_SET]
    offsets = offsets_of(lines, 500)
    result = sort_batch(3, PATH, offsets, lines, rule_config)
    assert dict(result.tallies) == {
        "lines": 8,
        "blank_lines": 1,
        "events_accepted": 3,
        "profiles": 2,
        "groups": 1,
        "rejected": 1,
        "rejected_missing_distinct_id": 1,
        "normalised_distinct_id": 1,
        "normalised_duplicate_keys": 4,  # both copies of DUP_EVENT, the profile, the group; not the reject
        "operation_profiles_$set": 2,
        "operation_groups_$set": 1,
    }
    assert result.duplicate_key_examples == [
        (3, offsets[i], {"source": PATH, "offset": offsets[i], "line": lines[i].decode()}) for i in (1, 3, 4, 6)
    ]
    # The last value won in what is written; the reject keeps its raw line.
    assert result.events["events/day=2024-01-01"][3] == [SIGNUP, DUP_EVENT_WRITTEN, DUP_EVENT_WRITTEN]
    assert result.profiles[3] == [b'{"$distinct_id":"u1","$set":{"plan":"pro"}}', PROFILE_SET]
    assert result.groups[3] == [b'{"$group_key":"company","$group_id":"7","$set":{"n":{"a":2}}}']
    assert result.rejects[3] == [expected_reject("missing_distinct_id", DUP_REJECT, offsets[2], rule_config)]
    assert result.examples == {
        "missing_distinct_id": [(3, offsets[2], {"source": PATH, "offset": offsets[2], "line": DUP_REJECT.decode()})]
    }


def test_sort_batch_keeps_the_first_five_duplicate_key_examples(rule_config):
    lines = [DUP_PROFILE.replace(b"u1", b"u%d" % i) for i in range(8)]
    offsets = offsets_of(lines)
    result = sort_batch(2, PATH, offsets, lines, rule_config)
    assert result.tallies["normalised_duplicate_keys"] == 8
    assert result.duplicate_key_examples == [
        (2, offsets[i], {"source": PATH, "offset": offsets[i], "line": lines[i].decode()}) for i in range(5)
    ]


def test_sort_batch_without_duplicate_keys_has_no_tally_and_no_examples(rule_config):
    offsets = offsets_of(MIXED_LINES, 1000)
    result = sort_batch(4, PATH, offsets, MIXED_LINES, rule_config)
    assert "normalised_duplicate_keys" not in result.tallies
    assert result.duplicate_key_examples == []


def test_sort_batch_mixed_lines_routes_and_record_batches(rule_config):
    offsets = offsets_of(MIXED_LINES, 1000)
    result = sort_batch(4, PATH, offsets, MIXED_LINES, rule_config)

    def accepted(*indexes):
        return classified_batch(4, [offsets[i] for i in indexes], [MIXED_LINES[i] for i in indexes], rule_config)

    assert result.events == {
        "events/day=2024-01-01": accepted(0, 11),
        "events/day=2024-01-02": accepted(3),
    }
    assert result.profiles == accepted(4, 12)
    assert result.groups == accepted(5)
    assert result.rejects == (
        4,
        [offsets[i] for i in REJECT_INDEXES],
        b"",
        [
            expected_reject(reason, MIXED_LINES[i], offsets[i], rule_config)
            for i, reason in zip(REJECT_INDEXES, REJECT_REASONS)
        ],
    )
    # Column types as documented: list, bytes (16 per record), list.
    for batch in [*result.events.values(), result.profiles, result.groups]:
        rank, offs, keys, lines = batch
        assert (type(rank), type(offs), type(keys), type(lines)) == (int, list, bytes, list)
        assert len(keys) == KEY_BYTES * len(lines) == KEY_BYTES * len(offs)
    # The two Signups are different events: different keys.
    day1_keys = keys_of(result.events["events/day=2024-01-01"])
    assert day1_keys[0] != day1_keys[1]


def test_sort_batch_normalised_lines_written(rule_config):
    result = sort_batch(0, PATH, [0, 200, 400], [SIGNUP, PLAY_MS, GROUP_INT_ID], rule_config)
    assert result.events["events/day=2024-01-01"][3] == [SIGNUP]
    (play_line,) = result.events["events/day=2024-01-02"][3]
    play = orjson.loads(play_line)
    insert_id = play["properties"].pop("$insert_id")
    assert play == {"event": "Play", "properties": {"time": 1704153600, "distinct_id": "42"}}
    assert len(insert_id) == 32 and int(insert_id, 16) >= 0
    assert result.groups == (
        0,
        [400],
        classify(GROUP_INT_ID, rule_config).key,
        [b'{"$group_key":"company","$group_id":"7","$set":{"name":"Acme"}}'],
    )
    assert (result.profiles, result.rejects) == (None, None)


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
    line = result.rejects[3][result.rejects[1].index(offsets[index])]
    assert line == expected_reject(reason, MIXED_LINES[index], offsets[index], rule_config)
    assert type(line) is bytes


def test_sort_batch_invalid_utf8_reject_round_trips(rule_config):
    result = sort_batch(0, PATH, [7], [NOT_UTF8], rule_config)
    rank, offsets, keys, (line,) = result.rejects
    assert (rank, offsets, keys) == (0, [7], b"")
    parsed = orjson.loads(line)
    assert list(parsed) == ["reason", "detail", "source", "offset", "line_base64"]
    assert base64.b64decode(parsed["line_base64"]) == NOT_UTF8
    assert (parsed["reason"], parsed["source"], parsed["offset"]) == ("invalid_utf8", PATH, 7)


def test_sort_batch_nul_reject_keeps_raw_bytes(rule_config):
    result = sort_batch(0, PATH, [0], [WITH_NUL], rule_config)
    (line,) = result.rejects[3]
    parsed = orjson.loads(line)
    assert list(parsed) == ["reason", "detail", "source", "offset", "line"]
    assert parsed["line"].encode("utf-8") == WITH_NUL
    assert b"\\u0000" in line


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
    assert (result.events, result.profiles, result.groups, result.rejects) == ({}, None, None, None)
    assert (dict(result.event_names), result.examples, result.duplicate_key_examples) == ({}, {}, [])


def test_sort_batch_empty_batch(rule_config):
    result = sort_batch(0, PATH, [], [], rule_config)
    assert dict(result.tallies) == {
        "lines": 0,
        "events_accepted": 0,
        "profiles": 0,
        "groups": 0,
        "rejected": 0,
    }
    assert (result.events, result.profiles, result.groups, result.rejects) == ({}, None, None, None)
    assert (dict(result.event_names), result.examples, result.duplicate_key_examples) == ({}, {}, [])


def test_sort_batch_every_line_counted_once(rule_config):
    rng = random.Random(7)
    pool = MIXED_LINES + [b"{}", b'"x"', b"null", b'{"properties":{}}']
    lines = [rng.choice(pool) for _ in range(500)]
    offsets = offsets_of(lines)
    result = sort_batch(0, PATH, offsets, lines, rule_config)
    t = result.tallies
    batches = [*result.events.values(), result.profiles, result.groups, result.rejects]
    assert all(b is not None for b in batches)
    events = sum(len(b[3]) for b in result.events.values())
    assert t["lines"] == 500
    assert t["events_accepted"] == events
    assert t["profiles"] == len(result.profiles[3])
    assert t["groups"] == len(result.groups[3])
    assert t["rejected"] == len(result.rejects[3])
    assert t["rejected"] == sum(n for k, n in t.items() if k.startswith("rejected_"))
    assert t["lines"] == t["blank_lines"] + events + t["profiles"] + t["groups"] + t["rejected"]
    for b in batches:
        assert b[1] == sorted(b[1]), "a batch keeps the input's order"
        assert len(b[1]) == len(b[3])
    blank_offsets = [o for o, line in zip(offsets, lines) if not line.strip(b" \t\r")]
    assert sorted([o for b in batches for o in b[1]] + blank_offsets) == offsets


# reject_line and line_example ----------------------------------------------------


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
    assert type(line) is bytes


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
    assert line_example("p.json", 9, raw) == {"source": "p.json", "offset": 9, **expected}


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


# batch sizes and shards ------------------------------------------------------------


@pytest.mark.parametrize(
    "lines, expected",
    [
        pytest.param([], 0, id="empty"),
        pytest.param([b""], 1, id="empty_line_has_its_newline"),
        pytest.param([b"abc", b"de"], 7, id="two_lines"),
    ],
)
def test_batch_bytes(lines, expected):
    assert batch_bytes((0, list(range(len(lines))), b"", lines)) == expected


@pytest.mark.parametrize(
    "route_bytes, target, expected",
    [(0, 10, 1), (1, 10, 1), (10, 10, 1), (11, 10, 2), (100, 10, 10)],
)
def test_shard_count(route_bytes, target, expected):
    assert shard_count(route_bytes, target) == expected


def keyed_batch(rank, offsets, keys, lines=None):
    if lines is None:
        lines = [b"%d:%d" % (rank, o) for o in offsets]
    return rank, list(offsets), b"".join(keys), lines


PINNED_KEYS = [hashlib.sha256(b"%d" % i).digest()[:16] for i in range(12)]


@pytest.mark.parametrize(
    "shards, expected",
    [
        (1, [0] * 12),
        (4, [0, 1, 2, 3, 2, 3, 3, 2, 3, 0, 0, 2]),
        (13, [9, 6, 8, 1, 5, 3, 2, 8, 1, 10, 11, 11]),
        (1000, [40, 913, 446, 843, 454, 83, 559, 230, 895, 40, 40, 538]),
    ],
)
def test_shards_of_pinned_for_fixed_keys(shards, expected):
    """Pinned numbers: a change of hashing moves data between shards and must be seen."""
    batch = keyed_batch(0, range(12), PINNED_KEYS)
    assert shards_of(batch, shards) == expected
    # The documented rule: the first 8 bytes, big-endian, modulo the shard count.
    assert expected == [int.from_bytes(k[:8], "big") % shards for k in PINNED_KEYS]


def test_shards_of_reads_the_first_eight_bytes_big_endian():
    keys = [
        bytes(7) + b"\x05" + b"\xff" * 8,  # 5
        b"\x01" + bytes(7) + b"\xff" * 8,  # 2**56
        bytes(8) + b"\x12" * 8,  # 0: the last 8 bytes do not count
    ]
    # Little-endian would give 5 * 2**56 % 7 == 6 and 1 % 7 == 1.
    assert shards_of(keyed_batch(0, range(3), keys), 7) == [5, 4, 0]


@pytest.mark.parametrize(
    "rank, offsets, shards, expected",
    [
        (3, [10, 11, 500], 5, [4, 0, 4]),
        (0, range(0, 50, 7), 13, [0, 7, 1, 8, 2, 9, 3, 10]),
        (2, range(0, 50, 7), 13, [8, 2, 9, 3, 10, 4, 11, 5]),
        (1, [0, 1], 1, [0, 0]),
    ],
)
def test_shards_of_keyless_records_placed_by_rank_and_offset(rank, offsets, shards, expected):
    batch = (rank, list(offsets), b"", [b"x"] * len(offsets))
    assert shards_of(batch, shards) == expected
    assert expected == [(rank * 1_000_003 + o) % shards for o in offsets]


def test_shards_of_same_key_same_shard_wherever_it_is():
    keys = [key(f"k{i}") for i in range(200)]
    for shards in (1, 2, 3, 7, 64):
        first = shards_of(keyed_batch(0, range(200), keys), shards)
        assert all(0 <= s < shards for s in first)
        # Another rank, other offsets, other lines, reversed order: same shard per key.
        again = shards_of(keyed_batch(9, range(5000, 5200), keys[::-1], [b"other"] * 200), shards)
        assert again == first[::-1]


def test_shards_of_spreads_keys():
    counts = [0] * 4
    for shard in shards_of(keyed_batch(0, range(1000), [key(f"k{i}") for i in range(1000)]), 4):
        counts[shard] += 1
    assert all(150 < c < 350 for c in counts), counts


def test_shards_of_keyless_records_spread_by_position():
    shards = shards_of((0, list(range(100)), b"", [b"x"] * 100), 4)
    assert set(shards) == {0, 1, 2, 3}
    assert shards_of((3, [10], b"", [b"x"]), 5) == shards_of((3, [10], b"", [b"y"]), 5)


_SHARDS_SCRIPT = """
import hashlib
from transforms.records import shards_of
keys = [hashlib.sha256(str(i).encode()).digest()[:16] for i in range(64)]
print(shards_of((0, list(range(64)), b"".join(keys), [b""] * 64), 13)
      + [s for r in range(3) for s in shards_of((r, list(range(0, 50, 7)), b"", [b""] * 8), 13)])
"""


def test_shards_of_is_stable_across_processes():
    """Python's hash() of bytes changes with PYTHONHASHSEED; shards_of must not."""
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
    here = [int.from_bytes(k[:8], "big") % 13 for k in keys] + [
        (r * 1_000_003 + o) % 13 for r in range(3) for o in range(0, 50, 7)
    ]
    assert outputs[0].strip() == str(here)


# split_batch -----------------------------------------------------------------------

# Keys whose first 8 bytes read 0, 1 and 2 big-endian: shards 0, 1 and 2 of 3.
S0, S1, S2 = (bytes(7) + bytes([n]) + bytes([0xA0 + n]) * 8 for n in (0, 1, 2))


def test_split_batch_exact():
    batch = (5, [10, 20, 30, 40, 50, 60], S1 + S0 + S1 + S2 + S0 + S1, [b"a", b"b", b"c", b"d", b"e", b"f"])
    assert split_batch(batch, 3) == {
        0: (5, [20, 50], S0 + S0, [b"b", b"e"]),
        1: (5, [10, 30, 60], S1 + S1 + S1, [b"a", b"c", b"f"]),
        2: (5, [40], S2, [b"d"]),
    }


def test_split_batch_keyless_rejects():
    batch = (0, [0, 1, 2, 3, 4], b"", [b"r0", b"r1", b"r2", b"r3", b"r4"])
    assert split_batch(batch, 2) == {
        0: (0, [0, 2, 4], b"", [b"r0", b"r2", b"r4"]),
        1: (0, [1, 3], b"", [b"r1", b"r3"]),
    }


def test_split_batch_one_shard_is_the_batch():
    batch = (1, [3, 4], S1 + S2, [b"x", b"y"])
    assert split_batch(batch, 1) == {0: batch}


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "keyless"])
def test_split_batch_keeps_order_and_loses_nothing(keyed):
    rng = random.Random(11)
    for _ in range(200):
        n = rng.randrange(1, 60)
        shards = rng.randrange(1, 9)
        offsets = sorted(rng.sample(range(10_000), n))
        keys = [key(str(rng.randrange(15))) for _ in range(n)] if keyed else [b""] * n
        lines = [b"line-%d" % o for o in offsets]
        batch = (rng.randrange(5), offsets, b"".join(keys), lines)
        parts = split_batch(batch, shards)
        assert all(0 <= s < shards for s in parts)
        placed = shards_of(batch, shards)
        for shard, part in parts.items():
            assert part[0] == batch[0]
            assert part[1] == sorted(part[1]), "a part keeps the batch's order"
            assert part[3], "no empty parts"
            assert records_of(part) == [r for r, s in zip(records_of(batch), placed) if s == shard]
        merged = sorted(r for part in parts.values() for r in records_of(part))
        assert merged == records_of(batch)


def test_in_upload_order_orders_by_rank_then_first_offset():
    a = (1, [50, 60], b"", [b"a"])
    b = (0, [900], b"", [b"b"])
    c = (1, [10, 20], b"", [b"c"])
    d = (2, [0], b"", [b"d"])
    for order in itertools.permutations([a, b, c, d]):
        assert in_upload_order(order) == [b, c, a, d]


# pick_latest -----------------------------------------------------------------------

K1, K2 = key("one"), key("two")


@pytest.mark.parametrize(
    "batches, survivors, superseded",
    [
        pytest.param([], [], [], id="nothing"),
        pytest.param([(0, [5], K1, [b"a"])], [b"a"], [], id="single"),
        pytest.param(
            [(0, [900], K1, [b"old"]), (1, [0], K1, [b"new"])],
            [b"new"],
            [b"old"],
            id="later_rank_wins_over_larger_offset",
        ),
        pytest.param(
            [(2, [10, 11], K1 + K1, [b"early", b"late"])],
            [b"late"],
            [b"early"],
            id="same_rank_later_offset_wins_in_one_batch",
        ),
        pytest.param(
            [(2, [10], K1, [b"early"]), (2, [11], K1, [b"late"])],
            [b"late"],
            [b"early"],
            id="same_rank_later_offset_wins_across_batches",
        ),
        pytest.param(
            [(0, [0, 1], K1 + K2, [b"a", b"b"])],
            [b"a", b"b"],
            [],
            id="different_keys_both_survive",
        ),
        pytest.param(
            [(0, [0], K1, [b"1a"]), (3, [0], K2, [b"2a"]), (1, [3], K2, [b"2b"]), (1, [7, 8], K1 + K1, [b"1b", b"1c"])],
            [b"1c", b"2a"],
            [b"1a", b"2b", b"1b"],
            id="two_keys_interleaved",
        ),
        pytest.param(
            [(1, [3, 7, 8], K2 + K1 + K1, [b"2b", b"1b", b"1c"]), (3, [0], K2, [b"2a"]), (0, [0], K1, [b"1a"])],
            [b"1c", b"2a"],
            [b"1a", b"2b", b"1b"],
            id="two_keys_interleaved_in_one_batch",
        ),
        pytest.param(
            [(0, [1, 2], K1 + K1, [b"same", b"same"]), (0, [3], K2, [b"same"])],
            [b"same", b"same"],
            [b"same"],
            id="identical_lines_counted_by_record",
        ),
    ],
)
def test_pick_latest(batches, survivors, superseded):
    for order in itertools.permutations(batches):
        assert pick_latest(list(order)) == (survivors, superseded)
        assert pick_latest(iter(order)) == (survivors, superseded)


def test_pick_latest_winner_is_not_decided_by_line_content():
    batches = [(0, [1], K1, [b"zzz"]), (0, [2], K1, [b"aaa"])]
    assert pick_latest(batches) == ([b"aaa"], [b"zzz"])
    assert pick_latest(batches[::-1]) == ([b"aaa"], [b"zzz"])
    assert pick_latest([(0, [1, 2], K1 + K1, [b"zzz", b"aaa"])]) == ([b"aaa"], [b"zzz"])


def test_pick_latest_hundred_thousand_copies_of_one_key():
    # 100 files (ranks) of 1,000 copies each, each file read as 4 batches, shuffled.
    batches = [
        (rank, list(range(start, start + 250)), K1 * 250, [b"%d:%d" % (rank, o) for o in range(start, start + 250)])
        for rank in range(100)
        for start in range(0, 1000, 250)
    ]
    random.Random(1).shuffle(batches)
    survivors, superseded = pick_latest(batches)
    assert survivors == [b"99:999"]
    assert superseded == [b"%d:%d" % (r, o) for r in range(100) for o in range(1000)][:-1]


def _random_batches(rng):
    """Batches of a shard as the pipeline makes them: per rank, disjoint offset ranges."""
    batches = []
    for rank in rng.sample(range(20), rng.randrange(1, 6)):
        offset = 0
        for _ in range(rng.randrange(1, 4)):
            n = rng.randrange(1, 8)
            offsets = []
            for _ in range(n):
                offset += rng.randrange(1, 50)
                offsets.append(offset)
            keys = [key(str(rng.randrange(6))) for _ in offsets]
            batches.append(keyed_batch(rank, offsets, keys))
    rng.shuffle(batches)
    return batches


def test_pick_latest_matches_a_record_by_record_reference():
    rng = random.Random(5)
    for _ in range(300):
        batches = _random_batches(rng)
        records = sorted(r for b in batches for r in records_of(b))  # upload order
        latest = {}
        for rank, offset, k, _ in records:
            latest[k] = (rank, offset)
        survivors = [r[3] for r in records if latest[r[2]] == r[:2]]
        superseded = [r[3] for r in records if latest[r[2]] != r[:2]]
        assert pick_latest(batches) == (survivors, superseded)


# order_for_writing -----------------------------------------------------------------

IA, IB = b"\x01" * 16, b"\x02" * 16


@pytest.mark.parametrize("route", [PROFILES_ROUTE, GROUPS_ROUTE])
def test_order_for_writing_updates_by_identity_then_upload_order(route):
    batches = [
        (1, [0, 4], IB + IA, [b"b2", b"a2"]),
        (0, [5, 9], IA + IB, [b"a1", b"b1"]),
        (2, [0], IA, [b"a3"]),
    ]
    for order in itertools.permutations(batches):
        assert order_for_writing(route, list(order)) == (
            [b"a1", b"a2", b"a3", b"b1", b"b2"],
            [IA, IA, IA, IB, IB],
        )


@pytest.mark.parametrize("route", ["events/day=2024-01-01", "superseded/day=2024-01-01"])
def test_order_for_writing_events_in_upload_order_without_keys(route):
    batches = [(1, [0], IA, [b"3"]), (0, [9], IB, [b"2"]), (0, [5], IA, [b"1"]), (2, [0, 1], IB + IA, [b"4", b"5"])]
    for order in itertools.permutations(batches):
        assert order_for_writing(route, list(order)) == ([b"1", b"2", b"3", b"4", b"5"], None)


def test_order_for_writing_rejects_in_upload_order_without_keys():
    batches = [(1, [0, 7], b"", [b"r3", b"r4"]), (0, [9], b"", [b"r2"]), (0, [2], b"", [b"r1"])]
    for order in itertools.permutations(batches):
        assert order_for_writing(REJECTS_ROUTE, list(order)) == ([b"r1", b"r2", b"r3", b"r4"], None)


def test_order_for_writing_nothing():
    assert order_for_writing(PROFILES_ROUTE, []) == ([], [])
    assert order_for_writing(REJECTS_ROUTE, []) == ([], None)


# split_into_files ------------------------------------------------------------------


def sized(sizes):
    """Lines whose length plus newline is each of `sizes`, neighbours told apart."""
    return [bytes([97 + i % 26]) * (s - 1) for i, s in enumerate(sizes)]


@pytest.mark.parametrize(
    "sizes, max_bytes, expected_sizes",
    [
        pytest.param([], 10, [], id="nothing"),
        pytest.param([5, 5], 10, [[5, 5]], id="exactly_full"),
        pytest.param([5, 5, 1], 10, [[5, 5], [1]], id="one_byte_over"),
        pytest.param([3, 3, 3, 3, 3], 7, [[3, 3], [3, 3], [3]], id="several_parts"),
        pytest.param([2, 20, 2], 10, [[2], [20], [2]], id="oversize_line_alone"),
        pytest.param([20], 10, [[20]], id="only_an_oversize_line"),
    ],
)
def test_split_into_files_without_keys(sizes, max_bytes, expected_sizes):
    lines = [b"x" * (s - 1) for s in sizes]
    files = split_into_files(lines, None, max_bytes)
    assert [[len(line) + 1 for line in f] for f in files] == expected_sizes
    assert [line for f in files for line in f] == lines


@pytest.mark.parametrize(
    "identities, max_bytes, expected",
    [
        pytest.param("", 8, [], id="nothing"),
        pytest.param("aabb", 8, ["aabb"], id="fits"),
        pytest.param("aabbb", 8, ["aa", "bbb"], id="cut_between_identities"),
        pytest.param("abbb", 6, ["a", "bbb"], id="identity_run_moved_whole"),
        pytest.param("abbbbbc", 6, ["a", "bbbbb", "c"], id="oversize_identity_own_file"),
        pytest.param("bbbbb", 4, ["bbbbb"], id="only_oversize_identity"),
        pytest.param("abbbbbbcc", 8, ["a", "bbbbbb", "cc"], id="oversize_after_small"),
        pytest.param("aabbcc", 4, ["aa", "bb", "cc"], id="one_identity_per_file"),
        pytest.param("abcde", 4, ["ab", "cd", "e"], id="small_identities_packed"),
    ],
)
def test_split_into_files_keeps_identities_together(identities, max_bytes, expected):
    # Every line is 2 bytes written: its identity's letter and the newline.
    lines = [c.encode() for c in identities]
    keys = [c.encode() * 16 for c in identities]
    files = split_into_files(lines, keys, max_bytes)
    assert [b"".join(f).decode() for f in files] == expected


def check_split(lines, keys, max_bytes, files):
    """Every documented property of split_into_files' result."""
    assert [line for f in files for line in f] == lines, "concatenation equals input"
    assert all(files), "no empty files"
    # Keys of each file, by the positions of its lines.
    bounds = list(itertools.accumulate(len(f) for f in files))
    starts = [0] + bounds[:-1]
    file_keys = [keys[s:e] if keys is not None else None for s, e in zip(starts, bounds)]
    for f, fk in zip(files, file_keys):
        if written_size(f) > max_bytes:
            if keys is None:
                assert len(f) == 1, "only a single line may exceed the limit"
            else:
                assert len(set(fk)) == 1, "only a single identity may exceed the limit"
    if keys is not None:
        # No identity is split across files.
        owners = {}
        for n, fk in enumerate(file_keys):
            for k in fk:
                assert owners.setdefault(k, n) == n
    # Greedy: a file is cut only when the next line (identity) would not fit.
    for n in range(len(files) - 1):
        nxt, nk = files[n + 1], file_keys[n + 1]
        first = nxt[:1] if keys is None else [line for line, k in zip(nxt, nk) if k == nk[0]]
        assert written_size(files[n]) + written_size(first) > max_bytes
    if written_size(lines) <= max_bytes:
        assert files == ([lines] if lines else [])


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    runs=st.lists(st.tuples(st.integers(0, 5), st.lists(st.integers(1, 12), min_size=1, max_size=6)), max_size=12),
    max_bytes=st.integers(1, 30),
)
def test_split_into_files_identity_properties(runs, max_bytes):
    batches = []
    offset = 0
    for ident, sizes in runs:
        lines = sized(sizes)
        offsets = list(range(offset, offset + len(lines)))
        offset += len(lines)
        batches.append((0, offsets, bytes([ident]) * 16 * len(lines), lines))
    lines, keys = order_for_writing(PROFILES_ROUTE, batches)
    check_split(lines, keys, max_bytes, split_into_files(lines, keys, max_bytes))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(sizes=st.lists(st.integers(1, 12), max_size=40), max_bytes=st.integers(1, 30))
def test_split_into_files_line_properties(sizes, max_bytes):
    lines = sized(sizes)
    check_split(lines, None, max_bytes, split_into_files(lines, None, max_bytes))


@pytest.mark.parametrize("seed", range(5))
def test_split_into_files_seeded_random_properties(seed):
    rng = random.Random(seed)
    for _ in range(400):
        n = rng.randrange(0, 80)
        lines = sized([rng.randrange(1, 40) for _ in range(n)])
        max_bytes = rng.randrange(1, 200)
        check_split(lines, None, max_bytes, split_into_files(lines, None, max_bytes))
        # Keyed: runs of one identity, identities ascending as order_for_writing leaves them.
        keys = sorted(bytes([rng.randrange(rng.randrange(1, 30))]) * 16 for _ in range(n))
        check_split(lines, keys, max_bytes, split_into_files(lines, keys, max_bytes))


# --- pack / unpack: what crosses the shuffle --------------------------------------------------
@pytest.mark.parametrize(
    "lines",
    [[b"{}"], [b""], [b'{"a":"\xc3\xa9\\n"}', b"", b"x" * 70_000], [b'{"n":%d}' % i for i in range(5_000)]],
    ids=["one", "one_empty", "escaped_newline_and_large", "many"],
)
def test_pack_round_trips_and_keeps_the_other_columns(lines):
    batch = (3, list(range(len(lines))), b"k" * 16 * len(lines), lines)
    packed = pack(batch)
    rank, keys, frame = packed
    assert (rank, keys) == (3, batch[2])
    assert isinstance(frame, bytes)
    assert unpack(packed) == batch


def test_pack_keeps_large_and_unordered_offsets():
    # Offsets are int64 in the frame: beyond 32 bits (a file over 4 GiB) they must survive.
    offsets = [0, 2**40 + 7, 5, 2**62]
    batch = (0, offsets, b"", [b"a", b"b", b"c", b"d"])
    assert unpack(pack(batch)) == batch


def test_pack_makes_ndjson_smaller():
    lines = [b'{"event":"Signup","properties":{"distinct_id":"u%d","time":%d}}' % (i, 1_700_000_000 + i)
             for i in range(2_000)]
    assert len(pack((0, list(range(len(lines))), b"", lines))[2]) < sum(map(len, lines)) // 4


def test_pack_refuses_a_raw_newline():
    with pytest.raises(ValueError, match="raw newline"):
        pack((0, [0], b"", [b"a\nb"]))


def test_pack_and_unpack_from_many_threads_at_once():
    # A Beam worker runs bundles on several threads: each must get its own lines back.
    batches = [(i, list(range(i, i + 300)), b"", [b'{"t":%d,"pad":"%s"}' % (i, b"p" * (i % 97)) for _ in range(300)])
               for i in range(64)]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda b: unpack(pack(b)), batches)) == batches
