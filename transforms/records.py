"""Batches of classified records: routing, sharding, winners and file splits (pure; no Beam).

Records travel between stages in batches, column by column, which keeps Beam's
per-element and encoding costs per batch rather than per record. A RecordBatch
is a plain tuple ``(rank, offsets, keys, lines)``: `rank` is the position of the
records' file in upload order and `offsets` the byte offsets of their lines, so
``(rank, offset)`` is a record's upload order; `keys` holds the 16-byte digests
the rules computed, back to back (the overwrite key of an event, the identity of
a profile or group update; empty for rejects); `lines` are the output lines
without their newlines. Records in a batch are in offset order.
"""


import base64
import math
import re
import struct
import sys
import threading
from array import array
from collections import Counter
from collections.abc import Iterable
from itertools import compress
from typing import TYPE_CHECKING, NamedTuple

import orjson
import zstandard

from transforms.reasons import (
    DUPLICATE_KEYS,
    INSERT_ID_GENERATED,
    NORMALISED_DISTINCT_ID,
    NORMALISED_TIME,
    Kind,
)
from transforms.rules import RuleConfig, classify
from transforms.schema import GROUPS as SCHEMA_GROUPS
from transforms.schema import PROFILES as SCHEMA_PROFILES
from transforms.schema import Partial, TypeTally, written_values

if TYPE_CHECKING:  # transforms.privacy imports this module
    from transforms.privacy import PrivacyConfig

RecordBatch = tuple[int, list[int], bytes, list[bytes]]
ShardLines = tuple[list[bytes], list[bytes] | None]  # (lines, keys to cut files by)
KEY_BYTES = 16

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
DUPLICATE_KEY_EXAMPLES = 5  # accepted lines shown that gave a key twice
EXAMPLE_CHARS = 300  # examples are for people: a glimpse, not the record
_NORMALISED_FLAGS = (
    (NORMALISED_TIME, NORMALISED_PREFIX + "time"),
    (NORMALISED_DISTINCT_ID, NORMALISED_PREFIX + "distinct_id"),
    (INSERT_ID_GENERATED, NORMALISED_PREFIX + "insert_id_generated"),
    (DUPLICATE_KEYS, NORMALISED_PREFIX + "duplicate_keys"),
)


# Every output folder there is (DESIGN.md §4). Output paths are built from
# routes, and a route from a day the rules formatted; this is checked again
# where paths are made, so that no value from a record can steer a file.
_OUTPUT_ROUTE = re.compile(
    r"(?:events|superseded)/day=[0-9]{4}-[0-9]{2}-[0-9]{2}|profiles|groups|rejects"
)


def check_route(route: str) -> str:
    """Returns `route` if it is one of the output folders; raises otherwise.

    Raises:
      ValueError: the route is not `events/day=YYYY-MM-DD`,
        `superseded/day=YYYY-MM-DD`, `profiles`, `groups` or `rejects`: a bug,
        which must fail the job rather than write anywhere else.
    """
    if type(route) is not str or not _OUTPUT_ROUTE.fullmatch(route):
        raise ValueError(f"{str(route)[:80]!r} is not an output folder of this tool (a bug)")
    return route


_PART_FILE = re.compile(
    rf"(?:{_OUTPUT_ROUTE.pattern})/part-[0-9]{{5}}-of-[0-9]{{5}}\.ndjson(?:\.gz)?"
)


def is_part_file(path: str) -> bool:
    """Whether a path relative to the output root names a data file of the layout."""
    return _PART_FILE.fullmatch(path) is not None


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
    # An exact-size copy: orjson's result keeps a 4+ KiB allocation, and
    # rejects are held until they are written.
    return bytes(memoryview(orjson.dumps(record)))


def line_example(path: str, offset: int, raw: bytes) -> dict[str, object]:
    """A short, JSON-safe glimpse of an input line for the run report.

    The report shows rejects this way, and accepted lines that gave a key twice.
    """
    example: dict[str, object] = {"source": path, "offset": offset}
    try:
        example["line"] = raw.decode("utf-8")[:EXAMPLE_CHARS]
    except UnicodeDecodeError:
        example["line_base64"] = base64.b64encode(raw[: EXAMPLE_CHARS * 3 // 4]).decode("ascii")
    return example


def position_example(path: str, offset: int, raw: bytes) -> dict[str, object]:
    """Where an input line is, without what it holds (--redact-examples)."""
    return {"source": path, "offset": offset}


# (rank, offset, example): ordered by upload position, so the first few are stable.
Example = tuple[int, int, dict[str, object]]


class _Columns:
    """Records of one route being gathered from a batch, column by column."""

    __slots__ = ("offsets", "keys", "lines")

    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.keys: list[bytes] = []
        self.lines: list[bytes] = []

    def batch(self, rank: int) -> RecordBatch:
        return rank, self.offsets, b"".join(self.keys), self.lines


class SortedBatch(NamedTuple):
    """One batch of input lines, classified. Empty categories are None."""

    events: dict[str, RecordBatch]  # events route -> its records
    profiles: RecordBatch | None
    groups: RecordBatch | None
    rejects: RecordBatch | None
    tallies: Counter[str]
    event_names: Counter[str]  # accepted events per name
    examples: dict[str, list[Example]]  # reason -> the batch's first few rejects
    duplicate_key_examples: list[Example]  # the batch's first few accepted lines that gave a key twice
    schema: list[Partial]  # the types of the accepted records (transforms/schema.py)


def sort_batch(
    rank: int,
    path: str,
    offsets: list[int],
    lines: list[bytes],
    config: RuleConfig,
    privacy: "PrivacyConfig | None" = None,
    count_types: bool = False,
) -> SortedBatch:
    """Classifies every line of a batch and sorts the results by route.

    Every line is counted exactly once: as blank, or in exactly one of the
    events, profiles, groups and rejects. Each output batch keeps the input's
    order (ascending offsets). Accepted lines that gave a key twice are
    counted under "normalised_duplicate_keys" (events, superseded or not,
    and updates alike), and the first few are kept as examples. With
    `privacy`, accepted records are dropped and hashed as it says
    (privacy.Scrubber), and examples may show positions only. With
    `count_types`, the types of the accepted records, as written, are counted
    for the schema report (empty otherwise).
    """
    events: dict[str, _Columns] = {}
    profiles, groups, rejects = _Columns(), _Columns(), _Columns()
    tallies: Counter[str] = Counter()
    # Chosen once per batch: a run without privacy classifies as it always did.
    classify_line = classify if privacy is None else privacy.classifier(config, tallies)
    example_of = position_example if privacy is not None and privacy.redact_examples else line_example
    normalised = Counter[int]()
    names: Counter[str] = Counter()
    examples: dict[str, list[Example]] = {}
    repeated_keys: list[Example] = []
    types = TypeTally() if count_types else None
    for offset, raw in zip(offsets, lines):
        fate = classify_line(raw, config)
        kind = fate.kind
        if kind == Kind.EVENT:
            columns = events.get(fate.day)
            if columns is None:
                columns = events[fate.day] = _Columns()
            columns.offsets.append(offset)
            columns.keys.append(fate.key)
            columns.lines.append(fate.line)
            names[fate.name] += 1
            if types is not None:
                values = fate.values  # read back from the line when a classifier gave none
                types.add_event(fate.name, values if values is not None else written_values(fate.line, None), offset)
        elif kind == Kind.REJECT:
            reason = fate.reason.value  # type: ignore[union-attr]
            rejects.offsets.append(offset)
            rejects.lines.append(reject_line(reason, fate.detail, path, offset, raw))
            tallies[REJECTED_PREFIX + reason] += 1
            shown = examples.setdefault(reason, [])
            if len(shown) < EXAMPLES_PER_REASON:
                shown.append((rank, offset, example_of(path, offset, raw)))
        elif kind == Kind.PROFILE or kind == Kind.GROUP:
            columns, prefix = (
                (profiles, PROFILE_OPERATION_PREFIX)
                if kind == Kind.PROFILE
                else (groups, GROUP_OPERATION_PREFIX)
            )
            columns.offsets.append(offset)
            columns.keys.append(fate.key)
            columns.lines.append(fate.line)
            tallies[prefix + fate.name] += 1
            if types is not None:
                section = SCHEMA_PROFILES if kind == Kind.PROFILE else SCHEMA_GROUPS
                types.add_update(section, fate.name, written_values(fate.line, fate.values, fate.name), offset)
        else:
            tallies[BLANK_LINES] += 1
        flags = fate.normalised  # 0 for blanks and rejects
        if flags:
            normalised[flags] += 1
            if flags & DUPLICATE_KEYS and len(repeated_keys) < DUPLICATE_KEY_EXAMPLES:
                repeated_keys.append((rank, offset, example_of(path, offset, raw)))
        # Frees the parsed record now: the next line's parse then reuses its
        # memory, still in the CPU's cache (measured: 10 % of the classifier).
        fate = None  # type: ignore[assignment]
    tallies[LINES] += len(lines)
    tallies[EVENTS_ACCEPTED] += sum(len(c.lines) for c in events.values())
    tallies[PROFILES] += len(profiles.lines)
    tallies[GROUPS] += len(groups.lines)
    tallies[REJECTED] += len(rejects.lines)
    for flags, count in normalised.items():
        for flag, name in _NORMALISED_FLAGS:
            if flags & flag:
                tallies[name] += count
    return SortedBatch(
        {EVENTS_PREFIX + day: c.batch(rank) for day, c in events.items()},
        profiles.batch(rank) if profiles.lines else None,
        groups.batch(rank) if groups.lines else None,
        rejects.batch(rank) if rejects.lines else None,
        tallies,
        names,
        examples,
        repeated_keys,
        types.partials(rank, path) if types is not None else [],
    )


def batch_bytes(batch: RecordBatch) -> int:
    """Uncompressed size of a batch's lines as written (one newline each)."""
    lines = batch[3]
    return sum(map(len, lines)) + len(lines)


def shard_count(route_bytes: int, target_bytes: int) -> int:
    """How many shards a route of `route_bytes` is spread over."""
    return max(1, math.ceil(route_bytes / target_bytes))


def shards_of(batch: RecordBatch, shards: int) -> list[int]:
    """The shard of each record of a batch.

    Keys are digests, so their first 8 bytes (big-endian, the same on every
    machine) are already a stable hash; key-less records (rejects) are
    placed by (rank, offset).
    """
    rank, offsets, keys, lines = batch
    if keys:
        halves = struct.unpack(f">{2 * len(lines)}Q", keys)
        return [h % shards for h in halves[::2]]
    return [(rank * 1_000_003 + offset) % shards for offset in offsets]


def split_batch(batch: RecordBatch, shards: int) -> dict[int, RecordBatch]:
    """Splits a batch by shards_of(), each part keeping the batch's order."""
    if shards == 1:
        return {0: batch}
    rank, offsets, keys, lines = batch
    parts: dict[int, _Columns] = {}
    for i, shard in enumerate(shards_of(batch, shards)):
        columns = parts.get(shard)
        if columns is None:
            columns = parts[shard] = _Columns()
        columns.offsets.append(offsets[i])
        if keys:
            columns.keys.append(keys[i * KEY_BYTES : (i + 1) * KEY_BYTES])
        columns.lines.append(lines[i])
    return {shard: columns.batch(rank) for shard, columns in parts.items()}


# What crosses a shuffle: (rank, keys, frame), the frame one zstd frame of the
# record count, the offsets and the lines. Offsets go in the frame rather than as
# a list: Beam's coder encodes a list of ints one int at a time, on every pass
# (worker out, runner in, runner out, worker in, size estimates), and the
# in-process runner holds each shuffled int as a Python object (36 bytes) while
# it groups; in the frame they cost a few bytes each and one copy.
PackedBatch = tuple[int, bytes, bytes]
_COUNT = struct.Struct("<q")
_BIG_ENDIAN = sys.byteorder == "big"
# Fast: the point is fewer bytes held and shuffled, not the smallest. zstd level 1
# packs event lines to 0.23x at 43 % of zlib level 1's instructions (which gave
# 0.28x); see docs/performance-profile.md. Blobs live only within one job and
# only unpack reads them, so the codec can change freely: the output never sees it.
_PACK_LEVEL = 1
# zstandard's (de)compressor objects must not be shared by threads at once, and
# a Beam worker runs bundles on several: one of each per thread.
_codecs = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    try:
        return _codecs.compressor
    except AttributeError:
        _codecs.compressor = zstandard.ZstdCompressor(level=_PACK_LEVEL)
        return _codecs.compressor


def _decompressor() -> zstandard.ZstdDecompressor:
    try:
        return _codecs.decompressor
    except AttributeError:
        _codecs.decompressor = zstandard.ZstdDecompressor()
        return _codecs.decompressor


def pack(batch: RecordBatch) -> PackedBatch:
    """Packs a batch's offsets and lines into one compressed frame for the shuffle.

    The in-process runner holds every shuffled byte in memory (more than
    once while it groups), and Dataflow bills shuffled bytes: NDJSON packs
    several times smaller. Lines are compact JSON, so they hold no raw
    newline and can be joined by one. Keys are digests, which do not
    compress: they stay beside the frame.
    """
    rank, offsets, keys, lines = batch
    joined = b"\n".join(lines)
    if joined.count(b"\n") != len(lines) - 1:
        raise ValueError("a line to pack holds a raw newline")  # a bug: lines are compact JSON
    positions = array("q", offsets)
    if _BIG_ENDIAN:  # little-endian in the frame, whichever machine reads it
        positions.byteswap()
    head = _COUNT.pack(len(offsets)) + positions.tobytes()
    # Given the size, the frame records it, which lets unpack allocate once.
    packer = _compressor().compressobj(size=len(head) + len(joined))
    return rank, keys, packer.compress(head) + packer.compress(joined) + packer.flush()


def unpack(packed: PackedBatch) -> RecordBatch:
    """The batch that pack() packed."""
    rank, keys, frame = packed
    data = _decompressor().decompress(frame)
    (count,) = _COUNT.unpack_from(data)
    end = _COUNT.size + 8 * count
    positions = array("q")
    positions.frombytes(memoryview(data)[_COUNT.size : end])
    if _BIG_ENDIAN:
        positions.byteswap()
    return rank, positions.tolist(), keys, data[end:].split(b"\n")


def in_upload_order(batches: Iterable[RecordBatch]) -> list[RecordBatch]:
    """Orders the batches of a shard so that their records are in upload order.

    Within a batch, records are in offset order; batches of one file cover
    disjoint offset ranges, so ordering whole batches by (rank, first offset)
    orders every record without sorting records.
    """
    return sorted(batches, key=lambda b: (b[0], b[1][0]))


def _keys(batch: RecordBatch) -> list[bytes]:
    keys = batch[2]
    return [keys[i : i + KEY_BYTES] for i in range(0, len(keys), KEY_BYTES)]


def pick_latest(batches: Iterable[RecordBatch]) -> tuple[list[bytes], list[bytes]]:
    """Keeps, per key, the record latest in upload order.

    Returns:
      (survivors, superseded): the lines of each, in upload order.
    """
    ordered = in_upload_order(batches)
    keys = [key for b in ordered for key in _keys(b)]
    lines = [line for b in ordered for line in b[3]]
    # dict() keeps the last position given for a key: the latest upload.
    latest = dict(zip(keys, range(len(keys))))
    if len(latest) == len(keys):
        return lines, []
    survivors = bytearray(len(keys))
    for position in latest.values():
        survivors[position] = 1
    superseded = bytes(survivors).translate(_FLIP)
    return list(compress(lines, survivors)), list(compress(lines, superseded))


_FLIP = bytes([1, 0]) + bytes(254)


def order_for_writing(route: str, batches: Iterable[RecordBatch]) -> ShardLines:
    """The lines of a shard in written order, with the keys files are cut by.

    Profile and group updates are ordered by identity, then upload order, so
    that one identity's updates stay together and in order; their keys come
    along so that a file is only ever cut between identities. Everything else
    is in upload order and may be cut anywhere (keys None).
    """
    ordered = in_upload_order(batches)
    lines = [line for b in ordered for line in b[3]]
    if route not in (PROFILES_ROUTE, GROUPS_ROUTE):
        return lines, None
    keys = [key for b in ordered for key in _keys(b)]
    order = sorted(range(len(keys)), key=keys.__getitem__)  # stable: keeps upload order
    return [lines[i] for i in order], [keys[i] for i in order]


def split_into_files(lines: list[bytes], keys: list[bytes] | None, max_bytes: int) -> list[list[bytes]]:
    """Cuts ordered lines into files of at most `max_bytes` uncompressed.

    With `keys`, a file is cut only where the key changes, so an identity's
    updates share one file (a single identity larger than `max_bytes` gets a
    file of its own, over the limit).
    """
    if sum(map(len, lines)) + len(lines) <= max_bytes:
        return [lines] if lines else []
    files: list[list[bytes]] = []
    start = 0  # first line of the file being filled
    size = 0  # bytes of lines[start:i]
    boundary = 0  # the latest place after `start` where the file may end
    size_to_boundary = 0  # bytes of lines[start:boundary]
    for i, line in enumerate(lines):
        length = len(line) + 1
        if i > start and (keys is None or keys[i] != keys[i - 1]):
            boundary, size_to_boundary = i, size
        if size + length > max_bytes and boundary > start:
            files.append(lines[start:boundary])
            size -= size_to_boundary
            start, size_to_boundary = boundary, 0
        size += length
    if start < len(lines):
        files.append(lines[start:])
    return files


def part_name(index: int, total: int, compressed: bool) -> str:
    """The file name of part `index` of `total` in one output folder."""
    suffix = ".ndjson.gz" if compressed else ".ndjson"
    return f"part-{index:05d}-of-{total:05d}{suffix}"
