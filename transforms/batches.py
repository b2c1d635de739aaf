"""Batches of records, column by column: selecting, sharding, packing for the shuffle, winners (pure; no Beam).

Records travel between stages in batches, which keeps Beam's per-element and
encoding costs per batch rather than per record. A RecordBatch is a plain
tuple ``(rank, offsets, keys, lines)``: `rank` is the position of the records'
file in upload order and `offsets` the byte offsets of their lines, so
``(rank, offset)`` is a record's upload order; `keys` holds the 16-byte
digests the rules computed, back to back (the overwrite key of an event, the
identity of a profile or group update; empty for rejects); `lines` are the
output lines without their newlines. Records in a batch are in offset order.
"""

import math
import struct
import sys
import threading
from array import array
from collections.abc import Iterable, Sequence
from itertools import compress

import zstandard

RecordBatch = tuple[int, list[int], bytes, list[bytes]]
KEY_BYTES = 16


def select(batch: RecordBatch, indices: Sequence[int]) -> RecordBatch:
    """The records of `batch` at `indices` (ascending, so the order is kept), as a batch of its rank."""
    rank, offsets, keys, lines = batch
    return (
        rank,
        [offsets[i] for i in indices],
        b"".join([keys[i * KEY_BYTES : (i + 1) * KEY_BYTES] for i in indices]) if keys else b"",
        [lines[i] for i in indices],
    )


def keys_of(batch: RecordBatch) -> list[bytes]:
    """A batch's keys, one by one (none for a key-less batch of rejects)."""
    keys = batch[2]
    return [keys[i : i + KEY_BYTES] for i in range(0, len(keys), KEY_BYTES)]


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
    parts: dict[int, list[int]] = {}
    for i, shard in enumerate(shards_of(batch, shards)):
        indices = parts.get(shard)
        if indices is None:
            indices = parts[shard] = []
        indices.append(i)
    return {shard: select(batch, indices) for shard, indices in parts.items()}


def in_upload_order(batches: Iterable[RecordBatch]) -> list[RecordBatch]:
    """Orders the batches of a shard so that their records are in upload order.

    Within a batch, records are in offset order; batches of one file cover
    disjoint offset ranges, so ordering whole batches by (rank, first offset)
    orders every record without sorting records.
    """
    return sorted(batches, key=lambda b: (b[0], b[1][0]))


def pick_latest(batches: Iterable[RecordBatch]) -> tuple[list[RecordBatch], list[RecordBatch]]:
    """Keeps, per key, the record latest in upload order.

    Returns:
      (survivors, superseded): each a list of the given batches, less the
      records of the other list, in upload order; a batch left with no
      record is left out.
    """
    ordered = in_upload_order(batches)
    keys = [key for b in ordered for key in keys_of(b)]
    # dict() keeps the last position given for a key: the latest upload.
    latest = dict(zip(keys, range(len(keys)), strict=True))
    if len(latest) == len(keys):
        return ordered, []
    survives = bytearray(len(keys))
    for position in latest.values():
        survives[position] = 1
    survivors: list[RecordBatch] = []
    superseded: list[RecordBatch] = []
    start = 0
    for batch in ordered:
        rank, offsets, _, lines = batch
        end = start + len(lines)
        flags = survives[start:end]
        kept = flags.count(1)
        if kept == len(lines):
            survivors.append(batch)
        elif kept == 0:
            superseded.append(batch)
        else:
            # By mask rather than select(): the keys are split already, and
            # compress() keeps every column at C speed.
            batch_keys = keys[start:end]
            for into, mask in ((survivors, flags), (superseded, flags.translate(_FLIP))):
                offsets_kept = list(compress(offsets, mask))
                into.append((rank, offsets_kept, b"".join(compress(batch_keys, mask)), list(compress(lines, mask))))
        start = end
    return survivors, superseded


_FLIP = bytes([1, 0]) + bytes(254)


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
class _Codecs(threading.local):
    # Set on a thread's first use (until then, reading one raises AttributeError).
    compressor: zstandard.ZstdCompressor
    decompressor: zstandard.ZstdDecompressor


_codecs = _Codecs()


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
