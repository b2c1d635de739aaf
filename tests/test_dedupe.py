"""Tests of transforms/dedupe.py: the DeduplicateEvents stage."""

import hashlib

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.dedupe import DeduplicateEvents
from transforms.records import shard_of, sort_batch

DAY1 = "events/day=2024-01-01"
DAY2 = "events/day=2024-01-02"
BIG = 1 << 30  # one shard per route


def key(text):
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


KA, KB, KC = key("a"), key("b"), key("c")


@pytest.fixture
def copies_across_ranks():
    """Key A sent three times (ranks 0, 2 and 1), key B twice in rank 1, key C once;
    batches split so that copies of one key arrive in different elements."""
    return [
        (DAY1, [(0, 10, KA, b"a@0:10"), (0, 20, KB, b"b@0:20")]),
        (DAY1, [(2, 0, KA, b"a@2:0"), (1, 5, KB, b"b@1:5")]),
        (DAY1, [(1, 900, KA, b"a@1:900"), (1, 6, KB, b"b@1:6"), (1, 7, KC, b"c@1:7")]),
    ]


def test_dedupe_latest_upload_wins(copies_across_ranks):
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(copies_across_ranks) | DeduplicateEvents(BIG)
        assert_that(
            out.survivors,
            equal_to([((DAY1, 0), [(1, 6, KB, b"b@1:6"), (1, 7, KC, b"c@1:7"), (2, 0, KA, b"a@2:0")])]),
            label="CheckSurvivors",
        )
        assert_that(out.superseded, equal_to([]), label="CheckNoSupersededWritten")
        assert_that(out.tallies, equal_to([{"superseded": 4}]), label="CheckTallies")


def test_dedupe_keep_superseded(copies_across_ranks):
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(copies_across_ranks) | DeduplicateEvents(BIG, keep_superseded=True)
        assert_that(
            out.survivors,
            equal_to([((DAY1, 0), [(1, 6, KB, b"b@1:6"), (1, 7, KC, b"c@1:7"), (2, 0, KA, b"a@2:0")])]),
            label="CheckSurvivors",
        )
        assert_that(
            out.superseded,
            equal_to(
                [
                    (
                        ("superseded/day=2024-01-01", 0),
                        [(0, 10, KA, b"a@0:10"), (0, 20, KB, b"b@0:20"), (1, 5, KB, b"b@1:5"), (1, 900, KA, b"a@1:900")],
                    )
                ]
            ),
            label="CheckSuperseded",
        )
        assert_that(out.tallies, equal_to([{"superseded": 4}]), label="CheckTallies")


def test_dedupe_no_duplicates_no_tallies():
    events = [(DAY1, [(0, 0, KA, b"a")]), (DAY2, [(0, 1, KB, b"b")])]
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(events) | DeduplicateEvents(BIG, keep_superseded=True)
        assert_that(
            out.survivors,
            equal_to([((DAY1, 0), [(0, 0, KA, b"a")]), ((DAY2, 0), [(0, 1, KB, b"b")])]),
            label="CheckSurvivors",
        )
        assert_that(out.superseded, equal_to([]), label="CheckNoSuperseded")
        assert_that(out.tallies, equal_to([]), label="CheckNoTallies")


def test_dedupe_event_resent_on_another_day_is_another_key(rule_config):
    """Same name, distinct_id and $insert_id, times on two UTC days: both survive;
    the copies within each day collapse to the latest."""
    jan1 = b'{"event":"Buy","properties":{"time":1704153599,"distinct_id":"u1","$insert_id":"i1","v":1}}'
    jan2 = b'{"event":"Buy","properties":{"time":1704153600,"distinct_id":"u1","$insert_id":"i1","v":2}}'
    jan1_again = b'{"event":"Buy","properties":{"time":1704067200,"distinct_id":"u1","$insert_id":"i1","v":3}}'
    first = sort_batch(0, "a.json", [0, 100], [jan1, jan2], rule_config)
    second = sort_batch(1, "b.json", [0], [jan1_again], rule_config)
    assert sorted(first.events) == [DAY1, DAY2]
    assert first.events[DAY1][0][2] != first.events[DAY2][0][2]
    assert first.events[DAY1][0][2] == second.events[DAY1][0][2]
    batches = list(first.events.items()) + list(second.events.items())
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(batches) | DeduplicateEvents(BIG, keep_superseded=True)
        assert_that(
            out.survivors,
            equal_to(
                [
                    ((DAY1, 0), [(1, 0, second.events[DAY1][0][2], jan1_again)]),
                    ((DAY2, 0), [(0, 100, first.events[DAY2][0][2], jan2)]),
                ]
            ),
            label="CheckSurvivors",
        )
        assert_that(
            out.superseded,
            equal_to([(("superseded/day=2024-01-01", 0), [first.events[DAY1][0]])]),
            label="CheckSuperseded",
        )
        assert_that(out.tallies, equal_to([{"superseded": 1}]), label="CheckTallies")


def test_dedupe_across_several_shards():
    """Small target: the route spreads over shards; copies of a key still meet."""
    records = [(r, i, key(f"k{i % 40}"), b"%d-%03d" % (r, i)) for r in range(3) for i in range(120)]
    batches = [(DAY1, records[n : n + 50]) for n in range(0, len(records), 50)]
    total_bytes = sum(len(r[3]) + 1 for r in records)
    target = total_bytes // 4 + 1  # ceil(total / target) = 4 shards
    expected = {}
    for r in records:
        if r[1] >= 80 and r[0] == 2:  # the last copy of each key: rank 2, offsets 80..119
            expected.setdefault(shard_of(r, 4), []).append(r)
    assert len(expected) > 1
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(batches) | DeduplicateEvents(target)
        assert_that(
            out.survivors,
            equal_to([((DAY1, shard), sorted(rs)) for shard, rs in expected.items()]),
            label="CheckSurvivors",
        )
        superseded = out.tallies | beam.Map(lambda t: t["superseded"]) | beam.CombineGlobally(sum)
        assert_that(superseded, equal_to([360 - 40]), label="CheckSupersededCount")


COPY = b'{"event":"e","properties":{"time":1704067200,"distinct_id":"u","$insert_id":"x"}}'


def ten_thousand_copies(part):
    """Batch `part` of ten: copies 10,000 * part .. 10,000 * part + 9,999, spread
    over ranks 0-9. Built inside the pipeline: Create infers a type per element,
    which is slow for big batches."""
    return DAY1, [(i % 10, i, KA, COPY) for i in range(part * 10_000, (part + 1) * 10_000)]


def test_dedupe_hundred_thousand_copies_of_one_event():
    with TestPipeline(runner="FnApiRunner") as p:
        batches = p | beam.Create(range(10)) | "MakeCopies" >> beam.Map(ten_thousand_copies)
        out = batches | DeduplicateEvents(BIG)
        assert_that(out.survivors, equal_to([((DAY1, 0), [(9, 99_999, KA, COPY)])]), label="CheckSurvivor")
        assert_that(out.tallies, equal_to([{"superseded": 99_999}]), label="CheckTallies")


@pytest.mark.parametrize("target", [0, -5])
def test_dedupe_refuses_non_positive_target(target):
    with pytest.raises(ValueError, match="target_bytes"):
        DeduplicateEvents(target)
