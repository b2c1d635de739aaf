"""The command-line entry point: `cloud-import-prep` and `python -m pipeline`."""


import logging
import os
import re
import sys
import time
from collections.abc import Sequence

import orjson

_LOG = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED_CHECKS = 1
EXIT_USAGE = 2

# How a FileAccessError reads in a failed job's error text (the traceback of a
# worker process, a Dataflow job's error), without Beam's step annotations.
_FILE_ACCESS_TEXT = re.compile(r"\bFileAccessError: (.+?)(?: \[while running '[^'\n]*'\])*$", re.M)
_STEP_ANNOTATIONS = re.compile(r"(?: \[while running '[^'\n]*'\])+$")


def file_access_problem(err: BaseException) -> str | None:
    """The "<path>: <what>" of a job that stopped on a FileAccessError, or None.

    In-process runners raise the error itself (Beam appends the step's name);
    other runners report what their workers raised as text only.
    """
    from transforms import FileAccessError  # noqa: PLC0415

    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, FileAccessError):
            return _STEP_ANNOTATIONS.sub("", str(cause))
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    found = _FILE_ACCESS_TEXT.findall(str(err))
    return found[-1] if found else None


# Beam loggers that log a failing step's exception, with its traceback, before
# the job fails: the step's own (in-process), the local job service's (what
# worker processes reported).
_BEAM_ERROR_LOGGERS = ("apache_beam.runners.common", "apache_beam.runners.portability.local_job_service")


class _QuietFileAccessErrors(logging.Filter):
    """Keeps Beam from logging a FileAccessError's traceback: main() says it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        from transforms import FileAccessError  # noqa: PLC0415

        if record.exc_info and isinstance(record.exc_info[1], FileAccessError):
            return False
        return record.levelno < logging.ERROR or not _FILE_ACCESS_TEXT.search(record.getMessage())


def _use_utc() -> None:
    # Beam turns GCS/S3 timestamps into seconds with time.mktime, which is an
    # hour off for summer times in a DST zone: fix the zone before Beam loads.
    os.environ["TZ"] = "UTC"
    if hasattr(time, "tzset"):
        time.tzset()


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the pipeline; returns the process exit status.

    0: the run passed its checks. 1: it ran but failed its checks (books do
    not balance, too many rejects; the summary says which), or stopped on a
    file it could not read or write (one line on stderr names it). 2: the
    command line, the input or the output location was refused before any work.
    Any other error is a bug, and shown as a traceback.
    """
    _use_utc()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Beam's INFO lines are about its own machinery; keep its warnings.
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    for name in _BEAM_ERROR_LOGGERS:
        beam_logger = logging.getLogger(name)
        if not any(isinstance(f, _QuietFileAccessErrors) for f in beam_logger.filters):
            beam_logger.addFilter(_QuietFileAccessErrors())
    # Beam is imported only now, under UTC.
    from pipeline.options import PrepOptions, UsageError  # noqa: PLC0415
    from pipeline.output import OutputError  # noqa: PLC0415
    from pipeline.run import launch, make_options  # noqa: PLC0415
    from pipeline.report import format_headline  # noqa: PLC0415
    from pipeline.summary import read_summary  # noqa: PLC0415
    from transforms.read import InputError  # noqa: PLC0415

    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        from pipeline.options import help_text  # noqa: PLC0415

        print(help_text("cloud-import-prep"))
        return EXIT_OK
    try:
        # Options are made once: the {date} placeholders in the paths resolve once.
        options = make_options(args)
        result = launch(options)  # in-process runners run the whole job here
        own = options.view_as(PrepOptions)
        if not own.wait:
            print(f"cloud-import-prep: job submitted; its summary will be {own.output.rstrip('/')}/_SUMMARY.json")
            return EXIT_OK
        state = result.wait_until_finish()
    except (UsageError, InputError, OutputError) as err:
        print(f"cloud-import-prep: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as err:
        # A file the job could not read or write is the user's to fix: say
        # which, in one line. Anything else is a bug: its traceback stays.
        problem = file_access_problem(err)
        if problem is None:
            raise
        print(f"cloud-import-prep: error: {problem}", file=sys.stderr)
        return EXIT_FAILED_CHECKS
    summary = read_summary(own.output)
    if summary is None:
        print(f"cloud-import-prep: the run ended {state} without writing a summary", file=sys.stderr)
        return EXIT_FAILED_CHECKS
    # stdout carries the summary for machines (pipe it to jq); people read the
    # headline on stderr, with the logs.
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    print(format_headline(summary), file=sys.stderr)
    if not summary["passed"]:
        print(f"cloud-import-prep: the run failed its checks: {summary['checks']}", file=sys.stderr)
        return EXIT_FAILED_CHECKS
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
