"""Flex Template entry point: template parameters in, a `cloud-import-prep` command line out.

Dataflow's launcher runs this file (FLEX_TEMPLATE_PYTHON_PY_FILE in the Dockerfile) with each
template parameter as `--name=value`, only to submit the job. So it:
- turns the switches (`overwrite=true|false`) into the CLI's bare flags;
- defaults to `--runner=DataflowRunner`, so that a forgotten runner can never run the
  whole job on the launcher VM;
- adds `--no-wait`: the launcher must exit once the job is submitted, or the launch times
  out;
- refuses a Dataflow launch without `sdk_container_image`: workers on the stock Beam image
  lack this package and fail every bundle after minutes of start-up, instead of failing here
  at once.
"""

import sys
from collections.abc import Sequence

from pipeline.cli import EXIT_USAGE
from pipeline.cli import main as cli_main

# Parameters that are bare switches on the command line (the names in metadata.json).
SWITCHES = (
    "overwrite",
    "keep_superseded",
    "skip_unreadable_files",
    "redact_examples",
    "fail_on_type_change",
)
_TRUE = ("true", "yes", "1")
_FALSE = ("false", "no", "0", "")
WORKER_IMAGE_OPTIONS = ("sdk_container_image", "worker_harness_container_image")
DEFAULT_RUNNER = "DataflowRunner"


class LaunchError(ValueError):
    """A template parameter the launcher cannot turn into a command line."""


def _name(arg: str) -> str:
    """`--keep-superseded=true` -> `keep_superseded`."""
    return arg[2:].split("=", 1)[0].replace("-", "_")


def command_line(params: Sequence[str]) -> list[str]:
    """The `cloud-import-prep` arguments for the launcher's arguments.

    Args:
      params: what the launcher passed, e.g. `["--input=gs://raw/{date-1}/*",
        "--overwrite=true", "--sdk_container_image=…"]`.

    Raises:
      LaunchError: a switch with a value other than true/false, or a Dataflow
        launch without a worker image.
    """
    args: list[str] = []
    runner = None
    has_image = False
    i = 0
    while i < len(params):
        arg = params[i]
        i += 1
        name = _name(arg) if arg.startswith("--") else ""
        if name in SWITCHES:
            value = arg.split("=", 1)[1] if "=" in arg else None
            if value is None and i < len(params) and params[i].lower() in _TRUE + _FALSE:
                value = params[i]  # the `--overwrite true` form
                i += 1
            if value is None or value.strip().lower() in _TRUE:
                args.append("--" + name)
            elif value.strip().lower() not in _FALSE:
                raise LaunchError(f"parameter {name} must be true or false, got {value!r}")
            continue
        if name == "runner":
            runner = arg.split("=", 1)[1] if "=" in arg else (params[i] if i < len(params) else "")
        has_image = has_image or name in WORKER_IMAGE_OPTIONS
        args.append(arg)
    if runner is None:
        runner = DEFAULT_RUNNER
        args.append(f"--runner={DEFAULT_RUNNER}")
    if runner.lower() in ("dataflow", "dataflowrunner") and not has_image:
        raise LaunchError(
            "parameter sdk_container_image is required: the image this template was built "
            "from, e.g. sdk_container_image=REGION-docker.pkg.dev/PROJECT/REPO/cloud-import-prep:TAG"
        )
    args.append("--no-wait")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Submits the job; returns the process exit status (2: refused)."""
    try:
        args = command_line(sys.argv[1:] if argv is None else argv)
    except LaunchError as err:
        print(f"cloud-import-prep: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
