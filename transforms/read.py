"""The ReadRawLines stage: listed input files to batches of raw lines with provenance.

The files come listed (pipeline/inputs.py, at launch); this stage only reads
them, on the workers. Local files are opened here; gs:// and s3:// objects
through an opener that the caller injects (`open_objects`, a factory of
`Opener`s): reading one listed version of an object needs the store's own
client, which belongs to the launch side (pipeline/stores.py), and this
package imports no storage client. The factory is a picklable callable that
travels with the DoFn, as Beam's own IO connectors carry their client
settings, and each DoFn instance makes its opener, and so its clients, on
first use: a worker builds them once, not per range, and a local run none.
"""


import logging
import os
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, BinaryIO, NamedTuple, Protocol

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.typehints.decorators import no_annotations

from transforms import METRICS_NAMESPACE, FileAccessError, os_error_text, pause_point
from transforms.compression import (
    HEAD_BYTES,
    UNCOMPRESSED,
    CompressedDataError,
    DecompressedStream,
    content_kind,
)
from transforms.ranges import FileRange, Seekable, iter_line_batches, plan_ranges, range_reading

_LOG = logging.getLogger(__name__)

# A batch of lines from one range: (rank, path, offsets, lines).
Batch = tuple[int, str, list[int], list[bytes]]

# Output tags of ReadRawLines with skip_unreadable, read by attribute.
BATCHES = "batches"
UNREADABLE = "unreadable"

# What reading a damaged, vanished or changed file raises, and nothing else:
# any other exception is a bug and must fail the job as one. (EOFError: a
# truncated compressed stream.)
READ_ERRORS = (OSError, EOFError, CompressedDataError)
# Read errors that may pass: never skipped, they fail the bundle, which runners
# that retry (Dataflow) read again. An Opener turns the stores' transient
# failures (connections, time-outs, 5xx, 429) into these.
TRANSIENT_ERRORS = (ConnectionError, TimeoutError)


class InputFile(NamedTuple):
    """A matched input file. `rank` is its position in upload order.

    `compressed` is what its name says; `version` identifies the bytes listed
    (a GCS generation, an S3 ETag, a local file's modification time), which
    are the bytes read.
    """

    rank: int
    path: str
    size: int
    upload_time: float
    compressed: bool
    version: str = ""


class InputVanished(FileNotFoundError):
    """A listed input file or object no longer exists. The message says so in a sentence."""


class InputChanged(OSError):
    """A listed input file or object is no longer the version listed. The message says so."""


def is_object_store(url: str) -> bool:
    """Whether `url` is a gs:// or s3:// URL: an object read through an Opener."""
    return url.startswith(("gs://", "s3://"))


class ObjectHandle(Seekable, Protocol):
    """What an Opener opens: read(size) and seek(offset), closed by `with` (pipeline/stores.py's ObjectReader)."""

    def __enter__(self) -> "ObjectHandle": ...

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None, /
    ) -> None: ...


class Opener(Protocol):
    """Opens listed gs:// and s3:// objects at the version listed (pipeline/stores.py's ObjectOpener).

    `open(url, size, version)` returns a seekable binary handle of exactly
    the bytes listed. Its reads raise InputVanished or InputChanged when the
    object is gone or no longer that version, ConnectionError or TimeoutError
    when the store fails in a way that may pass, and another OSError when it
    refuses the request.
    """

    def open(self, url: str, size: int, version: str) -> ObjectHandle: ...


# Makes an Opener; called once per DoFn instance, on its first object. Must pickle.
OpenerFactory = Callable[[], Opener]


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
    if isinstance(err, (InputVanished, InputChanged)):
        return str(err)  # already a sentence: "the object changed since it was listed (…)"
    if isinstance(err, EOFError):
        return "the compressed data ends early: the file is truncated"
    if isinstance(err, CompressedDataError):
        return f"the compressed data is corrupt ({err})"
    return f"the file cannot be read ({os_error_text(err)})"


def _open_local(file_range: FileRange) -> BinaryIO:
    """Opens a local file, refusing one that is not what was listed."""
    try:
        handle = open(file_range.path, "rb")  # noqa: SIM115 (closed by the caller)
    except FileNotFoundError as err:
        raise InputVanished(f"the file vanished since it was listed ({err.strerror})") from err
    try:
        _check_local(handle, file_range)
    except InputChanged:
        handle.close()
        raise
    return handle


def _check_local(handle: BinaryIO, file_range: FileRange) -> None:
    # The listed size and modification time are the local file's version.
    if not file_range.version:
        return
    info = os.fstat(handle.fileno())
    if info.st_size != file_range.size or repr(info.st_mtime) != file_range.version:
        raise InputChanged(
            f"the file changed since it was listed (size {file_range.size}, modified at "
            f"{file_range.version}; now size {info.st_size}, modified at {info.st_mtime!r})"
        )


class _RangeReader:
    """Reads FileRanges: opens each file at the version listed, looks at its
    first bytes, and reads what the range owns (compression.content_kind,
    ranges.range_reading).

    Local files are checked against their listed size and modification time
    when opened and again when read; gs:// and s3:// objects are read at the
    listed generation or ETag by an Opener from `open_objects`; other Beam
    filesystems as Beam opens them, unchecked.
    """

    def __init__(self, open_objects: OpenerFactory | None = None) -> None:
        self._open_objects = open_objects
        self._opener: Opener | None = None  # made on first use: no client for local runs

    def _open_object(self, file_range: FileRange) -> ObjectHandle:
        if self._opener is None:
            if self._open_objects is None:
                raise ValueError(f"{file_range.path}: no opener of gs:// and s3:// objects given (open_objects)")
            self._opener = self._open_objects()
        return self._opener.open(file_range.path, file_range.size, file_range.version)

    def batches(self, file_range: FileRange) -> Iterator[tuple[list[int], list[bytes]]]:
        """(offsets, lines) batches of every line the range owns.

        Raises:
          READ_ERRORS: the file cannot be read to the range's end, is gone, or
            is not the version listed.
        """
        local: BinaryIO | None = None  # a local file, checked again once read
        raw: ObjectHandle
        if is_object_store(file_range.path):
            raw = self._open_object(file_range)
        elif FileSystems.get_scheme(file_range.path) is None:
            raw = local = _open_local(file_range)
        else:
            raw = FileSystems.open(file_range.path, compression_type=CompressionTypes.UNCOMPRESSED)
        with raw:
            head = raw.read(HEAD_BYTES)
            reading = range_reading(file_range, content_kind(head, file_range.path))
            if reading is None:
                return
            raw.seek(0)
            if reading.kind == UNCOMPRESSED:
                yield from iter_line_batches(raw, reading.start, reading.end)
            else:
                yield from iter_line_batches(DecompressedStream(raw, reading.kind), 0, reading.end)
            if local is not None:
                # Appended to or rewritten in place while being read?
                _check_local(local, file_range)


class _ReadRange(beam.DoFn):
    """Reads the lines a FileRange owns, one batch per chunk.

    A file that cannot be read to the end fails the job with a FileAccessError
    naming it; with `skip_unreadable`, it is reported on the UNREADABLE output
    instead, and the lines read before the error stay in the run. Errors that
    may pass (TRANSIENT_ERRORS) always fail the bundle, for the runner to retry.
    """

    def __init__(self, skip_unreadable: bool = False, open_objects: OpenerFactory | None = None) -> None:
        super().__init__()
        self._skip_unreadable = skip_unreadable
        # The factory travels with the DoFn, with whatever configures the
        # store clients: FnApiRunner's worker processes (multi_processing)
        # get no options from Beam.
        self._reader = _RangeReader(open_objects)
        self._bytes = Metrics.counter(METRICS_NAMESPACE, "bytes_read")
        self._ranges = Metrics.counter(METRICS_NAMESPACE, "ranges_read")
        self._unreadable = Metrics.counter(METRICS_NAMESPACE, "ranges_unreadable")

    def process(self, file_range: FileRange) -> Iterator[Any]:
        pause_point("read")
        batches = self._reader.batches(file_range)
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
    over workers by a reshuffle; a compressed file is one range. Compression
    is known by content as well as by name, and the content wins
    (compression.content_kind): ranges are planned by name, and a range
    corrects the plan when it sees the file's first bytes. Each file is read
    at the version listed. A file that cannot be read to its end (vanished or
    changed since it was listed, unreadable, truncated or corrupt compressed
    data) fails the job with a FileAccessError naming it.

    With `skip_unreadable`, such a file does not fail the job: the output is
    then a DoOutputsTuple of `batches` (as above) and `unreadable`, one
    UnreadableFile per range that could not be read to its end; the lines
    read before the error are in `batches`.

    Args:
      files: the files to read, as listed at launch (pipeline/inputs.py).
      range_bytes: the size of the ranges uncompressed files are cut into.
      skip_unreadable: report files that cannot be read to their end instead
        of failing the job.
      open_objects: makes the Opener of gs:// and s3:// objects (see the
        module docstring); needed when any file is on gs:// or s3://.
    """

    def __init__(
        self,
        files: Sequence[InputFile],
        range_bytes: int,
        skip_unreadable: bool = False,
        open_objects: OpenerFactory | None = None,
    ) -> None:
        super().__init__()
        if not files:
            raise ValueError("files must not be empty")
        if range_bytes <= 0:
            raise ValueError(f"range_bytes must be positive, got {range_bytes}")
        if open_objects is None and any(is_object_store(f.path) for f in files):
            raise ValueError("open_objects must be given to read gs:// or s3:// files")
        self._files = list(files)
        self._range_bytes = range_bytes
        self._skip_unreadable = bool(skip_unreadable)
        self._open_objects = open_objects

    @no_annotations  # Beam takes no union as a stage's output hint (it logs a warning)
    def expand(self, pbegin: pvalue.PBegin) -> beam.PCollection[Batch] | pvalue.DoOutputsTuple:
        ranges = [
            file_range
            for f in self._files
            for file_range in plan_ranges(
                f.rank, f.path, f.size, f.compressed, self._range_bytes, f.version
            )
        ]
        spread = pbegin | "ListRanges" >> beam.Create(ranges) | "SpreadRanges" >> beam.Reshuffle()
        read = _ReadRange(self._skip_unreadable, self._open_objects)
        if not self._skip_unreadable:
            return spread | "ReadRanges" >> beam.ParDo(read)
        return spread | "ReadRanges" >> beam.ParDo(read).with_outputs(UNREADABLE, main=BATCHES)
