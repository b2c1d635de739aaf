"""The ReadRawLines stage: input patterns to batches of raw lines with provenance."""


import logging
import os
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from transforms import METRICS_NAMESPACE
from transforms.ranges import FileRange, iter_line_batches, plan_ranges
from transforms.stores import StoredObject, StoreError, is_object_store, match_objects

_LOG = logging.getLogger(__name__)

# A batch of lines from one range: (rank, path, offsets, lines).
Batch = tuple[int, str, list[int], list[bytes]]

UPLOAD_ORDERS = ("mtime", "name")


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
        raise InputError(f"cannot list input {pattern!r}: {_cause(err)}") from err
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


def _cause(err: Exception) -> str:
    details = getattr(err, "exception_details", None)
    if isinstance(details, dict) and details:
        return "; ".join(str(e) for e in details.values())
    return str(err)


class _ReadRange(beam.DoFn):
    """Reads the lines a FileRange owns, one batch per chunk."""

    def __init__(self) -> None:
        super().__init__()
        self._bytes = Metrics.counter(METRICS_NAMESPACE, "bytes_read")
        self._ranges = Metrics.counter(METRICS_NAMESPACE, "ranges_read")

    def process(self, file_range: FileRange) -> Iterator[Batch]:
        compression = CompressionTypes.AUTO if file_range.compressed else CompressionTypes.UNCOMPRESSED
        with FileSystems.open(file_range.path, compression_type=compression) as handle:
            for offsets, lines in iter_line_batches(handle, file_range.start, file_range.end):
                self._bytes.inc(sum(len(line) for line in lines) + len(lines))
                yield file_range.rank, file_range.path, offsets, lines
        self._ranges.inc()


class ReadRawLines(beam.PTransform):
    """Reads matched input files as batches of raw lines.

    Input: a pipeline root (PBegin). Output: `Batch` tuples
    (rank, path, offsets, lines), lines without their endings.

    Guarantees: every line of every file is in exactly one batch, once.
    Uncompressed files are split into ranges of about `range_bytes`, spread
    over workers by a reshuffle; a compressed file is one range.
    """

    def __init__(self, files: Sequence[InputFile], range_bytes: int) -> None:
        super().__init__()
        if not files:
            raise ValueError("files must not be empty")
        if range_bytes <= 0:
            raise ValueError(f"range_bytes must be positive, got {range_bytes}")
        self._files = list(files)
        self._range_bytes = range_bytes

    def expand(self, pbegin):  # PBegin -> PCollection[Batch]
        ranges = [
            file_range
            for f in self._files
            for file_range in plan_ranges(f.rank, f.path, f.size, f.compressed, self._range_bytes)
        ]
        return (
            pbegin
            | "ListRanges" >> beam.Create(ranges)
            | "SpreadRanges" >> beam.Reshuffle()
            | "ReadRanges" >> beam.ParDo(_ReadRange())
        )
