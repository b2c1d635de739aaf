"""The core-reusing yardstick: the pipeline's job as a plain loop around the pipeline's own core.

Not part of the product. It does what the pipeline does for a local run with
default options — read every file (gzip too) in upload order, classify each
line with the product's own `transforms.rules.classify`, keep the latest event
per overwrite key, write the same output layout and rejects — with no Beam, no
shuffles and no batching beyond the reader's chunks. The benchmark compares
the pipeline's time and memory with this loop's, so the ratio measures what
the pipeline's machinery costs, not the rules: the core's own cost is on both
sides. benchmarks/plain_loop.py is the independent yardstick, sharing no code.

Scope: local files, `*` globs, `.gz` or uncompressed input, gzip output
(level 6, as transforms/write.py), no --keep-superseded, upload order by
(mtime, path). `_SUMMARY.json` holds the figures the benchmark compares.
"""


import gzip
import os
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

if __package__ in (None, ""):
    # Run as a script: this checkout's packages, not whichever one is installed.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from benchmarks.plain_loop import list_inputs, parse_reference_time, yardstick_parser
from transforms.layout import (
    GROUPS_ROUTE,
    PROFILES_ROUTE,
    REJECTS_ROUTE,
    events_route,
    part_name,
    split_into_files,
)
from transforms.ranges import UNBOUNDED, iter_line_batches
from transforms.reasons import (
    DUPLICATE_KEYS,
    INSERT_ID_GENERATED,
    NORMALISED_DISTINCT_ID,
    NORMALISED_TIME,
    Kind,
)
from transforms.records import reject_line
from transforms.rules import RuleConfig, classify

# (rank, offset, key, line): the yardstick keeps one plain tuple per record.
Record = tuple[int, int, bytes, bytes]

MIB = 1 << 20
GZIP_LEVEL = 6  # as transforms/write.py
_WRITE_LINES = 20_000  # lines joined per write
SUMMARY_FILE = "_SUMMARY.json"

_EVENT = Kind.EVENT
_PROFILE = Kind.PROFILE
_GROUP = Kind.GROUP
_REJECT = Kind.REJECT


def _open(path: str) -> BinaryIO:
    if path.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def run(
    patterns: Sequence[str], output: str, reference_time: int, max_file_bytes: int = 1024 * MIB
) -> dict[str, Any]:
    """Runs the whole job; returns the summary it wrote to `output`."""
    if os.path.exists(output) and os.listdir(output):
        raise SystemExit(f"reference: output {output!r} is not empty")
    inputs = list_inputs(patterns)
    config = RuleConfig(reference_time)
    events: dict[str, dict[bytes, Record]] = {}  # day -> overwrite key -> latest record
    profiles: list[Record] = []
    groups: list[Record] = []
    rejects: list[Record] = []
    counts: Counter[str] = Counter()
    by_reason: Counter[str] = Counter()
    normalised: Counter[int] = Counter()
    superseded = 0
    for rank, (path, _) in enumerate(inputs):
        with _open(path) as handle:
            for offsets, lines in iter_line_batches(handle, 0, UNBOUNDED):
                counts["lines"] += len(lines)
                for offset, raw in zip(offsets, lines, strict=True):
                    fate = classify(raw, config)
                    kind = fate.kind
                    if kind is _EVENT:
                        day = events.get(fate.day)
                        if day is None:
                            day = events[fate.day] = {}
                        # Files come in upload order, lines in offset order:
                        # the record seen last is the latest.
                        if fate.key in day:
                            superseded += 1
                        day[fate.key] = (rank, offset, fate.key, fate.line)
                        counts["accepted_events"] += 1
                        normalised[fate.normalised] += 1
                    elif kind is _REJECT:
                        reason = fate.reason.value  # type: ignore[union-attr]
                        by_reason[reason] += 1
                        line = reject_line(reason, fate.detail, path, offset, raw)
                        rejects.append((rank, offset, b"", line))
                    elif kind is _PROFILE:
                        profiles.append((rank, offset, fate.key, fate.line))
                        normalised[fate.normalised] += 1
                    elif kind is _GROUP:
                        groups.append((rank, offset, fate.key, fate.line))
                        normalised[fate.normalised] += 1
                    else:
                        counts["blank_lines"] += 1

    routes: dict[str, list[Record]] = {
        events_route(day): list(records.values()) for day, records in sorted(events.items())
    }
    routes[PROFILES_ROUTE] = profiles
    routes[GROUPS_ROUTE] = groups
    routes[REJECTS_ROUTE] = rejects
    written = []
    for route, records in routes.items():
        if records:
            written.extend(_write_route(output, route, records, max_file_bytes))

    summary = {
        "tool": {"name": "benchmark-reference"},
        "input": {
            "files": len(inputs),
            "bytes": sum(size for _, size in inputs),
            "lines": counts["lines"],
            "blank_lines": counts["blank_lines"],
        },
        "output": {
            "events": counts["accepted_events"] - superseded,
            "events_by_day": {day: len(records) for day, records in sorted(events.items())},
            "profiles": len(profiles),
            "groups": len(groups),
            "superseded": superseded,
            "rejected": len(rejects),
            "rejected_by_reason": dict(sorted(by_reason.items())),
            "files": sorted(written, key=lambda f: f["path"]),
        },
        "normalised": {
            "time": sum(n for flags, n in normalised.items() if flags & NORMALISED_TIME),
            "distinct_id": sum(n for flags, n in normalised.items() if flags & NORMALISED_DISTINCT_ID),
            "insert_id_generated": sum(
                n for flags, n in normalised.items() if flags & INSERT_ID_GENERATED
            ),
            "duplicate_keys": sum(n for flags, n in normalised.items() if flags & DUPLICATE_KEYS),
        },
    }
    Path(output, SUMMARY_FILE).write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    return summary


def _write_route(
    output: str, route: str, records: list[Record], max_file_bytes: int
) -> list[dict[str, Any]]:
    # The product's written order: updates by identity then upload order, the
    # rest in upload order.
    if route in (PROFILES_ROUTE, GROUPS_ROUTE):
        records = sorted(records, key=lambda r: (r[2], r[0], r[1]))
        keys: list[bytes] | None = [r[2] for r in records]
    else:
        records = sorted(records, key=lambda r: (r[0], r[1]))
        keys = None
    files = split_into_files([r[3] for r in records], keys, max_file_bytes)
    folder = Path(output, route)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index, part in enumerate(files):
        name = f"{route}/{part_name(index, len(files), True)}"
        size = _write_gzip(Path(output, name), part)
        written.append({"path": name, "lines": len(part), "bytes": size})
    return written


def _write_gzip(path: Path, lines: Iterable[bytes]) -> int:
    """Writes one line per item as gzip (mtime 0, no name); returns the uncompressed size."""
    size = 0
    with open(path, "wb") as raw, gzip.GzipFile(
        fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL, mtime=0, filename=""
    ) as sink:
        piece: list[bytes] = []
        for line in lines:
            piece.append(line)
            if len(piece) >= _WRITE_LINES:
                piece.append(b"")
                data = b"\n".join(piece)
                sink.write(data)
                size += len(data)
                piece = []
        if piece:
            piece.append(b"")
            data = b"\n".join(piece)
            sink.write(data)
            size += len(data)
    return size


def main(argv: Sequence[str]) -> int:
    parser = yardstick_parser(
        "reference.py", "The core-reusing benchmark yardstick: the pipeline's core in a plain loop."
    )
    args = parser.parse_args(argv)
    summary = run(args.input, args.output, parse_reference_time(args.reference_time),
                  args.max_file_mb * MIB)
    print(orjson.dumps({k: summary[k] for k in ("input", "normalised")}).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
