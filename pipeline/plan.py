"""The launch plan: everything a run needs, resolved before any graph exists.

`plan_launch` reads the clock once, and the run date (what `{date}` stands
for), the default reference time and the run id all come from that one
instant: a launch just before midnight UTC cannot mix two days. It makes and
checks the options, reads what the run reads only at launch (the previous
schema, the hash key), lists the input and the deletion list, and takes the
output location (pipeline/output.py), in that order: every refusal happens
here, before any work. `build` (pipeline/run.py) then only wires stages from
the plan; it does no I/O.
"""


import dataclasses
import logging
import time
import uuid
from collections.abc import Sequence
from datetime import date, datetime, timezone
from typing import Any

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineRunner

from pipeline.inputs import InputSelection, select_inputs
from pipeline.lock import OutputLock
from pipeline.options import (
    MIB,
    PrepOptions,
    UsageError,
    check_options,
    format_time,
    own_options,
    parse_reference_time,
    parse_runner,
    refuse_unknown_arguments,
)
from pipeline.output import PreparedOutput, prepare_output
from pipeline.placeholders import PlaceholderError, resolve, resolve_all
from pipeline.privacy import PrivacyPlan, plan_privacy
from pipeline.runner_guards import (
    check_beam_options,
    check_dry_run,
    check_remote_runner,
    choose_runner,
    create_checked_runner,
    is_dry_run,
    launch_runner,
)
from pipeline.schema import read_previous_schema
from transforms.privacy import exclusion_buckets
from transforms.read import InputFile
from transforms.schema_document import Outline

_LOG = logging.getLogger(__name__)
# Shards aim at this size (or --max-file-mb if smaller): enough to spread a
# large day over many workers, few enough to keep files large.
SHARD_TARGET_BYTES = 256 * MIB
# Gzipped NDJSON is typically 5-10x smaller than the text. The estimate only
# chooses between one shard per route and measured sharding: file sizes are
# bounded by --max-file-mb either way.
COMPRESSION_RATIO_ESTIMATE = 5


def estimated_bytes(files: Sequence[InputFile]) -> int:
    """An upper estimate of the input's uncompressed size."""
    return sum(f.size * (COMPRESSION_RATIO_ESTIMATE if f.compressed else 1) for f in files)


def make_options(argv: Sequence[str], today: date) -> PipelineOptions:
    """The checked options of a command line (see checked_launch)."""
    return checked_launch(argv, today)[0]


def checked_launch(argv: Sequence[str], today: date) -> tuple[PipelineOptions, PipelineRunner]:
    """Parses argv, defaulting to the in-process runner, and checks it; gives the options and the runner.

    Everything Beam would refuse later, with a usage dump, a traceback or
    only a warning, is refused here first, before any work: bad option
    values, an unknown runner, unknown options and stray words, Beam's own
    option checks for the runner, and what a runner on other machines cannot
    use (local paths; DataflowRunner without the worker image).

    Args:
      argv: the command line, without the program's name.
      today: the UTC date at launch: what `{date}` stands for without --run-date.

    Returns:
      The options, and the runner to launch with: the one --runner named,
      created here and nowhere else; for multi_processing, a FnApiRunner
      that gives its workers the options (runner_guards.launch_runner).

    Raises:
      UsageError: naming the option and what is wrong with it.
    """
    args = list(argv)
    given = parse_runner(args)
    runner = choose_runner(given)
    # Creating the runner loads its module, which may register options of its
    # own: only then is every option known.
    created = create_checked_runner(runner)
    refuse_unknown_arguments(args)
    options = PipelineOptions(args)
    options.view_as(StandardOptions).runner = runner
    own = options.view_as(PrepOptions)
    # Placeholders are resolved here, once per launch, so that workers, checks and
    # the summary all see the same concrete paths and run date.
    try:
        own.input, own.output, own.run_date = resolve_all(own.input, own.output, own.run_date, today)
        if own.previous_schema:
            run_date = datetime.strptime(own.run_date, "%Y-%m-%d").date()
            own.previous_schema = resolve(own.previous_schema, run_date, "--previous-schema")
    except PlaceholderError as err:
        raise UsageError(str(err)) from None
    check_options(own)
    check_dry_run(options, created)
    # Before Beam's checks, which for DataflowRunner without a temp location
    # ask Cloud Storage for a default bucket: a launch that cannot work is
    # refused offline.
    check_remote_runner(options, created)
    check_beam_options(options, created)
    if given is not None and runner != given:  # DirectRunner given
        _LOG.info("running DirectRunner's batch engine, %s, without trying Prism", runner)
    return options, launch_runner(created, options)


@dataclasses.dataclass(frozen=True)
class LaunchPlan:
    """What a run is, once everything it needs is known and checked (see the module docstring).

    Attributes:
      options: the checked options, placeholders resolved; they also
        configure Beam's filesystems and the store clients.
      runner: the runner the job runs on (plan.checked_launch).
      launched_at: the launch instant (UNIX seconds), the one reading of the clock.
      run_id: "<UTC time of launched_at>-<8 random hex digits>".
      reference_time: --reference-time, or launched_at, in UNIX seconds.
      inputs: the input objects, each once, ranked in upload order.
      previous_schema: what drift compares with (--previous-schema), or None.
      privacy: the hash key read and the deletion list listed (pipeline/privacy.py).
      output: the output location taken for this run (its lock, the files it
        replaces); None for a dry run, which leaves the output alone.
      header: the summary's run-level part: run id, reference time, options, input.
      max_file_bytes: --max-file-mb in bytes.
      shard_target_bytes: the size shards aim at.
      single_shard: whether every route gets one shard, unmeasured: the input
        is no larger than one output file. A function of the input alone, so
        the output is the same on every runner.
      exclusion_buckets: how many buckets the deletion list is joined in (0 without one).
      collect_schema: whether the job collects _SCHEMA.json. No option of the
        tool: benchmarks/bench.py turns it off to measure what the schema costs.
    """

    options: PipelineOptions
    runner: PipelineRunner
    launched_at: float
    run_id: str
    reference_time: int
    inputs: InputSelection
    previous_schema: Outline | None
    privacy: PrivacyPlan
    output: PreparedOutput | None
    header: dict[str, Any]
    max_file_bytes: int
    shard_target_bytes: int
    single_shard: bool
    exclusion_buckets: int
    collect_schema: bool = True

    @property
    def own(self) -> PrepOptions:
        """This tool's options."""
        return self.options.view_as(PrepOptions)

    @property
    def files(self) -> list[InputFile]:
        """The input files to read."""
        return self.inputs.files

    @property
    def lock(self) -> OutputLock | None:
        """The output location's lock, held for this run; None for a dry run."""
        return self.output.lock if self.output is not None else None


def run_id_at(instant: float) -> str:
    """A run id: the instant in UTC, to the second, and 8 random hex digits."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(instant)) + "-" + uuid.uuid4().hex[:8]


def plan_launch(argv: Sequence[str], *, collect_schema: bool = True, now: float | None = None) -> LaunchPlan:
    """Makes the run's plan from its command line; the output location is taken last.

    A dry run lists the input, and neither locks nor changes the output.
    Once this returns (not for a dry run), the output location is this run's:
    the job's last step releases the lock; a caller whose job does not get
    there ends it (OutputLock.end, pipeline.lock.held_locks).

    Args:
      argv: the command line, without the program's name.
      collect_schema: see LaunchPlan.collect_schema.
      now: the launch instant in UNIX seconds; None reads the clock, here,
        the only place a launch reads it.

    Raises:
      UsageError: an option is refused (pipeline/options.py,
        pipeline/runner_guards.py), the reference time, the previous schema
        or the hash key cannot be used.
      InputError: a pattern or the deletion list matches nothing usable.
      OutputError: the output location cannot be taken.
    """
    launched_at = time.time() if now is None else now
    options, runner = checked_launch(argv, datetime.fromtimestamp(launched_at, timezone.utc).date())
    own = options.view_as(PrepOptions)
    # Beam's filesystems take their settings (--s3_endpoint_url, credentials)
    # from here; Pipeline() sets them too, but the listing comes first.
    FileSystems.set_options(options)
    reference = parse_reference_time(own.reference_time, launched_at)
    # Read before any work: a missing or malformed file is refused now, not at the end.
    previous_schema = read_previous_schema(own.previous_schema) if own.previous_schema else None
    # Listed before prepare_output removes a previous run's _SUCCESS: every
    # file of that run under the output is left out of the input, and counted.
    inputs = select_inputs(own.input, own.output, own.upload_order, options)
    # The hash key is read and the deletion list listed now, before the output is touched.
    privacy = plan_privacy(options)
    run_id = run_id_at(launched_at)
    # From here on the location is this run's: the caller releases or ends the lock.
    output = None if is_dry_run(options) else prepare_output(
        own.output, own.overwrite, run_id, options, wait=own.wait
    )
    files = inputs.files
    header: dict[str, Any] = {
        "run_id": run_id,
        "reference_time": format_time(reference),
        "options": own_options(own),
        "input": {
            "files": len(files),
            "bytes": sum(f.size for f in files),
            "skipped_output_files": inputs.skipped_output_files,
        },
    }
    _LOG.info("reading %d files (%d bytes) into %s", len(files), header["input"]["bytes"], own.output)
    max_file_bytes = own.max_file_mb * MIB
    buckets = (
        exclusion_buckets(estimated_bytes(privacy.deletion_list), estimated_bytes(files))
        if privacy.deletion_list else 0
    )
    return LaunchPlan(
        options=options,
        runner=runner,
        launched_at=launched_at,
        run_id=run_id,
        reference_time=reference,
        inputs=inputs,
        previous_schema=previous_schema,
        privacy=privacy,
        output=output,
        header=header,
        max_file_bytes=max_file_bytes,
        shard_target_bytes=min(max_file_bytes, SHARD_TARGET_BYTES),
        # An input no larger than one output file gives every route one shard
        # and skips measuring routes: a side input that makes the runner store
        # the events once more before the shuffle.
        single_shard=estimated_bytes(files) <= max_file_bytes,
        exclusion_buckets=buckets,
        collect_schema=collect_schema,
    )
