"""Tests of transforms/batches.py: selecting, sharding and packing record batches, and picking winners."""

import hashlib
import itertools
import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from transforms.batches import (
    KEY_BYTES,
    batch_bytes,
    in_upload_order,
    pack,
    pick_latest,
    select,
    shard_count,
    shards_of,
    split_batch,
    unpack,
)


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
    return [(rank, o, k, line) for o, k, line in zip(offsets, ks, lines, strict=True)]


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
from transforms.batches import shards_of
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


# select and split_batch ------------------------------------------------------------

# Keys whose first 8 bytes read 0, 1 and 2 big-endian: shards 0, 1 and 2 of 3.
S0, S1, S2 = (bytes(7) + bytes([n]) + bytes([0xA0 + n]) * 8 for n in (0, 1, 2))


def test_select_keeps_the_records_at_the_indices_given():
    batch = (5, [10, 20, 30, 40], S0 + S1 + S2 + S0, [b"a", b"b", b"c", b"d"])
    assert select(batch, [0, 2, 3]) == (5, [10, 30, 40], S0 + S2 + S0, [b"a", b"c", b"d"])
    assert select(batch, [1]) == (5, [20], S1, [b"b"])
    assert select(batch, range(4)) == batch
    assert select(batch, []) == (5, [], b"", [])
    assert select((0, [1, 2], b"", [b"r1", b"r2"]), [1]) == (0, [2], b"", [b"r2"])  # key-less rejects


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
            assert records_of(part) == [r for r, s in zip(records_of(batch), placed, strict=True) if s == shard]
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


def picked(batches):
    """pick_latest's (survivors, superseded), each as the lines of its batches in order."""
    return tuple([line for b in part for line in b[3]] for part in pick_latest(batches))


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
        assert picked(list(order)) == (survivors, superseded)
        assert picked(iter(order)) == (survivors, superseded)


def test_pick_latest_winner_is_not_decided_by_line_content():
    batches = [(0, [1], K1, [b"zzz"]), (0, [2], K1, [b"aaa"])]
    assert picked(batches) == ([b"aaa"], [b"zzz"])
    assert picked(batches[::-1]) == ([b"aaa"], [b"zzz"])
    assert picked([(0, [1, 2], K1 + K1, [b"zzz", b"aaa"])]) == ([b"aaa"], [b"zzz"])


def test_pick_latest_hundred_thousand_copies_of_one_key():
    # 100 files (ranks) of 1,000 copies each, each file read as 4 batches, shuffled.
    batches = [
        (rank, list(range(start, start + 250)), K1 * 250, [b"%d:%d" % (rank, o) for o in range(start, start + 250)])
        for rank in range(100)
        for start in range(0, 1000, 250)
    ]
    random.Random(1).shuffle(batches)
    survivors, superseded = picked(batches)
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
        assert picked(batches) == (survivors, superseded)


def test_pick_latest_gives_the_batches_less_the_other_records():
    """Each record keeps its rank, offset and key; a batch that loses nothing is passed on as it is."""
    whole = (2, [3], K2, [b"2a"])
    mixed = (1, [5, 6, 7], K1 + K2 + K1, [b"1a", b"2b", b"1b"])
    lost = (0, [9], K1, [b"1z"])
    survivors, superseded = pick_latest([mixed, whole, lost])
    assert survivors == [(1, [7], K1, [b"1b"]), whole]
    assert survivors[1] is whole
    assert superseded == [lost, (1, [5, 6], K1 + K2, [b"1a", b"2b"])]
    assert superseded[0] is lost
    no_copies = [(2, [0], K1, [b"x"]), (1, [0], K2, [b"y"])]
    assert pick_latest(no_copies) == (no_copies[::-1], [])


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
