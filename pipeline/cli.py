"""The command-line entry point: `cloud-import-prep` and `python -m pipeline`."""


import gc
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:  # Beam is imported in main(), once the time zone is UTC
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.runner import PipelineResult

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


class Stopped(BaseException):
    """Raised in the main thread when SIGINT or SIGTERM arrives (see _stop_on_signals).

    A BaseException, so that no `except Exception` on the way swallows it.
    Beam may rebuild it with its step's name appended, or wrap it: the signal
    is therefore kept in _STOPPED_BY, not in the exception.
    """


_STOPPED_BY: list[signal.Signals] = []  # the signal that stopped this run, once one did


def _on_signal(signum: int, frame: object) -> None:
    _STOPPED_BY.append(signal.Signals(signum))
    # A second signal ends the process at once, the usual way.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Stopped(signal.Signals(signum).name)


def _stop_on_signals() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)


class _QuietAfterStop(logging.Filter):
    """Once a signal stopped the run, Beam's log of the interrupted step (a traceback) is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _STOPPED_BY or record.levelno < logging.ERROR


def _end_held_locks(stopped_by: str, remove_temporary: bool) -> None:
    """Ends this process's locks on output locations (see pipeline/lock.py).

    With `remove_temporary`, the run's temporary files go first (best effort:
    a retry with --overwrite removes whatever is left).
    """
    from pipeline.lock import held_locks  # noqa: PLC0415
    from pipeline.output import remove_temporary_files  # noqa: PLC0415

    for lock in held_locks():
        if remove_temporary:
            remove_temporary_files(lock.output, lock.holder.run_id)
        lock.end(stopped_by)


def _use_utc() -> None:
    # Beam turns GCS/S3 timestamps into seconds with time.mktime, which is an
    # hour off for summer times in a DST zone: fix the zone before Beam loads.
    os.environ["TZ"] = "UTC"
    if hasattr(time, "tzset"):
        time.tzset()


def main(argv: Sequence[str] | None = None, *, collect_schema: bool = True) -> int:
    """Runs the pipeline; returns the process exit status.

    0: the run passed its checks. 1: it ran but failed its checks (books do
    not balance, too many rejects; the summary says which), or stopped on a
    file it could not read or write (one line on stderr names it). 2: the
    command line, the input or the output location was refused before any work.
    Any other error is a bug, and shown as a traceback.

    Args:
      argv: the command line, without the program's name; default sys.argv[1:].
      collect_schema: build the job without the schema report when False. No
        flag sets it: benchmarks/bench.py does, to measure what the schema costs.
    """
    _use_utc()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Beam's INFO lines are about its own machinery; keep its warnings.
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    for name in _BEAM_ERROR_LOGGERS:
        beam_logger = logging.getLogger(name)
        for quiet in (_QuietFileAccessErrors, _QuietAfterStop):
            if not any(isinstance(f, quiet) for f in beam_logger.filters):
                beam_logger.addFilter(quiet())
    _stop_on_signals()
    # Beam is imported only now, under UTC.
    from pipeline.inputs import InputError  # noqa: PLC0415
    from pipeline.options import UsageError  # noqa: PLC0415
    from pipeline.output import OutputError  # noqa: PLC0415
    from pipeline.plan import plan_launch  # noqa: PLC0415
    from pipeline.report import format_headline  # noqa: PLC0415
    from pipeline.run import SubmitError, launch  # noqa: PLC0415
    from pipeline.schema import read_schema  # noqa: PLC0415
    from pipeline.summary import read_summary  # noqa: PLC0415

    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        from pipeline.options import help_text  # noqa: PLC0415

        print(help_text("cloud-import-prep"))
        return EXIT_OK
    try:
        # Planned once: the {date} placeholders, the reference time and the
        # run id come from one reading of the clock.
        plan = plan_launch(args, collect_schema=collect_schema)
        result = launch(plan)  # in-process runners run the whole job here
        own = plan.own
        if plan.lock is None:
            return _dry_run(result, plan.options)
        if not own.wait:
            plan.lock.detach()  # the job's last step removes it
            print(f"cloud-import-prep: job submitted; its summary will be {own.output.rstrip('/')}/_SUMMARY.json")
            return EXIT_OK
        state = result.wait_until_finish()
    except BaseException as err:
        if _STOPPED_BY:
            return _stopped(_STOPPED_BY[0])
        _end_held_locks("the run failed", remove_temporary=False)
        if isinstance(err, (UsageError, InputError, OutputError, SubmitError)):
            print(f"cloud-import-prep: error: {err}", file=sys.stderr)
            return EXIT_USAGE
        # A file the job could not read or write is the user's to fix: say
        # which, in one line. Anything else is a bug: its traceback stays.
        problem = file_access_problem(err) if isinstance(err, Exception) else None
        if problem is None:
            raise
        print(f"cloud-import-prep: error: {problem}", file=sys.stderr)
        return EXIT_FAILED_CHECKS
    # A job that got to its last step removed its lock; one that did not is ended.
    _end_held_locks(f"the job ended {state} before its last step", remove_temporary=False)
    summary = read_summary(own.output)
    if summary is None:
        print(f"cloud-import-prep: the run ended {state} without writing a summary", file=sys.stderr)
        return EXIT_FAILED_CHECKS
    # stdout carries the summary for machines (pipe it to jq); people read the
    # headline on stderr, with the logs.
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    print(format_headline(summary), file=sys.stderr)
    _print_drift(read_schema(own.output))
    if not summary["passed"]:
        print(f"cloud-import-prep: the run failed its checks: {summary['checks']}", file=sys.stderr)
        return EXIT_FAILED_CHECKS
    return EXIT_OK


def process_main() -> int:
    """The process's entry point (`cloud-import-prep`, `python -m pipeline`): main(), then exit.

    The interpreter's last act before a process ends is a full collection over
    every object it still tracks, Beam's modules and protos included: ~0.3 s of
    CPU that frees nothing the operating system would not. Freezing them first
    skips it. Only here, where the process ends next: main() is also called
    inside processes that go on (tests, benchmarks), whose garbage must stay
    collectable.
    """
    status = main()
    gc.freeze()
    return status


def _print_drift(schema: dict | None) -> None:
    """With --previous-schema, one headline line: what changed, in counts."""
    from transforms.schema_document import drift_counts  # noqa: PLC0415

    if schema is not None and "drift" in schema:
        print(f"  {'schema drift':<16}{drift_counts(schema['drift'])}", file=sys.stderr)


def _dry_run(result: "PipelineResult", options: "PipelineOptions") -> int:
    """Ends a DataflowRunner dry run: the job was built, not submitted, the output left alone.

    With --dataflow_job_file, the job's description is written there, as
    Dataflow would receive it (its files are staged, as for a launch).
    """
    from apache_beam.options.pipeline_options import DebugOptions  # noqa: PLC0415

    from pipeline.options import PrepOptions  # noqa: PLC0415
    from pipeline.run import write_dataflow_job  # noqa: PLC0415

    job_file = options.view_as(DebugOptions).dataflow_job_file
    if job_file:
        write_dataflow_job(result, job_file)
    described = f"; its description is in {job_file}" if job_file else ""
    print(
        "cloud-import-prep: dry run: the Dataflow job was built and not submitted; nothing was "
        f"written to {options.view_as(PrepOptions).output}{described}"
    )
    return EXIT_OK


def _stopped(signum: signal.Signals) -> int:
    """Cleans up after SIGINT/SIGTERM and ends the process with 130/143 (DESIGN §6)."""
    status = 128 + signum.value
    try:
        _end_held_locks(f"stopped by {signum.name}", remove_temporary=True)
    finally:
        print(
            f"cloud-import-prep: error: stopped by {signum.name}; the output location is left "
            "unfinished (no _SUCCESS): run the same command with --overwrite to redo it",
            file=sys.stderr,
        )
        sys.stderr.flush()
        sys.stdout.flush()
        # Now, without waiting for the runner's threads: one of them may be
        # in the middle of a long bundle that nobody will use.
        os._exit(status)
    return status  # not reached


if __name__ == "__main__":
    sys.exit(main())
