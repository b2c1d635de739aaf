"""Tables for profile and group updates (transforms/updates.py) against DESIGN.md §2 and §3."""

import pytest

from rule_lines import CONFIG, WIDE, T, dumps, group, has_duplicate_keys, key_of, nest, profile, reason_of
from transforms.reasons import DUPLICATE_KEYS, NORMALISED_DISTINCT_ID, Fate, Kind, Reason
from transforms.rules import classify

# ---------------------------------------------------------------- profile updates


VALID_OPERATIONS = [
    ("$set", {"a": 1}),
    ("$set", {"a": {"b": [1, 2]}, "c": None}),
    ("$set_once", {"a": 1}),
    ("$add", {"n": 1}),
    ("$add", {"n": -2.5, "m": 0, "big": 2**64 - 1}),
    ("$union", {"l": [1]}),
    ("$union", {"l": ["a", "b"], "m": [None]}),
    ("$append", {"l": 1}),
    ("$append", {"l": [1, 2]}),
    ("$remove", {"l": "x"}),
    ("$unset", ["a"]),
    ("$unset", ["a", "b", ""]),
    ("$delete", ""),
    ("$delete", None),
    ("$delete", {}),
    ("$delete", []),
    ("$delete", "whatever"),
]


@pytest.mark.parametrize("operation, value", VALID_OPERATIONS)
def test_valid_profile_operations(operation: str, value: object) -> None:
    line = profile(**{operation: value})
    fate = classify(line, CONFIG)
    assert (fate.kind, fate.line, fate.name, fate.normalised) == (
        Kind.PROFILE,
        line,
        operation,
        0,
    )
    assert fate.day == "" and fate.reason is None and len(fate.key) == 16


@pytest.mark.parametrize(
    "operation, value",
    [(op, value) for op, value in VALID_OPERATIONS if op not in ("$add", "$append")],
)
def test_valid_group_operations(operation: str, value: object) -> None:
    line = group(**{operation: value})
    fate = classify(line, CONFIG)
    assert (fate.kind, fate.line, fate.name, fate.normalised) == (Kind.GROUP, line, operation, 0)


def test_profile_written_as_given_but_compact_and_with_a_string_id() -> None:
    line = (
        b'{ "$token": "t", "$distinct_id": 42, "$set": {"b": 1, "a": 1.50},'
        b' "$ip": "1.2.3.4", "$ignore_time": true, "$ignore_alias": false, "$time": 1 }'
    )
    fate = classify(line, CONFIG)
    assert fate == Fate(
        Kind.PROFILE,
        b'{"$token":"t","$distinct_id":"42","$set":{"b":1,"a":1.5},"$ip":"1.2.3.4",'
        b'"$ignore_time":true,"$ignore_alias":false,"$time":1}',
        "",
        fate.key,
        "$set",
        NORMALISED_DISTINCT_ID,
        values={"b": 1, "a": 1.5},
    )


def test_group_written_as_given_but_with_a_string_id() -> None:
    line = dumps({"$set_once": {"a": 1}, "$group_id": 9, "$group_key": "company", "$token": "t"})
    fate = classify(line, CONFIG)
    assert fate == Fate(
        Kind.GROUP,
        b'{"$set_once":{"a":1},"$group_id":"9","$group_key":"company","$token":"t"}',
        "",
        fate.key,
        "$set_once",
        NORMALISED_DISTINCT_ID,
        values={"a": 1},
    )


@pytest.mark.parametrize(
    "distinct_id",
    [
        None,
        True,
        False,
        1.5,
        1.0,
        [],
        {},
        "",
        "   ",  # blank is empty
        "x" * 256,
        0,
        -1,
        "null",
        " Anonymous ",
        "00000000-0000-0000-0000-000000000000",
        "{}",
    ],
)
def test_invalid_profile_distinct_id(distinct_id: object) -> None:
    line = dumps({"$distinct_id": distinct_id, "$set": {"a": 1}})
    assert reason_of(line) == Reason.INVALID_DISTINCT_ID


@pytest.mark.parametrize("distinct_id", ["x" * 255, "é" * 255, 1, 2**63, "0x", " u1 "])
def test_valid_profile_distinct_id(distinct_id: object) -> None:
    line = dumps({"$distinct_id": distinct_id, "$set": {"a": 1}})
    assert classify(line, CONFIG).kind == Kind.PROFILE


@pytest.mark.parametrize(
    "fields",
    [
        {"$group_key": 5},
        {"$group_key": None},
        {"$group_key": ""},
        {"$group_key": "  "},
        {"$group_key": ["company"]},
        {"$group_id": None},
        {"$group_id": True},
        {"$group_id": 1.5},
        {"$group_id": ["acme"]},
        {"$group_id": {}},
        {"$group_id": ""},
        {"$group_id": " "},
        {"$group_id": "x" * 256},
        {"$group_id": "null"},
        {"$group_id": "N/A"},
        {"$group_id": 0},
        {"$group_id": -1},
    ],
)
def test_invalid_group(fields: dict[str, object]) -> None:
    record = {"$group_key": "company", "$group_id": "acme", "$set": {"a": 1}, **fields}
    assert reason_of(dumps(record)) == Reason.INVALID_GROUP


def test_group_without_group_id() -> None:
    assert reason_of(dumps({"$group_key": "company", "$set": {"a": 1}})) == Reason.INVALID_GROUP


UPDATE_REJECTS = [
    # missing_operation
    (profile(), Reason.MISSING_OPERATION),
    (profile(**{"$token": "t", "$ip": "1.2.3.4"}), Reason.MISSING_OPERATION),
    (profile(**{"$Set": {"a": 1}}), Reason.MISSING_OPERATION),
    (group(), Reason.MISSING_OPERATION),
    # multiple_operations
    (profile(**{"$set": {"a": 1}, "$unset": ["b"]}), Reason.MULTIPLE_OPERATIONS),
    (profile(**{"$set": {"a": 1}, "$set_once": {"b": 1}}), Reason.MULTIPLE_OPERATIONS),
    (group(**{"$set": {"a": 1}, "$delete": None}), Reason.MULTIPLE_OPERATIONS),
    # invalid_operation
    (profile(**{"$set": {}}), Reason.INVALID_OPERATION),
    (profile(**{"$set": []}), Reason.INVALID_OPERATION),
    (profile(**{"$set": [["a", 1]]}), Reason.INVALID_OPERATION),
    (profile(**{"$set": "a"}), Reason.INVALID_OPERATION),
    (profile(**{"$set": None}), Reason.INVALID_OPERATION),
    (profile(**{"$set_once": {}}), Reason.INVALID_OPERATION),
    (profile(**{"$set_once": 1}), Reason.INVALID_OPERATION),
    (profile(**{"$add": {}}), Reason.INVALID_OPERATION),
    (profile(**{"$add": {"n": "1"}}), Reason.INVALID_OPERATION),
    (profile(**{"$add": {"n": True}}), Reason.INVALID_OPERATION),
    (profile(**{"$add": {"n": None}}), Reason.INVALID_OPERATION),
    (profile(**{"$add": {"n": 1, "m": [1]}}), Reason.INVALID_OPERATION),
    (profile(**{"$add": [1]}), Reason.INVALID_OPERATION),
    (profile(**{"$union": {}}), Reason.INVALID_OPERATION),
    (profile(**{"$union": {"l": []}}), Reason.INVALID_OPERATION),
    (profile(**{"$union": {"l": 1}}), Reason.INVALID_OPERATION),
    (profile(**{"$union": {"l": [1], "m": "x"}}), Reason.INVALID_OPERATION),
    (profile(**{"$union": [1]}), Reason.INVALID_OPERATION),
    (profile(**{"$append": {}}), Reason.INVALID_OPERATION),
    (profile(**{"$append": [1]}), Reason.INVALID_OPERATION),
    (profile(**{"$remove": {}}), Reason.INVALID_OPERATION),
    (profile(**{"$remove": "x"}), Reason.INVALID_OPERATION),
    (profile(**{"$unset": []}), Reason.INVALID_OPERATION),
    (profile(**{"$unset": "a"}), Reason.INVALID_OPERATION),
    (profile(**{"$unset": ["a", 1]}), Reason.INVALID_OPERATION),
    (profile(**{"$unset": [None]}), Reason.INVALID_OPERATION),
    (profile(**{"$unset": {"a": 1}}), Reason.INVALID_OPERATION),
    (group(**{"$set": {}}), Reason.INVALID_OPERATION),
    (group(**{"$unset": []}), Reason.INVALID_OPERATION),
    # unsupported_operation
    (group(**{"$add": {"n": 1}}), Reason.UNSUPPORTED_OPERATION),
    (group(**{"$append": {"l": 1}}), Reason.UNSUPPORTED_OPERATION),
    # unexpected_field
    (profile(**{"$set": {"a": 1}, "$email": "a@b.c"}), Reason.UNEXPECTED_FIELD),
    (profile(**{"$set": {"a": 1}, "properties": {}}), Reason.UNEXPECTED_FIELD),
    (profile(**{"$set": {"a": 1}, "distinct_id": "u1"}), Reason.UNEXPECTED_FIELD),
    (profile(**{"$set": {"a": 1}, "$group_id": "g"}), Reason.UNEXPECTED_FIELD),
    (profile(**{"$set": {"a": 1}, "time": T}), Reason.UNEXPECTED_FIELD),
    (group(**{"$set": {"a": 1}, "$distinct_id": "u1"}), Reason.UNEXPECTED_FIELD),
    (group(**{"$set": {"a": 1}, "$email": "a@b.c"}), Reason.UNEXPECTED_FIELD),
    # too_many_properties: 2,000 or more entries in the one operation
    (profile(**{"$set": {f"k{i}": i for i in range(2000)}}), Reason.TOO_MANY_PROPERTIES),
    (profile(**{"$unset": [f"k{i}" for i in range(2000)]}), Reason.TOO_MANY_PROPERTIES),
    (profile(**{"$delete": list(range(2000))}), Reason.TOO_MANY_PROPERTIES),
    (group(**{"$union": {f"k{i}": [i] for i in range(2500)}}), Reason.TOO_MANY_PROPERTIES),
    # record_too_large
    (profile(**{"$set": {"a": "x" * 1_000_000}}), Reason.RECORD_TOO_LARGE),
    (group(**{"$set": {"a": "x" * 1_000_000}}), Reason.RECORD_TOO_LARGE),
]


@pytest.mark.parametrize("line, reason", UPDATE_REJECTS)
def test_update_rejects(line: bytes, reason: Reason) -> None:
    assert reason_of(line) == reason


@pytest.mark.parametrize(
    "line",
    [
        profile(**{"$set": {f"k{i}": i for i in range(1999)}}),
        profile(**{"$unset": [f"k{i}" for i in range(1999)]}),
        group(**{"$set": {f"k{i}": i for i in range(1999)}}),
        # the event limits do not apply to updates
        profile(**{"$set": {"deep": nest(50), "wide": WIDE, "long": list(range(1000))}}),
    ],
)
def test_update_limits_that_pass(line: bytes) -> None:
    assert reason_of(line) is None


@pytest.mark.parametrize("kind", ["profile", "group"])
@pytest.mark.parametrize("total, reason", [(999_999, None), (1_000_000, Reason.RECORD_TOO_LARGE)])
def test_update_size_boundary(kind: str, total: int, reason: Reason | None) -> None:
    make = profile if kind == "profile" else group
    size = len(make(**{"$set": {"a": ""}}))
    line = make(**{"$set": {"a": "x" * (total - size)}})
    assert len(line) == total
    assert reason_of(line) == reason


UPDATE_PRECEDENCE = [
    (dumps({"$distinct_id": "", "$email": 1}), Reason.INVALID_DISTINCT_ID),
    (dumps({"$group_key": "", "$set": {}, "$add": {}}), Reason.INVALID_GROUP),
    (profile(**{"$email": 1, "$token": "t"}), Reason.MISSING_OPERATION),
    (profile(**{"$set": {}, "$unset": "a", "$email": 1}), Reason.MULTIPLE_OPERATIONS),
    (profile(**{"$set": {}, "$email": 1}), Reason.INVALID_OPERATION),
    (group(**{"$add": {"n": "not a number"}, "$email": 1}), Reason.INVALID_OPERATION),
    (group(**{"$append": {"l": 1}, "$email": 1}), Reason.UNSUPPORTED_OPERATION),
    (
        profile(**{"$set": {f"k{i}": "x" * 1000 for i in range(2000)}, "$email": 1}),
        Reason.UNEXPECTED_FIELD,
    ),
    (profile(**{"$set": {f"k{i}": "x" * 1000 for i in range(2000)}}), Reason.TOO_MANY_PROPERTIES),
]


@pytest.mark.parametrize("line, reason", UPDATE_PRECEDENCE)
def test_update_reason_precedence(line: bytes, reason: Reason) -> None:
    assert reason_of(line) == reason


# ---------------------------------------------------------------- identity keys


def test_identity_keys() -> None:
    profile_set = dumps({"$distinct_id": "u1", "$set": {"a": 1}})
    profile_unset = dumps({"$distinct_id": "u1", "$unset": ["a"], "$token": "t"})
    assert key_of(profile_set) == key_of(profile_unset)
    assert key_of(dumps({"$distinct_id": 5, "$set": {"a": 1}})) == key_of(
        dumps({"$distinct_id": "5", "$set": {"a": 1}})
    )
    assert key_of(profile_set) != key_of(dumps({"$distinct_id": "u2", "$set": {"a": 1}}))
    group_one = dumps({"$group_key": "a", "$group_id": "bc", "$set": {"x": 1}})
    group_two = dumps({"$group_key": "ab", "$group_id": "c", "$set": {"x": 1}})
    assert key_of(group_one) != key_of(group_two)
    assert key_of(dumps({"$group_key": "c", "$group_id": 5, "$delete": None})) == key_of(
        dumps({"$group_key": "c", "$group_id": "5", "$set": {"y": 2}})
    )


# ---------------------------------------------------------------- duplicate keys


DUPLICATE_KEY_UPDATES = [
    pytest.param(
        b'{"$distinct_id":"u1","$set":{"a":1,"a":2}}',
        b'{"$distinct_id":"u1","$set":{"a":2}}',
        DUPLICATE_KEYS,
        id="in_set_value",
    ),
    pytest.param(
        b'{"$distinct_id" : "u1", "$set" : {"a" : {"b" : [ {"c":1, "c" : 2} ]}}}',
        b'{"$distinct_id":"u1","$set":{"a":{"b":[{"c":2}]}}}',
        DUPLICATE_KEYS,
        id="deep_in_set_value_with_whitespace",
    ),
    pytest.param(
        b'{"$distinct_id":"null","$distinct_id":"u2","$set":{"a":1}}',
        b'{"$distinct_id":"u2","$set":{"a":1}}',
        DUPLICATE_KEYS,
        id="distinct_id",
    ),
    pytest.param(
        b'{"$distinct_id":"u1","$distinct_id":7,"$set":{"a":1}}',
        b'{"$distinct_id":"7","$set":{"a":1}}',
        DUPLICATE_KEYS | NORMALISED_DISTINCT_ID,
        id="distinct_id_then_integer",
    ),
    pytest.param(
        b'{"$distinct_id":"u1","$set":{"a":1},"$set":{"b":2}}',
        b'{"$distinct_id":"u1","$set":{"b":2}}',
        DUPLICATE_KEYS,
        id="operation_given_twice",
    ),
    pytest.param(
        b'{"$distinct_id":"u:1","$set":{"url":"http://h:80","t":"12:00"},"$time":"10:11"}',
        b'{"$distinct_id":"u:1","$set":{"url":"http://h:80","t":"12:00"},"$time":"10:11"}',
        0,
        id="colons_no_duplicate",
    ),
    pytest.param(
        b'{"$distinct_id":"u1","$union":{"l":[{"a":1,"a":1}]}}',
        b'{"$distinct_id":"u1","$union":{"l":[{"a":1}]}}',
        DUPLICATE_KEYS,
        id="in_union_list_of_objects_same_value",
    ),
    pytest.param(
        b'{"$distinct_id":"u1","$set":{"k\\u003a":1,"k:":2}}',
        b'{"$distinct_id":"u1","$set":{"k:":2}}',
        DUPLICATE_KEYS,
        id="escaped_colon_same_key",
    ),
    pytest.param(
        b'{"$distinct_id":"u1","$token":"t","$token":"t","$delete":""}',
        b'{"$distinct_id":"u1","$token":"t","$delete":""}',
        DUPLICATE_KEYS,
        id="modifier",
    ),
    pytest.param(
        b'{"$group_key":"company","$group_id":1,"$group_id":"acme","$set":{"n":{"a":1,"a":2}}}',
        b'{"$group_key":"company","$group_id":"acme","$set":{"n":{"a":2}}}',
        DUPLICATE_KEYS,
        id="group",
    ),
    pytest.param(
        b'{"$group_key":"x","$group_key":"company","$group_id":7,"$unset":["a:b"]}',
        b'{"$group_key":"company","$group_id":"7","$unset":["a:b"]}',
        DUPLICATE_KEYS | NORMALISED_DISTINCT_ID,
        id="group_key",
    ),
    pytest.param(
        b'{"$group_key":"company","$group_id":"acme","$set":{"a\\u003ab":"\\u003a"}}',
        b'{"$group_key":"company","$group_id":"acme","$set":{"a:b":":"}}',
        0,
        id="group_escaped_colons_no_duplicate",
    ),
]


@pytest.mark.parametrize("line, written, flags", DUPLICATE_KEY_UPDATES)
def test_duplicate_keys_on_updates(line: bytes, written: bytes, flags: int) -> None:
    fate = classify(line, CONFIG)
    assert fate.kind in (Kind.PROFILE, Kind.GROUP)
    assert (fate.line, fate.normalised) == (written, flags)
    assert fate.normalised & DUPLICATE_KEYS == has_duplicate_keys(line) * DUPLICATE_KEYS
    assert classify(written, CONFIG).normalised == 0


def test_duplicate_keys_deep_in_a_profile_written_by_the_deep_writer() -> None:
    deep = b'{"a":' * 1000 + b'{"x":1,"x":2}' + b"}" * 1000
    fate = classify(b'{"$distinct_id":"u1","$set":' + deep + b"}", CONFIG)
    assert (fate.kind, fate.normalised) == (Kind.PROFILE, DUPLICATE_KEYS)
    assert fate.line == b'{"$distinct_id":"u1","$set":' + b'{"a":' * 1000 + b'{"x":2}' + b"}" * 1000 + b"}"
    clean = classify(fate.line, CONFIG)
    assert (clean.kind, clean.line, clean.normalised) == (Kind.PROFILE, fate.line, 0)


# ---------------------------------------------------------------- totality


def test_profiles_too_deep_for_orjson_to_write_are_written_anyway() -> None:
    deep = b'{"a":' * 1000 + b"[1, 2.50, null]" + b"}" * 1000
    line = b'{"$distinct_id": "u1", "$set": ' + deep + b"}"
    fate = classify(line, CONFIG)
    assert fate.kind == Kind.PROFILE
    assert (
        fate.line
        == b'{"$distinct_id":"u1","$set":'
        + deep.replace(b", ", b",").replace(b"2.50", b"2.5")
        + b"}"
    )
