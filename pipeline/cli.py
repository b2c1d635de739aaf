"""The command-line entry point: `cloud-import-prep` and `python -m pipeline`."""


import logging
import os
import sys
import time
from collections.abc import Sequence

import orjson

_LOG = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED_CHECKS = 1
EXIT_USAGE = 2


def _use_utc() -> None:
    # Beam turns GCS/S3 timestamps into seconds with time.mktime, which is an
    # hour off for summer times in a DST zone: fix the zone before Beam loads.
    os.environ["TZ"] = "UTC"
    if hasattr(time, "tzset"):
        time.tzset()


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the pipeline; returns the process exit status.

    0: the run passed its checks. 1: it ran but failed its checks (books do
    not balance, too many rejects); the summary says which. 2: the command
    line, the input or the output location was refused before any work.
    """
    _use_utc()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Beam's INFO lines are about its own machinery; keep its warnings.
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
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
        result = launch(options)
    except (UsageError, InputError, OutputError) as err:
        print(f"cloud-import-prep: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    own = options.view_as(PrepOptions)
    if not own.wait:
        print(f"cloud-import-prep: job submitted; its summary will be {own.output.rstrip('/')}/_SUMMARY.json")
        return EXIT_OK
    state = result.wait_until_finish()
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
