"""The independent yardstick: Cloud Import Prep's contract as one plain single-process loop.

Not part of the product, and deliberately independent of it: it imports nothing
from pipeline/ or transforms/ (tests/test_benchmarks.py checks), and its rules
(benchmarks/plain_rules.py, the one module it imports of this repository) were
written from DESIGN.md, not copied from transforms/rules.py (where the two
look alike, as in the operation checks, it is the same contract written twice on
purpose: sharing it would put the pipeline's cost on both sides). It is the
straightforward, fast loop a data engineer would write for the same job:
orjson, one pass over the files in upload order, a dict for dedupe, gzip out.
`make bench` times the pipeline against it, so the ratio charges the pipeline
for everything it does beyond the job itself — Beam's machinery and its own
core's extra work alike. (benchmarks/reference.py, the other yardstick,
reuses the pipeline's core and so measures the machinery alone.)

What it does (DESIGN.md §2–§5):
  - reads every file the --input globs match, in upload order (mtime, path),
    gzip recognised by its magic bytes, `\\n` or `\\r\\n` endings, a BOM skipped
    and counted in offsets;
  - classifies every line by all of §2's rules, first broken row decides,
    with the pipeline's reason codes and detail sentences (the rejects files
    hold them, and must be the same bytes);
  - normalises time (floored integer seconds), integer distinct_id → string,
    a missing $insert_id → 32 hex of BLAKE2b-128 over the canonical JSON
    [name, distinct_id or "", seconds, properties with sorted keys], and counts
    lines that gave a JSON key twice (a colon count flags the candidates, the
    stdlib parser decides);
  - keeps the latest event per (event, distinct_id, $insert_id, UTC day);
  - writes events/day=…, profiles, groups and rejects as gzip (level 6,
    mtime 0, no name) with the pipeline's names and file cuts, then
    `_SUMMARY.json` with the figures benchmarks/agree.py compares.

Two facts are taken from the pipeline's output rather than from DESIGN.md,
which leaves them open, so that the files compare byte for byte: profile and
group updates are ordered by the BLAKE2b-128 digest of their identity's JSON
list (`["<distinct_id>"]`, `["<group_key>","<group_id>"]`), then upload order;
and events and rejects are in upload order.

Scope (narrower than the product): local files and `*`/`**` globs; gzip or
plain input; default options plus --reference-time and --max-file-mb; gzip
output only; no --keep-superseded, privacy flags, schema or report; no
locking, --overwrite or _SUCCESS. File cuts are those of one shard per
folder: the pipeline's too, as long as every folder is smaller than
min(--max-file-mb, 256 MiB) — beyond that the pipeline spreads a folder over
hash shards and the cuts differ (the lines still agree as multisets).

  python benchmarks/plain_loop.py --input 'data/*' --output out \\
      --reference-time 2024-06-01T00:00:00Z
"""

import argparse
import base64
import datetime
import glob
import gzip
import os
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

if __package__ in (None, ""):
    # Run as a script (python benchmarks/plain_loop.py): make its rules importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.plain_rules import (
    BLANK,
    DISTINCT_ID,
    DUP_KEYS,
    EPOCH_ORDINAL,
    EVENT,
    INSERT_ID,
    PROFILE,
    REJECT,
    TIME,
    classify,
    dumps,
    join,
)

MIB = 1 << 20
CHUNK = 16 << 20
WRITE_SLICE = 4 << 20
GZIP_LEVEL = 6
BOM = b"\xef\xbb\xbf"


def list_inputs(patterns: Sequence[str]) -> list[tuple[str, int]]:
    """(path, size) of each file the globs match, once per file, in upload order (mtime, path)."""
    found: dict[tuple[int, int], tuple[float, str, int]] = {}
    for pattern in patterns:
        matched = [p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
        if not matched:
            raise SystemExit(f"plain_loop.py: error: input pattern {pattern!r} matches no file")
        for path in matched:
            info = os.stat(path)
            entry = (info.st_mtime, path, info.st_size)
            identity = (info.st_dev, info.st_ino)
            if identity not in found or path < found[identity][1]:
                found[identity] = entry
    return [(path, size) for _, path, size in sorted(found.values())]


def read_lines(path: str) -> Iterator[tuple[int, bytes]]:
    """(offset, line) of every line of a file, gzip or plain; endings and a BOM removed."""
    with open(path, "rb") as raw:
        stream = gzip.GzipFile(fileobj=raw) if raw.read(2) == b"\x1f\x8b" else raw
        raw.seek(0)
        offset = 0
        data = stream.read(CHUNK)
        if data.startswith(BOM):
            data, offset = data[3:], 3
        while data:
            chunk = stream.read(CHUNK)
            lines = data.split(b"\n")
            tail = lines.pop()
            if tail and not chunk:  # the last line, without a newline
                lines.append(tail)
                tail = b""
            for line in lines:
                yield offset, line[:-1] if line.endswith(b"\r") else line
                offset += len(line) + 1
            data = tail + chunk


def _split_into_files(lines: list[bytes], keys: list[bytes] | None, limit: int) -> list[list[bytes]]:
    """Lines cut into files of at most `limit` bytes (with newlines), only where the key changes."""
    if sum(map(len, lines)) + len(lines) <= limit:
        return [lines] if lines else []
    files: list[list[bytes]] = []
    current: list[bytes] = []
    size = 0
    group: list[bytes] = []  # the lines of the current key, not yet placed
    group_size = 0
    for i, line in enumerate(lines):
        if keys is None or (i and keys[i] != keys[i - 1]):
            current += group
            size += group_size
            group, group_size = [], 0
        length = len(line) + 1
        if size + group_size + length > limit and current:
            files.append(current)
            current, size = [], 0
        group.append(line)
        group_size += length
    current += group
    if current:
        files.append(current)
    return files


def write_folder(output: Path, folder: str, lines: list[bytes], keys: list[bytes] | None,
                 limit: int) -> list[dict[str, Any]]:
    """Writes one output folder as gzip part files; returns what was written."""
    files = _split_into_files(lines, keys, limit)
    (output / folder).mkdir(parents=True, exist_ok=True)
    written = []
    for index, part in enumerate(files):
        name = f"{folder}/part-{index:05d}-of-{len(files):05d}.ndjson.gz"
        size = 0
        with open(output / name, "wb") as raw, gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0
        ) as sink:
            step = max(1, WRITE_SLICE // max(1, len(part[0])))
            for start in range(0, len(part), step):
                data = b"\n".join(part[start:start + step]) + b"\n"
                sink.write(data)
                size += len(data)
        written.append({"path": name, "lines": len(part), "bytes": size})
    return written


def run(patterns: Sequence[str], output: str, reference: int, max_file_bytes: int = 1024 * MIB) -> dict:
    """The whole job; returns the summary it wrote to `output/_SUMMARY.json`."""
    out = Path(output)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"plain_loop.py: error: {output} is not empty")
    inputs = list_inputs(patterns)
    days: dict[int, dict[tuple[str, str, str], bytes]] = {}
    profiles: list[tuple[bytes, bytes]] = []
    groups: list[tuple[bytes, bytes]] = []
    rejects: list[bytes] = []
    by_reason: Counter[str] = Counter()
    flags_seen: Counter[int] = Counter()
    lines = blank = accepted = superseded = 0
    for path, _ in inputs:
        for offset, raw in read_lines(path):
            lines += 1
            fate = classify(raw, reference)
            kind = fate[0]
            if kind == EVENT:
                _, line, day, key, flags = fate
                events = days.get(day)
                if events is None:
                    events = days[day] = {}
                # Files come in upload order and lines in offset order: the latest
                # wins, and re-inserting it keeps the dict in survivors' upload order.
                if events.pop(key, None) is not None:
                    superseded += 1
                events[key] = line
                accepted += 1
                if flags:
                    flags_seen[flags] += 1
            elif kind == REJECT:
                reason, detail = fate[1], fate[2]
                by_reason[reason] += 1
                rejects.append(_reject_line(reason, detail, path, offset, raw))
            elif kind == BLANK:
                blank += 1
            else:
                _, line, order, flags = fate
                (profiles if kind == PROFILE else groups).append((order, line))
                if flags:
                    flags_seen[flags] += 1

    written = []
    for day in sorted(days):
        written += write_folder(out, f"events/day={_day(day)}", list(days[day].values()), None,
                                max_file_bytes)
    for folder, updates in (("profiles", profiles), ("groups", groups)):
        if updates:
            updates.sort(key=lambda u: u[0])  # stable: upload order within an identity
            written += write_folder(out, folder, [u[1] for u in updates], [u[0] for u in updates],
                                    max_file_bytes)
    if rejects:
        written += write_folder(out, "rejects", rejects, None, max_file_bytes)

    profile_count, group_count = len(profiles), len(groups)
    summary = {
        "tool": {"name": "benchmark-plain-loop"},
        "reference_time": reference,
        "input": {"files": len(inputs), "bytes": sum(size for _, size in inputs),
                  "lines": lines, "blank_lines": blank},
        "output": {
            "events": accepted - superseded,
            "events_by_day": {_day(day): len(days[day]) for day in sorted(days)},
            "profiles": profile_count,
            "groups": group_count,
            "superseded": superseded,
            "rejected": len(rejects),
            "rejected_by_reason": dict(sorted(by_reason.items())),
            "excluded": 0,
            "files": sorted(written, key=lambda f: f["path"]),
        },
        "normalised": {
            name: sum(n for flags, n in flags_seen.items() if flags & bit)
            for name, bit in (("time", TIME), ("distinct_id", DISTINCT_ID),
                              ("insert_id_generated", INSERT_ID), ("duplicate_keys", DUP_KEYS))
        },
    }
    summary["balanced"] = lines == (accepted + profile_count + group_count + len(rejects) + blank)
    out.mkdir(parents=True, exist_ok=True)
    (out / "_SUMMARY.json").write_bytes(dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    return summary


def _day(day_number: int) -> str:
    return datetime.date.fromordinal(day_number + EPOCH_ORDINAL).isoformat()


def _reject_line(reason: str, detail: str, path: str, offset: int, raw: bytes) -> bytes:
    record: dict[str, Any] = {"reason": reason, "detail": detail, "source": path, "offset": offset}
    try:
        record["line"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        record["line_base64"] = base64.b64encode(raw).decode("ascii")
    return join((dumps(record), b""))


def parse_reference_time(text: str) -> int:
    """ISO-8601 (no offset means UTC) or UNIX seconds, as whole UNIX seconds."""
    try:
        return int(float(text))
    except ValueError:
        pass
    parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return int(parsed.timestamp())


def yardstick_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The command line both yardsticks take (benchmarks/reference.py too): the bench's flags."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--input", action="append", required=True,
                        help="Glob of input files; repeat for more. Example: --input 'data/*'")
    parser.add_argument("--output", required=True,
                        help="Empty folder to write to. Example: --output out")
    parser.add_argument("--reference-time", required=True,
                        help="As the pipeline's flag. Example: --reference-time 2024-06-01T00:00:00Z")
    parser.add_argument("--max-file-mb", type=int, default=1024,
                        help="Largest uncompressed output file, MiB. Example: --max-file-mb 512")
    return parser


def main(argv: Sequence[str]) -> int:
    parser = yardstick_parser(
        "plain_loop.py", "The independent benchmark yardstick: the contract as one plain Python loop."
    )
    args = parser.parse_args(argv)
    # Objects may nest 1,024 levels (orjson's limit): the stdlib parser and the
    # deep serialiser recurse once per level.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    summary = run(args.input, args.output, parse_reference_time(args.reference_time),
                  args.max_file_mb * MIB)
    print(dumps({k: summary[k] for k in ("input", "normalised", "balanced")}).decode())
    return 0 if summary["balanced"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
