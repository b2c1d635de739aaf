"""The pipeline's stages (Beam composites) and the pure record logic they wire together."""

METRICS_NAMESPACE = "cloud_import_prep"


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
