"""The schema's (key, type) counting: the C tally (transforms/_tally.c) against its Python twin.

Both must give the same counts and first positions for any records added in any order;
TypeTally must give the same partial schemas with either. Where a C compiler is at hand
the C tally must have been built, so that the test environment runs the code the Docker
image runs.
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
    from transforms._tally import Tally
except ImportError:  # no C compiler where the package was installed: the first test says so
    Tally = None

needs_c = pytest.mark.skipif(Tally is None, reason="transforms._tally was not built (no C compiler)")

REFERENCE = 1_717_200_000
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=2), inner, max_size=2),
    max_leaves=4,
)
# (name, record, rank, offset): names as the tally gets them, event names and section tuples.
ADDS = st.lists(
    st.tuples(
        st.sampled_from(["A", "B", ("profiles",), ("groups",)]),
        st.dictionaries(st.sampled_from("abcdefgh") | st.text(max_size=4), JSON_VALUES, max_size=8),
        st.integers(0, 3),
        st.integers(0, 2**40),
    )
)


def test_the_c_tally_is_built_wherever_a_compiler_is():
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        assert sc.Tally is sc._Tally
    else:
        assert Tally is not None, "a C compiler is here, but transforms._tally was not built"
        assert sc.Tally is Tally


def both(adds):
    native, python = Tally(), sc._Tally()
    for name, record, rank, offset in adds:
        native.add(name, record, rank, offset)
        python.add(name, dict(record), rank, offset)
    return native, python


@needs_c
@settings(max_examples=300)
@given(ADDS)
def test_c_and_python_count_every_record_alike_in_any_order(adds):
    native, python = both(adds)
    assert native.results() == python.results()


def test_a_pair_keeps_its_count_and_smallest_position():
    for tally in (sc._Tally(), *((Tally(),) if Tally else ())):
        tally.add("A", {"k": 1, "s": "x"}, 2, 50)
        tally.add("A", {"k": 2}, 1, 900)  # earlier file: smaller whatever the offset
        tally.add("A", {"k": 3}, 2, 10)
        tally.add(("profiles",), {"k": "v"}, 0, 7)
        assert tally.results() == [
            ("A", 3, {("k", int): (3, 1, 900), ("s", str): (1, 2, 50)}),
            (("profiles",), 1, {("k", str): (1, 0, 7)}),
        ]
        # Entries held: C one per pair; Python one per pair per segment of ascending positions
        # (three here: the second and the fourth record go back), ("k", int) in two.
        assert len(tally) == (3 if Tally is not None and isinstance(tally, Tally) else 4)


@needs_c
def test_equal_keys_held_by_distinct_objects_are_one_key():
    one, other = "ab", "".join(["a", "b"])
    assert one == other and one is not other
    native, python = both([("A", {one: 1}, 0, 5), ("A", {other: 2}, 0, 3), ("A", {other: "x"}, 0, 9)])
    assert native.results() == python.results() == [("A", 3, {("ab", int): (2, 0, 3), ("ab", str): (1, 0, 9)})]
    assert len(native) == 3  # entries: C keeps one per key object


@needs_c
def test_bool_int_float_null_object_and_list_are_distinct_types():
    records = [{"k": True}, {"k": 1}, {"k": 1.0}, {"k": None}, {"k": {}}, {"k": []}, {"k": "s"}]
    native, _ = both([("A", record, 0, i) for i, record in enumerate(records)])
    ((_, _, pairs),) = native.results()
    assert {pair: n for pair, (n, _, _) in pairs.items()} == {
        ("k", t): 1 for t in (bool, int, float, type(None), dict, list, str)
    }


@needs_c
def test_the_tables_grow_and_stay_exact():
    adds = [(f"E{i % 40}", {f"key{i}": i, f"other{i % 7}": str(i)}, i % 3, i) for i in range(5_000)]
    native, python = both(adds)
    assert native.results() == python.results()
    assert sum(len(pairs) for _, _, pairs in native.results()) == 5_000 + 40 * 7
    assert len(native) == 10_000  # each f-string key is an object of its own: one entry each


@needs_c
def test_keys_are_held_so_a_freed_address_is_never_another_key():
    native = Tally()
    for i in range(2_000):
        key = "".join(["k", str(i)])  # a new object each time, freed at once but for the tally's reference
        native.add("A", {key: i}, 0, i)
        del key
    assert native.results() == [("A", 2_000, {(f"k{i}", int): (1, 0, i) for i in range(2_000)})]


@needs_c
def test_the_c_tally_refuses_what_it_cannot_count():
    with pytest.raises(TypeError, match="add\\(\\) takes a dict, not list"):
        Tally().add("A", [("k", 1)], 0, 0)
    with pytest.raises(TypeError, match="add\\(\\) takes 4 arguments \\(3 given\\)"):
        Tally().add("A", {}, 0)
    with pytest.raises(TypeError, match="unhashable"):
        Tally().add(["A"], {}, 0, 0)
    with pytest.raises(TypeError):
        Tally().add("A", {}, "0", 0)
    with pytest.raises(OverflowError):
        Tally().add("A", {}, 0, 2**70)
    with pytest.raises(TypeError, match="takes no arguments"):
        Tally(1)  # type: ignore[call-arg]
    tally = Tally()
    with pytest.raises(TypeError):
        tally.add("A", {"k": 1}, 0, None)
    assert tally.results() == [] and len(tally) == 0  # a refused record counts nothing


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
        tally = sc.TypeTally()
        classify_batch(3, "in/a.ndjson", list(range(len(lines))), lines, config, types=tally)
        classify_batch(1, "in/0.ndjson", [7], lines[1:2], config, types=tally)
        return tally.partials()

    native = partials()
    monkeypatch.setattr(sc, "Tally", sc._Tally)
    python = partials()
    assert native == python
    by_key = dict(native)
    assert by_key[("events", "A")].count == 3
    assert by_key[("events", "A")].keys["n"] == {"integer": 1, "string": 2}
    assert by_key[("events", "A")].examples[("n", "string")] == (1, 7, "in/0.ndjson")
    assert by_key[("events", "A")].examples[("n", "integer")] == (3, 0, "in/a.ndjson")
