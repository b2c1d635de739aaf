"""Byte ranges of input files, what each range reads, and the lines it owns (pure; no Beam)."""


from collections.abc import Iterator
from typing import NamedTuple, Protocol, cast

from transforms import Readable
from transforms.compression import UNCOMPRESSED

BOM = b"\xef\xbb\xbf"
CHUNK_BYTES = 8 << 20  # chunked reads: remote handles have no fast readline
UNBOUNDED = -1  # end of a range that runs to the end of the stream
UNKNOWN_SIZE = -1


class Seekable(Readable, Protocol):
    """A Readable that can also be positioned: a file or a store's reader, not a decompressed stream."""

    def seek(self, offset: int, /) -> int: ...


class FileRange(NamedTuple):
    """One unit of reading work: the lines of `path` that start in [start, end).

    `rank` is the file's position in upload order, so that records can be
    compared by (rank, offset) without carrying paths or timestamps around.
    `size` and `version` are what the listing saw (a GCS generation, an S3
    ETag, a local file's modification time): the reader reads that version
    or fails. A range made without a listing (size UNKNOWN_SIZE, version "")
    is read as found.
    """

    rank: int
    path: str
    start: int
    end: int  # UNBOUNDED for compressed files: read to the end
    compressed: bool  # by the file's name; the reader checks the content
    size: int = UNKNOWN_SIZE
    version: str = ""


def plan_ranges(
    rank: int, path: str, size: int, compressed: bool, range_bytes: int, version: str = ""
) -> list[FileRange]:
    """Splits one file into ranges of about `range_bytes`.

    Compressed files cannot be entered mid-stream, so they are one range.
    Planning goes by the file's name (no request per file at launch);
    `range_reading` corrects it by the file's content when it is read.

    Args:
      rank: the file's position in upload order.
      path: the file's path or URL.
      size: the file's size in bytes as stored.
      compressed: whether the file's name says it is compressed.
      range_bytes: the target size of one range; must be positive.
      version: the version of the file that was listed.

    Returns:
      Ranges that together cover [0, size) exactly once.
    """
    if range_bytes <= 0:
        raise ValueError(f"range_bytes must be positive, got {range_bytes}")
    if compressed:
        return [FileRange(rank, path, 0, UNBOUNDED, True, size, version)]
    if size == 0:
        return [FileRange(rank, path, 0, 0, False, size, version)]
    return [
        FileRange(rank, path, start, min(start + range_bytes, size), False, size, version)
        for start in range(0, size, range_bytes)
    ]


class Reading(NamedTuple):
    """What one range reads: the lines starting in [start, end) of the file's
    stream, decompressed first unless `kind` is UNCOMPRESSED."""

    kind: str
    start: int
    end: int


def range_reading(file_range: FileRange, kind: str) -> Reading | None:
    """What a range reads once its file's content kind is known; None for nothing.

    A compressed stream cannot be entered mid-way: the range starting at 0
    reads all of it, the file's other ranges (planned when its name said it
    was plain) read nothing. A plain file read as one range because its name
    said it was compressed is read whole, as plain.

    Args:
      file_range: the range as planned from the file's name.
      kind: the file's kind by content (compression.content_kind).
    """
    if kind != UNCOMPRESSED:
        return Reading(kind, 0, UNBOUNDED) if file_range.start == 0 else None
    return Reading(UNCOMPRESSED, file_range.start, file_range.end)


def _chunks(handle: Readable, chunk_bytes: int) -> Iterator[bytes]:
    # Loop until b"": a single read() of a compressed Beam handle stops at 16 MiB.
    while True:
        chunk = handle.read(chunk_bytes)
        if not chunk:
            return
        yield chunk


def _cut(
    data: bytes, base: int, end: int
) -> tuple[list[int], list[bytes], bytes, int, bool]:
    """Splits `data` (starting at stream offset `base`) into complete lines.

    Returns offsets, lines (endings removed), the unfinished tail, the
    tail's offset, and whether a line starting at or after `end` was reached.
    """
    parts = data.split(b"\n")
    tail = parts.pop()
    offsets = []
    offset = base
    for part in parts:
        offsets.append(offset)
        offset += len(part) + 1
    done = False
    if end != UNBOUNDED and offset >= end:
        # Keep the lines that start before `end`; `offset` is where the tail starts.
        keep = len(offsets)
        while keep and offsets[keep - 1] >= end:
            keep -= 1
        del offsets[keep:], parts[keep:]
        done = True
    if b"\r" in data:
        parts = [p[:-1] if p.endswith(b"\r") else p for p in parts]
    return offsets, parts, tail, offset, done


def iter_line_batches(
    handle: Readable,
    start: int,
    end: int,
    chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[tuple[list[int], list[bytes]]]:
    """Yields (offsets, lines) batches for every line that starts in [start, end).

    A line belongs to the range holding its first byte, so adjacent ranges
    neither lose nor repeat a line. The line ending (`\\n`, plus one `\\r`
    before it) is not part of the line; a last line without `\\n` is kept.
    A UTF-8 BOM at offset 0 is skipped and counted in offsets. One batch per
    chunk read keeps per-element costs low downstream.

    Args:
      handle: a readable stream positioned at offset 0; it must support
        seek() when start > 0.
      start: first byte of the range.
      end: end of the range (exclusive), or UNBOUNDED.
      chunk_bytes: how much to read at a time.
    """
    if end != UNBOUNDED and end <= start:
        return
    chunks = _chunks(handle, chunk_bytes)
    if start > 0:
        # The line straddling `start` belongs to the previous range: skip to
        # the first newline at or after the byte before `start`. Only such a
        # range seeks: a decompressed stream (no seek()) is read from its start.
        cast(Seekable, handle).seek(start - 1)
        pos = start - 1
        for chunk in chunks:
            newline = chunk.find(b"\n")
            if newline >= 0:
                pos += newline + 1
                tail = chunk[newline + 1 :]
                break
            pos += len(chunk)
        else:
            return
        if pos >= end:
            return
    else:
        pos = 0
        tail = b""
        head = b""
        for chunk in chunks:  # gather three bytes to recognise a BOM
            head += chunk
            if len(head) >= 3:
                break
        if head.startswith(BOM):
            head = head[3:]
            pos = 3
            if end != UNBOUNDED:
                # The BOM belongs to the first line, which this range owns
                # even when the range ends inside the BOM.
                end = max(end, 4)
        tail = head
    for chunk in chunks:
        data = tail + chunk if tail else chunk
        offsets, lines, tail, pos, done = _cut(data, pos, end)
        if lines:
            yield offsets, lines
        if done:
            return
    # What is left before EOF: complete lines in `tail`, then a last line
    # without its newline.
    offsets, lines, tail, pos, done = _cut(tail, pos, end)
    if tail and not done and (end == UNBOUNDED or pos < end):
        offsets.append(pos)
        lines.append(tail[:-1] if tail.endswith(b"\r") else tail)
    if lines:
        yield offsets, lines
