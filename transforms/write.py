"""The WritePartitions stage: shards of records to named, size-bounded output files."""


import gzip
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.typehints.decorators import no_annotations

from transforms import METRICS_NAMESPACE, FileAccessError, os_error_text, pause_point
from transforms.batches import RecordBatch
from transforms.layout import check_route, order_for_writing, part_name, split_into_files
from transforms.shard import Shard, ShardKey
from transforms.threads import OnThreads

_LOG = logging.getLogger(__name__)
COMPRESSIONS = ("gzip", "none")
TEMP_FOLDER = "_temporary"
_WRITE_SLICE = 4 << 20  # join and write about this many bytes at a time
GZIP_LEVEL = 6  # zlib's default: most of level 9's size at a third of its CPU
# Files are compressed and written by threads while the stage goes on with the next shard
# (zlib, crc32 and file writes release the GIL): no more than this many bytes (uncompressed) wait.
PENDING_BYTES = 64 << 20


class WrittenFile(NamedTuple):
    """A file in its final place. `path` is relative to the output root."""

    route: str
    path: str
    lines: int
    bytes: int  # uncompressed


class _TempFile(NamedTuple):
    shard: int
    number: int  # of the file in its shard (a field named index would hide tuple.index)
    temp_path: str
    lines: int
    bytes: int


def temp_root(output: str, run_id: str) -> str:
    """The folder a run writes its unfinished files into."""
    return FileSystems.join(output, TEMP_FOLDER, run_id)


def write_lines(path: str, lines: list[bytes], compressed: bool) -> int:
    """Writes one record per line to `path`; returns the uncompressed size.

    Gzip output uses mtime=0 and no file name so that the same lines give the
    same bytes on every run.
    """
    size = 0
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
        sink = (
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL, mtime=0, filename="")
            if compressed
            else raw
        )
        # Lines per write, from the first lines' average length.
        sample = lines[:100]
        average = max(1, sum(map(len, sample)) // max(1, len(sample)))
        step = max(1, _WRITE_SLICE // average)
        for start in range(0, len(lines), step):
            piece = lines[start : start + step]
            data = b"\n".join(piece) + b"\n"
            sink.write(data)
            size += len(data)
        if compressed:
            sink.close()  # writes the gzip trailer; `raw` is closed by the with
    return size


def _ensure_folder(path: str) -> None:
    # Local renames need the target folder; object stores have no folders.
    if FileSystems.exists(path):
        return
    try:
        FileSystems.mkdirs(path)
    except (BeamIOError, OSError):
        if not FileSystems.exists(path):
            raise


def move_files(sources: list[str], destinations: list[str]) -> None:
    """Renames files, one at a time; a retried call that finds a move already done accepts it."""
    for folder in sorted({FileSystems.split(d)[0] for d in destinations}):
        _ensure_folder(folder)
    for source, destination in zip(sources, destinations, strict=True):
        try:
            FileSystems.rename([source], [destination])
        except BeamIOError as err:
            if FileSystems.exists(source) or not FileSystems.exists(destination):
                causes = "; ".join(str(c) for c in err.exception_details.values())
                raise FileAccessError(f"{destination}: cannot move {source} there: {causes}") from err
        pause_point("move")


def _write_file(route: str, temp: _TempFile, lines: list[bytes], compressed: bool) -> tuple[str, _TempFile]:
    try:
        write_lines(temp.temp_path, lines, compressed)
    except OSError as err:  # a full disk, a lost permission: the user's to fix
        raise FileAccessError(f"{temp.temp_path}: cannot be written ({os_error_text(err)})") from err
    return route, temp


class _WriteShard(OnThreads):
    """Orders each shard and cuts it into files, which threads compress and write (threads.OnThreads).

    A file is output once it is complete, at most PENDING_BYTES (uncompressed) wait.
    """

    def __init__(self, temp_dir: str, compressed: bool, max_file_bytes: int) -> None:
        super().__init__(waiting=PENDING_BYTES)
        self._temp_dir = temp_dir
        self._compressed = compressed
        self._max_file_bytes = max_file_bytes
        self._files = Metrics.counter(METRICS_NAMESPACE, "files_written")

    def process(self, element: tuple[ShardKey, Iterable[RecordBatch]]) -> Iterator[tuple[str, _TempFile]]:
        (route, shard), batches = element
        check_route(route)
        lines, keys = order_for_writing(route, batches)
        for index, part in enumerate(split_into_files(lines, keys, self._max_file_bytes)):
            # Deterministic names: a retried bundle overwrites its own files.
            temp_path = FileSystems.join(self._temp_dir, route, f"shard-{shard:05d}-{index:05d}")
            size = sum(map(len, part)) + len(part)  # as write_lines counts it
            temp = _TempFile(shard, index, temp_path, len(part), size)
            yield from self.submit(size, _write_file, route, temp, part, self._compressed)

    def outputs(self, result: tuple[str, _TempFile]) -> Iterator[tuple[str, _TempFile]]:
        self._files.inc()
        pause_point("write")
        yield result


class _NameFiles(beam.DoFn):
    def __init__(self, output: str, compressed: bool) -> None:
        super().__init__()
        self._output = output
        self._compressed = compressed

    def process(self, element: tuple[str, Iterable[_TempFile]]) -> Iterator[WrittenFile]:
        route, temps = element
        check_route(route)
        ordered = sorted(temps)
        names = [
            f"{route}/{part_name(i, len(ordered), self._compressed)}" for i in range(len(ordered))
        ]
        move_files([t.temp_path for t in ordered], [FileSystems.join(self._output, n) for n in names])
        for name, temp in zip(names, ordered, strict=True):
            yield WrittenFile(route, name, temp.lines, temp.bytes)


class WritePartitions(beam.PTransform):
    """Writes shards of records as the output layout of DESIGN.md §4.

    Input: a dict of named PCollections (or one PCollection) of
    ((route, shard), [RecordBatch]) elements, one per shard, as GroupIntoShards
    and DeduplicateEvents give them: a route is an output folder such as
    "events/day=2024-01-31" or "rejects", and a shard's batches come in any
    order. Output: one WrittenFile per file, after it is in its final place
    `<route>/part-NNNNN-of-MMMMM.ndjson[.gz]`.

    Guarantees: each shard is written in the order of DESIGN.md §3
    (layout.order_for_writing): profile and group updates by identity, then
    upload order, a file cut only between identities; everything else in
    upload order. No file holds more than `max_file_bytes` uncompressed
    (except a single profile identity larger than that); the same records
    give the same file names and bytes; unfinished files live under
    `_temporary/<run_id>/` and only finished files are moved into place.
    Errors raise: a file that cannot be written fails the job, it is never
    skipped.
    """

    def __init__(self, output: str, run_id: str, compression: str, max_file_bytes: int) -> None:
        super().__init__()
        if not output:
            raise ValueError("output must not be empty")
        if not run_id:
            raise ValueError("run_id must not be empty")
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        if max_file_bytes <= 0:
            raise ValueError(f"max_file_bytes must be positive, got {max_file_bytes}")
        self._output = output
        self._temp_dir = temp_root(output, run_id)
        self._compressed = compression == "gzip"
        self._max_file_bytes = max_file_bytes

    @no_annotations  # Beam takes no dict as a stage's input hint (it logs a warning)
    def expand(
        self, shards: beam.PCollection[Shard] | Mapping[str, beam.PCollection[Shard]]
    ) -> beam.PCollection[WrittenFile]:
        # Each collection is written where it is produced: flattening the
        # data first would make the runner store all of it once more.
        named = {"": shards} if isinstance(shards, beam.PCollection) else shards
        writer = _WriteShard(self._temp_dir, self._compressed, self._max_file_bytes)
        written = [
            collection | f"Write{name}TempFiles" >> beam.ParDo(writer)
            for name, collection in named.items()
        ]
        return (
            written
            | "JoinTempFiles" >> beam.Flatten()
            | "GroupFilesByFolder" >> beam.GroupByKey()
            | "MoveIntoPlace" >> beam.ParDo(_NameFiles(self._output, self._compressed))
        )
