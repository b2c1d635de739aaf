"""Tests of transforms/schema.py (the schema report's type counts) and pipeline/schema.py (CollectSchema)."""

import random

import apache_beam as beam
import orjson
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import GlobalWindow

from pipeline.options import UsageError
from pipeline.schema import CollectSchema, complete_schema, read_previous_schema
from transforms import schema as sc
from transforms import schema_bundle
from transforms import schema_document as sd
from transforms.dedupe import DeduplicateEvents
from transforms.privacy import PrivacyConfig
from transforms.records import classify_batch
from transforms.rules import classify
from transforms.schema import NameTypes, TypeTally
from transforms.validate import ValidateAndSplit

T = 1704067200  # 2024-01-01T00:00:00Z


def types_of(line: bytes) -> dict[str, str]:
    """key -> type name of one JSON object, as the tally counts it."""
    tally = TypeTally()
    tally.add(sc.EVENTS, "E", orjson.loads(line), 0, 0)
    ((_, counted),) = tally.partials()
    return {key: next(iter(types)) for key, types in counted.keys.items()}


def count_lines(lines, section, sign=-1):
    """The type counts of written lines of one kind (sc.add_lines, as the dedupe counts), to add or subtract."""
    tally = TypeTally()
    sc.add_lines(tally, lines, section)
    return tally.partials(sign)


def classify_counting(rank, path, offsets, lines, config, privacy=None):
    """classify_batch with a type tally: the batch's result, and the tally's partial counts."""
    tally = TypeTally()
    result = classify_batch(rank, path, offsets, lines, config, privacy, tally)
    return result, tally.partials()


# --- the type rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"a"', "string"),
        ('""', "string"),
        ("0", "integer"),
        ("-7", "integer"),
        ("9007199254740993", "integer"),
        ("1.0", "number"),  # written as a float: a number, though its value is whole
        ("-0.0", "number"),
        ("2e3", "number"),
        ("1.5", "number"),
        ("100000000000000000000000", "number"),  # beyond 64 bits: read, and written, as a float
        ("true", "boolean"),
        ("false", "boolean"),
        ("null", "null"),
        ("{}", "object"),
        ('{"a": [1]}', "object"),
        ("[]", "list"),
        ('[{"a": 1}]', "list"),
    ],
)
def test_a_value_gets_the_type_of_its_json_token(text, expected):
    assert types_of(b'{"v": ' + text.encode() + b"}") == {"v": expected}


def test_values_are_typed_as_written_after_the_rules_normalised_them(rule_config):
    line = orjson.dumps({"event": "E", "properties": {
        "time": "2024-01-01T00:00:00Z", "distinct_id": 42, "price": 1.0, "n": 1}})
    _, ((key, counted),) = classify_counting(0, "a.ndjson", [0], [line], rule_config)
    assert key == (sc.EVENTS, "E")
    # time: an ISO string made integer seconds; distinct_id: an integer made a string;
    # $insert_id: generated, a string.
    assert counted.keys == {"time": {"integer": 1}, "distinct_id": {"string": 1}, "price": {"number": 1},
                            "n": {"integer": 1}, "$insert_id": {"string": 1}}


# --- counting a batch -----------------------------------------------------------------------


def test_a_batch_counts_events_profiles_and_groups_with_first_positions(rule_config):
    lines = [
        b'{"event": "A", "properties": {"time": 1704067200, "distinct_id": "u1", "$insert_id": "i1", "p": "x"}}',
        b"not json",
        b'{"event": "A", "properties": {"time": 1704067201, "distinct_id": "u2", "$insert_id": "i2", "p": 2}}',
        b'{"event": "A", "properties": {"time": 1704067202, "distinct_id": "u3", "$insert_id": "i3", "p": "y"}}',
        b'{"$distinct_id": "u1", "$set": {"plan": "pro"}}',
        b'{"$distinct_id": "u1", "$unset": ["plan"]}',
        b'{"$distinct_id": "u2", "$set_once": {"plan": null, "age": 3}}',
        b'{"$group_key": "co", "$group_id": 7, "$set": {"name": "Acme"}}',
        b"",
    ]
    offsets = [0, 100, 200, 300, 400, 500, 600, 700, 800]
    _, partials = classify_counting(3, "in/a.ndjson", offsets, lines, rule_config)
    got = dict(partials)
    assert got == {
        (sc.EVENTS, "A"): NameTypes(
            3,
            {"time": {"integer": 3}, "distinct_id": {"string": 3}, "$insert_id": {"string": 3},
             "p": {"string": 2, "integer": 1}},
            {},
            {("time", "integer"): (3, 0, "in/a.ndjson"), ("distinct_id", "string"): (3, 0, "in/a.ndjson"),
             ("$insert_id", "string"): (3, 0, "in/a.ndjson"), ("p", "string"): (3, 0, "in/a.ndjson"),
             ("p", "integer"): (3, 200, "in/a.ndjson")},
        ),
        # $unset is no property of the profile: only $set and $set_once count.
        (sc.PROFILES, ""): NameTypes(
            2,
            {"plan": {"string": 1, "null": 1}, "age": {"integer": 1}},
            {},
            {("plan", "string"): (3, 400, "in/a.ndjson"), ("plan", "null"): (3, 600, "in/a.ndjson"),
             ("age", "integer"): (3, 600, "in/a.ndjson")},
        ),
        (sc.GROUPS, ""): NameTypes(1, {"name": {"string": 1}}, {}, {("name", "string"): (3, 700, "in/a.ndjson")}),
    }


def test_the_types_counted_are_the_values_the_classifiers_hand_on(rule_config):
    # Every classifier hands on the values its written line holds (Fate.values), privacy's
    # scrubber included, and a $delete's null too: no line is parsed again to count it.
    lines = [
        b'{"event": "A", "properties": {"time": 1704067200, "distinct_id": "u1", "p": [1], "email": "a@b"}}',
        b'{"$distinct_id": "u1", "$set_once": {"plan": "pro", "email": "a@b"}}',
        b'{"$distinct_id": "u1", "$delete": null}',
    ]
    for privacy in (None, PrivacyConfig(drop=("email",))):
        result, partials = classify_counting(0, "a", [0, 9, 20], lines, rule_config, privacy)
        (events,) = result.events.values()
        expected = count_lines(events[3], sc.EVENTS, sign=1) + count_lines(
            result.profiles[3], sc.PROFILES, sign=1
        )
        assert {k: (t.count, t.keys) for k, t in partials} == {k: (t.count, t.keys) for k, t in expected}
        assert ("email" in partials[0][1].keys) is (privacy is None)


def test_a_tally_may_gather_batches_in_any_order(rule_config):
    # A stage's tally spans its bundle (transforms/schema_bundle.py): batches of other files
    # come in any order, and a pair's position is still the smallest it was seen at.
    first = [b'{"event": "A", "properties": {"time": 1704067200, "distinct_id": "u1", "p": "x"}}']
    later = [
        b'{"event": "A", "properties": {"time": 1704067200, "distinct_id": "u2", "p": 1}}',
        b'{"event": "A", "properties": {"time": 1704067200, "distinct_id": "u3", "p": "y"}}',
    ]
    tally = TypeTally()
    classify_batch(5, "in/b.ndjson", [0, 80], later, rule_config, types=tally)
    classify_batch(2, "in/a.ndjson", [40], first, rule_config, types=tally)
    ((key, counted),) = tally.partials()
    assert key == (sc.EVENTS, "A") and counted.count == 3
    assert counted.keys["p"] == {"string": 2, "integer": 1}
    assert counted.examples[("p", "string")] == (2, 40, "in/a.ndjson")
    assert counted.examples[("p", "integer")] == (5, 0, "in/b.ndjson")
    assert counted.examples[("distinct_id", "string")] == (2, 40, "in/a.ndjson")
    with pytest.raises(ValueError, match="upload rank 2 is both 'in/a.ndjson' and 'in/c.ndjson'"):
        classify_batch(2, "in/c.ndjson", [0], first, rule_config, types=tally)


def test_added_lines_subtract_what_the_batch_added(rule_config):
    lines = [
        b'{"event": "A", "properties": {"time": 1704067200, "distinct_id": "u1", "p": [1]}}',
        b'{"event": "B", "properties": {"time": 1704067200, "distinct_id": "u1", "p": {"q": 1}}}',
        b'{"$distinct_id": "u1", "$set": {"plan": "pro"}}',
    ]
    _, partials = classify_counting(0, "a", [0, 1, 2], lines, rule_config)
    # The lines as written (the rules added $insert_id).
    written_events = [classify(line, rule_config).line for line in lines[:2]]
    written_profile = [classify(lines[2], rule_config).line]
    minus = dict(count_lines(written_events, sc.EVENTS) + count_lines(written_profile, sc.PROFILES))
    for key, added in partials:
        total = sc.merge(NameTypes(), added)
        sc.merge(total, minus[key])
        assert total.count == 0 and all(n == 0 for types in total.keys.values() for n in types.values())
        assert minus[key].examples == {}  # subtracted lines bring no positions
    plus = dict(count_lines(written_events, sc.EVENTS, sign=1))
    assert plus[(sc.EVENTS, "A")].keys["p"] == {"list": 1}
    assert plus[(sc.EVENTS, "B")].keys["p"] == {"object": 1}
    with pytest.raises(ValueError, match="section must be one of"):
        count_lines([], "users")


# --- adding up, bounded ---------------------------------------------------------------------


def _merged_in_random_groups(parts: list[NameTypes], seed: int) -> NameTypes:
    """Merges the parts as a runner might: shuffled, in groups, then the groups."""
    rng = random.Random(seed)
    parts = parts[:]
    rng.shuffle(parts)
    groups = []
    while parts:
        size = rng.randint(1, 5)
        group = NameTypes()
        for part in parts[:size]:
            sc.merge(group, NameTypes(part.count, {k: dict(v) for k, v in part.keys.items()},
                                      dict(part.other), dict(part.examples)))
        groups.append(group)
        parts = parts[size:]
    total = NameTypes()
    for group in groups:
        sc.merge(total, group)
    return sc.finish_name(total)


def test_merging_is_exact_and_independent_of_order_and_grouping():
    parts = [
        NameTypes(2, {"a": {"string": 2}, "b": {"integer": 1}}, {}, {("a", "string"): (1, 50, "f1"),
                                                                      ("b", "integer"): (1, 60, "f1")}),
        NameTypes(1, {"b": {"string": 1}}, {}, {("b", "string"): (0, 900, "f0")}),
        NameTypes(3, {"b": {"integer": 2, "null": 1}, "c": {"list": 3}}, {},
                  {("b", "integer"): (0, 10, "f0"), ("b", "null"): (0, 11, "f0"), ("c", "list"): (0, 12, "f0")}),
        NameTypes(-1, {"c": {"list": -1}, "b": {"integer": -1}}, {}, {}),  # a superseded event
    ]
    expected = NameTypes(
        5,
        {"a": {"string": 2}, "b": {"integer": 2, "string": 1, "null": 1}, "c": {"list": 2}},
        {},
        # Positions only for the conflicting key b, the first of each of its types.
        {("b", "integer"): (0, 10, "f0"), ("b", "string"): (0, 900, "f0"), ("b", "null"): (0, 11, "f0")},
    )
    for seed in range(10):
        assert _merged_in_random_groups(parts, seed) == expected


def test_keys_seen_only_in_removed_records_disappear():
    total = sc.merge(NameTypes(), NameTypes(2, {"a": {"string": 2}, "ref": {"string": 1}}))
    sc.merge(total, NameTypes(-1, {"a": {"string": -1}, "ref": {"string": -1}}))
    assert sc.finish_name(total) == NameTypes(1, {"a": {"string": 1}}, {}, {})


def test_more_removed_than_counted_is_a_bug():
    with pytest.raises(ValueError, match="negative type count"):
        sc.finish_name(NameTypes(1, {"a": {"string": -1}}))


def test_past_max_keys_the_keys_written_most_stay_and_the_rest_is_other():
    # 2,500 keys: key k written (k % 7 + 1) times, as strings, and once as an integer.
    keys = {f"k{i:04d}": {"string": i % 7 + 1, "integer": 1} for i in range(2_500)}
    finished = sc.finish_name(NameTypes(10, keys))
    ranked = sorted(keys, key=lambda k: (-sum(keys[k].values()), k))
    assert sorted(finished.keys) == sorted(ranked[: sc.MAX_KEYS])
    folded = ranked[sc.MAX_KEYS :]
    assert finished.other == {"string": sum(keys[k]["string"] for k in folded), "integer": len(folded)}


def test_an_accumulator_holds_a_bounded_number_of_keys_and_stays_exact():
    # 25,000 distinct keys of one name, in 50 partial counts: more than an
    # accumulator holds. The kept keys, their counts and "(other)" are the same
    # whatever the order and grouping of merges, and nothing is lost.
    rng = random.Random(3)
    parts = []
    for _ in range(50):
        keys = {f"key-{rng.randrange(25_000):05d}": {"string": 1} for _ in range(600)}
        keys["common"] = {"string": 10, "integer": 1}
        parts.append(NameTypes(10, keys))
    total_lines = sum(n for part in parts for types in part.keys.values() for n in types.values())
    results = []
    for seed in range(3):
        merged = NameTypes()
        order = parts[:]
        random.Random(seed).shuffle(order)
        for part in order:
            sc.merge(merged, NameTypes(part.count, {k: dict(v) for k, v in part.keys.items()}))
            assert len(merged.keys) <= 2 * sc.KEYS_HELD
        results.append(sc.finish_name(merged))
    assert results[0] == results[1] == results[2]
    result = results[0]
    assert len(result.keys) == sc.MAX_KEYS and result.keys["common"] == {"string": 500, "integer": 50}
    kept = sum(n for types in result.keys.values() for n in types.values())
    assert kept + sum(result.other.values()) == total_lines
    assert result.examples == {}  # positions are for conflicts: common had none given


def test_fifty_thousand_event_names_keep_the_ten_thousand_largest_exactly():
    rng = random.Random(5)
    names = {f"event-{i:05d}": 1 + rng.randrange(40) for i in range(50_000)}
    finished = {name: NameTypes(n, {"k": {"string": n}}) for name, n in names.items()}
    results = []
    for seed in range(2):
        items = list(finished.items())
        random.Random(seed).shuffle(items)
        partial = [sc.EventNames() for _ in range(4)]
        for i, (name, types) in enumerate(items):
            partial[i % 4].add(name, types)
            assert len(partial[i % 4].names) <= 2 * sc.MAX_EVENT_NAMES
        total = sc.EventNames()
        for part in partial:
            total.merge(part)
        results.append(total.final())
    assert results[0] == results[1]
    result = results[0]
    largest = sorted(names, key=lambda n: (-names[n], n))[: sc.MAX_EVENT_NAMES]
    assert sorted(result) == sorted(largest + [sc.OTHER])
    rest = sum(names.values()) - sum(names[n] for n in largest)
    assert result[sc.OTHER] == NameTypes(rest, {"k": {"string": rest}}, {}, {})


# --- an earlier run's schema (pipeline/schema.py) ------------------------------------------


def test_read_previous_schema_refuses_in_one_line(tmp_path):
    good = tmp_path / "good.json"
    good.write_bytes(sd.document_bytes({"events": {"A": {"count": 1, "properties": {
        "k": {"types": {"string": 1, "null": 2}}}}}, "conflicts": {}}))
    assert read_previous_schema(str(good)) == {"A": {"k": ("string",)}}
    cases = {
        "missing.json": (None, "no such file"),
        "text.json": (b"hello", "is not JSON (unexpected character"),
        "summary.json": (
            b'{"tool": {"name": "cloud-import-prep"}}', 'is not a _SCHEMA.json of this tool: it has no "events"'
        ),
    }
    cases["folder"] = (None, "cannot be read: ")
    (tmp_path / "folder").mkdir()
    for name, (data, message) in cases.items():
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(UsageError) as raised:
            read_previous_schema(str(path))
        assert str(raised.value).startswith(f"--previous-schema {str(path)!r}")
        assert message in str(raised.value) and "\n" not in str(raised.value)


def test_complete_schema_adds_drift_and_the_check_only_when_asked():
    names = [((sc.EVENTS, "A"), NameTypes(1, {"k": {"integer": 1}}))]
    document = sd.document_of(names)
    previous = {"A": {"k": ("string",)}}
    summary = {"checks": {"balanced": True}, "passed": True}
    assert complete_schema(names, None, summary, False) == document
    assert complete_schema(names, previous, summary, False)["drift"]["type_changes"] == {
        "A": {"k": {"before": ["string"], "after": ["integer"]}}}
    assert summary == {"checks": {"balanced": True}, "passed": True}
    complete_schema(names, previous, summary, True)
    assert summary == {"checks": {"balanced": True, "type_changes_ok": False}, "passed": False}
    summary = {"checks": {"balanced": True}, "passed": True}
    complete_schema(names, {"A": {"k": ("integer",)}}, summary, True)
    assert summary == {"checks": {"balanced": True, "type_changes_ok": True}, "passed": True}


# --- the stage ------------------------------------------------------------------------------

FILE_A = [  # rank 0
    b'{"event": "Signup", "properties": {"distinct_id": "u1", "time": 1704067200, "$insert_id": "s1", '
    b'"plan": "pro", "ref": "ad"}}',
    b'{"event": "Signup", "properties": {"distinct_id": "u2", "time": 1704067300, "plan": 2, "seats": null}}',
    b'{"event": "Buy", "properties": {"distinct_id": 42, "time": "2024-01-01T10:00:00Z", "$insert_id": "b1", '
    b'"price": 9.5, "items": [1], "ok": true}}',
    b'{"$distinct_id": "u1", "$set": {"plan": "pro", "age": 30}}',
    b"{broken",
]
FILE_B = [  # rank 1: Signup s1 again, without ref (the first one is superseded)
    b'{"event": "Signup", "properties": {"distinct_id": "u1", "time": 1704067200, "$insert_id": "s1", "plan": "pro"}}',
    b'{"$distinct_id": "u2", "$set_once": {"age": "thirty"}}',
    b'{"$distinct_id": "u3", "$unset": ["age"]}',
    b'{"$group_key": "company", "$group_id": 7, "$set": {"name": "Acme"}}',
    b"",
]


def _batches():
    def offsets(lines):
        out, at = [], 0
        for line in lines:
            out.append(at)
            at += len(line) + 1
        return out

    return [(0, "in/a.ndjson", offsets(FILE_A), FILE_A), (1, "in/b.ndjson", offsets(FILE_B), FILE_B)]


EXPECTED_SCHEMA = b"""{
  "conflicts": {
    "Signup": [
      "plan"
    ]
  },
  "events": {
    "Buy": {
      "count": 1,
      "properties": {
        "$insert_id": {
          "types": {
            "string": 1
          }
        },
        "distinct_id": {
          "types": {
            "string": 1
          }
        },
        "items": {
          "types": {
            "list": 1
          }
        },
        "ok": {
          "types": {
            "boolean": 1
          }
        },
        "price": {
          "types": {
            "number": 1
          }
        },
        "time": {
          "types": {
            "integer": 1
          }
        }
      }
    },
    "Signup": {
      "count": 2,
      "properties": {
        "$insert_id": {
          "types": {
            "string": 2
          }
        },
        "distinct_id": {
          "types": {
            "string": 2
          }
        },
        "plan": {
          "examples": {
            "integer": {
              "offset": 125,
              "source": "in/a.ndjson"
            },
            "string": {
              "offset": 0,
              "source": "in/a.ndjson"
            }
          },
          "types": {
            "integer": 1,
            "string": 1
          }
        },
        "seats": {
          "types": {
            "null": 1
          }
        },
        "time": {
          "types": {
            "integer": 2
          }
        }
      }
    }
  },
  "groups": {
    "conflicts": [],
    "count": 1,
    "properties": {
      "name": {
        "types": {
          "string": 1
        }
      }
    }
  },
  "profiles": {
    "conflicts": [
      "age"
    ],
    "count": 2,
    "properties": {
      "age": {
        "examples": {
          "integer": {
            "offset": 372,
            "source": "in/a.ndjson"
          },
          "string": {
            "offset": 112,
            "source": "in/b.ndjson"
          }
        },
        "types": {
          "integer": 1,
          "string": 1
        }
      },
      "plan": {
        "types": {
          "string": 1
        }
      }
    }
  }
}
"""


def test_collect_schema_writes_exactly_the_types_of_the_written_records(rule_config):
    # Signup s1 of file a is superseded by file b's: its "ref" is in no written
    # event, and Signup counts 2 events. "plan" is a string once and an integer
    # once: a conflict, with the first line of each type. The string's first
    # line is the superseded one (positions are of accepted lines).
    check_collected_schema(rule_config)


def check_collected_schema(rule_config):
    """Runs _batches() through the schema's stages and checks the document is EXPECTED_SCHEMA."""
    with TestPipeline(runner="FnApiRunner") as p:
        split = p | beam.Create(_batches()) | ValidateAndSplit(rule_config, count_types=True)
        deduped = split.events | DeduplicateEvents(1 << 30, count_types=True)
        names = (split.schema_counts, deduped.schema_counts) | beam.Flatten() | CollectSchema()
        # As the job's last step lays it out (WriteSummary).
        document = names | beam.combiners.ToList() | beam.Map(lambda items: sd.document_bytes(sd.document_of(items)))
        assert_that(document, equal_to([EXPECTED_SCHEMA]), label="CheckSchema")


def test_partials_given_early_make_the_same_document(rule_config, monkeypatch):
    # A tally gives its partials once it holds HELD_PAIRS pairs: with 3, after every
    # element or so; the document is the same bytes.
    monkeypatch.setattr(schema_bundle, "HELD_PAIRS", 3)
    check_collected_schema(rule_config)


def test_bundle_types_give_partials_when_full_and_at_the_bundle_end(monkeypatch):
    monkeypatch.setattr(schema_bundle, "HELD_PAIRS", 3)
    types = schema_bundle.BundleTypes("schema_counts", sign=-1)
    with pytest.raises(RuntimeError, match=r"start\(\) was not called"):
        types.tally  # noqa: B018
    types.start()
    types.tally.add(sc.EVENTS, "A", {"a": 1, "b": "x"}, 0, 0)
    assert list(types.full()) == []  # 2 pairs held
    types.tally.add(sc.EVENTS, "B", {"a": 1}, 0, 1)
    early = list(types.full())  # 3: given, and the tally starts again
    assert [output.tag for output in early] == ["schema_counts"] * 2
    assert [output.value for output in early] == [
        ((sc.EVENTS, "A"), NameTypes(-1, {"a": {"integer": -1}, "b": {"string": -1}})),
        ((sc.EVENTS, "B"), NameTypes(-1, {"a": {"integer": -1}})),
    ]
    types.tally.add(sc.EVENTS, "A", {"a": "y"}, 0, 2)
    (end,) = types.finish()
    assert end.tag == "schema_counts" and end.value.windows == (GlobalWindow(),)
    assert end.value.value == ((sc.EVENTS, "A"), NameTypes(-1, {"a": {"string": -1}}))
    with pytest.raises(ValueError, match="sign must be 1 or -1"):
        schema_bundle.BundleTypes("schema_counts", sign=0)


def test_collect_schema_of_nothing_is_an_empty_document():
    with TestPipeline(runner="FnApiRunner") as p:
        names = p | beam.Create([]) | CollectSchema()
        assert_that(names, equal_to([]))
    assert sd.document_of([]) == ({
            "events": {}, "conflicts": {},
            "profiles": {"count": 0, "properties": {}, "conflicts": []},
            "groups": {"count": 0, "properties": {}, "conflicts": []},
        })


def test_collect_schema_bounds_fifty_thousand_event_names():
    # 50,000 names, each counted in two partial counts (as two batches would):
    # the document keeps the 10,000 largest, exactly, and folds the rest.
    counts = {f"e{i:05d}": 1 + (i * 7919) % 50 for i in range(50_000)}
    partials = []
    for name, n in counts.items():
        first = n // 2
        partials.append(((sc.EVENTS, name), NameTypes(first, {"k": {"string": first}} if first else {})))
        partials.append(((sc.EVENTS, name), NameTypes(n - first, {"k": {"integer": n - first}})))
    largest = sorted(counts, key=lambda name: (-counts[name], name))[: sc.MAX_EVENT_NAMES]
    rest = sorted(set(counts) - set(largest))

    def check(names):
        # Each name once, complete; laid out as the last step does, streaming.
        assert len(names) == len(counts)
        document = sd.document_of(iter(names))
        events = document["events"]
        assert sorted(events) == sorted(largest + [sc.OTHER])
        for name in largest[:50]:
            assert events[name]["count"] == counts[name]
        other = events[sc.OTHER]
        assert other["count"] == sum(counts[name] for name in rest)
        assert other["properties"]["k"]["types"] == {
            "string": sum(counts[name] // 2 for name in rest),
            "integer": sum(counts[name] - counts[name] // 2 for name in rest),
        }
        # Every kept name with both halves is a conflict; "(other)" never is.
        assert sc.OTHER not in document["conflicts"]
        assert len(document["conflicts"]) == sum(1 for name in largest if counts[name] > 1)

    with TestPipeline(runner="FnApiRunner") as p:
        document = p | beam.Create(partials, reshuffle=True) | CollectSchema()
        assert_that(document, check)
