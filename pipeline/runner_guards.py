"""Which runner a launch uses, and what it is refused before any work.

--runner created as Beam creates it; Beam's own option checks for it;
--dry_run read as the bool it means; and what a runner on other machines
cannot use (local paths, Dataflow without this project's image).
"""


import copy
import difflib
import sys

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    PortableOptions,
    StandardOptions,
    TestOptions,
    TypeOptions,
    WorkerOptions,
)
from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator
from apache_beam.portability.api import beam_provision_api_pb2
from apache_beam.runners.portability.fn_api_runner import FnApiRunner, worker_handlers
from apache_beam.runners.portability.fn_api_runner.fn_runner import ExtendedProvisionInfo
from apache_beam.runners.runner import PipelineRunner, create_runner
from apache_beam.transforms.environments import PythonLoopbackEnvironment
from apache_beam.transforms.resources import resource_hints_from_options

from pipeline.options import DEFAULT_LOCAL_RUNNER, PrepOptions, UsageError

# DirectRunner first tries to download and start Prism (BEAM_NOTES 1), then
# falls back to FnApiRunner for batch jobs: go there directly.
_DIRECT_NAMES = ("direct", "directrunner")


def choose_runner(given: str | None) -> str:
    """The runner a launch uses for `--runner given`: the in-process one for none or DirectRunner."""
    if given is None or given.lower() in _DIRECT_NAMES:
        return DEFAULT_LOCAL_RUNNER
    return given


def is_dry_run(options: PipelineOptions) -> bool:
    """Whether the job is only built, not run (--dry_run=True, DataflowRunner only)."""
    # check_dry_run turned Beam's string option into a bool.
    return options.view_as(TestOptions).dry_run is True


def create_checked_runner(name: str) -> PipelineRunner:
    """The runner `--runner NAME` stands for, created as Beam's Pipeline creates it.

    Raises:
      UsageError: Beam knows no runner of that name, or cannot load it.
    """
    try:
        runner = create_runner(name)
    except ValueError:
        known = StandardOptions.KNOWN_RUNNER_NAMES
        # Compared without the "Runner" every name ends in, which would make
        # any *Runner look close.
        stems = {k.lower().removesuffix("runner"): k for k in known}
        close = difflib.get_close_matches(name.lower().removesuffix("runner"), list(stems), n=1)
        hint = f" (did you mean {stems[close[0]]}?)" if close else ""
        raise UsageError(
            f"--runner {name!r} is not a runner Beam knows{hint}; use one of "
            f"{', '.join(known)}, or the module path of a PipelineRunner class"
        ) from None
    except (ImportError, AttributeError, TypeError) as err:
        # A module path that does not lead to a runner class Beam can create.
        raise UsageError(f"--runner {name!r} cannot be loaded: {err}") from None
    if not isinstance(runner, PipelineRunner):
        raise UsageError(f"--runner {name!r} is not a PipelineRunner class")
    return runner


def launch_runner(runner: PipelineRunner, options: PipelineOptions) -> PipelineRunner:
    """The runner to launch with: `runner` (as --runner created it), given the options its workers need.

    First, whatever the runner, the FnApiRunner machinery in this process
    (FnApiRunner itself, Beam's job service under --job_endpoint embed) is
    made to send its workers data by size only (untime_data_plane). With
    --direct_running_mode=multi_processing, FnApiRunner starts its worker
    processes with the pipeline options of its provision info, which it leaves
    empty unless given: Beam's file systems there would know no
    --s3_endpoint_url and no S3 keys, and the writes fail. Beam's own job
    service gives its workers the options the same way.
    """
    untime_data_plane()
    multi_processing = options.view_as(DirectOptions).direct_running_mode == "multi_processing"
    if not (isinstance(runner, FnApiRunner) and multi_processing):
        return runner
    # Strings and booleans only: the options travel as a protobuf Struct, whose numbers
    # are doubles, and a worker refuses "2.0" for an int option (and then never starts).
    # Workers take their settings from their stages; numbers are none of their stores'.
    given = options.get_all_options(drop_default=True, retain_unknown_options=True)
    kept = {
        name: value
        for name, value in given.items()
        if isinstance(value, (str, bool)) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
    }
    return FnApiRunner(
        provision_info=ExtendedProvisionInfo(
            beam_provision_api_pb2.ProvisionInfo(
                retrieval_token="unused-retrieval-token",
                pipeline_options=PipelineOptions.from_dictionary(kept).to_runner_api(),
            )
        )
    )


def untime_data_plane() -> None:
    """Makes FnApiRunner send data to its SDK workers by size only (10 MB messages, then the rest).

    Process-wide: also for the FnApiRunner behind Beam's embedded job service
    (--runner PortableRunner --job_endpoint embed), whose LOOPBACK worker is
    served the same way.

    Beam 2.77's runner side also flushes on a timer (worker_handlers.
    DATA_BUFFER_TIME_LIMIT_MS, 1 s), from a thread that takes the stream's
    buffer, queues it and only then clears it, while the runner goes on
    writing into it: a chunk written in between is cleared unsent. With two
    worker processes on the 3M-line bench corpus that dropped one worker's
    last 8.8 MB message of packed batches in about 1 run in 12 with the
    writer's threads, and in 2 runs of 2 without them with the timer at
    1 ms (the books check refused each such run). The timer only bounds the
    latency of streaming jobs; SDK workers flush by size only unless an
    experiment says otherwise, which check_options refuses.
    """
    worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 0


def check_beam_options(options: PipelineOptions, runner: PipelineRunner) -> None:
    """Runs Beam's own option checks for `runner`, as Pipeline() runs them.

    On a copy: Beam's checks also fill in defaults (Dataflow's staging
    location, for one), which are Pipeline()'s to set when the job is built.
    Pipeline() runs the same checks again: these only refuse early. The copy
    is marked a dry run, which only skips the checks' one request that
    cannot refuse anything (for DataflowRunner, whether the temp and staging
    buckets have a soft-delete policy: a warning, which Pipeline()'s checks
    then ask and log once, not twice).

    Raises:
      UsageError: with Beam's findings (a missing --project, an invalid
        --job_name, num_workers above max_num_workers, a --resource_hints
        value it cannot parse, ...), on one line.
    """
    checked = copy.deepcopy(options)
    checked.view_as(TestOptions).dry_run = True
    errors = PipelineOptionsValidator(checked, runner).validate()
    # Pipeline() parses --resource_hints only after it made its local temp dir,
    # which a hint it refuses then leaves behind (with a traceback): parsed here first.
    try:
        resource_hints_from_options(checked)
    except ValueError as err:
        errors.append(str(err))
    if errors:
        found = "; ".join(" ".join(str(e).split()).rstrip(".") for e in errors)
        raise UsageError(f"Beam refuses these options for {type(runner).__name__}: {found}")
    # Beam would refuse the graph itself while it is wired, with a traceback.
    if checked.view_as(TypeOptions).type_check_strictness == "ALL_REQUIRED":
        raise UsageError(
            "--type_check_strictness=ALL_REQUIRED cannot be met: Beam's own steps in this job "
            "(Create among them) declare no output type; leave it at DEFAULT_TO_ANY"
        )


# --dry_run is a string option in Beam, and Beam takes any non-empty value,
# "False" included, for a dry run.
_TRUE_WORDS = ("true", "yes", "1")
_FALSE_WORDS = ("false", "no", "0", "")


def check_dry_run(options: PipelineOptions, runner: PipelineRunner) -> bool:
    """Whether the run is a Dataflow dry run; sets --dry_run to a real bool for Beam.

    Raises:
      UsageError: --dry_run has a value that is neither true nor false, or a
        true one for a runner other than DataflowRunner, which would ignore it
        and run the whole job.
    """
    test = options.view_as(TestOptions)
    value = test.dry_run
    text = str(value).strip().lower()
    if text not in _TRUE_WORDS + _FALSE_WORDS:
        raise UsageError(f"--dry_run must be True or False, got {value!r}")
    test.dry_run = text in _TRUE_WORDS
    if test.dry_run and not _is_dataflow(runner):
        raise UsageError(
            f"--dry_run=True only applies to DataflowRunner; {type(runner).__name__} would "
            "ignore it and run the whole job"
        )
    return bool(test.dry_run)


def _runner_class(module: str, name: str) -> type | None:
    # Only a runner whose module is loaded can be one: create_runner loaded it.
    loaded = sys.modules.get(module)
    return getattr(loaded, name, None) if loaded is not None else None


def _is_dataflow(runner: PipelineRunner) -> bool:
    cls = _runner_class("apache_beam.runners.dataflow.dataflow_runner", "DataflowRunner")
    return cls is not None and isinstance(runner, cls)


def remote_workers(options: PipelineOptions, runner: PipelineRunner) -> str | None:
    """Why the job's code runs away from this machine's disk, or None when it does not.

    DataflowRunner runs it on Google's VMs; Beam's portable runners (Flink,
    Spark, a job service) in the environment --environment_type names, and
    only LOOPBACK runs it in this process. In-process runners (FnApiRunner,
    DirectRunner, PrismRunner's default) and runners Beam does not know run it here.
    """
    name = type(runner).__name__
    if _is_dataflow(runner):
        return f"{name} runs the job on Google Cloud workers"
    portable = _runner_class("apache_beam.runners.portability.portable_runner", "PortableRunner")
    if portable is None or not isinstance(runner, portable):
        return None
    # The runner's own default (Flink's and Spark's local masters and Prism pick
    # LOOPBACK), found on a copy: choosing it sets the option.
    try:
        environment = runner.default_environment(copy.deepcopy(options))
    except ValueError as err:
        raise UsageError(f"--environment_type/--environment_config refused by Beam: {err}") from None
    if isinstance(environment, PythonLoopbackEnvironment):
        return None
    kind = options.view_as(PortableOptions).environment_type or "DOCKER"
    return f"{name} runs the job in {kind} environments, not in this process"


def check_remote_runner(options: PipelineOptions, runner: PipelineRunner) -> None:
    """Refuses what a job on other machines cannot use: local paths, Dataflow without our image.

    A local --input there names the workers' own disks, where the files are not;
    a local --output would be written to disks that vanish with the workers.
    Dataflow workers without --sdk_container_image start Beam's stock image,
    which lacks this package: every bundle fails, after minutes of start-up.

    Raises:
      UsageError: naming the flag and the runner.
    """
    where = remote_workers(options, runner)
    if where is None:
        return
    own = options.view_as(PrepOptions)
    hint = "" if _is_dataflow(runner) else " (or --environment_type LOOPBACK, to run the job in this process)"
    # The deletion list is read by the workers; the key file only at launch, here.
    paths = [*(("--input", p) for p in own.input or ()), ("--output", own.output)]
    for flag, path in [*paths, ("--exclude-users", own.exclude_users)]:
        if path and _is_local_path(path):
            raise UsageError(
                f"{flag} {path!r} is a local path, but {where}, which cannot reach this "
                f"machine's files: use gs:// or s3:// paths{hint}"
            )
    worker = options.view_as(WorkerOptions)
    if _is_dataflow(runner) and not (worker.sdk_container_image or worker.worker_harness_container_image):
        raise UsageError(
            "--sdk_container_image is required with DataflowRunner: the image built from this "
            "project's Dockerfile (workers on Beam's stock image lack this package), e.g. "
            "--sdk_container_image REGION-docker.pkg.dev/PROJECT/REPO/cloud-import-prep:TAG"
        )


def _is_local_path(path: str) -> bool:
    return FileSystems.get_scheme(path) in (None, "file")
