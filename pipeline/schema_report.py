"""The run report's schema section: type conflicts, the largest event names, drift (HTML)."""

import html
from collections.abc import Mapping, Sequence
from typing import Any

from transforms.schema import MAX_EVENT_NAMES, MAX_KEYS, OTHER, TYPES

MAX_CONFLICTS_SHOWN = 100  # conflicting keys listed; _SCHEMA.json has them all
MAX_NAMES_SHOWN = 20
MAX_DRIFT_SHOWN = 100  # entries of each drift list


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _n(value: int) -> str:
    return f"{value:,}"


def _type_order(kind: str) -> int:
    return TYPES.index(kind) if kind in TYPES else len(TYPES)


def _conflict_rows(schema: Mapping[str, Any]) -> list[tuple[str, str, str, Mapping[str, Any]]]:
    """(kind, event name or "", key, property entry) of every conflicting key, events first."""
    rows = []
    events = schema["events"]
    for name, keys in sorted(schema["conflicts"].items()):
        rows += [("event", name, key, events[name]["properties"][key]) for key in keys]
    for section in ("profiles", "groups"):
        described = schema.get(section) or {}
        rows += [(section[:-1], "", key, described["properties"][key]) for key in described.get("conflicts", [])]
    return rows


def _types_cell(entry: Mapping[str, Any]) -> str:
    """One line per type: its count and the position of its first line."""
    examples = entry.get("examples", {})
    lines = []
    for kind in sorted(entry["types"], key=_type_order):
        where = examples.get(kind)
        at = (
            f' <span class="where">first at <span class="source mono">{_e(where["source"])}</span> '
            f'byte offset <span class="offset">{_n(where["offset"])}</span></span>'
            if where
            else ""
        )
        lines.append(
            f'<div data-type="{_e(kind)}" data-count="{entry["types"][kind]}"><code>{_e(kind)}</code> '
            f"{_n(entry['types'][kind])}{at}</div>"
        )
    return "".join(lines)


def _conflicts(schema: Mapping[str, Any]) -> str:
    rows = _conflict_rows(schema)
    if not rows:
        return '<p class="empty" id="schema-conflicts-empty">No key was written with two or more non-null types.</p>'
    body = "".join(
        f'<tr data-kind="{_e(kind)}" data-name="{_e(name)}" data-key="{_e(key)}">'
        f'<td>{_e(kind)}</td><td class="name">{_e(name)}</td><td class="name"><code>{_e(key)}</code></td>'
        f"<td>{_types_cell(entry)}</td></tr>"
        for kind, name, key, entry in rows[:MAX_CONFLICTS_SHOWN]
    )
    more = (
        f'<p class="meta">{_n(len(rows) - MAX_CONFLICTS_SHOWN)} more in <code>_SCHEMA.json</code>.</p>'
        if len(rows) > MAX_CONFLICTS_SHOWN
        else ""
    )
    head = "<tr><th>Record</th><th>Event name</th><th>Key</th><th>Types written (lines)</th></tr>"
    return f'<table id="schema-conflicts">{head}{body}</table>{more}'


def _largest(events: Mapping[str, Any]) -> str:
    ranked = sorted(events.items(), key=lambda item: (-item[1]["count"], item[0]))[:MAX_NAMES_SHOWN]
    if not ranked:
        return '<p class="empty" id="schema-events-empty">No events were written.</p>'
    body = "".join(
        f'<tr data-name="{_e(name)}" data-count="{entry["count"]}"><td class="name">{_e(name)}</td>'
        f'<td class="num">{_n(entry["count"])}</td><td class="num">{_n(len(entry["properties"]))}</td></tr>'
        for name, entry in ranked
    )
    head = '<tr><th>Event name</th><th class="num">Events written</th><th class="num">Keys</th></tr>'
    return f'<table id="schema-events">{head}{body}</table>'


def _folded(schema: Mapping[str, Any]) -> str:
    notes = []
    events = schema["events"]
    if OTHER in events:
        notes.append(
            f"Past {_n(MAX_EVENT_NAMES)} event names, the names with the fewest events are counted "
            f"together as <code>{OTHER}</code> ({_n(events[OTHER]['count'])} events)."
        )
    wide = [name for name, entry in events.items() if name != OTHER and OTHER in entry["properties"]]
    wide += [s for s in ("profiles", "groups") if OTHER in (schema.get(s) or {}).get("properties", {})]
    if wide:
        notes.append(
            f"{_n(len(wide))} {'has' if len(wide) == 1 else 'have'} more than {_n(MAX_KEYS)} keys: "
            f"the keys written least often are counted together as <code>{OTHER}</code>."
        )
    return "".join(f'<p class="meta schema-folded">{note}</p>' for note in notes)


def _listed(values: Sequence[str]) -> str:
    shown = ", ".join(f"<code>{_e(v)}</code>" for v in values[:MAX_DRIFT_SHOWN])
    return shown + (f" and {_n(len(values) - MAX_DRIFT_SHOWN)} more" if len(values) > MAX_DRIFT_SHOWN else "")


def _drift(found: Mapping[str, Any] | None) -> str:
    if found is None:
        return ""
    rows = []
    for key, label in (("new_events", "New event names"), ("removed_events", "Removed event names")):
        if found[key]:
            rows.append(f'<tr data-drift="{key}"><td>{label}</td><td>{_listed(found[key])}</td></tr>')
    for key, label in (("new_properties", "New properties"), ("removed_properties", "Removed properties")):
        for name, keys in found[key].items():
            rows.append(
                f'<tr data-drift="{key}" data-name="{_e(name)}"><td>{label} of <span class="name">{_e(name)}</span>'
                f"</td><td>{_listed(keys)}</td></tr>"
            )
    for name, keys in found["type_changes"].items():
        for key, change in keys.items():
            rows.append(
                f'<tr data-drift="type_changes" data-name="{_e(name)}" data-key="{_e(key)}"><td>Type change of '
                f'<span class="name">{_e(name)}</span> <code>{_e(key)}</code></td>'
                f"<td>{_e(', '.join(change['before']))} → {_e(', '.join(change['after']))}</td></tr>"
            )
    if not rows:
        return '<h3>Drift</h3><p class="empty" id="schema-drift-empty">Nothing changed since the previous schema.</p>'
    return f'<h3>Drift</h3><table id="schema-drift"><tr><th>What</th><th>Which</th></tr>{"".join(rows)}</table>'


def render_schema_section(schema: Mapping[str, Any] | None) -> str:
    """The report's "Schema" section for a _SCHEMA.json document; "" without one.

    Every string from the document (event names, keys, paths) is HTML-escaped.
    Positions only, never line contents: a path and a byte offset locate a line.
    """
    if schema is None:
        return ""
    conflicts = len(_conflict_rows(schema))
    names = len([n for n in schema["events"] if n != OTHER])
    about = (
        f'<p class="meta">{_n(names)} event {"name" if names == 1 else "names"}; '
        f'{_n(conflicts)} {"key" if conflicts == 1 else "keys"} written with two or more non-null types '
        "(all types and counts are in <code>_SCHEMA.json</code>).</p>"
    )
    return (
        f'<section id="schema"><h2>Schema</h2>{about}{_folded(schema)}'
        f"<h3>Type conflicts</h3>{_conflicts(schema)}"
        f"<h3>Largest event names</h3>{_largest(schema['events'])}"
        f"{_drift(schema.get('drift'))}</section>"
    )
