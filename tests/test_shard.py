"""Tests of transforms/shard.py: the GroupIntoShards stage."""

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.shard import GroupIntoShards

DAY1 = "events/day=2024-01-01"
DAY2 = "events/day=2024-01-02"


def k(n):
    """A key whose first 8 bytes read `n` big-endian: its shard is n % shards."""
    return n.to_bytes(8, "big") + b"\xee" * 8


def line(text):
    """Every test line is 10 bytes written (9 and a newline)."""
    assert len(text) == 9, text
    return text.encode()


def sort_batches(element):
    # A shard's batches come in no given order.
    key, batches = element
    return key, sorted(batches)


# Day 1: 5 lines, 50 bytes, in two batches of two ranks; rejects: 4 lines, 40
# bytes; profiles: 1 line; day 2: 2 lines. With a 20-byte target: 3, 2, 1 and
# 1 shards.
DAY1_A = (0, [0, 10, 20], k(0) + k(1) + k(2), [line("d1-r0-o00"), line("d1-r0-o10"), line("d1-r0-o20")])
DAY1_B = (1, [0, 10], k(4) + k(3), [line("d1-r1-o00"), line("d1-r1-o10")])
DAY2_A = (0, [30, 40], k(7) + k(8), [line("d2-r0-o30"), line("d2-r0-o40")])
PROFILES_A = (0, [50], k(5), [line("prof-r0-5")])
REJECTS_A = (0, [1, 2, 3, 4], b"", [line("rej-r0-o1"), line("rej-r0-o2"), line("rej-r0-o3"), line("rej-r0-o4")])
INPUT = [(DAY1, DAY1_A), (DAY1, DAY1_B), (DAY2, DAY2_A), ("profiles", PROFILES_A), ("rejects", REJECTS_A)]


def test_group_into_shards_one_shard_per_route_when_small():
    with TestPipeline(runner="FnApiRunner") as p:
        shards = p | beam.Create(INPUT) | GroupIntoShards(1 << 30) | beam.Map(sort_batches)
        assert_that(
            shards,
            equal_to(
                [
                    ((DAY1, 0), sorted([DAY1_A, DAY1_B])),
                    ((DAY2, 0), [DAY2_A]),
                    (("profiles", 0), [PROFILES_A]),
                    (("rejects", 0), [REJECTS_A]),
                ]
            ),
            label="CheckShards",
        )


def test_group_into_shards_spreads_a_route_by_its_size_and_keys():
    with TestPipeline(runner="FnApiRunner") as p:
        shards = p | beam.Create(INPUT) | GroupIntoShards(20) | beam.Map(sort_batches)
        assert_that(
            shards,
            equal_to(
                [
                    # ceil(50 / 20) = 3 shards; key n goes to shard n % 3.
                    ((DAY1, 0), [(0, [0], k(0), [line("d1-r0-o00")]), (1, [10], k(3), [line("d1-r1-o10")])]),
                    ((DAY1, 1), [(0, [10], k(1), [line("d1-r0-o10")]), (1, [0], k(4), [line("d1-r1-o00")])]),
                    ((DAY1, 2), [(0, [20], k(2), [line("d1-r0-o20")])]),
                    # 20 bytes: one shard, the batch untouched.
                    ((DAY2, 0), [DAY2_A]),
                    (("profiles", 0), [PROFILES_A]),
                    # 40 bytes: 2 shards; key-less records by (rank * 1_000_003 + offset) % 2.
                    (("rejects", 0), [(0, [2, 4], b"", [line("rej-r0-o2"), line("rej-r0-o4")])]),
                    (("rejects", 1), [(0, [1, 3], b"", [line("rej-r0-o1"), line("rej-r0-o3")])]),
                ]
            ),
            label="CheckShards",
        )


def test_group_into_shards_copies_of_a_key_meet_in_one_shard():
    """Copies of one key from many ranks and batches end up in one element."""
    batches = [
        (DAY1, (rank, [o, o + 1], k(7) + k(rank), [b"%d:%d" % (rank, o), b"%d:%d" % (rank, o + 1)]))
        for rank in range(6)
        for o in (0, 100)
    ]
    with TestPipeline(runner="FnApiRunner") as p:
        shards = p | beam.Create(batches) | GroupIntoShards(10) | beam.Map(sort_batches)
        # 24 lines of 4 bytes (96 bytes) over 10-byte shards: 10 shards. Key 7: shard 7.
        expected = {}
        for rank in range(6):
            for o in (0, 100):
                expected.setdefault(7, []).append((rank, [o], k(7), [b"%d:%d" % (rank, o)]))
                expected.setdefault(rank, []).append((rank, [o + 1], k(rank), [b"%d:%d" % (rank, o + 1)]))
        assert_that(
            shards,
            equal_to([((DAY1, shard), sorted(batches)) for shard, batches in expected.items()]),
            label="CheckShards",
        )


@pytest.mark.parametrize("target", [0, -5])
def test_group_into_shards_refuses_non_positive_target(target):
    with pytest.raises(ValueError, match="target_bytes"):
        GroupIntoShards(target)
