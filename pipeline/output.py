"""The output location: refuse to write over what is not ours, find what --overwrite replaces."""


import logging
import os
import uuid

import orjson
from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import TOOL_NAME
from transforms import os_error_text
from transforms.stores import PROBE_PREFIX, StoreError, is_object_store, list_objects, probe_writable
from transforms.write import TEMP_FOLDER

_LOG = logging.getLogger(__name__)
SUMMARY_FILE = "_SUMMARY.json"
SUCCESS_FILE = "_SUCCESS"
REPORT_FILE = "_REPORT.html"
RUN_FILES = (SUMMARY_FILE, SUCCESS_FILE, REPORT_FILE)


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
    paths = [f.get("path") if isinstance(f, dict) else f for f in files]
    if not all(isinstance(p, str) for p in paths):
        return None
    return paths


def read_all(handle) -> bytes:  # type: ignore[no-untyped-def]
    """Everything a handle holds: one read() of a compressed Beam handle stops at 16 MiB."""
    parts = []
    while chunk := handle.read(1 << 20):
        parts.append(chunk)
    return b"".join(parts)


def prepare_output(output: str, overwrite: bool, options: PipelineOptions | None = None) -> list[str]:
    """Checks that the run may write to `output`; returns what it will replace.

    The location must be empty, or hold a previous run of this tool and
    `overwrite` be set, and it must be writable: a small file is written
    under `_temporary/` and deleted again. A previous run's `_SUCCESS` is
    removed at once, so that nobody takes the half-replaced folder for
    finished; its other files are removed by the new run's last step, once
    the new files are in place.

    Args:
      output: the output folder: a local path, gs:// or s3:// URL.
      overwrite: whether a previous run of this tool may be replaced.
      options: the pipeline's options, which configure the object-store
        clients as Beam's filesystems are (e.g. --s3_endpoint_url).

    Returns:
      Relative paths of the previous run's files (empty for a new location).

    Raises:
      OutputError: the location holds something else, or no --overwrite; its
        bucket does not exist; credentials are missing or refused; it is not
        writable.
    """
    existing = _list(output, options)
    if existing and not overwrite:
        raise OutputError(
            f"output location {output!r} is not empty ({len(existing)} files); "
            "choose an empty one, or pass --overwrite to replace a previous run of this tool"
        )
    if existing:
        listed = previous_run_files(output)
        if listed is None:
            raise OutputError(
                f"output location {output!r} holds files but no {SUMMARY_FILE} of this tool; "
                "--overwrite only replaces a previous run of this tool: choose an empty location"
            )
        ours = set(listed) | set(RUN_FILES)
        foreign = [path for path in existing if path not in ours]
        if foreign:
            shown = ", ".join(foreign[:5]) + (" …" if len(foreign) > 5 else "")
            raise OutputError(
                f"output location {output!r} holds {len(foreign)} files that the previous run "
                f"did not list in its {SUMMARY_FILE} ({shown}); --overwrite removes only that "
                "run's files: move these away first"
            )
    _probe_writable(output, options)
    if SUCCESS_FILE in existing:
        FileSystems.delete([FileSystems.join(output, SUCCESS_FILE)])
    return [path for path in existing if path != SUCCESS_FILE]


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
