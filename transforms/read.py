"""The ReadRawLines stage: input patterns to batches of raw lines with provenance."""


import logging
import os
import stat
from collections.abc import Hashable, Iterator, Sequence
from typing import Any, BinaryIO, NamedTuple

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from transforms import METRICS_NAMESPACE, FileAccessError, os_error_text, pause_point
from transforms.compression import (
    HEAD_BYTES,
    UNCOMPRESSED,
    CompressedDataError,
    DecompressedStream,
    content_kind,
)
from transforms.ranges import FileRange, iter_line_batches, plan_ranges, range_reading
from transforms.stores import (
    InputChanged,
    InputVanished,
    ObjectOpener,
    StoredObject,
    StoreError,
    is_object_store,
    match_objects,
)

_LOG = logging.getLogger(__name__)

# A batch of lines from one range: (rank, path, offsets, lines).
Batch = tuple[int, str, list[int], list[bytes]]

UPLOAD_ORDERS = ("mtime", "name")

# Output tags of ReadRawLines with skip_unreadable, read by attribute.
BATCHES = "batches"
UNREADABLE = "unreadable"

# What reading a damaged, vanished or changed file raises, and nothing else:
# any other exception is a bug and must fail the job as one. (EOFError: a
# truncated compressed stream.)
READ_ERRORS = (OSError, EOFError, CompressedDataError)
# Read errors that may pass: never skipped, they fail the bundle, which runners
# that retry (Dataflow) read again. transforms/stores.py turns the stores'
# transient failures (connections, time-outs, 5xx, 429) into these.
TRANSIENT_ERRORS = (ConnectionError, TimeoutError)


class InputFile(NamedTuple):
    """A matched input file. `rank` is its position in upload order.

    `compressed` is what its name says; `version` identifies the bytes listed
    (StoredObject.version), which are the bytes read.
    """

    rank: int
    path: str
    size: int
    upload_time: float
    compressed: bool
    version: str = ""


class InputError(ValueError):
    """The input patterns cannot be read as asked (raised before any work)."""


class InputSelection(NamedTuple):
    """What the input patterns select.

    `files` are the objects to read, each once, ranked in upload order;
    `skipped_output_files` counts the matched objects left out because they
    lie under the output location.
    """

    files: list[InputFile]
    skipped_output_files: int


def select_inputs(
    patterns: Sequence[str],
    output: str | None = None,
    upload_order: str = "mtime",
    options: PipelineOptions | None = None,
) -> InputSelection:
    """Expands input patterns into the set of objects to read, ranked in upload order.

    Upload order is (upload time, path), or the path alone with
    upload_order="name". The upload time is a local file's last-modified
    time, a GCS object's creation time, an S3 object's LastModified (see
    transforms/stores.py for why).

    The input is a set of objects, not of spellings. A local file is one
    object whatever the names it is reached by (`a.ndjson`, `./a.ndjson`,
    `sub/../a.ndjson`, its absolute path, a symlink or hard link to it): it
    is identified by device and inode, and named by the first of its names
    in this order: relative before absolute, fewest `..`, then sort order,
    so that the name does not depend on the order of the patterns. An object
    in a store is its URL: `a//b` and `a/b` are different keys there, and
    both are read.

    Local patterns are tidied first (`//` and `/./` are one `/`), relative
    ones match from the current folder and keep relative names, and a
    pattern ending in `/` means every file below that folder, as it does for
    gs:// and s3://. Only regular files are read.

    Args:
      patterns: glob patterns: local paths, gs:// or s3:// URLs.
      output: the run's output location. Nothing under it is input: such
        matches are left out and counted. Local paths are compared by their
        real paths (symlinks resolved), URLs by their `scheme://bucket/key/`
        prefix. None leaves nothing out.
      upload_order: "mtime" or "name".
      options: the pipeline's options, which configure the object-store
        clients as Beam's filesystems are (e.g. --s3_endpoint_url).

    Raises:
      InputError: a pattern matches nothing (or nothing outside the output
        location), cannot be listed (missing bucket, missing or refused
        credentials, denied access), names a folder, or matches something
        that is not a regular file (a FIFO, socket, device, or a file under
        /dev or /proc).
    """
    if upload_order not in UPLOAD_ORDERS:
        raise InputError(f"upload_order must be one of {UPLOAD_ORDERS}, got {upload_order!r}")
    if not patterns:
        raise InputError("no --input pattern given")
    output_prefix = _output_prefix(output)
    chosen: dict[Hashable, StoredObject] = {}
    skipped: set[Hashable] = set()
    matched: list[tuple[str, set[Hashable]]] = []
    for pattern in patterns:
        identities: set[Hashable] = set()
        for found in _match(pattern, options):
            identities.add(found.identity)
            if output_prefix is not None and any(
                place.startswith(output_prefix) for place in found.places
            ):
                skipped.add(found.identity)
                continue
            kept = chosen.get(found.identity)
            if kept is None or _name_order(found.stored.path) < _name_order(kept.path):
                chosen[found.identity] = found.stored
        matched.append((pattern, identities))
    # An object with one name under the output (a hard link, a symlink into
    # it) is output all the same.
    for identity in skipped:
        chosen.pop(identity, None)
    for pattern, identities in matched:
        if not identities:
            raise InputError(f"input pattern {pattern!r} matches no file")
        if identities <= skipped:
            count = f"{len(identities)} file" + ("" if len(identities) == 1 else "s")
            raise InputError(
                f"input pattern {pattern!r} matches no file outside the output location "
                f"{output!r} ({count} below it, never read as input)"
            )
    objects = list(chosen.values())
    if upload_order == "name":
        objects.sort(key=lambda o: o.path)
    else:
        objects.sort(key=lambda o: (o.upload_time, o.path))
    files = [
        InputFile(
            rank=rank,
            path=o.path,
            size=o.size,
            upload_time=o.upload_time if upload_order == "mtime" else 0.0,
            compressed=CompressionTypes.detect_compression_type(o.path)
            != CompressionTypes.UNCOMPRESSED,
            version=o.version,
        )
        for rank, o in enumerate(objects)
    ]
    return InputSelection(files, len(skipped))


def match_inputs(
    patterns: Sequence[str],
    upload_order: str = "mtime",
    options: PipelineOptions | None = None,
) -> list[InputFile]:
    """The files `select_inputs` selects when no output location is to be left out.

    Raises:
      InputError: as `select_inputs`.
    """
    return select_inputs(patterns, None, upload_order, options).files


class _Found(NamedTuple):
    """One object a pattern matched.

    `identity` is the same for every name of one object; `places` are where
    it lies, as compared with the output location: a URL, or a local file's
    real location and, for a symlink, its target's.
    """

    identity: Hashable
    stored: StoredObject
    places: tuple[str, ...]


def _output_prefix(output: str | None) -> str | None:
    # What every place under the output starts with: a local folder's real
    # path (so that `out`, `./out/`, its absolute path and a symlink to it are
    # one), or a store's `scheme://bucket/key/` as written.
    if output is None:
        return None
    if FileSystems.get_scheme(output) is None:
        return os.path.join(os.path.realpath(output), "")
    return output.rstrip("/") + "/"


def _name_order(path: str) -> tuple[bool, int, str]:
    # Which of an object's names is reported: one that a rerun from the same
    # folder spells the same way, and that does not depend on pattern order.
    return os.path.isabs(path), path.split("/").count(".."), path


def _match(pattern: str, options: PipelineOptions | None) -> Iterator[_Found]:
    """Every object a pattern matches, folder markers left out."""
    if is_object_store(pattern):
        try:
            objects = match_objects(pattern, options)
        except StoreError as err:
            raise InputError(f"cannot list input {pattern!r}: {err}") from err
        for o in objects:
            if not _is_folder_marker(o.path, o.size):
                yield _Found(o.path, o, (o.path,))
        return
    if FileSystems.get_scheme(pattern) is None:
        yield from _match_local(pattern)
        return
    # Another filesystem of Beam's: its own listing, its paths as identities.
    for m in _beam_match(pattern, pattern):
        yield _Found(m.path, StoredObject(m.path, m.size_in_bytes, m.last_updated_in_seconds), (m.path,))


def _beam_match(pattern: str, spelled: str) -> list[Any]:
    try:
        (result,) = FileSystems.match([spelled])
    except (BeamIOError, ValueError, OSError) as err:
        raise InputError(f"cannot list input {pattern!r}: {os_error_text(err)}") from err
    return list(result.metadata_list)


def _tidy_local_pattern(pattern: str) -> str:
    """A local pattern with `//` and `/./` made one `/`, and a trailing `/` made `/**`.

    Beam's local match takes `sub//*.ndjson` literally and matches nothing;
    `..` is left alone, since `link/..` is not always the folder `link` is in.

    For example `./sub//x/./*.ndjson` becomes `sub/x/*.ndjson`, `data/`
    becomes `data/**`.
    """
    if pattern.endswith("/"):
        pattern += "**"
    root = "/" if pattern.startswith("/") else ""
    parts = [part for part in pattern.split("/") if part not in ("", ".")]
    return root + "/".join(parts) if parts else root or "."


def _match_local(pattern: str) -> Iterator[_Found]:
    tidy = _tidy_local_pattern(pattern)
    # Beam lists the folder before a pattern's first wildcard, and finds none
    # in `*.ndjson` (os.path.dirname gives ""): relative patterns are matched
    # from "./", and the names given back without it.
    relative = not tidy.startswith("/")
    real_folders: dict[str, str] = {}
    listed = [m.path for m in _beam_match(pattern, "./" + tidy if relative else tidy)]
    # In name order, not the folder's: the first refusal is then the same on every run.
    for path in sorted(listed):
        name = path[2:] if relative and path.startswith("./") else path
        yield _local_file(pattern, name, real_folders)


_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)
# Files there are not stored data: /dev/stdin is a regular file when stdin is
# redirected from one, but a different one in every process that opens it.
_PROCESS_FOLDERS = ("/dev/", "/proc/")


def _local_file(pattern: str, path: str, real_folders: dict[str, str]) -> _Found:
    """A matched local file, checked to be a regular file, under its tidiest name."""
    try:
        entry = os.lstat(path)
        info = os.stat(path) if stat.S_ISLNK(entry.st_mode) else entry
    except OSError as err:
        raise InputError(f"cannot read input {path!r}: {os_error_text(err)}") from err
    if stat.S_ISDIR(info.st_mode):
        # Beam's local match returns a folder named without a wildcard as if
        # it were a file; reading it would fail mid-run.
        raise InputError(
            f"input pattern {pattern!r} names a folder; to read every file below it use "
            f"{pattern.rstrip('/') + '/**'!r}"
        )
    for is_kind, kind in _SPECIAL_KINDS:
        if is_kind(info.st_mode):
            # Never opened: a FIFO would block the run, a device read as empty.
            raise InputError(
                f"input {path!r} is {kind}, not a regular file: only regular files are read"
            )
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"input {path!r} is not a regular file: only regular files are read")
    absolute = os.path.abspath(path)
    if absolute.startswith(_PROCESS_FOLDERS):
        raise InputError(
            f"input {path!r} is under /dev or /proc, not stored data: only regular files are read"
        )
    identity = ("file", info.st_dev, info.st_ino)
    name = path
    if ".." in path.split("/"):
        # `sub/../a.ndjson` is named `a.ndjson` when that is the same file
        # (it is not when `sub` is a symlink to a folder elsewhere).
        tidy = os.path.normpath(path)
        try:
            same = os.stat(tidy)
        except OSError:
            same = None
        if same is not None and (same.st_dev, same.st_ino) == identity[1:]:
            name = tidy
    # Where the name itself lies, its folder's symlinks and `..` resolved by
    # the filesystem (one realpath per folder, not per file).
    folder, base = os.path.split(path)
    if folder not in real_folders:
        real_folders[folder] = os.path.realpath(folder or ".")
    location = os.path.join(real_folders[folder], base)
    places = (location, os.path.realpath(path)) if stat.S_ISLNK(entry.st_mode) else (location,)
    # Local mtimes come from os.stat: no time-zone conversion involved. The
    # mtime is also the version a reader checks the file against.
    return _Found(identity, StoredObject(name, info.st_size, info.st_mtime, repr(info.st_mtime)), places)


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
    listed generation or ETag (transforms/stores.py); other Beam filesystems
    as Beam opens them, unchecked.
    """

    def __init__(self, options: PipelineOptions | None = None) -> None:
        self._options = options
        self._opener: ObjectOpener | None = None  # made on first use: no client for local runs

    def _open_object(self, file_range: FileRange) -> BinaryIO:
        if self._opener is None:
            self._opener = ObjectOpener(self._options)
        return self._opener.open(file_range.path, file_range.size, file_range.version)  # type: ignore[return-value]

    def batches(self, file_range: FileRange) -> Iterator[tuple[list[int], list[bytes]]]:
        """(offsets, lines) batches of every line the range owns.

        Raises:
          READ_ERRORS: the file cannot be read to the range's end, is gone, or
            is not the version listed.
        """
        local = False
        if is_object_store(file_range.path):
            raw = self._open_object(file_range)
        elif FileSystems.get_scheme(file_range.path) is None:
            raw, local = _open_local(file_range), True
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
            if local:
                # Appended to or rewritten in place while being read?
                _check_local(raw, file_range)


class _ReadRange(beam.DoFn):
    """Reads the lines a FileRange owns, one batch per chunk.

    A file that cannot be read to the end fails the job with a FileAccessError
    naming it; with `skip_unreadable`, it is reported on the UNREADABLE output
    instead, and the lines read before the error stay in the run. Errors that
    may pass (TRANSIENT_ERRORS) always fail the bundle, for the runner to retry.
    """

    def __init__(self, skip_unreadable: bool = False, options: PipelineOptions | None = None) -> None:
        super().__init__()
        self._skip_unreadable = skip_unreadable
        # The options travel with the DoFn: FnApiRunner's worker processes
        # (multi_processing) get none from Beam, and Beam's FileSystems there
        # are unconfigured (no --s3_endpoint_url, no keys).
        self._reader = _RangeReader(options)
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
            for file_range in plan_ranges(
                f.rank, f.path, f.size, f.compressed, self._range_bytes, f.version
            )
        ]
        spread = pbegin | "ListRanges" >> beam.Create(ranges) | "SpreadRanges" >> beam.Reshuffle()
        # The pipeline's options configure the store clients, as Beam's own
        # filesystems are configured (credentials, --s3_endpoint_url, …).
        read = _ReadRange(self._skip_unreadable, pbegin.pipeline.options)
        if not self._skip_unreadable:
            return spread | "ReadRanges" >> beam.ParDo(read)
        return spread | "ReadRanges" >> beam.ParDo(read).with_outputs(UNREADABLE, main=BATCHES)
