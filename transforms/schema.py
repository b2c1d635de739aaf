"""The schema report's counts: JSON types of the written records, counted and added up, bounded (pure; no Beam).

What _SCHEMA.json says (DESIGN.md §8) is built in three steps, each a plain
function of its inputs, so that any runner may split and merge the work in any
order and still write the same bytes:

1. `TypeTally` counts, per event name, the (key, Python type) pairs of the
   records the rules accepted, while records.classify_batch has their parsed
   dicts at hand; `add_lines` does the same for written lines (re-parsed), so
   that records removed later (superseded events) are subtracted. A tally
   may span many batches (a bundle: transforms/schema_bundle.py); its
   `partials` are what the next step adds up.
2. `NameTypes` accumulators add those partial counts up per event name (and for
   profiles and groups). Every count is a signed sum, so merging is order-free;
   `finish_name` then makes one name's figures final.
3. `EventNames` keeps the largest event names and folds the rest into "(other)";
   transforms/schema_document.py lays the result out as _SCHEMA.json and
   compares it with an earlier run's.

Bounded memory whatever the cardinality: a stage gives its tally's partials
once it holds HELD_PAIRS (key, type) pairs; an accumulator holds at most
2 * KEYS_HELD keys of a name, folding those largest in sort order into "(other)"
(which depends on the set of keys alone, never on the order they arrive in);
a finished name keeps its MAX_KEYS keys written most often; the document keeps
the MAX_EVENT_NAMES names written most often.
"""

from collections import _count_elements  # type: ignore[attr-defined]  # C-speed counting
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, ClassVar, Protocol, cast

import orjson

# Python type of a parsed JSON value -> its name in _SCHEMA.json. A number is
# typed as written: "integer" without a fraction or exponent, "number" with one
# (1.0 and 2e3 included; orjson reads both as float). bool is its own type.
TYPE_NAMES: dict[type, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
    dict: "object",
    list: "list",
}
TYPES = tuple(TYPE_NAMES.values())
NULL = "null"

EVENTS = "events"
PROFILES = "profiles"
GROUPS = "groups"
SECTIONS = (EVENTS, PROFILES, GROUPS)
# The operations whose keys are profile and group properties (DESIGN.md §8).
COUNTED_OPERATIONS = ("$set", "$set_once")

OTHER = "(other)"
MAX_EVENT_NAMES = 10_000
MAX_KEYS = 2_000  # per event name, and for profiles and for groups
# An accumulator keeps up to twice this many keys of one name before it folds
# those last in sort order, down to this many; a name with at most this many
# distinct keys is therefore counted exactly, key by key.
KEYS_HELD = 10_000
# A stage's tally gives its partial counts and starts again once it holds this many
# (key, type) pairs (of all its names): a few MB.
HELD_PAIRS = 100_000

# (rank, offset, path): where a line is; the smallest is the first in upload order.
Position = tuple[int, int, str]
SchemaKey = tuple[str, str]  # (section, event name; "" for profiles and groups)


class NameTypes:
    """The types counted for one event name (or for profiles, or groups).

    Attributes:
      count: records counted (signed while partial).
      keys: key -> type name -> count.
      other: type name -> count of the keys folded into "(other)".
      examples: (key, type name) -> the first position, in upload order, of an
        accepted record that gave the key that type (superseded ones included).
    """

    __slots__ = ("count", "keys", "other", "examples")

    def __init__(
        self,
        count: int = 0,
        keys: dict[str, dict[str, int]] | None = None,
        other: dict[str, int] | None = None,
        examples: dict[tuple[str, str], Position] | None = None,
    ) -> None:
        self.count = count
        self.keys = {} if keys is None else keys
        self.other = {} if other is None else other
        self.examples = {} if examples is None else examples

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NameTypes) and self.__getstate__() == other.__getstate__()

    # Equal by value and mutable, so unhashable: what defining __eq__ alone implies, said here
    # (typeshed's own idiom for list and dict, whose ignore mypy needs: object's __hash__ is a method).
    __hash__: ClassVar[None] = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"NameTypes{self.__getstate__()!r}"

    def __getstate__(self) -> tuple[Any, ...]:
        return self.count, self.keys, self.other, self.examples

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.count, self.keys, self.other, self.examples = state


Partial = tuple[SchemaKey, NameTypes]


class _Tally:
    """(key, type) pairs of records counted per name, in Python: the twin of transforms._tally.Tally.

    Used where that C module was not built (no compiler where the package was
    installed); same methods, same results, about ten times the instructions.
    Counting is `_count_elements` over the pairs (at C speed); a position is
    noted only for a pair new to the current segment, which is right while
    positions ascend (they do within a batch). When they go back (another
    batch of the bundle, earlier in upload order), a new segment starts;
    results() adds the segments up. len() counts pairs by value, per segment.
    """

    __slots__ = ("_segments", "_names", "_last", "_pairs")

    def __init__(self) -> None:
        self._segments: list[dict[Hashable, list[Any]]] = []  # closed segments
        # The open segment: name -> [records, {(key, type): count}, {(key, type): (rank, offset)}]
        self._names: dict[Hashable, list[Any]] = {}
        self._last: tuple[int, int] | None = None  # the position of the last record added
        self._pairs = 0

    def add(self, name: Hashable, values: Mapping[str, Any], rank: int, offset: int, /) -> None:
        """Counts one record of `name`: each (key, type(value)) pair of the dict, seen at (rank, offset)."""
        if not isinstance(values, dict):
            raise TypeError(f"add() takes a dict, not {type(values).__name__}")
        position = (rank, offset)
        if self._last is not None and position < self._last:
            self._segments.append(self._names)
            self._names = {}
        self._last = position
        entry = self._names.get(name)
        if entry is None:
            entry = self._names[name] = [0, {}, {}]
        entry[0] += 1
        counts = entry[1]
        size = len(counts)
        _count_elements(counts, zip(values, map(type, values.values()), strict=True))
        if len(counts) != size:
            self._pairs += len(counts) - size
            first = entry[2]
            for pair in zip(values, map(type, values.values()), strict=True):
                if pair not in first:
                    first[pair] = position

    def results(self) -> list[tuple[Hashable, int, dict[tuple[str, type], tuple[int, int, int]]]]:
        """Per name, in the order names were first added: records, and (count, rank, offset) per pair."""
        merged: dict[Hashable, list[Any]] = {}
        for segment in (*self._segments, self._names):
            for name, (records, counts, first) in segment.items():
                held = merged.get(name)
                if held is None:
                    held = merged[name] = [0, {}]
                held[0] += records
                pairs = held[1]
                for pair, n in counts.items():
                    before = pairs.get(pair)
                    if before is None:
                        pairs[pair] = (n, *first[pair])
                    else:
                        pairs[pair] = (before[0] + n, *min(before[1:], first[pair]))
        return [(name, records, pairs) for name, (records, pairs) in merged.items()]

    def __len__(self) -> int:
        return self._pairs


class PairTally(Protocol):
    """What TypeTally needs of a (key, type) tally: transforms._tally.Tally or _Tally."""

    def add(self, name: Hashable, values: Mapping[str, Any], rank: int, offset: int, /) -> None: ...

    def results(self) -> list[tuple[Hashable, int, dict[tuple[str, type], tuple[int, int, int]]]]: ...

    def __len__(self) -> int: ...


# The C tally where the package was built with a compiler (setup.py), else its Python twin.
Tally: Callable[[], PairTally]
try:
    from transforms._tally import Tally as _NativeTally
except ImportError:
    Tally = _Tally
else:
    Tally = _NativeTally


class TypeTally:
    """Counts the (key, type) pairs of records per event name, with each pair's first position.

    Built for the hot path (it runs for every accepted record): `add_event` is
    the C tally's own method, so a record costs one call and no Python frame.
    Records may come in any order and from any number of batches (a count is
    a sum; a pair's position is the smallest it was seen at), so one tally
    may gather a whole bundle: fewer partial counts to pickle and add up.
    """

    __slots__ = ("_counts", "_paths", "add_event")

    def __init__(self) -> None:
        self._counts = Tally()
        self._paths: dict[int, str] = {}  # upload rank -> path, for the positions of examples
        # add_event(name, properties, rank, offset): counts the properties of one event.
        self.add_event: Callable[[str, Mapping[str, Any], int, int], None] = self._counts.add

    def add_file(self, rank: int, path: str) -> None:
        """Names the file of upload rank `rank`: records added with that rank were read from `path`."""
        known = self._paths.setdefault(rank, path)
        if known != path:
            raise ValueError(f"upload rank {rank} is both {known!r} and {path!r} (a bug: a rank is one file)")

    def add(self, section: str, name: str, values: Mapping[str, Any], rank: int, offset: int) -> None:
        """Counts one record: an event's properties (name: the event's), or a $set/$set_once value (name "")."""
        if section == EVENTS:
            self._counts.add(name, values, rank, offset)
        elif section in SECTIONS and not name:
            # Under ("profiles",) and ("groups",), which no event name (a string) can be.
            self._counts.add((section,), values, rank, offset)
        else:
            raise ValueError(f"no such schema key: {(section, name)!r}")

    def add_update(self, section: str, operation: str, value: Any, rank: int, offset: int) -> None:
        """Counts a profile or group update when its operation is $set or $set_once."""
        if operation in COUNTED_OPERATIONS and type(value) is dict:
            self.add(section, "", value, rank, offset)

    def __len__(self) -> int:
        """(key, type) pairs held, all names: what the tally's memory grows with."""
        return len(self._counts)

    def partials(self, sign: int = 1) -> list[Partial]:
        """What was counted, per schema key, with the first position of each (key, type) pair.

        Positions are given for the records of files named by add_file; with
        sign -1 the counts are to subtract, and carry none.
        """
        out: list[Partial] = []
        paths = self._paths
        for name, count, pairs in self._counts.results():
            # Event names are strings; profiles and groups are counted under (section,).
            schema_key = (name[0], "") if isinstance(name, tuple) else (EVENTS, cast(str, name))
            keys: dict[str, dict[str, int]] = {}
            examples: dict[tuple[str, str], Position] = {}
            for (key, kind), (n, rank, offset) in pairs.items():
                type_name = TYPE_NAMES[kind]
                keys.setdefault(key, {})[type_name] = sign * n
                path = paths.get(rank)
                if sign > 0 and path is not None:
                    examples[key, type_name] = (rank, offset, path)
            out.append((schema_key, NameTypes(sign * count, keys, {}, examples)))
        return out


def add_lines(tally: TypeTally, lines: Iterable[bytes], section: str) -> None:
    """Counts written lines of one kind (re-parsed) into `tally`, without positions.

    The hook for every stage that removes records after validation: the
    dedupe counts the events it supersedes, and any later filter what it
    removes, in a tally whose partials it gives with sign -1. Lines are
    compact JSON as the rules wrote them (events, or profile or group
    updates for `section`).
    """
    if section not in SECTIONS:
        raise ValueError(f"section must be one of {SECTIONS}, got {section!r}")
    for line in lines:
        record = orjson.loads(line)
        if section == EVENTS:
            tally.add_event(record["event"], record["properties"], 0, 0)
        else:
            for operation in COUNTED_OPERATIONS:
                if operation in record:
                    tally.add_update(section, operation, record[operation], 0, 0)


# --- adding up --------------------------------------------------------------------------------


def add_types(into: dict[str, int], types: Mapping[str, int]) -> None:
    """Adds the counts of `types` (type name -> count) into `into`."""
    for kind, n in types.items():
        into[kind] = into.get(kind, 0) + n


def merge(into: NameTypes, part: NameTypes) -> NameTypes:
    """Adds `part` to `into` (changed in place and returned); bounds its keys."""
    into.count += part.count
    keys = into.keys
    for key, types in part.keys.items():
        held = keys.get(key)
        if held is None:
            keys[key] = dict(types)
        else:
            add_types(held, types)
    add_types(into.other, part.other)
    examples = into.examples
    for pair, position in part.examples.items():
        held_position = examples.get(pair)
        if held_position is None or position < held_position:
            examples[pair] = position
    if len(keys) > 2 * KEYS_HELD:
        _fold_last_keys(into, KEYS_HELD)
    return into


def _fold_last_keys(types: NameTypes, keep: int) -> None:
    """Folds every key but the first `keep` in sort order into "(other)".

    Which keys stay depends on the set of keys alone: a key folded here has
    `keep` smaller keys beside it, so it cannot be among the first `keep` of
    any union, and the counts of the keys that stay are complete.
    """
    if len(types.keys) <= keep:
        return
    for key in sorted(types.keys)[keep:]:
        add_types(types.other, types.keys.pop(key))
    types.examples = {pair: p for pair, p in types.examples.items() if pair[0] in types.keys}


def _nonzero(types: Mapping[str, int], where: str) -> dict[str, int]:
    if any(n < 0 for n in types.values()):
        # More subtracted than counted: a stage subtracted what was never added.
        raise ValueError(f"negative type count in {where} (a bug): {dict(types)}")
    return {kind: n for kind, n in types.items() if n}


def is_conflict(types: Mapping[str, int]) -> bool:
    """Whether a key was written with two or more non-null types."""
    return sum(1 for kind, n in types.items() if n and kind != NULL) >= 2


def finish_name(types: NameTypes, where: str = "a schema count", conflicts: bool = True) -> NameTypes:
    """One name's final figures, once every partial count of it is in.

    Keys and types whose counts came to 0 (seen only in records removed later)
    go; beyond MAX_KEYS keys, those written most often stay (ties: sort order)
    and the rest fold into "(other)". Positions are kept for the types of
    conflicting keys only, or for none without `conflicts`.
    """
    _fold_last_keys(types, KEYS_HELD)
    keys = {}
    for key, counted in types.keys.items():
        kept = _nonzero(counted, where)
        if kept:
            keys[key] = kept
    other = _nonzero(types.other, where)
    if len(keys) > MAX_KEYS:
        ranked = sorted(keys, key=lambda k: (-sum(keys[k].values()), k))
        for key in ranked[MAX_KEYS:]:
            add_types(other, keys.pop(key))
    examples = (
        {
            (key, kind): position
            for (key, kind), position in types.examples.items()
            if key in keys and kind in keys[key] and is_conflict(keys[key])
        }
        if conflicts
        else {}
    )
    if types.count < 0:
        raise ValueError(f"negative record count in {where} (a bug): {types.count}")
    return NameTypes(types.count, keys, other, examples)


def fold_into(other: NameTypes | None, folded: NameTypes) -> NameTypes:
    """Adds a finished name to the "(other)" event (positions are not kept there)."""
    into = NameTypes() if other is None else other
    merge(into, NameTypes(folded.count, folded.keys, folded.other, {}))
    into.examples = {}
    return into


def _by_size(item: tuple[str, NameTypes]) -> tuple[int, str]:
    """Most records first, then names in sort order."""
    return -item[1].count, item[0]


class EventNames:
    """Finished event names: the MAX_EVENT_NAMES largest, and "(other)" for the rest.

    Each name must be added once, with its final figures (finish_name). The
    largest are kept whatever the order names arrive in: a name dropped from
    a partial collection has MAX_EVENT_NAMES larger ones beside it.
    """

    __slots__ = ("names", "other")

    def __init__(self) -> None:
        self.names: dict[str, NameTypes] = {}
        self.other: NameTypes | None = None

    def __getstate__(self) -> tuple[Any, ...]:
        return self.names, self.other

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.names, self.other = state

    def add(self, name: str, types: NameTypes) -> None:
        if name in self.names:
            raise ValueError(f"event name {name[:40]!r} added twice (a bug)")
        self.names[name] = types
        if len(self.names) > 2 * MAX_EVENT_NAMES:
            self._fold_smallest()

    def merge(self, part: "EventNames") -> None:
        for name, types in part.names.items():
            self.add(name, types)
        if part.other is not None:
            self.other = fold_into(self.other, part.other)

    def _fold_smallest(self) -> None:
        if len(self.names) <= MAX_EVENT_NAMES:
            return
        for name, types in sorted(self.names.items(), key=_by_size)[MAX_EVENT_NAMES:]:
            del self.names[name]
            self.other = fold_into(self.other, types)

    def final(self) -> dict[str, NameTypes]:
        """Name -> figures, with "(other)" last when names were folded."""
        self._fold_smallest()
        names = dict(self.names)
        if self.other is not None:
            other = finish_name(self.other, "the (other) event", conflicts=False)
            if OTHER in names:  # a real event of that name joins the fold
                other = finish_name(fold_into(other, names.pop(OTHER)), "the (other) event", conflicts=False)
            names[OTHER] = other
        return names
