"""Tests of transforms/records.py: a batch of lines classified, routed and counted; reject lines and examples."""

import base64
import random

import orjson
import pytest

from transforms.batches import KEY_BYTES
from transforms.records import classify_batch, line_example, reject_line
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


def keys_of(batch):
    keys = batch[2]
    return [keys[i : i + KEY_BYTES] for i in range(0, len(keys), KEY_BYTES)]


# classify_batch --------------------------------------------------------------------


def test_classify_batch_mixed_lines_tallies(rule_config):
    offsets = offsets_of(MIXED_LINES, 1000)
    result = classify_batch(4, PATH, offsets, MIXED_LINES, rule_config)
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


def test_classify_batch_mixed_lines_report_figures(rule_config):
    offsets = offsets_of(MIXED_LINES, 1000)
    result = classify_batch(4, PATH, offsets, MIXED_LINES, rule_config)
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


def test_classify_batch_keeps_first_five_examples_per_reason(rule_config):
    lines = [b"bad %d" % i for i in range(8)]
    offsets = offsets_of(lines)
    result = classify_batch(2, PATH, offsets, lines, rule_config)
    assert result.examples == {
        "invalid_json": [
            (2, offsets[i], {"source": PATH, "offset": offsets[i], "line": f"bad {i}"}) for i in range(5)
        ]
    }
    assert result.rejects == (
        2,
        offsets,
        b"",
        [expected_reject("invalid_json", raw, o, rule_config) for raw, o in zip(lines, offsets, strict=True)],
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


def test_classify_batch_counts_and_shows_lines_with_duplicate_keys(rule_config):
    lines = [SIGNUP, DUP_EVENT, DUP_REJECT, DUP_EVENT, DUP_PROFILE, b"", DUP_GROUP, PROFILE_SET]
    offsets = offsets_of(lines, 500)
    result = classify_batch(3, PATH, offsets, lines, rule_config)
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


def test_classify_batch_keeps_the_first_five_duplicate_key_examples(rule_config):
    lines = [DUP_PROFILE.replace(b"u1", b"u%d" % i) for i in range(8)]
    offsets = offsets_of(lines)
    result = classify_batch(2, PATH, offsets, lines, rule_config)
    assert result.tallies["normalised_duplicate_keys"] == 8
    assert result.duplicate_key_examples == [
        (2, offsets[i], {"source": PATH, "offset": offsets[i], "line": lines[i].decode()}) for i in range(5)
    ]


def test_classify_batch_without_duplicate_keys_has_no_tally_and_no_examples(rule_config):
    offsets = offsets_of(MIXED_LINES, 1000)
    result = classify_batch(4, PATH, offsets, MIXED_LINES, rule_config)
    assert "normalised_duplicate_keys" not in result.tallies
    assert result.duplicate_key_examples == []


def test_classify_batch_mixed_lines_routes_and_record_batches(rule_config):
    offsets = offsets_of(MIXED_LINES, 1000)
    result = classify_batch(4, PATH, offsets, MIXED_LINES, rule_config)

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
            for i, reason in zip(REJECT_INDEXES, REJECT_REASONS, strict=True)
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


def test_classify_batch_normalised_lines_written(rule_config):
    result = classify_batch(0, PATH, [0, 200, 400], [SIGNUP, PLAY_MS, GROUP_INT_ID], rule_config)
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
def test_classify_batch_reject_lines_exact(rule_config, index, reason):
    offsets = offsets_of(MIXED_LINES, 1000)
    result = classify_batch(4, PATH, offsets, MIXED_LINES, rule_config)
    line = result.rejects[3][result.rejects[1].index(offsets[index])]
    assert line == expected_reject(reason, MIXED_LINES[index], offsets[index], rule_config)
    assert type(line) is bytes


def test_classify_batch_invalid_utf8_reject_round_trips(rule_config):
    result = classify_batch(0, PATH, [7], [NOT_UTF8], rule_config)
    rank, offsets, keys, (line,) = result.rejects
    assert (rank, offsets, keys) == (0, [7], b"")
    parsed = orjson.loads(line)
    assert list(parsed) == ["reason", "detail", "source", "offset", "line_base64"]
    assert base64.b64decode(parsed["line_base64"]) == NOT_UTF8
    assert (parsed["reason"], parsed["source"], parsed["offset"]) == ("invalid_utf8", PATH, 7)


def test_classify_batch_nul_reject_keeps_raw_bytes(rule_config):
    result = classify_batch(0, PATH, [0], [WITH_NUL], rule_config)
    (line,) = result.rejects[3]
    parsed = orjson.loads(line)
    assert list(parsed) == ["reason", "detail", "source", "offset", "line"]
    assert parsed["line"].encode("utf-8") == WITH_NUL
    assert b"\\u0000" in line


def test_classify_batch_blank_lines_only(rule_config):
    lines = [b"", b" ", b"\t\t", b"\r", b" \r"]
    result = classify_batch(0, PATH, offsets_of(lines), lines, rule_config)
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


def test_classify_batch_empty_batch(rule_config):
    result = classify_batch(0, PATH, [], [], rule_config)
    assert dict(result.tallies) == {
        "lines": 0,
        "events_accepted": 0,
        "profiles": 0,
        "groups": 0,
        "rejected": 0,
    }
    assert (result.events, result.profiles, result.groups, result.rejects) == ({}, None, None, None)
    assert (dict(result.event_names), result.examples, result.duplicate_key_examples) == ({}, {}, [])


def test_classify_batch_every_line_counted_once(rule_config):
    rng = random.Random(7)
    pool = MIXED_LINES + [b"{}", b'"x"', b"null", b'{"properties":{}}']
    lines = [rng.choice(pool) for _ in range(500)]
    offsets = offsets_of(lines)
    result = classify_batch(0, PATH, offsets, lines, rule_config)
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
    blank_offsets = [o for o, line in zip(offsets, lines, strict=True) if not line.strip(b" \t\r")]
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
