"""Tests of transforms/privacy.py: drop, hash, the key that never shows, the deletion list's helpers."""

import hashlib
import hmac
import pickle
from collections import Counter

import orjson
import pytest

from conftest import REFERENCE_TIME
from transforms.batches import pick_latest
from transforms.limits import MAX_RECORD_BYTES
from transforms.privacy import (
    DROPPED_PREFIX,
    HASHED_PREFIX,
    LISTED_IDS,
    MAX_BUCKETS,
    HashKey,
    PrivacyConfig,
    Scrubber,
    bucket_of,
    drop_keys,
    exclusion_buckets,
    hash_value,
    id_digest,
    listed_digests,
    listed_id,
    listed_positions,
    name_problem,
    probes,
    summary_section,
    without,
)
from transforms.reasons import Kind, Reason
from transforms.records import classify_batch
from transforms.rules import RuleConfig, classify, event_key
from transforms.updates import identity_key

SECRET = b"k3y-for-tests-only"
KEY = HashKey(SECRET)
CONFIG = RuleConfig(REFERENCE_TIME)
T = 1_704_067_200  # 2024-01-01T00:00:00Z


def hmac_hex(message: bytes, secret: bytes = SECRET) -> str:
    """The expected pseudonym, computed without the module under test."""
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def dumps(record: dict) -> bytes:
    return orjson.dumps(record)


def scrub(line: bytes, config: RuleConfig = CONFIG, **privacy):
    """classify() through a PrivacyConfig's classifier; returns (fate, tallies)."""
    tallies: Counter[str] = Counter()
    classify_line = PrivacyConfig(**{"key": KEY, **privacy}).classifier(config, tallies)
    return classify_line(line, config), tallies


# --- hash_value: which bytes are hashed ------------------------------------------------------


@pytest.mark.parametrize(
    "value, hashed_bytes",
    [
        pytest.param("alice@example.com", b"alice@example.com", id="string_as_is"),
        pytest.param("é€𝄞", "é€𝄞".encode(), id="unicode_string_as_utf8"),
        pytest.param("", b"", id="empty_string"),
        pytest.param(42, b"42", id="integer_as_its_digits"),
        pytest.param(-7, b"-7", id="negative_integer"),
        pytest.param(1.5, b"1.5", id="float"),
        pytest.param(1e20, b"1e+20", id="float_as_orjson_writes_it"),
        pytest.param(True, b"true", id="true"),
        pytest.param(False, b"false", id="false"),
        pytest.param(None, b"null", id="null"),
        pytest.param([1, "a", None], b'[1,"a",null]', id="list_compact"),
        pytest.param({"b": 1, "a": "é"}, '{"a":"é","b":1}'.encode(), id="object_keys_sorted_utf8"),
        pytest.param({"z": [{"y": 1, "x": 2}]}, b'{"z":[{"x":2,"y":1}]}', id="nested_keys_sorted"),
    ],
)
def test_hash_value_is_the_hmac_of_the_string_form(value, hashed_bytes):
    assert hash_value(value, KEY) == hmac_hex(hashed_bytes)


def test_an_integer_and_its_decimal_string_hash_alike():
    assert hash_value(12345, KEY) == hash_value("12345", KEY)


def test_hash_value_is_64_lowercase_hex_and_depends_on_the_key():
    hashed = hash_value("x", KEY)
    assert len(hashed) == 64 and hashed == hashed.lower() and int(hashed, 16) >= 0
    assert hash_value("x", HashKey(b"another key")) != hashed


def test_hash_value_of_a_list_nested_deeper_than_orjson_writes():
    deep: list = []
    for _ in range(600):
        deep = [deep]
    assert hash_value(deep, KEY) == hmac_hex(b"[" * 601 + b"]" * 601)


# --- the key never shows ---------------------------------------------------------------------


def test_the_key_shows_in_no_repr_or_str():
    config = PrivacyConfig(hash=("email",), key=KEY, redact_examples=True)
    for text in (repr(KEY), str(KEY), repr(config), str(config), f"{config}", f"{KEY!r}"):
        assert SECRET.decode() not in text
        assert "k3y" not in text
    assert repr(KEY) == "HashKey(<redacted>)"


@pytest.mark.parametrize("secret", [b"k", b"\x00\xff" * 32, b"a" * 64, b"long key " * 20],
                         ids=["one_byte", "block_size_binary", "block_size", "longer_than_a_block"])
def test_any_key_gives_the_standard_hmac(secret):
    key = HashKey(secret)
    for message in (b"", b"u1", "é".encode() * 100):
        assert key.hex_digest(message) == hmac_hex(message, secret)
    assert pickle.loads(pickle.dumps(key)).hex_digest(b"u1") == hmac_hex(b"u1", secret)


def test_the_key_survives_pickling_as_beam_ships_it_to_workers():
    config = PrivacyConfig(drop=("phone",), hash=("email",), key=KEY)
    KEY.hex_digest(b"used before pickling")  # the keyed state is not part of the pickle
    copy = pickle.loads(pickle.dumps(config))
    assert copy == config
    assert hash_value("a", copy.key) == hmac_hex(b"a")


def test_an_empty_key_is_refused():
    with pytest.raises(ValueError, match="non-empty"):
        HashKey(b"")


def test_keys_compare_by_their_bytes():
    assert HashKey(b"a") == HashKey(b"a") and HashKey(b"a") != HashKey(b"b")
    assert hash(HashKey(b"a")) == hash(HashKey(b"a"))


# --- drop_keys -----------------------------------------------------------------------------


def test_drop_keys_removes_the_names_at_every_depth_lists_included():
    value = {
        "email": "a@x",
        "keep": "email",  # a value, not a key
        "user": {"email": "b@x", "name": "B", "deeper": {"email": 1, "x": [{"email": None}]}},
        "list": [{"email": "c@x", "y": 1}, [[{"phone": 2, "z": 3}]], "email"],
    }
    found: set[str] = set()
    drop_keys(value, frozenset({"email", "phone"}), found)
    assert value == {
        "keep": "email",
        "user": {"name": "B", "deeper": {"x": [{}]}},
        "list": [{"y": 1}, [[{"z": 3}]], "email"],
    }
    assert found == {"email", "phone"}


def test_drop_keys_leaves_scalars_and_unlisted_keys_alone():
    found: set[str] = set()
    value = {"a": 1, "b": [1, 2]}
    drop_keys(value, frozenset({"email"}), found)
    drop_keys("email", frozenset({"email"}), found)
    assert value == {"a": 1, "b": [1, 2]} and found == set()


def test_drop_keys_walks_1024_levels_without_recursion():
    deep: object = {"email": 1}
    for _ in range(1024):
        deep = [deep]
    found: set[str] = set()
    drop_keys(deep, frozenset({"email"}), found)
    assert found == {"email"}


# --- names the flags refuse ------------------------------------------------------------------


@pytest.mark.parametrize(
    "flag, name, message",
    [
        ("--drop-property", "", "needs a property name"),
        ("--hash-property", "", "needs a property name"),
        ("--drop-property", "time", "every event needs its time"),
        ("--hash-property", "time", "every event needs its time"),
        ("--hash-property", "$insert_id", "over its 36-byte limit"),
        ("--drop-property", "$insert_id", "the key Mixpanel deduplicates events by"),
        ("--drop-property", "event", "the event name is not a property"),
        ("--hash-property", "event", "the event name is not a property"),
        ("--hash-property", "properties", "not a property"),
        ("--drop-property", "$group_key", "needs its $group_key and $group_id"),
        ("--hash-property", "$group_id", "needs its $group_key and $group_id"),
        ("--drop-property", "$distinct_id", "--hash-property distinct_id hashes it"),
        ("--hash-property", "$distinct_id", "--hash-property distinct_id hashes it"),
        ("--drop-property", "distinct_id", "--hash-property distinct_id pseudonymises it instead"),
        ("--drop-property", "$device_id", "--hash-property $device_id pseudonymises it instead"),
        ("--drop-property", "$user_id", "identified by its $device_id or $user_id"),
    ],
)
def test_names_that_would_make_records_invalid_are_refused(flag, name, message):
    problem = name_problem(flag, name)
    assert problem.startswith(f"{flag} {name}".rstrip() if name else flag)
    assert message in problem


@pytest.mark.parametrize(
    "flag, name",
    [("--hash-property", "distinct_id"), ("--hash-property", "$device_id"), ("--hash-property", "$user_id"),
     ("--drop-property", "email"), ("--hash-property", "email"), ("--drop-property", "$ip"),
     ("--drop-property", "é")],
)
def test_ordinary_and_identity_names_are_fine(flag, name):
    assert name_problem(flag, name) == ""


def test_a_config_refuses_what_the_flags_refuse():
    with pytest.raises(ValueError, match="--drop-property time is refused"):
        PrivacyConfig(drop=("time",))
    with pytest.raises(ValueError, match="'email' is given to both"):
        PrivacyConfig(drop=("email",), hash=("email",), key=KEY)
    with pytest.raises(ValueError, match="needs the key"):
        PrivacyConfig(hash=("email",))


# --- events --------------------------------------------------------------------------------


def event(**properties) -> bytes:
    return dumps({"event": "Signup", "properties": {"time": T, **properties}})


def test_a_dropped_property_leaves_the_event_as_if_it_never_had_it():
    # The $insert_id is generated on what is written: the same as for the line without it.
    line = event(distinct_id="u1", email="a@x", plan="pro", nested={"email": "b@x", "k": 1})
    fate, tallies = scrub(line, drop=("email",))
    expected = classify(event(distinct_id="u1", plan="pro", nested={"k": 1}), CONFIG)
    assert fate == expected
    assert tallies == {DROPPED_PREFIX + "email": 1}


def test_a_hashed_property_leaves_the_event_as_if_it_came_hashed():
    line = event(distinct_id="u1", email="a@x", phone=5551234)
    fate, tallies = scrub(line, hash=("email", "phone"))
    expected = classify(event(distinct_id="u1", email=hmac_hex(b"a@x"), phone=hmac_hex(b"5551234")), CONFIG)
    assert fate == expected
    assert orjson.loads(fate.line)["properties"]["email"] == hmac_hex(b"a@x")
    assert tallies == {HASHED_PREFIX + "email": 1, HASHED_PREFIX + "phone": 1}


def test_hashing_is_top_level_only_and_hashes_objects_whole():
    line = event(distinct_id="u1", address={"city": "Oslo", "email": "a@x"}, user={"address": 1})
    fate, _ = scrub(line, hash=("address",))
    properties = orjson.loads(fate.line)["properties"]
    assert properties["address"] == hmac_hex(b'{"city":"Oslo","email":"a@x"}')
    assert properties["user"] == {"address": 1}


def test_hashing_distinct_id_changes_the_key_as_written_and_keeps_a_given_insert_id():
    line = event(distinct_id="u1", **{"$insert_id": "abc-1"})
    fate, tallies = scrub(line, hash=("distinct_id",))
    hashed = hmac_hex(b"u1")
    assert orjson.loads(fate.line) == {
        "event": "Signup",
        "properties": {"time": T, "distinct_id": hashed, "$insert_id": "abc-1"},
    }
    assert fate.key == event_key("Signup", hashed, "abc-1", "2024-01-01")
    assert fate.day == "2024-01-01" and fate.name == "Signup"
    assert tallies == {HASHED_PREFIX + "distinct_id": 1}


def test_an_integer_distinct_id_is_hashed_as_its_decimal_string():
    fate, _ = scrub(event(distinct_id=42), hash=("distinct_id",))
    assert orjson.loads(fate.line)["properties"]["distinct_id"] == hmac_hex(b"42")
    assert fate.normalised == classify(event(distinct_id=42), CONFIG).normalised  # still counted


def unchanged(line: bytes, **privacy) -> bool:
    """Whether the Scrubber hands back the very Fate the rules made, counting nothing."""
    tallies: Counter[str] = Counter()
    original = classify(line, CONFIG)
    scrubbed = Scrubber(PrivacyConfig(**{"key": KEY, **privacy}), CONFIG, tallies).scrub(original)
    return scrubbed is original and not tallies


def test_an_empty_distinct_id_stays_empty_and_a_missing_one_stays_missing():
    assert unchanged(event(distinct_id=""), hash=("distinct_id",))
    assert unchanged(event(**{"$device_id": "d1"}), hash=("distinct_id",))


def test_milliseconds_keep_the_generated_id_in_seconds():
    ms = RuleConfig(REFERENCE_TIME, "ms")
    fate, _ = scrub(event(distinct_id="u1", email="a@x"), ms, drop=("email",))
    assert fate == classify(event(distinct_id="u1"), ms)
    assert orjson.loads(fate.line)["properties"]["time"] == T * 1000


def test_a_record_without_the_names_is_passed_on_untouched():
    line = event(distinct_id="u1", note="email me", mail={"address": "email"})
    assert unchanged(line, drop=("email",), hash=("phone",))


def test_a_hashed_name_found_only_deeper_than_the_top_level_changes_nothing():
    assert unchanged(event(distinct_id="u1", user={"email": "a@x"}), hash=("email",))
    assert unchanged(dumps({"$distinct_id": "u1", "$set": {"a": {"email": 1}}}), hash=("email",))
    # In a string, a key's text is escaped: it is no key, and needs no parse.
    assert unchanged(event(distinct_id="u1", note='"email": 1'), drop=("email",))


def test_rejects_and_blanks_pass_through():
    for line in (b"{broken", b"  ", event(email="a@x")):  # the last has no distinct_id
        assert scrub(line, drop=("email",))[0] == classify(line, CONFIG)


def test_hashing_that_makes_a_record_too_large_rejects_it():
    base = event(distinct_id="u1", pad="", **{"$insert_id": "abc-1"})
    # A record one byte under the limit; hashing "u1" adds 62 bytes.
    pad = "x" * (MAX_RECORD_BYTES - len(base))
    line = event(distinct_id="u1", pad=pad, **{"$insert_id": "abc-1"})
    assert len(line) == MAX_RECORD_BYTES and classify(line, CONFIG).kind == Kind.EVENT
    fate, tallies = scrub(line, hash=("distinct_id",))
    assert fate.kind == Kind.REJECT and fate.reason == Reason.RECORD_TOO_LARGE
    assert fate.detail == (
        f"the record is {MAX_RECORD_BYTES + 62} bytes once --hash-property hashed its values; "
        "it must be under 1000000"
    )
    assert tallies == {}  # a rejected line counts as rejected, not as hashed


# --- profile and group updates ---------------------------------------------------------------


def test_hashing_distinct_id_hashes_a_profiles_distinct_id_and_its_key():
    fate, tallies = scrub(dumps({"$distinct_id": "u1", "$set": {"plan": "pro"}, "$ip": "1.2.3.4"}),
                          hash=("distinct_id",))
    hashed = hmac_hex(b"u1")
    assert fate.kind == Kind.PROFILE
    assert fate.line == dumps({"$distinct_id": hashed, "$set": {"plan": "pro"}, "$ip": "1.2.3.4"})
    assert fate.key == identity_key([hashed])
    assert tallies == {HASHED_PREFIX + "distinct_id": 1}


def test_an_integer_profile_id_is_hashed_as_its_decimal_string():
    fate, _ = scrub(dumps({"$distinct_id": 7, "$set": {"a": 1}}), hash=("distinct_id",))
    assert orjson.loads(fate.line)["$distinct_id"] == hmac_hex(b"7")


@pytest.mark.parametrize(
    "operation, value, written",
    [
        ("$set", {"email": "a@x", "n": 1}, {"email": hmac_hex(b"a@x"), "n": 1}),
        ("$set_once", {"email": {"w": 1}}, {"email": hmac_hex(b'{"w":1}')}),
        ("$append", {"email": "a@x"}, {"email": hmac_hex(b"a@x")}),
        ("$remove", {"email": 3}, {"email": hmac_hex(b"3")}),
        # Each element, so that $union still gets a list.
        ("$union", {"email": ["a@x", 5]}, {"email": [hmac_hex(b"a@x"), hmac_hex(b"5")]}),
        ("$unset", ["email"], ["email"]),  # property names, not values
    ],
)
def test_operation_keys_are_hashed_in_a_shape_the_operation_still_takes(operation, value, written):
    line = dumps({"$distinct_id": "u1", operation: value})
    fate, _ = scrub(line, hash=("email",))
    assert fate.kind == Kind.PROFILE
    assert fate.line == dumps({"$distinct_id": "u1", operation: written})
    assert fate.key == classify(line, CONFIG).key  # the identity is not hashed


def test_an_add_to_a_hashed_property_is_rejected():
    fate, tallies = scrub(dumps({"$distinct_id": "u1", "$add": {"score": 1}}), hash=("score",))
    assert fate.kind == Kind.REJECT and fate.reason == Reason.INVALID_OPERATION
    assert fate.detail == '$add adds to "score", which --hash-property hashes, and a hash is not a number'
    assert tallies == {}


def test_dropping_at_any_depth_in_an_operation_value():
    line = dumps({"$distinct_id": "u1", "$set": {"email": "a", "contact": {"email": "b", "tel": [{"email": 1}]}}})
    fate, tallies = scrub(line, drop=("email",))
    assert fate.line == dumps({"$distinct_id": "u1", "$set": {"contact": {"tel": [{}]}}})
    assert tallies == {DROPPED_PREFIX + "email": 1}


def test_an_operation_emptied_by_dropping_is_rejected_not_written_empty():
    fate, tallies = scrub(dumps({"$distinct_id": "u1", "$set": {"email": "a", "phone": 1}}),
                          drop=("email", "phone"))
    assert fate.kind == Kind.REJECT and fate.reason == Reason.INVALID_OPERATION
    assert fate.detail == '$set is empty once --drop-property removed "email", "phone"'
    assert tallies == {}


def test_group_updates_keep_their_identity_and_hash_operation_keys():
    line = dumps({"$group_key": "company", "$group_id": 9, "$set": {"owner_email": "a@x"}})
    fate, tallies = scrub(line, hash=("distinct_id", "owner_email"))
    assert fate.kind == Kind.GROUP
    assert fate.line == dumps({"$group_key": "company", "$group_id": "9", "$set": {"owner_email": hmac_hex(b"a@x")}})
    assert fate.key == classify(line, CONFIG).key
    assert tallies == {HASHED_PREFIX + "owner_email": 1}


# --- classify_batch with privacy ----------------------------------------------------------------


def test_classify_batch_counts_each_name_once_per_line():
    lines = [
        event(distinct_id="u1", email="a", n={"email": "b"}),
        event(distinct_id="u2"),
        dumps({"$distinct_id": "u1", "$set": {"email": "a", "x": 1}}),
        b"{broken",
    ]
    privacy = PrivacyConfig(drop=("email",), hash=("distinct_id",), key=KEY)
    result = classify_batch(0, "a.ndjson", [0, 100, 200, 300], lines, CONFIG, privacy)
    assert result.tallies[DROPPED_PREFIX + "email"] == 2
    assert result.tallies[HASHED_PREFIX + "distinct_id"] == 3
    assert result.tallies["rejected"] == 1 and result.tallies["events_accepted"] == 2


def test_privacy_never_counts_duplicate_keys_it_did_not_find():
    # The check compares the raw line with what the rules wrote, before privacy.
    lines = [
        event(distinct_id="u1", email="a:b", nested={"email": {"c": ":"}}),  # colons leave with the key
        b'{"event":"E","properties":{"time":1704067200,"distinct_id":"u1","a":1,"a":2,"email":"x"}}',
        dumps({"$distinct_id": "u1", "$set": {"email": "x:y", "b": 1}}),
    ]
    privacy = PrivacyConfig(drop=("email",), hash=("distinct_id",), key=KEY)
    with_privacy = classify_batch(0, "a.ndjson", [0, 100, 200], lines, CONFIG, privacy)
    without_privacy = classify_batch(0, "a.ndjson", [0, 100, 200], lines, CONFIG)
    assert with_privacy.tallies["normalised_duplicate_keys"] == 1
    assert without_privacy.tallies["normalised_duplicate_keys"] == 1
    assert [offset for _, offset, _ in with_privacy.duplicate_key_examples] == [100]


def test_a_rejected_by_privacy_line_is_a_reject_with_its_raw_line():
    line = dumps({"$distinct_id": "u1", "$set": {"email": "a"}})
    privacy = PrivacyConfig(drop=("email",))
    result = classify_batch(3, "p.ndjson", [40], [line], CONFIG, privacy)
    assert result.profiles is None
    assert orjson.loads(result.rejects[3][0]) == {
        "reason": "invalid_operation",
        "detail": '$set is empty once --drop-property removed "email"',
        "source": "p.ndjson",
        "offset": 40,
        "line": line.decode(),
    }
    assert result.tallies["rejected_invalid_operation"] == 1 and result.tallies["profiles"] == 0


def test_redacted_examples_say_where_not_what():
    lines = [b"{broken", b'{"event":"E","properties":{"time":1704067200,"distinct_id":"u","a":1,"a":2}}']
    privacy = PrivacyConfig(redact_examples=True)
    result = classify_batch(2, "s.ndjson", [0, 8], lines, CONFIG, privacy)
    assert result.examples == {"invalid_json": [(2, 0, {"source": "s.ndjson", "offset": 0})]}
    assert result.duplicate_key_examples == [(2, 8, {"source": "s.ndjson", "offset": 8})]
    # Only the examples change: the records and counts are those of a run without it.
    plain = classify_batch(2, "s.ndjson", [0, 8], lines, CONFIG)
    assert (result.events, result.rejects, result.tallies) == (plain.events, plain.rejects, plain.tallies)


def test_hashing_distinct_id_keeps_the_same_events_through_the_dedupe():
    # Re-sends with and without $insert_id, several users and days: the same
    # positions must survive with and without hashing.
    lines = []
    for i in range(60):
        props = {"distinct_id": f"u{i % 4}", "time": T + (i % 3) * 86_400 + (i % 5), "n": i % 7}
        if i % 2:
            props["$insert_id"] = f"id-{i % 6}"
        lines.append(dumps({"event": f"E{i % 2}", "properties": props}))
    offsets = [i * 10 for i in range(60)]

    def survivors(privacy):
        result = classify_batch(0, "a", offsets, lines, CONFIG, privacy)
        kept = []
        for batch in result.events.values():
            positions = dict(zip(batch[3], batch[1], strict=True))
            kept += [positions[line] for survivor in pick_latest([batch])[0] for line in survivor[3]]
        return sorted(kept)

    plain = survivors(None)
    assert len(plain) < 60  # the corpus has duplicates to remove
    assert survivors(PrivacyConfig(hash=("distinct_id",), key=KEY)) == plain


# --- the summary section ---------------------------------------------------------------------


def test_summary_section_lists_every_name_given_with_zeros():
    tallies = {DROPPED_PREFIX + "email": 3, HASHED_PREFIX + "distinct_id": 5, "excluded_events": 2,
               "excluded_profiles": 1, LISTED_IDS: 10, DROPPED_PREFIX + "other": 9}
    assert summary_section(["phone", "email", "email"], ["distinct_id"], tallies) == {
        "dropped": {"email": 3, "phone": 0},
        "hashed": {"distinct_id": 5},
        "excluded": {"events": 2, "profiles": 1},
        "listed_ids": 10,
    }
    assert summary_section([], [], {}) == {
        "dropped": {}, "hashed": {}, "excluded": {"events": 0, "profiles": 0}, "listed_ids": 0,
    }


# --- the deletion list -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, identity",
    [(b"u1", b"u1"), (b"  u1\t", b"u1"), (b"u1\r", b"u1"), (b"u 1", b"u 1"), (b"", None), (b" \t", None),
     ("é".encode(), "é".encode()), (b"\xff", b"\xff")],
)
def test_listed_id_strips_spaces_and_skips_blank_lines(line, identity):
    assert listed_id(line) == identity


def test_listed_ids_are_hashed_like_the_records_ids():
    assert listed_id(b" u1 ", KEY) == hmac_hex(b"u1").encode()


def test_listed_digests_by_bucket():
    found = listed_digests([b"u1", b"", b"u2", b"u3", b"u1"], None, 3)
    everything = b"".join(found.values())
    assert sorted(everything[i : i + 16] for i in range(0, len(everything), 16)) == sorted(
        [id_digest(b"u1"), id_digest(b"u1"), id_digest(b"u2"), id_digest(b"u3")]
    )
    for bucket, digests in found.items():
        assert all(bucket_of(digests[i : i + 16], 3) == bucket for i in range(0, len(digests), 16))


def test_probes_find_events_distinct_id_and_profiles_distinct_id():
    events = (0, [0, 1, 2, 3], b"", [
        b'{"event":"E","properties":{"time":1,"distinct_id":"u1"}}',
        b'{"event":"E","properties":{"time":1,"$device_id":"d"}}',
        b'{"event":"E","properties":{"time":1,"distinct_id":""}}',
        b'{"event":"E","properties":{"time":1,"distinct_id":"u2","$user_id":"u1"}}',
    ])
    found = probes("events/day=2024-01-01", events, 1)
    assert found == {0: ([0, 3], id_digest(b"u1") + id_digest(b"u2"))}
    profiles = (0, [5], b"", [b'{"$distinct_id":"u2","$set":{"distinct_id":"u1"}}'])
    assert probes("profiles", profiles, 1) == {0: ([0], id_digest(b"u2"))}


def test_listed_positions_and_without():
    batch = (4, [10, 20, 30], bytes(range(48)), [b"a", b"b", b"c"])
    probe = ([0, 2], id_digest(b"u1") + id_digest(b"u2"))
    assert listed_positions({id_digest(b"u2")}, probe) == [2]
    assert without(batch, {2}) == (4, [10, 20], bytes(range(32)), [b"a", b"b"])
    assert without(batch, {0, 2}) == (4, [20], bytes(range(16, 32)), [b"b"])
    assert without(batch, {0, 1, 2}) is None


@pytest.mark.parametrize(
    "list_bytes, data_bytes, buckets",
    [(0, 0, 1), (1000, 1000, 1), (16 << 20, 0, 1), ((16 << 20) + 1, 0, 2), (0, 1 << 30, 4),
     (100 << 20, 1 << 30, 7), (1 << 50, 0, MAX_BUCKETS)],
)
def test_exclusion_buckets_grow_with_the_list_and_the_data(list_bytes, data_bytes, buckets):
    assert exclusion_buckets(list_bytes, data_bytes) == buckets
