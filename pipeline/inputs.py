"""The run's input at launch: --input patterns expanded into the set of objects to read.

Listing happens here, before any graph exists (pipeline/plan.py); the
ReadRawLines stage (transforms/read.py) is given the listed files and only
reads them.
"""


import os
import stat
from collections.abc import Hashable, Iterator, Sequence
from typing import Any, NamedTuple

from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.stores import StoredObject, StoreError, match_objects
from transforms import os_error_text
from transforms.read import InputFile, is_object_store

UPLOAD_ORDERS = ("mtime", "name")


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
    pipeline/stores.py for why).

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
