"""The run report: _REPORT.html (self-contained, charts in inline SVG) and the terminal headline."""

import datetime
import html
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.schema_report import render_schema_section
from transforms.reasons import REASON_MEANINGS
from transforms.records import DUPLICATE_KEY_EXAMPLES, EXAMPLE_CHARS, EXAMPLES_PER_REASON

# Beyond this many days between the first and the last, the day chart shows
# only the days that have events: one bar per day would be too thin to see.
MAX_FILLED_DAYS = 1830
MAX_DAY_LABELS = 12

_MEANINGS: dict[str, str] = {reason.value: meaning for reason, meaning in REASON_MEANINGS.items()}
_UNKNOWN_MEANING = "No description is known for this reason."

_CSS = """
:root { --ink: #1d2430; --muted: #5b6474; --line: #d9dde3; --bg: #f6f7f9;
  --event: #2f6fb0; --reject: #c0392b; --ok: #1e7e34; --bad: #b02a37; --warn: #b26a00; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px 48px; color: var(--ink); background: #fff;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  max-width: 1100px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 16px 0 4px; }
code, pre, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px; }
.meta { color: var(--muted); margin: 0; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 12px; color: #fff;
  font-weight: 600; font-size: 13px; vertical-align: middle; margin-left: 8px; }
.badge.ok { background: var(--ok); } .badge.bad { background: var(--bad); }
.figures { display: grid; grid-template-columns: repeat(6, 1fr); gap: 10px; margin: 16px 0 8px; }
.figure { background: var(--bg); border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
.figure .label { color: var(--muted); font-size: 12px; }
.figure .value { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
.books { margin: 6px 0; font-variant-numeric: tabular-nums; }
.yes { color: var(--ok); font-weight: 600; } .no { color: var(--bad); font-weight: 600; }
table { border-collapse: collapse; width: 100%; }
table#checks { width: auto; min-width: 320px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; font-size: 12px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.name { word-break: break-all; }
.cols { display: grid; grid-template-columns: 3fr 2fr; gap: 24px; }
svg { display: block; width: 100%; height: auto; }
svg text { font: 11px system-ui, "DejaVu Sans", sans-serif; fill: var(--muted); }
svg .grid { stroke: var(--line); stroke-width: 1; }
svg rect.bar.event { fill: var(--event); } svg rect.bar.reject { fill: var(--reject); }
svg rect.bar:hover { opacity: .75; }
.empty { color: var(--muted); font-style: italic; }
.reason { border-left: 3px solid var(--reject); padding: 2px 0 2px 12px; margin: 12px 0; break-inside: avoid; }
.reason p { margin: 2px 0; }
.duplicates { border-left: 3px solid var(--warn); padding: 2px 0 2px 12px; margin: 12px 0; }
.duplicates p { margin: 2px 0; }
ol.examples { margin: 4px 0; padding-left: 20px; }
ol.examples li { margin: 4px 0; }
pre.line { margin: 2px 0; padding: 4px 6px; background: var(--bg); border: 1px solid var(--line);
  white-space: pre-wrap; word-break: break-all; }
.where { color: var(--muted); }
@media print {
  body { padding: 0; max-width: none; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  section { break-inside: avoid; }
}
"""

# Counts, once the page has laid out, the bars that drew with a real size; a
# browser test reads the count back from <body data-bars-drawn>.
_SCRIPT = """
window.addEventListener("load", function () {
  var drawn = 0;
  document.querySelectorAll("svg rect.bar").forEach(function (bar) {
    var box = bar.getBBox();
    if (box.width > 0 && box.height > 0) { drawn += 1; }
  });
  document.body.setAttribute("data-bars-drawn", String(drawn));
});
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _n(value: float) -> str:
    return f"{value:,}"


def _num(value: float) -> str:
    # Coordinates: short, and never "1e-05".
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _headline_figures(summary: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    out = summary["output"]
    return [
        ("lines", "Lines read", summary["input"]["lines"]),
        ("events", "Events written", out["events"]),
        ("superseded", "Superseded", out["superseded"]),
        ("profiles", "Profile updates", out["profiles"]),
        ("groups", "Group updates", out["groups"]),
        ("rejected", "Rejected", out["rejected"]),
    ]


def _books(summary: Mapping[str, Any]) -> tuple[str, list[tuple[str, int]]]:
    out = summary["output"]
    terms = [
        ("events", out["events"]),
        ("superseded", out["superseded"]),
        ("profiles", out["profiles"]),
        ("groups", out["groups"]),
        ("rejected", out["rejected"]),
        ("blank", summary["input"]["blank_lines"]),
    ]
    # Only runs with --exclude-users remove records; summaries before it have no such key.
    if out.get("excluded"):
        terms.insert(5, ("excluded", out["excluded"]))
    return "=" if summary["balanced"] else "≠", terms


def _ratio(summary: Mapping[str, Any]) -> str:
    checks = summary["checks"]
    limit = checks["max_reject_ratio"]
    gate = "no limit" if limit is None else f"limit {limit:.2%}"
    return f"{checks['reject_ratio']:.2%} ({gate})"


def format_headline(summary: Mapping[str, Any]) -> str:
    """The run's headline figures as a compact aligned table for the terminal.

    Args:
      summary: the run summary (the dict written to _SUMMARY.json).

    Returns:
      Lines without a trailing newline: one figure per row, the books-balance
      equation, the reject ratio against the gate, and PASSED or FAILED.
    """
    rows = [(label.lower(), _n(value)) for _, label, value in _headline_figures(summary)]
    rows.append(("blank lines", _n(summary["input"]["blank_lines"])))
    # Only with --skip-unreadable-files; the summary lists them.
    unreadable = summary["input"].get("unreadable_files")
    if unreadable:
        rows.append(("skipped files", _n(len(unreadable))))
    duplicate_keys = _duplicate_key_lines(summary)
    if duplicate_keys:
        rows.append(("duplicate keys", _n(duplicate_keys)))
    if summary["output"].get("excluded"):
        rows.append(("excluded", _n(summary["output"]["excluded"])))
    width = max(len(value) for _, value in rows)
    sign, terms = _books(summary)
    equation = f"{_n(summary['input']['lines'])} {sign} " + " + ".join(_n(n) for _, n in terms)
    failed = [name for name, ok in summary["checks"].items() if isinstance(ok, bool) and not ok]
    status = "PASSED" if summary["passed"] else "FAILED (" + ", ".join(failed) + ")"
    lines = [f"{summary['tool']['name']} run {summary['run_id']}"]
    lines += [f"  {label:<16}{value:>{width}}" for label, value in rows]
    lines.append(f"  {'books balance':<16}{'yes' if summary['balanced'] else 'NO'}: {equation}")
    lines.append(f"  {'reject ratio':<16}{_ratio(summary)}")
    lines.append(f"  {'checks':<16}{status}")
    return "\n".join(lines)


def _nice_step(top: int, ticks: int = 4) -> int:
    raw = max(top / ticks, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= raw:
            return int(factor * magnitude)
    return int(10 * magnitude)  # pragma: no cover - the loop always returns


def _day_slots(by_day: Mapping[str, int]) -> tuple[list[tuple[str, int]], bool]:
    """Day -> count in order; every day in the span when it is short enough."""
    days = sorted(by_day)
    try:
        first = datetime.date.fromisoformat(days[0])
        last = datetime.date.fromisoformat(days[-1])
    except ValueError:
        return [(d, by_day[d]) for d in days], False
    span = (last - first).days + 1
    if span > MAX_FILLED_DAYS:
        return [(d, by_day[d]) for d in days], False
    slots = [(first + datetime.timedelta(days=i)).isoformat() for i in range(span)]
    return [(d, by_day.get(d, 0)) for d in slots], True


def _days_range(by_day: Mapping[str, int]) -> str:
    if not by_day:
        return ""
    days = sorted(by_day)
    count = "1 day" if len(days) == 1 else f"{_n(len(days))} days"
    return f'<p class="meta">{count} with events, {_e(days[0])} to {_e(days[-1])}</p>'


def _days_chart(by_day: Mapping[str, int]) -> str:
    if not by_day:
        return '<p class="empty" id="events-by-day-empty">No events were written.</p>'
    slots, filled = _day_slots(by_day)
    width, height, left, right, top, bottom = 1000, 260, 56, 40, 10, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(n for _, n in slots)
    step = _nice_step(peak)
    y_max = max(step * math.ceil(peak / step), 1)
    slot_w = plot_w / len(slots)
    bar_w = slot_w * 0.8 if slot_w >= 3 else slot_w
    label_every = math.ceil(len(slots) / MAX_DAY_LABELS)
    parts = [
        (
            f'<svg id="events-by-day" class="chart" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="Events per UTC day" data-days="{len(by_day)}" data-label-every="{label_every}">'
        )
    ]
    for tick in range(0, y_max + 1, step):
        y = top + plot_h - plot_h * tick / y_max
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{_num(y)}" y2="{_num(y)}"/>'
            f'<text x="{left - 6}" y="{_num(y + 4)}" text-anchor="end">{_n(tick)}</text>'
        )
    for i, (day, count) in enumerate(slots):
        x = left + i * slot_w
        if count:
            # At least one pixel high, so that a day with few events still shows.
            h = max(plot_h * count / y_max, 1.0)
            parts.append(
                f'<rect class="bar event" x="{_num(x + (slot_w - bar_w) / 2)}" y="{_num(top + plot_h - h)}" '
                f'width="{_num(bar_w)}" height="{_num(h)}" data-key="{_e(day)}" data-value="{count}">'
                f"<title>{_e(day)}: {_n(count)} events</title></rect>"
            )
        if i % label_every == 0:
            parts.append(
                f'<text class="day-label" x="{_num(x + slot_w / 2)}" y="{height - 8}" '
                f'text-anchor="middle">{_e(day)}</text>'
            )
    parts.append("</svg>")
    note = "" if filled else '<p class="meta">Only the days that have events are shown.</p>'
    return "".join(parts) + note


def _hbar_chart(svg_id: str, label: str, rows: Sequence[tuple[str, int]], css: str, unit: str) -> str:
    """Horizontal bars, one row per (name, count)."""
    row_h, left, right, width = 24, 200, 70, 1000
    height = row_h * len(rows) + 8
    peak = max(n for _, n in rows)
    parts = [f'<svg id="{svg_id}" class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{_e(label)}">']
    for i, (name, count) in enumerate(rows):
        y = 4 + i * row_h
        w = max((width - left - right) * count / peak, 1.0)
        parts.append(
            f'<text x="{left - 8}" y="{y + 16}" text-anchor="end" class="mono">{_e(name)}</text>'
            f'<rect class="bar {css}" x="{left}" y="{y + 3}" width="{_num(w)}" height="{row_h - 6}" '
            f'data-key="{_e(name)}" data-value="{count}"><title>{_e(name)}: {_n(count)} {unit}</title></rect>'
            f'<text x="{_num(left + w + 6)}" y="{y + 16}">{_n(count)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _example(example: Mapping[str, Any]) -> str:
    where = (
        f'<span class="where"><span class="source mono">{_e(example["source"])}</span> at byte offset '
        f'<span class="offset">{_n(example["offset"])}</span></span>'
    )
    if "line" in example:
        text, kind = example["line"], "line"
    elif "line_base64" not in example:  # --redact-examples: where, never what
        return f'<li>{where} <span class="where redacted">(content not shown: --redact-examples)</span></li>'
    else:
        text, kind = example.get("line_base64", ""), "line base64"
        where += ' <span class="where">(not UTF-8; base64 of the raw bytes)</span>'
    if len(text) > EXAMPLE_CHARS:
        text = text[:EXAMPLE_CHARS] + "…"
    return f'<li>{where}<pre class="{kind}">{_e(text)}</pre></li>'


def _rejects(summary: Mapping[str, Any], examples: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    by_reason = summary["output"]["rejected_by_reason"]
    if not by_reason:
        return '<p class="empty" id="rejects-empty">No line was rejected.</p>'
    rows = sorted(((code, n) for code, n in by_reason.items() if n), key=lambda item: (-item[1], item[0]))
    parts = [_hbar_chart("rejects-by-reason", "Rejected lines by reason", rows, "reject", "lines")]
    for code, count in rows:
        items = "".join(_example(ex) for ex in examples.get(code, ())[:EXAMPLES_PER_REASON])
        parts.append(
            f'<div class="reason" data-reason="{_e(code)}" data-count="{count}">'
            f"<h3><code>{_e(code)}</code> — {_n(count)} {'line' if count == 1 else 'lines'}</h3>"
            f'<p class="meaning">{_e(_MEANINGS.get(code, _UNKNOWN_MEANING))}</p>'
            + (f'<ol class="examples">{items}</ol>' if items else "")
            + "</div>"
        )
    return "".join(parts)


def _duplicate_keys(summary: Mapping[str, Any], examples: Sequence[Mapping[str, Any]]) -> str:
    count = _duplicate_key_lines(summary)
    if not count:
        return '<p class="empty" id="duplicate-keys-empty">No accepted line gave a key twice.</p>'
    items = "".join(_example(ex) for ex in examples[:DUPLICATE_KEY_EXAMPLES])
    lines = "accepted line" if count == 1 else "accepted lines"
    return (
        f'<div id="duplicate-keys" class="duplicates" data-count="{count}">'
        f"<h3>{_n(count)} {lines} gave a key twice in one object</h3>"
        '<p class="about">The last value of a repeated key was kept, as Mixpanel\'s own parser '
        "does, and the earlier ones were dropped. Each line counts once, however many keys it "
        "repeated and at whatever depth; superseded events count too, rejected lines do not.</p>"
        + (f'<ol class="examples">{items}</ol>' if items else "")
        + "</div>"
    )


def _privacy(summary: Mapping[str, Any]) -> str:
    privacy = summary.get("privacy")  # summaries before it have none
    if not privacy:
        return ""
    excluded = privacy["excluded"]
    rows = [
        *((f"dropped <code>{_e(name)}</code>", n) for name, n in privacy["dropped"].items()),
        *((f"hashed <code>{_e(name)}</code>", n) for name, n in privacy["hashed"].items()),
    ]
    if privacy["listed_ids"] or excluded["events"] or excluded["profiles"]:
        rows += [("events excluded", excluded["events"]), ("profile updates excluded", excluded["profiles"]),
                 ("distinct ids in the deletion list", privacy["listed_ids"])]
    if not rows:
        return ""
    body = "".join(f'<tr><td>{label}</td><td class="num">{_n(n)}</td></tr>' for label, n in rows)
    return (
        '<section><h2>Privacy</h2><table id="privacy"><tr><th>What</th><th class="num">Count</th></tr>'
        f"{body}</table></section>"
    )


def _duplicate_key_lines(summary: Mapping[str, Any]) -> int:
    # Summaries written before the figure existed have no such key.
    count: int = summary.get("normalised", {}).get("duplicate_keys", 0)
    return count


def _top_events(top: Sequence[Mapping[str, Any]]) -> str:
    if not top:
        return '<p class="empty" id="top-events-empty">No events.</p>'
    rows = "".join(
        f'<tr data-name="{_e(ev["name"])}" data-count="{ev["count"]}"><td class="num">{rank}</td>'
        f'<td class="name">{_e(ev["name"])}</td><td class="num">{_n(ev["count"])}</td></tr>'
        for rank, ev in enumerate(top, 1)
    )
    head = '<tr><th class="num">#</th><th>Event name</th><th class="num">Lines</th></tr>'
    return f'<table id="top-events">{head}{rows}</table>'


def _updates(by_operation: Mapping[str, Mapping[str, int]]) -> str:
    rows = "".join(
        f'<tr data-kind="{_e(kind)}" data-operation="{_e(op)}" data-count="{count}">'
        f'<td>{_e(kind)}</td><td><code>{_e(op)}</code></td><td class="num">{_n(count)}</td></tr>'
        for kind, ops in sorted(by_operation.items())
        for op, count in sorted(ops.items())
    )
    if not rows:
        return '<p class="empty" id="updates-empty">No profile or group updates.</p>'
    return f'<table id="updates"><tr><th>Kind</th><th>Operation</th><th class="num">Updates</th></tr>{rows}</table>'


def _options(options: Mapping[str, Any]) -> str:
    rows = "".join(
        f'<tr data-option="{_e(name)}"><td><code>--{_e(name.replace("_", "-"))}</code></td>'
        f'<td class="mono">{_e(json.dumps(value, ensure_ascii=False))}</td></tr>'
        for name, value in sorted(options.items())
    )
    return f'<table id="options"><tr><th>Option</th><th>Value</th></tr>{rows}</table>'


def _check_value(value: Any) -> str:
    # The rest of a <td>: a class for yes/no, then the value for people.
    if isinstance(value, bool):
        return ' class="yes">yes' if value else ' class="no">no'
    if value is None:
        return ">none"
    if isinstance(value, float):
        return f">{value:.2%}"
    return f">{_e(value)}"


def _count_bars(summary: Mapping[str, Any]) -> int:
    out = summary["output"]
    return sum(1 for n in out["events_by_day"].values() if n) + sum(1 for n in out["rejected_by_reason"].values() if n)


def render_report(summary: Mapping[str, Any], schema: Mapping[str, Any] | None = None) -> str:
    """The whole _REPORT.html document for a run summary.

    The document is self-contained: inline CSS, inline SVG charts and one
    small inline script; it loads nothing. Every string taken from the
    summary (event names, reject and duplicate-key examples, options) is
    HTML-escaped.

    Args:
      summary: the run summary (the dict written to _SUMMARY.json); without
        its "details" section, those parts of the report show as empty.
      schema: the run's _SCHEMA.json document, shown in a section of its own.

    Returns:
      The HTML document as text.
    """
    out = summary["output"]
    details = summary.get("details") or {}
    passed = bool(summary["passed"])
    figures = "".join(
        f'<div class="figure" data-figure="{key}" data-value="{value}">'
        f'<div class="label">{label}</div><div class="value">{_n(value)}</div></div>'
        for key, label, value in _headline_figures(summary)
    )
    sign, terms = _books(summary)
    equation = " + ".join(f'<span data-term="{name}" data-value="{n}">{_n(n)} {name}</span>' for name, n in terms)
    balanced = summary["balanced"]
    checks = "".join(
        f'<tr data-check="{_e(name)}" data-value="{_e(json.dumps(value))}"><td><code>{_e(name)}</code></td>'
        f"<td{_check_value(value)}</td></tr>"
        for name, value in summary["checks"].items()
    )
    inp = summary["input"]
    tool = summary["tool"]
    title = f"{tool['name']} run {summary['run_id']}"
    badge = (
        f'<span id="status" class="badge {"ok" if passed else "bad"}" data-passed="{str(passed).lower()}">'
        f"{'PASSED' if passed else 'FAILED'}</span>"
    )
    about = (
        f'<span id="run-id">{_e(summary["run_id"])}</span> · reference time {_e(summary["reference_time"])}'
        f" · {_e(tool['name'])} {_e(tool['version'])}"
    )
    verdict = '<span class="yes">balance</span>' if balanced else '<span class="no">do not balance</span>'
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{_CSS}</style>
</head>
<body data-bars-expected="{_count_bars(summary)}">
<header>
<h1>Run report {badge}</h1>
<p class="meta">{about}</p>
<p class="meta">{_n(inp["files"])} input files, {_n(inp["bytes"])} bytes</p>
</header>
<section id="headline"><h2>Headline</h2>
<div class="figures">{figures}</div>
<p id="books" class="books" data-balanced="{str(balanced).lower()}">Books {verdict}:
<span data-term="lines" data-value="{inp["lines"]}">{_n(inp["lines"])} lines</span> {sign} {equation}</p>
<p class="books">Reject ratio {_e(_ratio(summary))}</p>
<table id="checks"><tr><th>Check</th><th>Result</th></tr>{checks}</table>
</section>
<section><h2>Events per UTC day</h2>{_days_range(out["events_by_day"])}{_days_chart(out["events_by_day"])}</section>
<section><h2>Rejected lines by reason</h2>{_rejects(summary, details.get("reject_examples", {}))}</section>
<section><h2>Duplicate keys</h2>{_duplicate_keys(summary, details.get("duplicate_key_examples", []))}</section>
{_privacy(summary)}
<div class="cols">
<section><h2>Top event names</h2>{_top_events(details.get("top_events", []))}</section>
<section><h2>Updates per operation</h2>{_updates(details.get("updates_by_operation", {}))}</section>
</div>
{render_schema_section(schema)}
<section><h2>Options</h2>{_options(summary["options"])}</section>
<script>{_SCRIPT}</script>
</body></html>
"""
