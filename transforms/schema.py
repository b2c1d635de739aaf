"""The schema report's counts: JSON types of the written records, counted and added up, bounded (pure; no Beam).

What _SCHEMA.json says (DESIGN.md §8) is built in three steps, each a plain
function of its inputs, so that any runner may split and merge the work in any
order and still write the same bytes:

1. `TypeTally` counts, per event name, the (key, Python type) pairs of the
   records the rules accepted, while records.classify_batch has their parsed
   dicts at hand; `count_lines` does the same for written lines (re-parsed),
   with a sign, so that records removed later (superseded events) are subtracted.
2. `NameTypes` accumulators add those partial counts up per event name (and for
   profiles and groups). Every count is a signed sum, so merging is order-free;
   `finish_name` then makes one name's figures final.
3. `EventNames` keeps the largest event names and folds the rest into "(other)";
   transforms/schema_document.py lays the result out as _SCHEMA.json and
   compares it with an earlier run's.

Bounded memory whatever the cardinality: an accumulator holds at most
2 * KEYS_HELD keys of a name, folding those largest in sort order into "(other)"
(which depends on the set of keys alone, never on the order they arrive in);
a finished name keeps its MAX_KEYS keys written most often; the document keeps
the MAX_EVENT_NAMES names written most often.
"""

from collections import _count_elements  # type: ignore[attr-defined]  # C-speed counting
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Protocol

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


class _PairCounts(dict[tuple[str, type], int]):
    """(key, type) pairs of dicts, counted, in Python: the twin of transforms._tally.PairCounts.

    Used where that C module was not built (no compiler where the package was
    installed); same methods, same results, about nine times the instructions.
    """

    __slots__ = ()

    def add(self, values: Mapping[str, Any]) -> int:
        """Counts each (key, type(value)) pair; returns how many pairs were new."""
        size = len(self)
        _count_elements(self, zip(values, map(type, values.values()), strict=True))
        return len(self) - size

    def counts(self) -> dict[tuple[str, type], int]:
        """The counts, per (key, type) pair."""
        return self


class PairCounter(Protocol):
    """What TypeTally needs of a (key, type) tally."""

    def add(self, values: Mapping[str, Any], /) -> int: ...

    def counts(self) -> dict[tuple[str, type], int]: ...


# The C tally where the package was built with a compiler (setup.py), else its Python twin.
PairCounts: Callable[[], PairCounter]
try:
    from transforms._tally import PairCounts as _NativePairCounts
except ImportError:
    PairCounts = _PairCounts
else:
    PairCounts = _NativePairCounts


class TypeTally:
    """Counts the (key, type) pairs of records, per event name, for one batch.

    Built for the hot path (it runs for every accepted record): one count in C
    over the pairs of the record's dict (PairCounts), and Python work only
    when the record brings a pair new to the batch (to note its position).
    Records must be added in offset order, so that a pair's first position is
    its smallest.
    """

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        # event name -> [records, PairCounts, {(key, type): first offset}];
        # profiles and groups under the keys ("profiles",) and ("groups",),
        # which no event name (a string) can be.
        self._entries: dict[str | tuple[str], list[Any]] = {}

    def add_event(self, name: str | tuple[str], properties: Mapping[str, Any], offset: int) -> None:
        """Counts the properties of one event."""
        entry = self._entries.get(name)
        if entry is None:
            entry = self._entries[name] = [0, PairCounts(), {}]
        entry[0] += 1
        # New entries are the only way a pair can be new to the batch (the C
        # tally may also make one for an equal key held by another object).
        if entry[1].add(properties):
            first = entry[2]
            for pair in zip(properties, map(type, properties.values()), strict=True):
                if pair not in first:
                    first[pair] = offset

    def add(self, section: str, name: str, values: Mapping[str, Any], offset: int) -> None:
        """Counts one record: an event's properties (name: the event's), or a $set/$set_once value (name "")."""
        if section == EVENTS:
            self.add_event(name, values, offset)
        elif section in SECTIONS and not name:
            self.add_event((section,), values, offset)
        else:
            raise ValueError(f"no such schema key: {(section, name)!r}")

    def add_update(self, section: str, operation: str, value: Any, offset: int) -> None:
        """Counts a profile or group update when its operation is $set or $set_once."""
        if operation in COUNTED_OPERATIONS and type(value) is dict:
            self.add(section, "", value, offset)

    def partials(self, rank: int = 0, path: str = "", sign: int = 1) -> list[Partial]:
        """What was counted, per schema key, with the first positions in file `path` of upload rank `rank`.

        With sign -1 the counts are to subtract, and carry no positions.
        """
        out = []
        for name, (count, pairs, first) in self._entries.items():
            schema_key = (name[0], "") if isinstance(name, tuple) else (EVENTS, name)
            keys: dict[str, dict[str, int]] = {}
            for (key, kind), n in pairs.counts().items():
                keys.setdefault(key, {})[TYPE_NAMES[kind]] = sign * n
            examples = (
                {(key, TYPE_NAMES[kind]): (rank, offset, path) for (key, kind), offset in first.items()}
                if sign > 0 and path
                else {}
            )
            out.append((schema_key, NameTypes(sign * count, keys, {}, examples)))
        return out


def count_lines(lines: Iterable[bytes], section: str, sign: int = -1) -> list[Partial]:
    """The type counts of written lines of one kind, to add (sign 1) or subtract (-1).

    The hook for every stage that removes records after validation: the
    dedupe subtracts the events it supersedes, and any later filter can
    subtract what it removes the same way. Lines are compact JSON as the
    rules wrote them (events, or profile or group updates for `section`).
    """
    if section not in SECTIONS:
        raise ValueError(f"section must be one of {SECTIONS}, got {section!r}")
    tally = TypeTally()
    for line in lines:
        record = orjson.loads(line)
        if section == EVENTS:
            tally.add_event(record["event"], record["properties"], 0)
        else:
            for operation in COUNTED_OPERATIONS:
                if operation in record:
                    tally.add_update(section, operation, record[operation], 0)
    return tally.partials(sign=sign)


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
