"""The ReadRawLines stage: input patterns to batches of raw lines with provenance."""


import bz2
import gzip
import logging
import lzma
import os
import zlib
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO, NamedTuple

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.io.filesystem import BeamIOError, CompressedFile, CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from transforms import METRICS_NAMESPACE, FileAccessError, os_error_text, pause_point
from transforms.ranges import FileRange, iter_line_batches, plan_ranges
from transforms.stores import StoredObject, StoreError, is_object_store, match_objects

_LOG = logging.getLogger(__name__)

# A batch of lines from one range: (rank, path, offsets, lines).
Batch = tuple[int, str, list[int], list[bytes]]

UPLOAD_ORDERS = ("mtime", "name")

# Output tags of ReadRawLines with skip_unreadable, read by attribute.
BATCHES = "batches"
UNREADABLE = "unreadable"

# What reading a damaged or vanished file raises, and nothing else: any other
# exception is a bug and must fail the job as one.
READ_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError)
# Read errors that may pass: never skipped, they fail the bundle, which runners
# that retry (Dataflow) read again.
TRANSIENT_ERRORS = (ConnectionError, TimeoutError)


class InputFile(NamedTuple):
    """A matched input file. `rank` is its position in upload order."""

    rank: int
    path: str
    size: int
    upload_time: float
    compressed: bool


class InputError(ValueError):
    """The input patterns cannot be read as asked (raised before any work)."""


def match_inputs(
    patterns: Sequence[str],
    upload_order: str = "mtime",
    options: PipelineOptions | None = None,
) -> list[InputFile]:
    """Expands input patterns and ranks the files in upload order.

    Upload order is (upload time, path), or the path alone with
    upload_order="name". The upload time is a local file's last-modified
    time, a GCS object's creation time, an S3 object's LastModified (see
    transforms/stores.py for why). A file matched by several patterns is read
    once.

    Args:
      patterns: glob patterns: local paths, gs:// or s3:// URLs.
      upload_order: "mtime" or "name".
      options: the pipeline's options, which configure the object-store
        clients as Beam's filesystems are (e.g. --s3_endpoint_url).

    Raises:
      InputError: a pattern matches nothing, or cannot be listed (missing
        bucket, missing or refused credentials, denied access).
    """
    if upload_order not in UPLOAD_ORDERS:
        raise InputError(f"upload_order must be one of {UPLOAD_ORDERS}, got {upload_order!r}")
    if not patterns:
        raise InputError("no --input pattern given")
    found: dict[str, tuple[int, float]] = {}
    for pattern in patterns:
        files = [f for f in _match(pattern, options) if not _is_folder_marker(f.path, f.size)]
        if not files:
            raise InputError(f"input pattern {pattern!r} matches no file")
        for f in files:
            found[f.path] = (f.size, f.upload_time)
    if upload_order == "name":
        ordered = sorted(found)
    else:
        ordered = sorted(found, key=lambda p: (found[p][1], p))
    return [
        InputFile(
            rank=rank,
            path=path,
            size=found[path][0],
            upload_time=found[path][1] if upload_order == "mtime" else 0.0,
            compressed=CompressionTypes.detect_compression_type(path)
            != CompressionTypes.UNCOMPRESSED,
        )
        for rank, path in enumerate(ordered)
    ]


def _match(pattern: str, options: PipelineOptions | None) -> list[StoredObject]:
    """Every file a pattern matches, with its size and upload time."""
    if is_object_store(pattern):
        try:
            return match_objects(pattern, options)
        except StoreError as err:
            raise InputError(f"cannot list input {pattern!r}: {err}") from err
    try:
        (result,) = FileSystems.match([pattern])
    except (BeamIOError, ValueError, OSError) as err:
        raise InputError(f"cannot list input {pattern!r}: {os_error_text(err)}") from err
    # Beam's local match returns a folder named without a wildcard as if it
    # were a file; reading it would fail mid-run.
    folders = [m.path for m in result.metadata_list if os.path.isdir(m.path)]
    if folders:
        raise InputError(
            f"input pattern {pattern!r} names a folder; to read every file below it use "
            f"{pattern.rstrip(os.sep) + os.sep + '**'!r}"
        )
    # Local mtimes come from os.stat: no time-zone conversion involved.
    return [
        StoredObject(m.path, m.size_in_bytes, m.last_updated_in_seconds)
        for m in result.metadata_list
    ]


def _is_folder_marker(path: str, size: int) -> bool:
    # Object stores list "folder/" placeholder objects some consoles create.
    return size == 0 and path.endswith("/")


class UnreadableFile(NamedTuple):
    """A range of an input file that could not be read to its end.

    `lines_read` lines of it were read before the error, and went on through
    the pipeline like any others.
    """

    path: str
    start: int
    error: str
    lines_read: int


def read_error_message(err: Exception) -> str:
    """What a reading error means, for people: no traceback, no file content."""
    if isinstance(err, EOFError):
        return "the compressed data ends early: the file is truncated"
    if isinstance(err, gzip.BadGzipFile):
        return f"the file is not valid gzip data ({err})"
    if isinstance(err, (zlib.error, lzma.LZMAError)):
        return f"the compressed data is corrupt ({err})"
    return f"the file cannot be read ({os_error_text(err)})"


def _decompressed(raw: BinaryIO, compression: str) -> Any:
    # The standard library's readers check that a gzip, bzip2 or xz stream
    # ends where its format says (and gzip's CRC); Beam's reader takes a
    # truncated file for a shorter one, silently.
    if compression == CompressionTypes.GZIP:
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if compression == CompressionTypes.BZIP2:
        return bz2.BZ2File(raw)
    if compression == CompressionTypes.LZMA:
        return lzma.LZMAFile(raw)
    return CompressedFile(raw, compression)


def _read_batches(file_range: FileRange) -> Iterator[tuple[list[int], list[bytes]]]:
    with FileSystems.open(file_range.path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
        if not file_range.compressed:
            yield from iter_line_batches(raw, file_range.start, file_range.end)
            return
        compression = CompressionTypes.detect_compression_type(file_range.path)
        with _decompressed(raw, compression) as handle:
            yield from iter_line_batches(handle, file_range.start, file_range.end)


class _ReadRange(beam.DoFn):
    """Reads the lines a FileRange owns, one batch per chunk.

    A file that cannot be read to the end fails the job with a FileAccessError
    naming it; with `skip_unreadable`, it is reported on the UNREADABLE output
    instead, and the lines read before the error stay in the run.
    """

    def __init__(self, skip_unreadable: bool = False) -> None:
        super().__init__()
        self._skip_unreadable = skip_unreadable
        self._bytes = Metrics.counter(METRICS_NAMESPACE, "bytes_read")
        self._ranges = Metrics.counter(METRICS_NAMESPACE, "ranges_read")
        self._unreadable = Metrics.counter(METRICS_NAMESPACE, "ranges_unreadable")

    def process(self, file_range: FileRange) -> Iterator[Any]:
        pause_point("read")
        batches = _read_batches(file_range)
        lines_read = 0
        while True:
            # Only the reading is guarded: what downstream stages raise is theirs.
            try:
                batch = next(batches, None)
            except READ_ERRORS as err:
                problem = read_error_message(err)
                if not self._skip_unreadable or isinstance(err, TRANSIENT_ERRORS):
                    raise FileAccessError(f"{file_range.path}: {problem}") from err
                _LOG.warning(
                    "input file %s: %s; the rest of its range from byte %d is skipped",
                    file_range.path, problem, file_range.start,
                )
                self._unreadable.inc()
                yield pvalue.TaggedOutput(
                    UNREADABLE, UnreadableFile(file_range.path, file_range.start, problem, lines_read)
                )
                return
            if batch is None:
                break
            offsets, lines = batch
            lines_read += len(lines)
            self._bytes.inc(sum(len(line) for line in lines) + len(lines))
            yield file_range.rank, file_range.path, offsets, lines
        self._ranges.inc()


class ReadRawLines(beam.PTransform):
    """Reads matched input files as batches of raw lines.

    Input: a pipeline root (PBegin). Output: `Batch` tuples
    (rank, path, offsets, lines), lines without their endings.

    Guarantees: every line of every file is in exactly one batch, once.
    Uncompressed files are split into ranges of about `range_bytes`, spread
    over workers by a reshuffle; a compressed file is one range. A file that
    cannot be read to its end (vanished, unreadable, truncated or corrupt
    compressed data) fails the job with a FileAccessError naming it.

    With `skip_unreadable`, such a file does not fail the job: the output is
    then a DoOutputsTuple of `batches` (as above) and `unreadable`, one
    UnreadableFile per range that could not be read to its end; the lines
    read before the error are in `batches`.
    """

    def __init__(
        self, files: Sequence[InputFile], range_bytes: int, skip_unreadable: bool = False
    ) -> None:
        super().__init__()
        if not files:
            raise ValueError("files must not be empty")
        if range_bytes <= 0:
            raise ValueError(f"range_bytes must be positive, got {range_bytes}")
        self._files = list(files)
        self._range_bytes = range_bytes
        self._skip_unreadable = bool(skip_unreadable)

    def expand(self, pbegin):  # PBegin -> PCollection[Batch], or DoOutputsTuple
        ranges = [
            file_range
            for f in self._files
            for file_range in plan_ranges(f.rank, f.path, f.size, f.compressed, self._range_bytes)
        ]
        spread = pbegin | "ListRanges" >> beam.Create(ranges) | "SpreadRanges" >> beam.Reshuffle()
        if not self._skip_unreadable:
            return spread | "ReadRanges" >> beam.ParDo(_ReadRange())
        return spread | "ReadRanges" >> beam.ParDo(_ReadRange(skip_unreadable=True)).with_outputs(
            UNREADABLE, main=BATCHES
        )
