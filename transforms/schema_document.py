"""_SCHEMA.json itself: the document from finished type counts, and its drift from an earlier run's (pure; no Beam)."""

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from transforms.schema import (
    EVENTS,
    GROUPS,
    NULL,
    OTHER,
    PROFILES,
    TYPES,
    EventNames,
    NameTypes,
    SchemaKey,
    add_types,
    is_conflict,
)

# --- the document ---------------------------------------------------------------------------


def _properties(types: NameTypes, positions: bool) -> dict[str, Any]:
    shown: dict[str, dict[str, Any]] = {}
    if positions:
        for (key, kind), (_, offset, source) in types.examples.items():
            shown.setdefault(key, {})[kind] = {"source": source, "offset": offset}
    properties: dict[str, Any] = {}
    for key, counted in types.keys.items():
        entry: dict[str, Any] = {"types": dict(counted)}
        if key in shown:
            entry["examples"] = shown[key]
        properties[key] = entry
    if types.other:
        held = properties.get(OTHER)
        if held is None:
            properties[OTHER] = {"types": dict(types.other)}
        else:  # a real key of that name joins the fold
            add_types(held["types"], types.other)
            held.pop("examples", None)
    return properties


def conflicting_keys(types: NameTypes) -> list[str]:
    """The keys written with two or more non-null types, in sort order ("(other)" never)."""
    return sorted(key for key, counted in types.keys.items() if key != OTHER and is_conflict(counted))


def schema_document(
    events: Mapping[str, NameTypes], profiles: NameTypes | None, groups: NameTypes | None
) -> dict[str, Any]:
    """_SCHEMA.json's content (without drift) from finished figures.

    `events` is EventNames.final(); profiles and groups are finish_name()'d,
    or None when none was written. Conflict positions appear as "examples"
    beside the types of conflicting keys: source path and byte offset of
    the first input line with that type, never the line itself.
    """
    doc_events = {}
    conflicts = {}
    for name, types in events.items():
        doc_events[name] = {"count": types.count, "properties": _properties(types, name != OTHER)}
        found = conflicting_keys(types) if name != OTHER else []
        if found:
            conflicts[name] = found
    document: dict[str, Any] = {"events": doc_events, "conflicts": conflicts}
    for section, counted in ((PROFILES, profiles), (GROUPS, groups)):
        types = counted or NameTypes()
        document[section] = {
            "count": types.count,
            "properties": _properties(types, True),
            "conflicts": conflicting_keys(types),
        }
    return document


def document_of(names: Iterable[tuple[SchemaKey, NameTypes]]) -> dict[str, Any]:
    """_SCHEMA.json's content (without drift) from every name's final figures, each given once.

    Streams: at most 2 * MAX_EVENT_NAMES event names are held at a time.
    """
    events = EventNames()
    sections: dict[str, NameTypes | None] = {PROFILES: None, GROUPS: None}
    for (section, name), types in names:
        if section == EVENTS:
            if types.count == 0:
                # Every record of the name was removed after validation
                # (--exclude-users): none was written, so the name is not shown.
                if types.keys or types.other:
                    raise ValueError(f"event name {name[:40]!r} has no records but has types (a bug)")
                continue
            events.add(name, types)
        elif sections[section] is None:
            sections[section] = types
        else:
            raise ValueError(f"{section} counted twice (a bug)")
    return schema_document(events.final(), sections[PROFILES], sections[GROUPS])


def document_bytes(document: Mapping[str, Any]) -> bytes:
    """_SCHEMA.json's bytes: sorted keys, two-space indent, one final newline."""
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


# --- drift ----------------------------------------------------------------------------------

# event name -> key -> its non-null types, sorted: what drift compares.
Outline = dict[str, dict[str, tuple[str, ...]]]


class SchemaShapeError(ValueError):
    """A document that is not a _SCHEMA.json of this tool; the message says where."""


def outline(document: Any) -> Outline:
    """What drift needs of a _SCHEMA.json: per event name, per key, its non-null types.

    Raises:
      SchemaShapeError: the document lacks the shape of DESIGN.md §8 (names
        the first place that does not fit).
    """
    if not isinstance(document, dict):
        raise SchemaShapeError("the document is not a JSON object")
    events = document.get("events")
    if not isinstance(events, dict):
        raise SchemaShapeError('it has no "events" object')
    result: Outline = {}
    for name, entry in events.items():
        where = f"events[{orjson.dumps(name[:40]).decode()}]"
        if not isinstance(entry, dict):
            raise SchemaShapeError(f"{where} is not an object")
        count = entry.get("count")
        if type(count) is not int or count < 0:
            raise SchemaShapeError(f"{where}.count is not a non-negative integer")
        properties = entry.get("properties")
        if not isinstance(properties, dict):
            raise SchemaShapeError(f"{where}.properties is not an object")
        keys = {}
        for key, described in properties.items():
            at = f"{where}.properties[{orjson.dumps(key[:40]).decode()}]"
            types = described.get("types") if isinstance(described, dict) else None
            if not isinstance(types, dict):
                raise SchemaShapeError(f'{at} has no "types" object')
            for kind, n in types.items():
                if kind not in TYPES:
                    raise SchemaShapeError(f"{at}: {kind[:20]!r} is not one of the types {', '.join(TYPES)}")
                if type(n) is not int or n < 0:
                    raise SchemaShapeError(f"{at}.types.{kind} is not a non-negative integer")
            keys[key] = tuple(sorted(kind for kind, n in types.items() if n and kind != NULL))
        result[name] = keys
    return result


def drift(previous: Outline, current: Outline) -> dict[str, Any]:
    """What changed between an earlier run's schema and this one's.

    Only what both sides hold exactly is compared: names are new (removed)
    only when the earlier (this) run folded no names into "(other)", and a
    name's keys likewise; "(other)" itself is never reported. A type change
    is a key present on both sides, each with non-null values, whose sets of
    non-null types differ.
    """
    before_names = set(previous) - {OTHER}
    after_names = set(current) - {OTHER}
    new_events = sorted(after_names - before_names) if OTHER not in previous else []
    removed_events = sorted(before_names - after_names) if OTHER not in current else []
    new_properties: dict[str, list[str]] = {}
    removed_properties: dict[str, list[str]] = {}
    type_changes: dict[str, dict[str, dict[str, list[str]]]] = {}
    for name in sorted(before_names & after_names):
        before, after = previous[name], current[name]
        before_keys, after_keys = set(before) - {OTHER}, set(after) - {OTHER}
        if OTHER not in before and after_keys - before_keys:
            new_properties[name] = sorted(after_keys - before_keys)
        if OTHER not in after and before_keys - after_keys:
            removed_properties[name] = sorted(before_keys - after_keys)
        changed = {
            key: {"before": list(before[key]), "after": list(after[key])}
            for key in sorted(before_keys & after_keys)
            if before[key] and after[key] and before[key] != after[key]
        }
        if changed:
            type_changes[name] = changed
    return {
        "new_events": new_events,
        "removed_events": removed_events,
        "new_properties": new_properties,
        "removed_properties": removed_properties,
        "type_changes": type_changes,
    }


def drift_counts(found: Mapping[str, Any]) -> str:
    """The drift in counts, for the terminal: e.g. `2 new events, 1 type change`, or `none`.

    Counts only: the terminal shares stderr with the logs, which never hold
    record values (event names and keys are in _SCHEMA.json and the report).
    """
    counts = [
        (len(found["new_events"]), "new event", "new events"),
        (len(found["removed_events"]), "removed event", "removed events"),
        (sum(map(len, found["new_properties"].values())), "new property", "new properties"),
        (sum(map(len, found["removed_properties"].values())), "removed property", "removed properties"),
        (sum(map(len, found["type_changes"].values())), "type change", "type changes"),
    ]
    parts = [f"{n:,} {one if n == 1 else many}" for n, one, many in counts if n]
    return ", ".join(parts) if parts else "none"
