"""The schema's (key, type) counting: the C tally (transforms/_tally.c) against its Python twin.

Both must give the same counts for any records; TypeTally must give the same partial
schemas with either. Where a C compiler is at hand the C tally must have been built, so
that the test environment runs the code the Docker image runs.
"""

import shutil
import sysconfig

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms import schema as sc
from transforms.records import classify_batch
from transforms.rules import RuleConfig

try:
    from transforms._tally import PairCounts
except ImportError:  # no C compiler where the package was installed: the first test says so
    PairCounts = None

needs_c = pytest.mark.skipif(PairCounts is None, reason="transforms._tally was not built (no C compiler)")

REFERENCE = 1_717_200_000
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=2), inner, max_size=2),
    max_leaves=4,
)
RECORDS = st.lists(st.dictionaries(st.sampled_from("abcdefgh") | st.text(max_size=4), JSON_VALUES, max_size=8))


def test_the_c_tally_is_built_wherever_a_compiler_is():
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        assert sc.PairCounts is sc._PairCounts
    else:
        assert PairCounts is not None, "a C compiler is here, but transforms._tally was not built"
        assert sc.PairCounts is PairCounts


def both(records):
    native, python = PairCounts(), sc._PairCounts()
    for record in records:
        new_native, new_python = native.add(record), python.add(dict(record))
        # A pair new by value is a new entry in C too; C may also make one for an equal key
        # held by another object.
        assert new_native >= new_python
        assert (new_native > 0) or (new_python == 0)
    return native, python


@needs_c
@settings(max_examples=300)
@given(RECORDS)
def test_c_and_python_count_every_record_alike(records):
    native, python = both(records)
    assert native.counts() == python.counts()


@needs_c
def test_equal_keys_held_by_distinct_objects_are_one_key():
    one, other = "ab", "".join(["a", "b"])
    assert one == other and one is not other
    native, python = both([{one: 1}, {other: 2}, {other: "x"}])
    assert native.counts() == python.counts() == {("ab", int): 2, ("ab", str): 1}
    assert len(native) == 3 and len(python) == 2  # entries: C keeps one per object


@needs_c
def test_bool_int_float_null_object_and_list_are_distinct_types():
    native, _ = both([{"k": True}, {"k": 1}, {"k": 1.0}, {"k": None}, {"k": {}}, {"k": []}, {"k": "s"}])
    assert native.counts() == {("k", t): 1 for t in (bool, int, float, type(None), dict, list, str)}


@needs_c
def test_the_table_grows_and_stays_exact():
    records = [{f"key{i}": i, f"other{i % 7}": str(i)} for i in range(5_000)]
    native, python = both(records)
    assert native.counts() == python.counts()
    assert len(native.counts()) == 5_007


@needs_c
def test_keys_are_held_so_a_freed_address_is_never_another_key():
    native = PairCounts()
    for i in range(2_000):
        key = "".join(["k", str(i)])  # a new object each time, freed at once but for the tally's reference
        native.add({key: i})
        del key
    assert native.counts() == {(f"k{i}", int): 1 for i in range(2_000)}


@needs_c
def test_the_c_tally_refuses_what_is_not_a_dict():
    with pytest.raises(TypeError, match="add\\(\\) takes a dict, not list"):
        PairCounts().add([("k", 1)])
    with pytest.raises(TypeError, match="takes no arguments"):
        PairCounts(1)  # type: ignore[call-arg]


@needs_c
def test_type_tally_gives_the_same_partials_with_either_tally(monkeypatch):
    lines = [
        b'{"event":"A","properties":{"time":1717000000,"distinct_id":"u1","n":1,"f":1.5,"b":true}}',
        b'{"event":"A","properties":{"time":1717000001,"distinct_id":"u2","n":"one","z":null}}',
        b'{"event":"B","properties":{"time":1717000002,"distinct_id":"u3","o":{"x":1},"l":[1]}}',
        b'{"$distinct_id":"u1","$set":{"plan":"pro","seats":3}}',
        b'{"$group_key":"company","$group_id":"c1","$set_once":{"founded":1999}}',
    ]
    config = RuleConfig(REFERENCE)

    def partials():
        return classify_batch(3, "in/a.ndjson", list(range(len(lines))), lines, config, count_types=True).schema

    native = partials()
    monkeypatch.setattr(sc, "PairCounts", sc._PairCounts)
    python = partials()
    assert native == python
    by_key = dict(native)
    assert by_key[("events", "A")].keys["n"] == {"integer": 1, "string": 1}
    assert by_key[("events", "A")].examples[("n", "string")] == (3, 1, "in/a.ndjson")
