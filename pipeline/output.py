"""The output location: refuse to write over what is not ours, find what --overwrite replaces."""


import logging

import orjson
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems

from pipeline import TOOL_NAME

_LOG = logging.getLogger(__name__)
SUMMARY_FILE = "_SUMMARY.json"
SUCCESS_FILE = "_SUCCESS"
REPORT_FILE = "_REPORT.html"
RUN_FILES = (SUMMARY_FILE, SUCCESS_FILE, REPORT_FILE)


class OutputError(ValueError):
    """The output location cannot be used as asked (raised before any work)."""


def _list(output: str) -> list[str]:
    """Relative paths of every file under `output`."""
    root = output.rstrip("/")
    try:
        (result,) = FileSystems.match([root + "/**"])
    except (BeamIOError, ValueError, OSError) as err:
        details = getattr(err, "exception_details", None) or {}
        cause = "; ".join(str(e) for e in details.values()) or str(err)
        raise OutputError(f"cannot list output location {output!r}: {cause}") from err
    prefix = FileSystems.join(root, "")
    return sorted(m.path[len(prefix) :] for m in result.metadata_list if m.path.startswith(prefix))


def previous_run_files(output: str) -> list[str] | None:
    """The files a previous run listed in its summary, or None without one of ours."""
    path = FileSystems.join(output, SUMMARY_FILE)
    try:
        with FileSystems.open(path) as handle:
            summary = orjson.loads(_read_all(handle))
    except (BeamIOError, OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(summary, dict) or summary.get("tool", {}).get("name") != TOOL_NAME:
        return None
    files = summary.get("output", {}).get("files", [])
    return [f["path"] if isinstance(f, dict) else f for f in files]


def _read_all(handle) -> bytes:  # type: ignore[no-untyped-def]
    parts = []
    while chunk := handle.read(1 << 20):
        parts.append(chunk)
    return b"".join(parts)


def prepare_output(output: str, overwrite: bool) -> list[str]:
    """Checks that the run may write to `output`; returns what it will replace.

    The location must be empty, or hold a previous run of this tool and
    `overwrite` be set. A previous run's `_SUCCESS` is removed at once, so that
    nobody takes the half-replaced folder for finished; its other files are
    removed by the new run's last step, once the new files are in place.

    Returns:
      Relative paths of the previous run's files (empty for a new location).

    Raises:
      OutputError: the location holds something else, or no --overwrite.
    """
    existing = _list(output)
    if not existing:
        return []
    if not overwrite:
        raise OutputError(
            f"output location {output!r} is not empty ({len(existing)} files); "
            "choose an empty one, or pass --overwrite to replace a previous run of this tool"
        )
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
    success = FileSystems.join(output, SUCCESS_FILE)
    if SUCCESS_FILE in existing:
        FileSystems.delete([success])
    return [path for path in existing if path != SUCCESS_FILE]
