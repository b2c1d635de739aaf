"""Tests of transforms/schema_document.py: _SCHEMA.json laid out from finished counts, and drift."""

import orjson
import pytest

from transforms import schema as sc
from transforms import schema_document as sd
from transforms.schema import NameTypes

# --- the document ---------------------------------------------------------------------------


def test_the_document_lists_conflicts_and_positions_of_conflicting_types_only():
    events = {
        "Buy": sc.finish_name(NameTypes(3, {"price": {"integer": 2, "string": 1}, "id": {"string": 2, "null": 1}},
                                        {}, {("price", "integer"): (0, 5, "a"), ("price", "string"): (1, 0, "b"),
                                             ("id", "string"): (0, 5, "a"), ("id", "null"): (0, 9, "a")})),
    }
    profiles = sc.finish_name(NameTypes(2, {"age": {"integer": 1, "number": 1}}, {},
                                        {("age", "integer"): (0, 1, "a"), ("age", "number"): (0, 2, "a")}))
    document = sd.schema_document(events, profiles, None)
    assert document == {
        "events": {"Buy": {"count": 3, "properties": {
            "price": {"types": {"integer": 2, "string": 1},
                      "examples": {"integer": {"source": "a", "offset": 5}, "string": {"source": "b", "offset": 0}}},
            "id": {"types": {"string": 2, "null": 1}},  # null is no type of its own for conflicts
        }}},
        "conflicts": {"Buy": ["price"]},
        "profiles": {"count": 2, "properties": {"age": {"types": {"integer": 1, "number": 1}, "examples": {
            "integer": {"source": "a", "offset": 1}, "number": {"source": "a", "offset": 2}}}},
            "conflicts": ["age"]},
        "groups": {"count": 0, "properties": {}, "conflicts": []},
    }
    data = sd.document_bytes(document)
    assert data.endswith(b"}\n") and data.index(b'"conflicts"') < data.index(b'"events"')  # sorted keys
    assert data == sd.document_bytes(orjson.loads(data))


def test_a_folded_event_shows_other_and_no_conflicts():
    names = sc.EventNames()
    names.other = NameTypes(4, {"x": {"string": 2, "integer": 2}}, {"list": 1})
    document = sd.schema_document(names.final(), None, None)
    assert document["events"] == {sc.OTHER: {"count": 4, "properties": {
        "x": {"types": {"string": 2, "integer": 2}}, sc.OTHER: {"types": {"list": 1}}}}}
    assert document["conflicts"] == {}


# --- drift ----------------------------------------------------------------------------------


def outline_of(events: dict[str, dict[str, dict[str, int]]]) -> sd.Outline:
    return sd.outline({"events": {
        name: {"count": 1, "properties": {k: {"types": t} for k, t in keys.items()}} for name, keys in events.items()}})


def test_drift_lists_new_and_removed_names_and_keys_and_type_changes():
    before = outline_of({
        "Buy": {"price": {"integer": 5}, "coupon": {"string": 1}, "tags": {"null": 3}, "qty": {"integer": 1}},
        "Gone": {"a": {"string": 1}},
        "Same": {"a": {"string": 1, "integer": 1}},
    })
    after = outline_of({
        "Buy": {"price": {"string": 1, "integer": 4, "null": 2}, "tags": {"list": 2}, "qty": {"integer": 1, "null": 9},
                "gift": {"boolean": 1}},
        "New": {"a": {"string": 1}},
        "Same": {"a": {"integer": 3, "string": 0}},
    })
    assert sd.drift(before, after) == {
        "new_events": ["New"],
        "removed_events": ["Gone"],
        "new_properties": {"Buy": ["gift"]},
        "removed_properties": {"Buy": ["coupon"]},
        # tags was only ever null before: nothing to compare; a count of 0 is no type.
        "type_changes": {
            "Buy": {"price": {"before": ["integer"], "after": ["integer", "string"]}},
            "Same": {"a": {"before": ["integer", "string"], "after": ["integer"]}},
        },
    }
    assert sd.drift_counts(sd.drift(before, after)) == (
        "1 new event, 1 removed event, 1 new property, 1 removed property, 2 type changes"
    )
    assert sd.drift_counts(sd.drift(before, before)) == "none"


def test_drift_reports_nothing_that_other_may_hide():
    before = outline_of({"A": {"x": {"string": 1}, sc.OTHER: {"string": 5}}, sc.OTHER: {"y": {"integer": 1}}})
    after = outline_of({"A": {"x": {"integer": 1}, "z": {"string": 1}}, "B": {"y": {"string": 1}}})
    # B may have been folded before; z may have been one of A's folded keys.
    assert sd.drift(before, after) == {
        "new_events": [], "removed_events": [], "new_properties": {}, "removed_properties": {},
        "type_changes": {"A": {"x": {"before": ["string"], "after": ["integer"]}}},
    }
    # And the other way round: what this run folded is not "removed".
    assert sd.drift(after, before)["removed_events"] == [] and sd.drift(after, before)["removed_properties"] == {}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "the document is not a JSON object"),
        ({"tool": "x"}, 'it has no "events" object'),
        ({"events": {"A": []}}, 'events["A"] is not an object'),
        ({"events": {"A": {"count": -1, "properties": {}}}}, 'events["A"].count is not a non-negative integer'),
        ({"events": {"A": {"count": 1}}}, 'events["A"].properties is not an object'),
        ({"events": {"A": {"count": 1, "properties": {"k": {}}}}}, 'events["A"].properties["k"] has no "types"'),
        ({"events": {"A": {"count": 1, "properties": {"k": {"types": {"float": 1}}}}}},
         "'float' is not one of the types string, integer, number, boolean, null, object, list"),
        ({"events": {"A": {"count": 1, "properties": {"k": {"types": {"string": "1"}}}}}},
         'events["A"].properties["k"].types.string is not a non-negative integer'),
    ],
)
def test_an_outline_refuses_what_is_not_a_schema_document(document, message):
    with pytest.raises(sd.SchemaShapeError) as raised:
        sd.outline(document)
    assert message in str(raised.value)
