"""The pipeline's stages (Beam composites) and the pure record logic they wire together.

This package imports no storage client: listing, probes and the stores' clients
are the launch side's (pipeline/); a stage that must reach a store is given
what it needs (ReadRawLines' opener factory).
"""

import os
import time
from pathlib import Path
from typing import Protocol

METRICS_NAMESPACE = "cloud_import_prep"
# Test hook: "<stage>:<marker file>" makes the first worker that reaches
# pause_point(stage) write the marker and stop there for good, so that a test
# can kill the run at that very moment. Unset in every real run.
PAUSE_ENV = "CLOUD_IMPORT_PREP_PAUSE_AT"


class FileAccessError(OSError):
    """An input or output file cannot be read or written: the user's to fix, not a bug.

    The message is "<path>: <what is wrong>". The command line recognises a
    failed job by this class's name, which on some runners reaches it only as
    text in the job's error.
    """


def os_error_text(err: Exception) -> str:
    """An error as one line; Beam's BeamIOError keeps its causes in a dict."""
    details = getattr(err, "exception_details", None)
    if isinstance(details, dict) and details:
        return "; ".join(str(e) for e in details.values())
    return str(err)


def pause_point(stage: str) -> None:
    """Stops here for good when PAUSE_ENV names `stage` (tests kill the run there).

    The stages: "read" (a range is about to be read), "write" (a temporary
    file was written), "move" (a first file was moved into place), "finish"
    (the replaced files are gone, the summary is about to be written).
    """
    setting = os.environ.get(PAUSE_ENV)
    if not setting or setting.partition(":")[0] != stage:
        return
    Path(setting.partition(":")[2]).write_text(str(os.getpid()))
    while True:
        time.sleep(60)


class Readable(Protocol):
    """A binary stream read with read(size): a file, a Beam handle, a store's reader, a DecompressedStream."""

    def read(self, size: int, /) -> bytes: ...


def read_all(handle: Readable) -> bytes:
    """Everything a handle holds: one read() of a compressed Beam handle stops at 16 MiB."""
    parts = []
    while chunk := handle.read(1 << 20):
        parts.append(chunk)
    return b"".join(parts)
