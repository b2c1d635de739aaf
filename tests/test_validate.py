"""Tests of transforms/validate.py: the ValidateAndSplit stage."""

import apache_beam as beam
import orjson
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.privacy import HashKey, PrivacyConfig
from transforms.rules import classify
from transforms.validate import ValidateAndSplit

PATH_A = "/data/a.ndjson"
PATH_B = "/data/b.ndjson.gz"

SIGNUP_JAN1 = b'{"event":"Signup","properties":{"time":1704067200,"distinct_id":"u1","$insert_id":"s1"}}'
PLAY_JAN2 = b'{"event":"Play","properties":{"time":"2024-01-02T10:00:00Z","distinct_id":"u1","$insert_id":"p1"}}'
PLAY_JAN2_MS = b'{"event":"Play","properties":{"time":1704189600000,"distinct_id":5,"$insert_id":"p2"}}'
PROFILE = b'{"$distinct_id":"u1","$set":{"plan":"pro"}}'
GROUP = b'{"$group_key":"company","$group_id":"acme","$set_once":{"since":2020}}'
NOT_JSON = b"{oops"
UNKNOWN = b'{"hello":"world"}'

# Batch 0 of file A and batch 1 of file B: (rank, path, offsets, lines).
BATCH_A = (0, PATH_A, [3, 95, 96, 200, 250], [SIGNUP_JAN1, b"", PLAY_JAN2, PROFILE, NOT_JSON])
BATCH_B = (1, PATH_B, [0, 80, 170, 250], [PLAY_JAN2_MS, GROUP, b" \t", UNKNOWN])


def accepted(rank, offsets, raws, config):
    """The RecordBatch of accepted lines: (rank, offsets, keys back to back, lines)."""
    fates = [classify(raw, config) for raw in raws]
    assert all(len(f.key) == 16 and f.line for f in fates), raws
    return (rank, list(offsets), b"".join(f.key for f in fates), [f.line for f in fates])


def reject(reason, raw, path, offset, config):
    detail = classify(raw, config).detail
    assert detail
    return orjson.dumps(
        {"reason": reason, "detail": detail, "source": path, "offset": offset, "line": raw.decode()}
    )


def test_validate_and_split_every_output(rule_config):
    c = rule_config
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create([BATCH_A, BATCH_B]) | ValidateAndSplit(c)
        assert_that(
            out.events,
            equal_to(
                [
                    ("events/day=2024-01-01", accepted(0, [3], [SIGNUP_JAN1], c)),
                    ("events/day=2024-01-02", accepted(0, [96], [PLAY_JAN2], c)),
                    ("events/day=2024-01-02", accepted(1, [0], [PLAY_JAN2_MS], c)),
                ]
            ),
            label="CheckEvents",
        )
        assert_that(
            out.profiles, equal_to([("profiles", accepted(0, [200], [PROFILE], c))]), label="CheckProfiles"
        )
        assert_that(
            out.groups, equal_to([("groups", accepted(1, [80], [GROUP], c))]), label="CheckGroups"
        )
        assert_that(
            out.rejects,
            equal_to(
                [
                    ("rejects", (0, [250], b"", [reject("invalid_json", NOT_JSON, PATH_A, 250, c)])),
                    (
                        "rejects",
                        (1, [250], b"", [reject("unknown_record_type", UNKNOWN, PATH_B, 250, c)]),
                    ),
                ]
            ),
            label="CheckRejects",
        )
        assert_that(
            out.tallies,
            equal_to(
                [
                    {
                        "lines": 5,
                        "blank_lines": 1,
                        "events_accepted": 2,
                        "profiles": 1,
                        "groups": 0,
                        "rejected": 1,
                        "rejected_invalid_json": 1,
                        "normalised_time": 1,
                        "operation_profiles_$set": 1,
                    },
                    {
                        "lines": 4,
                        "blank_lines": 1,
                        "events_accepted": 1,
                        "profiles": 0,
                        "groups": 1,
                        "rejected": 1,
                        "rejected_unknown_record_type": 1,
                        "normalised_time": 1,
                        "normalised_distinct_id": 1,
                        "operation_groups_$set_once": 1,
                    },
                ]
            ),
            label="CheckTallies",
        )
        assert_that(
            out.event_names,
            equal_to([[("Signup", 1), ("Play", 1)], [("Play", 1)]]),
            label="CheckEventNames",
        )
        assert_that(
            out.reject_examples,
            equal_to(
                [
                    ("invalid_json", [(0, 250, {"source": PATH_A, "offset": 250, "line": "{oops"})]),
                    (
                        "unknown_record_type",
                        [(1, 250, {"source": PATH_B, "offset": 250, "line": '{"hello":"world"}'})],
                    ),
                ]
            ),
            label="CheckRejectExamples",
        )
        assert_that(out.duplicate_key_examples, equal_to([]), label="CheckNoDuplicateKeyExamples")


def test_validate_and_split_written_lines(rule_config):
    """The normalised lines themselves, for the records above."""
    c = rule_config
    assert accepted(0, [96, 0, 80], [PLAY_JAN2, PLAY_JAN2_MS, GROUP], c)[3] == [
        b'{"event":"Play","properties":{"time":1704189600,"distinct_id":"u1","$insert_id":"p1"}}',
        b'{"event":"Play","properties":{"time":1704189600,"distinct_id":"5","$insert_id":"p2"}}',
        GROUP,
    ]


PROFILE_2 = b'{"$distinct_id":"u2","$unset":["plan"]}'
SIGNUP_JAN1_B = b'{"event":"Signup","properties":{"time":1704067300,"distinct_id":"u2","$insert_id":"s2"}}'


def test_validate_and_split_one_batch_per_route_in_offset_order(rule_config):
    """Several records of one route in a batch travel as one RecordBatch, columns aligned."""
    c = rule_config
    lines = [SIGNUP_JAN1, PROFILE, NOT_JSON, SIGNUP_JAN1_B, PLAY_JAN2, PROFILE_2, UNKNOWN]
    offsets = [0, 100, 150, 160, 260, 400, 450]
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create([(7, PATH_A, offsets, lines)]) | ValidateAndSplit(c)
        assert_that(
            out.events,
            equal_to(
                [
                    ("events/day=2024-01-01", accepted(7, [0, 160], [SIGNUP_JAN1, SIGNUP_JAN1_B], c)),
                    ("events/day=2024-01-02", accepted(7, [260], [PLAY_JAN2], c)),
                ]
            ),
            label="CheckEvents",
        )
        assert_that(
            out.profiles,
            equal_to([("profiles", accepted(7, [100, 400], [PROFILE, PROFILE_2], c))]),
            label="CheckProfiles",
        )
        assert_that(out.groups, equal_to([]), label="CheckNoGroups")
        assert_that(
            out.rejects,
            equal_to(
                [
                    (
                        "rejects",
                        (
                            7,
                            [150, 450],
                            b"",
                            [
                                reject("invalid_json", NOT_JSON, PATH_A, 150, c),
                                reject("unknown_record_type", UNKNOWN, PATH_A, 450, c),
                            ],
                        ),
                    )
                ]
            ),
            label="CheckRejects",
        )
        assert_that(
            out.tallies,
            equal_to(
                [
                    {
                        "lines": 7,
                        "events_accepted": 3,
                        "profiles": 2,
                        "groups": 0,
                        "rejected": 2,
                        "rejected_invalid_json": 1,
                        "rejected_unknown_record_type": 1,
                        "normalised_time": 1,
                        "operation_profiles_$set": 1,
                        "operation_profiles_$unset": 1,
                    }
                ]
            ),
            label="CheckTallies",
        )
        assert_that(
            out.event_names, equal_to([[("Signup", 2), ("Play", 1)]]), label="CheckEventNames"
        )
        assert_that(
            out.reject_examples,
            equal_to(
                [
                    ("invalid_json", [(7, 150, {"source": PATH_A, "offset": 150, "line": "{oops"})]),
                    (
                        "unknown_record_type",
                        [(7, 450, {"source": PATH_A, "offset": 450, "line": '{"hello":"world"}'})],
                    ),
                ]
            ),
            label="CheckRejectExamples",
        )
        assert_that(out.duplicate_key_examples, equal_to([]), label="CheckNoDuplicateKeyExamples")


# Lines that give a key twice: the last value wins, and accepted ones are counted and shown.
DUP_SIGNUP = (
    b'{"event":"Signup","properties":{"time":1704067200,"time":"2024-01-01T00:00:00Z",'
    b'"distinct_id":"u1","$insert_id":"s1"}}'
)
DUP_PROFILE = b'{"$distinct_id":"u1","$set":{"plan":"free"},"$set":{"plan":"pro"}}'
DUP_GROUP = b'{"$group_key":"company","$group_id":"acme","$set_once":{"l":[{"a":1,"a":2}]}}'
DUP_REJECT = b'{"event":"Signup","properties":{"time":1704067200,"time":null,"distinct_id":"u1"}}'


def test_validate_and_split_duplicate_keys(rule_config):
    c = rule_config
    batch_a = (0, PATH_A, [0, 120, 200], [DUP_SIGNUP, DUP_REJECT, SIGNUP_JAN1])
    batch_b = (1, PATH_B, [0, 70, 150], [DUP_PROFILE, DUP_GROUP, PROFILE])
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create([batch_a, batch_b]) | ValidateAndSplit(c)
        # DUP_SIGNUP is SIGNUP_JAN1 with its time given twice: the same event, one key.
        assert_that(
            out.events,
            equal_to([("events/day=2024-01-01", accepted(0, [0, 200], [DUP_SIGNUP, SIGNUP_JAN1], c))]),
            label="CheckEvents",
        )
        assert_that(
            out.profiles,
            equal_to([("profiles", accepted(1, [0, 150], [DUP_PROFILE, PROFILE], c))]),
            label="CheckProfiles",
        )
        assert_that(out.groups, equal_to([("groups", accepted(1, [70], [DUP_GROUP], c))]), label="CheckGroups")
        assert_that(
            out.rejects,
            equal_to([("rejects", (0, [120], b"", [reject("missing_time", DUP_REJECT, PATH_A, 120, c)]))]),
            label="CheckRejects",
        )
        assert_that(
            out.tallies,
            equal_to(
                [
                    {
                        "lines": 3,
                        "events_accepted": 2,
                        "profiles": 0,
                        "groups": 0,
                        "rejected": 1,
                        "rejected_missing_time": 1,
                        "normalised_time": 1,
                        "normalised_duplicate_keys": 1,
                    },
                    {
                        "lines": 3,
                        "events_accepted": 0,
                        "profiles": 2,
                        "groups": 1,
                        "rejected": 0,
                        "normalised_duplicate_keys": 2,
                        "operation_profiles_$set": 2,
                        "operation_groups_$set_once": 1,
                    },
                ]
            ),
            label="CheckTallies",
        )
        assert_that(out.event_names, equal_to([[("Signup", 2)]]), label="CheckEventNames")
        assert_that(
            out.reject_examples,
            equal_to([("missing_time", [(0, 120, {"source": PATH_A, "offset": 120, "line": DUP_REJECT.decode()})])]),
            label="CheckRejectExamples",
        )
        assert_that(
            out.duplicate_key_examples,
            equal_to(
                [
                    [(0, 0, {"source": PATH_A, "offset": 0, "line": DUP_SIGNUP.decode()})],
                    [
                        (1, 0, {"source": PATH_B, "offset": 0, "line": DUP_PROFILE.decode()}),
                        (1, 70, {"source": PATH_B, "offset": 70, "line": DUP_GROUP.decode()}),
                    ],
                ]
            ),
            label="CheckDuplicateKeyExamples",
        )


def test_validate_and_split_duplicate_keys_written_lines(rule_config):
    c = rule_config
    assert accepted(0, [0, 0, 0], [DUP_SIGNUP, DUP_PROFILE, DUP_GROUP], c)[3] == [
        b'{"event":"Signup","properties":{"time":1704067200,"distinct_id":"u1","$insert_id":"s1"}}',
        b'{"$distinct_id":"u1","$set":{"plan":"pro"}}',
        b'{"$group_key":"company","$group_id":"acme","$set_once":{"l":[{"a":2}]}}',
    ]
    assert classify(DUP_SIGNUP, c).key == classify(SIGNUP_JAN1, c).key


def test_validate_and_split_blank_only_batch_emits_tallies_only(rule_config):
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create([(0, PATH_A, [0, 1, 3], [b"", b" ", b"\r"])]) | ValidateAndSplit(rule_config)
        assert_that(out.events, equal_to([]), label="CheckNoEvents")
        assert_that(out.profiles, equal_to([]), label="CheckNoProfiles")
        assert_that(out.groups, equal_to([]), label="CheckNoGroups")
        assert_that(out.rejects, equal_to([]), label="CheckNoRejects")
        assert_that(out.event_names, equal_to([]), label="CheckNoEventNames")
        assert_that(out.reject_examples, equal_to([]), label="CheckNoRejectExamples")
        assert_that(out.duplicate_key_examples, equal_to([]), label="CheckNoDuplicateKeyExamples")
        assert_that(
            out.tallies,
            equal_to(
                [
                    {
                        "lines": 3,
                        "blank_lines": 3,
                        "events_accepted": 0,
                        "profiles": 0,
                        "groups": 0,
                        "rejected": 0,
                    }
                ]
            ),
            label="CheckTallies",
        )


def test_validate_and_split_refuses_a_config_that_is_not_one():
    with pytest.raises(TypeError, match="config"):
        ValidateAndSplit({"reference_time": 0})


def test_validate_and_split_with_privacy(rule_config):
    key = HashKey(b"validate-test-key")
    privacy = PrivacyConfig(drop=("plan",), hash=("distinct_id",), key=key, redact_examples=True)
    hashed = key.hex_digest(b"u1")
    signup = b'{"event":"Signup","properties":{"time":1704067200,"distinct_id":"%s","$insert_id":"s1"}}' % (
        hashed.encode())
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create([BATCH_A]) | ValidateAndSplit(rule_config, privacy)
        # Written as if the line had come hashed, and keyed on what is written.
        assert_that(
            out.events
            | beam.Filter(lambda e: e[0] == "events/day=2024-01-01"),
            equal_to([("events/day=2024-01-01", accepted(0, [3], [signup], rule_config))]),
            label="CheckHashedEvent",
        )
        # The profile's only property was dropped: nothing left to $set, so rejected.
        assert_that(out.profiles, equal_to([]), label="CheckNoProfile")
        assert_that(
            out.reject_examples,
            equal_to([("invalid_operation", [(0, 200, {"source": PATH_A, "offset": 200})]),
                      ("invalid_json", [(0, 250, {"source": PATH_A, "offset": 250})])]),
            label="CheckRedactedExamples",
        )
        assert_that(
            out.tallies | beam.Map(lambda t: {k: v for k, v in t.items() if k.startswith(("privacy_", "rejected"))}),
            equal_to([{"privacy_hashed_distinct_id": 2, "rejected": 2, "rejected_invalid_operation": 1,
                       "rejected_invalid_json": 1}]),
            label="CheckTallies",
        )


def test_validate_and_split_refuses_privacy_that_is_not_a_config(rule_config):
    with pytest.raises(TypeError, match="privacy must be a PrivacyConfig or None, got dict"):
        ValidateAndSplit(rule_config, {"drop": ["email"]})
