"""Tests of transforms/exclude.py: the ExcludeUsers stage, a keyed join with the deletion list."""

import gzip
from collections import Counter

import apache_beam as beam
import orjson
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from conftest import REFERENCE_TIME
from pipeline.inputs import select_inputs
from transforms.exclude import ExcludeUsers
from transforms.privacy import HashKey, PrivacyConfig
from transforms.records import classify_batch
from transforms.rules import RuleConfig

CONFIG = RuleConfig(REFERENCE_TIME)
KEY = HashKey(b"stage-test-key")
DAY1 = "events/day=2024-01-01"
DAY2 = "events/day=2024-01-02"
T1, T2 = 1_704_067_200, 1_704_153_600  # the two days


def ev(user, time=T1, n=0, **extra) -> bytes:
    properties = {"time": time, "n": n, **extra}
    if user is not None:
        properties["distinct_id"] = user
    return orjson.dumps({"event": "E", "properties": properties})


def profile(user) -> bytes:
    return orjson.dumps({"$distinct_id": user, "$set": {"plan": "pro"}})


# Two files' worth of lines (rank 0 in two batches, rank 1 in one).
LINES = {
    (0, 0): [ev("alice"), ev("bob", n=1), ev("alice", T2, 2), profile("alice"), profile("carol")],
    (0, 1000): [ev(None, n=3, **{"$device_id": "d1"}), ev("", n=4), ev(42, n=5), ev(" bob", n=6)],
    (1, 0): [ev("carol", T2, 7), ev("dave", n=8), profile(7), profile("bob")],
}
# Blank lines, spaces around ids, a CRLF ending, a duplicate, an id nobody has, a BOM.
LIST = b"\xef\xbb\xbfalice\n\n  bob \r\n42\nalice\nnobody\n \t\n7"
# Listed: alice, bob, 42, 7 (and nobody): alice's two events and profile, bob's event
# and profile, the event of integer id 42, the profile of integer id 7.
EXCLUDED = {"excluded_events": 4, "excluded_profiles": 3, "excluded_listed_ids": 5}


def batches(privacy=None):
    """(route, RecordBatch) elements of the events and the profiles, as ValidateAndSplit gives them."""
    events, profiles = [], []
    for (rank, start), lines in LINES.items():
        offsets = [start + 100 * i for i in range(len(lines))]
        result = classify_batch(rank, f"f{rank}", offsets, lines, CONFIG, privacy)
        events += list(result.events.items())
        if result.profiles:
            profiles.append(("profiles", result.profiles))
    return events, profiles


def users_left(elements):
    """(route, rank, offset, user) of every record left."""
    out = []
    for route, (rank, offsets, _, lines) in elements:
        for offset, line in zip(offsets, lines, strict=True):
            record = orjson.loads(line)
            user = record.get("$distinct_id", record.get("properties", {}).get("distinct_id"))
            out.append((route, rank, offset, user))
    return sorted(out, key=repr)


EXPECTED_EVENTS = [
    (DAY1, 0, 1000, None),
    (DAY1, 0, 1100, ""),
    (DAY1, 0, 1300, " bob"),  # the data's id is taken as written
    (DAY1, 1, 100, "dave"),
    (DAY2, 1, 0, "carol"),
]
EXPECTED_PROFILES = [("profiles", 0, 400, "carol")]


def merged(tallies):
    total: Counter[str] = Counter()
    for t in tallies:
        total.update(t)
    return dict(total)


@pytest.fixture
def deletion_list(tmp_path):
    path = tmp_path / "deleted.txt"
    path.write_bytes(LIST)
    return select_inputs([str(path)]).files


@pytest.mark.parametrize("buckets", [1, 3, 64])
def test_listed_users_events_and_profiles_are_removed_and_counted(deletion_list, buckets):
    events, profiles = batches()
    with TestPipeline(runner="FnApiRunner") as p:
        kept = {
            "events": p | "Events" >> beam.Create(events),
            "profiles": p | "Profiles" >> beam.Create(profiles),
        } | ExcludeUsers(deletion_list, 1 << 20, buckets)
        assert_that(
            kept["events"] | "Events left" >> beam.combiners.ToList() | "E" >> beam.Map(users_left),
            equal_to([EXPECTED_EVENTS]), label="CheckEvents",
        )
        assert_that(
            kept["profiles"] | "Profiles left" >> beam.combiners.ToList() | "P" >> beam.Map(users_left),
            equal_to([EXPECTED_PROFILES]), label="CheckProfiles",
        )
        assert_that(
            kept["tallies"] | beam.combiners.ToList() | beam.Map(merged), equal_to([EXCLUDED]),
            label="CheckTallies",
        )


def test_batches_keep_their_order_keys_and_bytes(deletion_list):
    # What is left of a batch is that batch less the listed records, column by column.
    events, profiles = batches()
    with TestPipeline(runner="FnApiRunner") as p:
        kept = {
            "events": p | "Events" >> beam.Create(events),
            "profiles": p | "Profiles" >> beam.Create(profiles),
        } | ExcludeUsers(deletion_list, 1 << 20, 2)
        (first,) = [b for r, b in events if r == DAY1 and b[0] == 0 and b[1][0] == 0]
        assert first[1] == [0, 100]  # alice and bob: nothing left
        assert_that(
            kept["events"] | beam.Filter(lambda e: e[1][0] == 0 and e[1][1][0] < 1000),
            equal_to([]), label="CheckEmptiedBatchIsGone",
        )
        (second,) = [b for r, b in events if r == DAY1 and b[0] == 0 and b[1][0] == 1000]
        assert second[1] == [1000, 1100, 1200, 1300]
        expected = (0, [1000, 1100, 1300], second[2][:32] + second[2][48:], [second[3][i] for i in (0, 1, 3)])
        assert_that(
            kept["events"] | "Second" >> beam.Filter(lambda e: e[1][0] == 0 and e[1][1][0] == 1000),
            equal_to([(DAY1, expected)]), label="CheckCutBatch",
        )


def test_with_hashed_ids_the_list_is_hashed_the_same_way(deletion_list):
    privacy = PrivacyConfig(hash=("distinct_id",), key=KEY)
    events, profiles = batches(privacy)
    # The same records are left, their ids hashed (an empty one stays empty).
    hashed_events = [(route, rank, offset, user if not user else KEY.hex_digest(user.encode()))
                     for route, rank, offset, user in EXPECTED_EVENTS]
    with TestPipeline(runner="FnApiRunner") as p:
        kept = {
            "events": p | "Events" >> beam.Create(events),
            "profiles": p | "Profiles" >> beam.Create(profiles),
        } | ExcludeUsers(deletion_list, 1 << 20, 3, KEY)
        assert_that(
            kept["events"] | beam.combiners.ToList() | beam.Map(users_left),
            equal_to([sorted(hashed_events, key=repr)]), label="CheckEvents",
        )
        assert_that(
            kept["tallies"] | "T" >> beam.combiners.ToList() | beam.Map(merged), equal_to([EXCLUDED]),
            label="CheckTallies",
        )


def test_a_gzipped_list_read_in_ranges_and_an_empty_list(tmp_path):
    events, profiles = batches()
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress(b"alice\nbob\n"))
    (tmp_path / "b.txt").write_bytes(b"")
    (tmp_path / "c.txt").write_bytes(b"dave\n" * 3 + b"x" * 5000 + b"\n42\n")  # several ranges
    with TestPipeline(runner="FnApiRunner") as p:
        kept = {
            "events": p | "Events" >> beam.Create(events),
            "profiles": p | "Profiles" >> beam.Create(profiles),
        } | ExcludeUsers(select_inputs([str(tmp_path / "*")]).files, 1000, 2)
        assert_that(
            kept["tallies"] | beam.combiners.ToList() | beam.Map(merged),
            equal_to([{"excluded_events": 5, "excluded_profiles": 2, "excluded_listed_ids": 5}]),
            label="CheckTallies",
        )


def test_arguments_are_checked(deletion_list):
    with pytest.raises(ValueError, match="files must not be empty"):
        ExcludeUsers([], 1 << 20, 1)
    with pytest.raises(ValueError, match="buckets must be positive"):
        ExcludeUsers(deletion_list, 1 << 20, 0)
    with pytest.raises(TypeError, match="key must be a HashKey"):
        ExcludeUsers(deletion_list, 1 << 20, 1, b"raw bytes")
