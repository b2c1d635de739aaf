"""Tests of transforms/dedupe.py: the DeduplicateEvents stage."""

import hashlib

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.dedupe import DeduplicateEvents
from transforms.layout import order_for_writing
from transforms.records import classify_batch

DAY1 = "events/day=2024-01-01"
DAY2 = "events/day=2024-01-02"
SUPERSEDED1 = "superseded/day=2024-01-01"
BIG = 1 << 30  # one shard per route


def key(text):
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


KA, KB, KC = key("a"), key("b"), key("c")


def written(element):
    """A shard as WritePartitions writes it: its lines in written order, and keys to cut files by."""
    (route, shard), batches = element
    return (route, shard), order_for_writing(route, batches)


@pytest.fixture
def copies_across_ranks():
    """Key A sent three times (ranks 0, 2 and 1), key B three times (ranks 0 and 1),
    key C once; copies of one key arrive in different elements, and batches of
    rank 1 cover disjoint offset ranges, as batches of one file do."""
    return [
        (DAY1, (0, [10, 20], KA + KB, [b"a@0:10", b"b@0:20"])),
        (DAY1, (2, [0], KA, [b"a@2:0"])),
        (DAY1, (1, [5], KB, [b"b@1:5"])),
        (DAY1, (1, [6, 7, 900], KB + KC + KA, [b"b@1:6", b"c@1:7", b"a@1:900"])),
    ]


SURVIVORS = [((DAY1, 0), ([b"b@1:6", b"c@1:7", b"a@2:0"], None))]


def test_dedupe_latest_upload_wins(copies_across_ranks):
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(copies_across_ranks) | DeduplicateEvents(BIG)
        written_survivors = out.survivors | "WriteSurvivors" >> beam.Map(written)
        assert_that(written_survivors, equal_to(SURVIVORS), label="CheckSurvivors")
        written_superseded = out.superseded | "WriteSuperseded" >> beam.Map(written)
        assert_that(written_superseded, equal_to([]), label="CheckNoSupersededWritten")
        assert_that(out.tallies, equal_to([{"superseded": 4}]), label="CheckTallies")


def test_dedupe_keep_superseded(copies_across_ranks):
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(copies_across_ranks) | DeduplicateEvents(BIG, keep_superseded=True)
        written_survivors = out.survivors | "WriteSurvivors" >> beam.Map(written)
        assert_that(written_survivors, equal_to(SURVIVORS), label="CheckSurvivors")
        assert_that(
            out.superseded | "WriteSuperseded" >> beam.Map(written),
            equal_to([((SUPERSEDED1, 0), ([b"a@0:10", b"b@0:20", b"b@1:5", b"a@1:900"], None))]),
            label="CheckSuperseded",
        )
        assert_that(out.tallies, equal_to([{"superseded": 4}]), label="CheckTallies")


def test_dedupe_no_duplicates_no_tallies():
    events = [(DAY1, (0, [0], KA, [b"a"])), (DAY2, (0, [1, 2], KB + KC, [b"b", b"c"]))]
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(events) | DeduplicateEvents(BIG, keep_superseded=True)
        assert_that(
            out.survivors | "WriteSurvivors" >> beam.Map(written),
            equal_to([((DAY1, 0), ([b"a"], None)), ((DAY2, 0), ([b"b", b"c"], None))]),
            label="CheckSurvivors",
        )
        written_superseded = out.superseded | "WriteSuperseded" >> beam.Map(written)
        assert_that(written_superseded, equal_to([]), label="CheckNoSuperseded")
        assert_that(out.tallies, equal_to([]), label="CheckNoTallies")


def test_dedupe_event_resent_on_another_day_is_another_key(rule_config):
    """Same name, distinct_id and $insert_id, times on two UTC days: both survive;
    the copies within each day collapse to the latest."""
    jan1 = b'{"event":"Buy","properties":{"time":1704153599,"distinct_id":"u1","$insert_id":"i1","v":1}}'
    jan2 = b'{"event":"Buy","properties":{"time":1704153600,"distinct_id":"u1","$insert_id":"i1","v":2}}'
    jan1_again = b'{"event":"Buy","properties":{"time":1704067200,"distinct_id":"u1","$insert_id":"i1","v":3}}'
    first = classify_batch(0, "a.json", [0, 100], [jan1, jan2], rule_config)
    second = classify_batch(1, "b.json", [0], [jan1_again], rule_config)
    assert sorted(first.events) == [DAY1, DAY2]
    assert first.events[DAY1][1:] == ([0], first.events[DAY1][2], [jan1])
    assert first.events[DAY2][1:] == ([100], first.events[DAY2][2], [jan2])
    assert second.events == {DAY1: (1, [0], first.events[DAY1][2], [jan1_again])}
    assert first.events[DAY1][2] != first.events[DAY2][2]
    batches = list(first.events.items()) + list(second.events.items())
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(batches) | DeduplicateEvents(BIG, keep_superseded=True)
        assert_that(
            out.survivors | "WriteSurvivors" >> beam.Map(written),
            equal_to([((DAY1, 0), ([jan1_again], None)), ((DAY2, 0), ([jan2], None))]),
            label="CheckSurvivors",
        )
        assert_that(
            out.superseded | "WriteSuperseded" >> beam.Map(written),
            equal_to([((SUPERSEDED1, 0), ([jan1], None))]),
            label="CheckSuperseded",
        )
        assert_that(out.tallies, equal_to([{"superseded": 1}]), label="CheckTallies")


def test_dedupe_across_several_shards():
    """Small target: the route spreads over shards; copies of a key still meet."""
    keys = [key(f"k{i}") for i in range(40)]
    # Ranks 0-2, offsets 0-119, key i % 40; each file read as three batches.
    batches = [
        (
            DAY1,
            (
                r,
                list(range(lo, hi)),
                b"".join(keys[i % 40] for i in range(lo, hi)),
                [b"%d-%03d" % (r, i) for i in range(lo, hi)],
            ),
        )
        for r in range(3)
        for lo, hi in ((0, 50), (50, 100), (100, 120))
    ]
    total_bytes = 360 * 6
    target = total_bytes // 4 + 1  # ceil(total / target) = 4 shards
    survivors, superseded, shards = {}, {}, set()
    for r in range(3):
        for i in range(120):
            # Shard: the key's first 8 bytes, big-endian, modulo 4.
            shard = int.from_bytes(keys[i % 40][:8], "big") % 4
            shards.add(shard)
            latest = r == 2 and i >= 80  # the last copy of each key
            (survivors if latest else superseded).setdefault(shard, []).append(b"%d-%03d" % (r, i))
    assert len(shards) == 4
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(batches) | DeduplicateEvents(target, keep_superseded=True)
        assert_that(
            out.survivors | "WriteSurvivors" >> beam.Map(written),
            equal_to([((DAY1, s), (lines, None)) for s, lines in survivors.items()]),
            label="CheckSurvivors",
        )
        assert_that(
            out.superseded | "WriteSuperseded" >> beam.Map(written),
            equal_to([((SUPERSEDED1, s), (lines, None)) for s, lines in superseded.items()]),
            label="CheckSuperseded",
        )
        assert_that(
            out.tallies,
            equal_to([{"superseded": len(lines)} for lines in superseded.values()]),
            label="CheckTallies",
        )
        total = out.tallies | beam.Map(lambda t: t["superseded"]) | beam.CombineGlobally(sum)
        assert_that(total, equal_to([360 - 40]), label="CheckSupersededCount")


def ten_thousand_copies(part):
    """Part `part` of ten: copies 10,000 * part .. 10,000 * part + 9,999 of one key,
    copy i at rank i % 10 and offset i, as one batch per rank. Built inside the
    pipeline: Create infers a type per element, which is slow for big batches."""
    for rank in range(10):
        offsets = list(range(part * 10_000 + rank, (part + 1) * 10_000, 10))
        yield DAY1, (rank, offsets, KA * len(offsets), [b"%d:%d" % (rank, o) for o in offsets])


def test_dedupe_hundred_thousand_copies_of_one_event():
    superseded = [b"%d:%d" % (r, o) for r in range(10) for o in range(r, 100_000, 10)][:-1]
    assert len(superseded) == 99_999
    with TestPipeline(runner="FnApiRunner") as p:
        batches = p | beam.Create(range(10)) | "MakeCopies" >> beam.FlatMap(ten_thousand_copies)
        out = batches | DeduplicateEvents(BIG, keep_superseded=True)
        written_survivors = out.survivors | "WriteSurvivors" >> beam.Map(written)
        assert_that(written_survivors, equal_to([((DAY1, 0), ([b"9:99999"], None))]), label="CheckSurvivor")
        assert_that(
            out.superseded | "WriteSuperseded" >> beam.Map(written),
            equal_to([((SUPERSEDED1, 0), (superseded, None))]),
            label="CheckSuperseded",
        )
        assert_that(out.tallies, equal_to([{"superseded": 99_999}]), label="CheckTallies")


@pytest.mark.parametrize("target", [0, -5])
def test_dedupe_refuses_non_positive_target(target):
    with pytest.raises(ValueError, match="target_bytes"):
        DeduplicateEvents(target)
