"""Batches of classified records: routing, sharding, winners and file splits (pure; no Beam).

A record travelling between stages is a plain tuple ``(rank, offset, key, line)``:
`rank` is its file's position in upload order and `offset` the byte offset of its
line, so ``(rank, offset)`` is its upload order; `key` is the 16-byte digest the
rules computed (the overwrite key of an event, the identity of a profile or group
update; empty for rejects); `line` is the output line without its newline.
"""


import base64
import math
from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple

import orjson

from transforms.rules import (
    INSERT_ID_GENERATED,
    NORMALISED_DISTINCT_ID,
    NORMALISED_TIME,
    Kind,
    RuleConfig,
    classify,
)

Record = tuple[int, int, bytes, bytes]

PROFILES_ROUTE = "profiles"
GROUPS_ROUTE = "groups"
REJECTS_ROUTE = "rejects"
EVENTS_PREFIX = "events/day="
SUPERSEDED_PREFIX = "superseded/day="

# Tally names; they become the summary's figures (see pipeline/summary.py).
LINES = "lines"
BLANK_LINES = "blank_lines"
EVENTS_ACCEPTED = "events_accepted"
PROFILES = "profiles"
GROUPS = "groups"
REJECTED = "rejected"
REJECTED_PREFIX = "rejected_"
NORMALISED_PREFIX = "normalised_"
PROFILE_OPERATION_PREFIX = "operation_profiles_"
GROUP_OPERATION_PREFIX = "operation_groups_"
EXAMPLES_PER_REASON = 5
EXAMPLE_CHARS = 300  # reject examples are for people: a glimpse, not the record
_NORMALISED_FLAGS = (
    (NORMALISED_TIME, NORMALISED_PREFIX + "time"),
    (NORMALISED_DISTINCT_ID, NORMALISED_PREFIX + "distinct_id"),
    (INSERT_ID_GENERATED, NORMALISED_PREFIX + "insert_id_generated"),
)


def events_route(day: str) -> str:
    """The output folder of events of one UTC day ("YYYY-MM-DD")."""
    return EVENTS_PREFIX + day


def superseded_route(route: str) -> str:
    """The folder for the events that lost the dedupe in an events folder."""
    return SUPERSEDED_PREFIX + route[len(EVENTS_PREFIX) :]


def reject_line(reason: str, detail: str, path: str, offset: int, raw: bytes) -> bytes:
    """The rejects-file line for one refused input line.

    The raw line is kept byte for byte: as a JSON string when it is UTF-8,
    else base64 under "line_base64".
    """
    record: dict[str, object] = {
        "reason": reason,
        "detail": detail,
        "source": path,
        "offset": offset,
    }
    try:
        record["line"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        record["line_base64"] = base64.b64encode(raw).decode("ascii")
    return orjson.dumps(record)


def reject_example(path: str, offset: int, raw: bytes) -> dict[str, object]:
    """A short, JSON-safe glimpse of a refused line for the run report."""
    example: dict[str, object] = {"source": path, "offset": offset}
    try:
        example["line"] = raw.decode("utf-8")[:EXAMPLE_CHARS]
    except UnicodeDecodeError:
        example["line_base64"] = base64.b64encode(raw[: EXAMPLE_CHARS * 3 // 4]).decode("ascii")
    return example


# (rank, offset, example): ordered by upload position, so the first few are stable.
Example = tuple[int, int, dict[str, object]]


class SortedBatch(NamedTuple):
    """One batch of input lines, classified."""

    events: dict[str, list[Record]]  # events route -> records
    profiles: list[Record]
    groups: list[Record]
    rejects: list[Record]
    tallies: Counter[str]
    event_names: Counter[str]  # accepted events per name
    examples: dict[str, list[Example]]  # reason -> the batch's first few rejects


def sort_batch(
    rank: int,
    path: str,
    offsets: list[int],
    lines: list[bytes],
    config: RuleConfig,
) -> SortedBatch:
    """Classifies every line of a batch and sorts the results by route.

    Every line is counted exactly once: as blank, or in exactly one of the
    events, profiles, groups and rejects.
    """
    events: dict[str, list[Record]] = {}
    profiles: list[Record] = []
    groups: list[Record] = []
    rejects: list[Record] = []
    tallies: Counter[str] = Counter()
    normalised = Counter[int]()
    names: Counter[str] = Counter()
    examples: dict[str, list[Example]] = {}
    for offset, raw in zip(offsets, lines):
        fate = classify(raw, config)
        kind = fate.kind
        if kind == Kind.EVENT:
            route = EVENTS_PREFIX + fate.day
            bucket = events.get(route)
            if bucket is None:
                bucket = events[route] = []
            bucket.append((rank, offset, fate.key, fate.line))
            names[fate.name] += 1
            if fate.normalised:
                normalised[fate.normalised] += 1
        elif kind == Kind.REJECT:
            reason = fate.reason.value  # type: ignore[union-attr]
            rejects.append(
                (rank, offset, b"", reject_line(reason, fate.detail, path, offset, raw))
            )
            tallies[REJECTED_PREFIX + reason] += 1
            shown = examples.setdefault(reason, [])
            if len(shown) < EXAMPLES_PER_REASON:
                shown.append((rank, offset, reject_example(path, offset, raw)))
        elif kind == Kind.PROFILE:
            profiles.append((rank, offset, fate.key, fate.line))
            tallies[PROFILE_OPERATION_PREFIX + fate.name] += 1
            if fate.normalised:
                normalised[fate.normalised] += 1
        elif kind == Kind.GROUP:
            groups.append((rank, offset, fate.key, fate.line))
            tallies[GROUP_OPERATION_PREFIX + fate.name] += 1
            if fate.normalised:
                normalised[fate.normalised] += 1
        else:
            tallies[BLANK_LINES] += 1
    tallies[LINES] += len(lines)
    tallies[EVENTS_ACCEPTED] += sum(len(b) for b in events.values())
    tallies[PROFILES] += len(profiles)
    tallies[GROUPS] += len(groups)
    tallies[REJECTED] += len(rejects)
    for flags, count in normalised.items():
        for flag, name in _NORMALISED_FLAGS:
            if flags & flag:
                tallies[name] += count
    return SortedBatch(events, profiles, groups, rejects, tallies, names, examples)


def record_bytes(records: Iterable[Record]) -> int:
    """Uncompressed size of the records as written (one newline each)."""
    return sum(len(r[3]) + 1 for r in records)


def shard_count(route_bytes: int, target_bytes: int) -> int:
    """How many shards a route of `route_bytes` is spread over."""
    return max(1, math.ceil(route_bytes / target_bytes))


def shard_of(record: Record, shards: int) -> int:
    """The shard of a record: by its key when it has one, else by position.

    Keys are digests, so their leading bytes are already a stable hash; a
    key-less record (a reject) is placed by its (rank, offset).
    """
    key = record[2]
    if key:
        return int.from_bytes(key[:8], "big") % shards
    return (record[0] * 1_000_003 + record[1]) % shards


def split_into_shards(records: Iterable[Record], shards: int) -> dict[int, list[Record]]:
    """Groups records by shard_of()."""
    out: dict[int, list[Record]] = {}
    for record in records:
        shard = shard_of(record, shards)
        bucket = out.get(shard)
        if bucket is None:
            bucket = out[shard] = []
        bucket.append(record)
    return out


def pick_latest(records: Iterable[Record]) -> tuple[list[Record], list[Record]]:
    """Keeps, per key, the record latest in upload order.

    Returns:
      (survivors, superseded), each sorted in upload order.
    """
    latest: dict[bytes, Record] = {}
    superseded: list[Record] = []
    for record in records:
        key = record[2]
        held = latest.get(key)
        if held is None:
            latest[key] = record
        elif (record[0], record[1]) > (held[0], held[1]):
            superseded.append(held)
            latest[key] = record
        else:
            superseded.append(record)
    survivors = sorted(latest.values())
    superseded.sort()
    return survivors, superseded


def order_for_writing(route: str, records: list[Record]) -> list[Record]:
    """Puts a shard's records in their written order.

    Profile and group updates are ordered by identity, then upload order, so
    that one identity's updates stay together and in order; everything else
    is in upload order. (rank, offset) is unique, so the order is total.
    """
    if route in (PROFILES_ROUTE, GROUPS_ROUTE):
        return sorted(records, key=lambda r: (r[2], r[0], r[1]))
    return sorted(records, key=lambda r: (r[0], r[1]))


def split_into_files(
    route: str, records: list[Record], max_bytes: int
) -> list[list[Record]]:
    """Cuts ordered records into files of at most `max_bytes` uncompressed.

    Profile and group files are cut only between identities, so an identity's
    updates share one file (a single identity larger than `max_bytes` gets a
    file of its own, over the limit).
    """
    keep_keys_together = route in (PROFILES_ROUTE, GROUPS_ROUTE)
    files: list[list[Record]] = []
    current: list[Record] = []
    size = 0
    for record in records:
        length = len(record[3]) + 1
        if current and size + length > max_bytes:
            if not keep_keys_together or record[2] != current[-1][2]:
                files.append(current)
                current, size = [], 0
            elif keep_keys_together:
                # Same identity as the previous record: move the whole run.
                run_start = len(current)
                while run_start and current[run_start - 1][2] == record[2]:
                    run_start -= 1
                if run_start:
                    run = current[run_start:]
                    files.append(current[:run_start])
                    current = run
                    size = record_bytes(run)
        current.append(record)
        size += length
    if current:
        files.append(current)
    return files


def part_name(index: int, total: int, compressed: bool) -> str:
    """The file name of part `index` of `total` in one output folder."""
    suffix = ".ndjson.gz" if compressed else ".ndjson"
    return f"part-{index:05d}-of-{total:05d}{suffix}"
