"""The output location's life: taken for a run (refusing what is not ours), then finished or cleaned up.

prepare_output() takes the location before any work: it locks it, refuses
what is not a previous run of this tool, and finds what --overwrite
replaces. The run's last step (pipeline/summary.py) finishes it: the
replaced files that were not written again go, the run files are written
whole (write_run_file, mark_success), and close_output() removes the
temporary folders and the lock. remove_temporary_files() is the clean-up of
a run that was stopped.
"""


import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import orjson
from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import TOOL_NAME
from pipeline.lock import LOCK_FILE, Holder, LockError, OutputLock, release_run_lock
from pipeline.stores import PROBE_PREFIX, StoreError, list_objects, probe_writable
from transforms import FileAccessError, os_error_text, read_all
from transforms.layout import is_part_file
from transforms.read import is_object_store
from transforms.write import TEMP_FOLDER, move_files, temp_root

_LOG = logging.getLogger(__name__)
SUMMARY_FILE = "_SUMMARY.json"
SUCCESS_FILE = "_SUCCESS"
REPORT_FILE = "_REPORT.html"
SCHEMA_FILE = "_SCHEMA.json"
RUN_FILES = (SUMMARY_FILE, SUCCESS_FILE, REPORT_FILE, SCHEMA_FILE)


class OutputError(ValueError):
    """The output location cannot be used as asked (raised before any work)."""


def _list(output: str, options: PipelineOptions | None = None) -> list[str]:
    """Relative paths of every file under `output`."""
    root = output.rstrip("/")
    if is_object_store(output):
        # The store's own listing: Beam's S3 match reports a missing bucket as
        # "no files", and buries credential errors in nested exceptions.
        try:
            objects = list_objects(root, options)
        except StoreError as err:
            raise OutputError(f"cannot use output location {output!r}: {err}") from err
        prefix = root + "/"
        return sorted(o.path[len(prefix) :] for o in objects if o.path.startswith(prefix))
    try:
        (result,) = FileSystems.match([root + "/**"])
    except (BeamIOError, ValueError, OSError) as err:
        raise OutputError(f"cannot list output location {output!r}: {os_error_text(err)}") from err
    prefix = FileSystems.join(root, "")
    return sorted(m.path[len(prefix) :] for m in result.metadata_list if m.path.startswith(prefix))


def previous_run_files(output: str) -> list[str] | None:
    """The files a previous run listed in its summary, or None without one of ours."""
    path = FileSystems.join(output, SUMMARY_FILE)
    try:
        with FileSystems.open(path) as handle:
            summary = orjson.loads(read_all(handle))
    except (BeamIOError, OSError, orjson.JSONDecodeError):
        return None
    # Anything that is not exactly our shape is not ours: never guess what to delete.
    tool = summary.get("tool") if isinstance(summary, dict) else None
    listed = summary.get("output") if isinstance(summary, dict) else None
    if not isinstance(tool, dict) or tool.get("name") != TOOL_NAME or not isinstance(listed, dict):
        return None
    files = listed.get("files", [])
    if not isinstance(files, list):
        return None
    paths: list[str] = []
    for f in files:
        listed_path = f.get("path") if isinstance(f, dict) else f
        if not isinstance(listed_path, str):
            return None
        paths.append(listed_path)
    return paths


class PreparedOutput(NamedTuple):
    """What prepare_output() hands the run: its lock, and the files it replaces."""

    lock: OutputLock
    stale_files: list[str]  # relative paths of the files found there, removed at the end unless written again


def prepare_output(
    output: str,
    overwrite: bool,
    run_id: str,
    options: PipelineOptions | None = None,
    wait: bool = True,
) -> PreparedOutput:
    """Takes the output location for run `run_id`; returns its lock and what it will replace.

    The location must be empty, or hold a previous run of this tool and
    `overwrite` be set, and it must be writable. It is locked first (see
    pipeline/lock.py), so that no other run checks or changes it meanwhile.
    A previous run is one that finished (its `_SUMMARY.json` lists its files),
    or an unfinished one whose lock is left (killed, stopped, failed): then
    every file of the output layout there is its, the temporary ones included.
    The previous run's `_SUCCESS`, `_SUMMARY.json`, `_SCHEMA.json` and `_REPORT.html` are
    removed at once, so that nothing claims the location finished while its
    files change; its other files are removed by the new run's last step,
    once the new files are in place.

    Args:
      output: the output folder: a local path, gs:// or s3:// URL.
      overwrite: whether a previous run of this tool may be replaced.
      run_id: the id of the run taking the location.
      options: the pipeline's options, which configure the object-store
        clients as Beam's filesystems are (e.g. --s3_endpoint_url).
      wait: whether this process waits for the job (see OutputLock.acquire).

    Raises:
      OutputError: another run holds the location; it holds something else,
        or no --overwrite; its bucket does not exist; credentials are missing
        or refused; it is not writable.
    """
    # A first listing says "no such bucket" or "no credentials" as such; the
    # lock's write then finds out whether the location is writable.
    _list(output, options)
    try:
        lock = OutputLock.acquire(output, run_id, overwrite=overwrite, wait=wait, options=options)
    except LockError as err:
        raise OutputError(str(err)) from None
    except (StoreError, OSError) as err:
        raise OutputError(f"output location {output!r} is not writable: {os_error_text(err)}") from err
    try:
        existing = [path for path in _list(output, options) if path != LOCK_FILE]
        _check_ours(output, existing, overwrite, lock.taken_from)
        _probe_writable(output, options)
        lock.record_previous_files(existing)
        finished = [FileSystems.join(output, path) for path in existing if path in RUN_FILES]
        if finished:
            FileSystems.delete(finished)
    except BaseException:
        if lock.taken_from is None:
            lock.release()
        else:
            lock.end("refused before any work")
        raise
    return PreparedOutput(lock, [path for path in existing if path not in RUN_FILES])


def _check_ours(output: str, existing: list[str], overwrite: bool, unfinished: Holder | None) -> None:
    """Refuses a location that holds anything but a previous run of this tool."""
    if existing and not overwrite:
        raise OutputError(
            f"output location {output!r} is not empty ({len(existing)} files); "
            "choose an empty one, or pass --overwrite to replace a previous run of this tool"
        )
    if not existing:
        return
    if unfinished is not None:
        # The unfinished run may have written any file of the layout, finished
        # or temporary, and have removed its predecessor's summary already.
        listed = set(unfinished.previous_files)
        foreign = [p for p in existing if p not in listed and not _of_the_layout(p)]
        what = "files that are not of this tool's output layout"
    else:
        listed_files = previous_run_files(output)
        if listed_files is None:
            raise OutputError(
                f"output location {output!r} holds files but no {SUMMARY_FILE} of this tool; "
                "--overwrite only replaces a previous run of this tool: choose an empty location"
            )
        known = set(listed_files) | set(RUN_FILES)
        foreign = [p for p in existing if p not in known]
        what = f"files that the previous run did not list in its {SUMMARY_FILE}"
    if foreign:
        shown = ", ".join(foreign[:5]) + (" …" if len(foreign) > 5 else "")
        raise OutputError(
            f"output location {output!r} holds {len(foreign)} {what} ({shown}); "
            "--overwrite removes only that run's files: move these away first"
        )


def _of_the_layout(path: str) -> bool:
    """Whether a relative path is one a run of this tool writes (data, temporary or run file)."""
    return path in RUN_FILES or is_part_file(path) or path.startswith(TEMP_FOLDER + "/")


def _probe_writable(output: str, options: PipelineOptions | None) -> None:
    """Writes and deletes one small file under `<output>/_temporary/`.

    The name (`probe-` and 32 random hex digits) cannot be a run's folder
    (`<UTC time>-<8 hex digits>`) nor another run's probe. Local folders the
    probe had to create, missing parents of the output included, are removed
    again.
    """
    temp = FileSystems.join(output, TEMP_FOLDER)
    if is_object_store(output):
        try:
            probe_writable(temp, options)
        except StoreError as err:
            raise OutputError(f"output location {output!r} is not writable: {err}") from err
        return
    created = []  # local folders the probe will create, deepest first
    if FileSystems.get_scheme(output) is None:
        folder = os.path.abspath(temp)
        while not os.path.exists(folder) and os.path.dirname(folder) != folder:
            created.append(folder)
            folder = os.path.dirname(folder)
    probe = FileSystems.join(temp, PROBE_PREFIX + uuid.uuid4().hex)
    try:
        with FileSystems.create(probe, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            handle.write(b"write probe of cloud-import-prep; safe to delete\n")
        FileSystems.delete([probe])
    except (BeamIOError, OSError) as err:
        raise OutputError(f"output location {output!r} is not writable: {os_error_text(err)}") from err
    finally:
        for folder in created:
            if os.path.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)


def remove_temporary_files(output: str, run_id: str) -> None:
    """Removes run `run_id`'s temporary files, as far as possible (a stopped run's clean-up).

    Never raises: what is left, a retry with --overwrite removes.
    """
    folder = FileSystems.join(output, TEMP_FOLDER, run_id)
    try:
        if FileSystems.get_scheme(output) is None:
            if os.path.isdir(folder):
                shutil.rmtree(folder)
            root = FileSystems.join(output, TEMP_FOLDER)
            if os.path.isdir(root) and not os.listdir(root):
                os.rmdir(root)
            return
        (match,) = FileSystems.match([FileSystems.join(folder, "**")])
        if match.metadata_list:
            FileSystems.delete([m.path for m in match.metadata_list])
    except Exception as err:  # noqa: BLE001 (best effort on the way out; the retry cleans up)
        _LOG.warning("could not remove the temporary files of run %s: %s", run_id, os_error_text(err))


# --- The run's last step: its files in place, the rest removed --------------------------------


def remove_replaced_files(output: str, replaced: Sequence[str], written: Iterable[str]) -> None:
    """Removes the replaced run's files (finished or not) that this run did not write again.

    Args:
      output: the output location.
      replaced: relative paths of the files found there (PreparedOutput.stale_files).
      written: relative paths of the files this run wrote.

    Raises:
      FileAccessError: a file cannot be removed.
    """
    again = set(written)
    stale = [FileSystems.join(output, p) for p in replaced if p not in again]
    stale = [p for p in stale if FileSystems.exists(p)]
    if not stale:
        return
    try:
        FileSystems.delete(stale)
    except OSError as err:
        raise FileAccessError(f"{output}: cannot remove the replaced run's files ({os_error_text(err)})") from err
    _remove_empty_local_folders(output, stale)


def _remove_empty_local_folders(root: str, removed_files: Sequence[str]) -> None:
    # Object stores have no folders; on local disk, a replaced day folder that
    # got no new files must not remain empty.
    if FileSystems.get_scheme(root) is not None:
        return
    top = os.path.abspath(root)
    for emptied in sorted({os.path.dirname(os.path.abspath(p)) for p in removed_files}, reverse=True):
        folder = emptied  # then each parent the removal empties too
        while folder.startswith(top + os.sep) and os.path.isdir(folder) and not os.listdir(folder):
            os.rmdir(folder)
            folder = os.path.dirname(folder)


def write_run_file(output: str, run_id: str, name: str, data: bytes) -> None:
    """Writes the run file `<output>/<name>` whole or not at all: into the run's temporary folder
    first, then moved into place.

    Raises:
      FileAccessError: it cannot be written or moved into place.
    """
    path = FileSystems.join(output, name)
    temp = FileSystems.join(temp_root(output, run_id), name)
    try:
        with FileSystems.create(temp, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            handle.write(data)
    except OSError as err:  # a full disk, a lost permission: the user's to fix
        raise FileAccessError(f"{path}: cannot be written ({os_error_text(err)})") from err
    move_files([temp], [path])


def mark_success(output: str, run_id: str) -> None:
    """Writes `_SUCCESS`: the location holds a finished run that passed its checks.

    Raises:
      FileAccessError: as write_run_file.
    """
    # One newline, not empty: Beam 2.77's S3 writer cannot create a
    # zero-byte object (S3 refuses a multipart upload with no part).
    write_run_file(output, run_id, SUCCESS_FILE, b"\n")


def close_output(output: str, run_id: str) -> None:
    """Ends the run's hold on the location, passed or not: its temporary folders go, then its lock.

    Raises:
      FileAccessError: the lock cannot be removed.
    """
    # Object stores have no folders left once the files are moved; local
    # disk keeps the empty folders, which must not remain.
    for folder in (temp_root(output, run_id), FileSystems.join(output, TEMP_FOLDER)):
        if FileSystems.exists(folder):
            (match,) = FileSystems.match([FileSystems.join(folder, "**")])
            if not match.metadata_list:
                FileSystems.delete([folder])
    # The location is finished: the next run may take it.
    try:
        release_run_lock(output, run_id)
    except OSError as err:
        raise FileAccessError(f"{output}: cannot remove the run's lock ({err})") from err
