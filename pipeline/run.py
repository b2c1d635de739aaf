"""Builds and runs the pipeline from options."""


import logging
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, TestOptions

from pipeline.options import (
    DEFAULT_LOCAL_RUNNER,
    MIB,
    PrepOptions,
    UsageError,
    check_beam_options,
    check_dry_run,
    check_options,
    check_remote_runner,
    create_checked_runner,
    format_time,
    own_options,
    parse_reference_time,
    parse_runner,
    refuse_unknown_arguments,
)
from pipeline.lock import OutputLock, held_locks
from pipeline.output import prepare_output
from pipeline.placeholders import PlaceholderError, resolve, resolve_all
from pipeline.privacy import plan_privacy
from pipeline.schema import CollectSchema, read_previous_schema
from pipeline.summary import CollectReportFigures, MergeTallies, WriteSummary
from transforms.dedupe import DeduplicateEvents
from transforms.exclude import ExcludeUsers
from transforms.privacy import exclusion_buckets
from transforms.read import InputFile, ReadRawLines, select_inputs
from transforms.rules import RuleConfig
from transforms.shard import GroupIntoShards
from transforms.validate import ValidateAndSplit
from transforms.write import WritePartitions

_LOG = logging.getLogger(__name__)
DEFAULT_RUNNER = DEFAULT_LOCAL_RUNNER
# DirectRunner first tries to download and start Prism (BEAM_NOTES 1), then
# falls back to FnApiRunner for batch jobs: go there directly.
_DIRECT_NAMES = ("direct", "directrunner")
# Whether jobs collect _SCHEMA.json. benchmarks/bench.py turns it off in its
# child process to measure what the schema costs; it is no option of the tool.
COLLECT_SCHEMA = True
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


def make_options(argv: Sequence[str]) -> PipelineOptions:
    """Parses argv, defaulting to the in-process runner, and checks it.

    Everything Beam would refuse later, with a usage dump, a traceback or
    only a warning, is refused here first, before any work: bad option
    values, an unknown runner, unknown options and stray words, Beam's own
    option checks for the runner, and what a runner on other machines cannot
    use (local paths; DataflowRunner without the worker image).

    Raises:
      UsageError: naming the option and what is wrong with it.
    """
    args = list(argv)
    given = parse_runner(args)
    direct = given is not None and given.lower() in _DIRECT_NAMES
    runner = DEFAULT_RUNNER if given is None or direct else given
    # Creating the runner loads its module, which may register options of its
    # own: only then is every option known.
    created = create_checked_runner(runner)
    refuse_unknown_arguments(args)
    options = PipelineOptions(args)
    options.view_as(StandardOptions).runner = runner
    own = options.view_as(PrepOptions)
    # Placeholders are resolved here, once per launch, so that workers, checks and
    # the summary all see the same concrete paths and run date.
    today = datetime.now(timezone.utc).date()
    try:
        own.input, own.output, own.run_date = resolve_all(own.input, own.output, own.run_date, today)
        if own.previous_schema:
            run_date = datetime.strptime(own.run_date, "%Y-%m-%d").date()
            own.previous_schema = resolve(own.previous_schema, run_date, "--previous-schema")
    except PlaceholderError as err:
        raise UsageError(str(err)) from None
    check_options(own)
    check_dry_run(options, created)
    # Before Beam's checks, which for DataflowRunner already ask Cloud Storage
    # about the temp bucket: a launch that cannot work is refused offline.
    check_remote_runner(options, created)
    check_beam_options(options, created)
    if direct:
        _LOG.info("running DirectRunner's batch engine, %s, without trying Prism", DEFAULT_RUNNER)
    return options


class BuiltJob(NamedTuple):
    """What build() made besides the graph: the summary header and the output's lock."""

    header: dict[str, Any]
    lock: OutputLock | None  # None for a dry run, which leaves the output alone


def is_dry_run(options: PipelineOptions) -> bool:
    """Whether the job is only built, not run (--dry_run=True, DataflowRunner only)."""
    # make_options turned Beam's string option into a bool.
    return options.view_as(TestOptions).dry_run is True


def build(pipeline: beam.Pipeline, options: PipelineOptions) -> BuiltJob:
    """Adds the whole job to `pipeline`; returns its header and the output's lock.

    Everything that can be refused is checked here, before any work runs:
    the patterns must match regular files outside the output, the output
    must be usable. The output location is locked for this run
    (pipeline/lock.py): the job's last step removes the lock; a caller whose
    job does not get there ends it (OutputLock.end). A dry run lists the
    input, and neither locks nor changes the output: its job never runs.
    """
    own = options.view_as(PrepOptions)
    # Beam's filesystems take their settings (--s3_endpoint_url, credentials)
    # from here; Pipeline() sets them too, but this runs before any use.
    FileSystems.set_options(options)
    reference = parse_reference_time(own.reference_time, time.time())
    # Read before any work: a missing or malformed file is refused now, not at the end.
    previous_schema = read_previous_schema(own.previous_schema) if own.previous_schema else None
    # Listed before prepare_output removes a previous run's _SUCCESS: every
    # file of that run under the output is left out of the input, and counted.
    selection = select_inputs(own.input, own.output, own.upload_order, options)
    files = selection.files
    # The hash key is read and the deletion list listed now, before the output is touched.
    privacy = plan_privacy(options)
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]
    # From here on the location is this run's: the caller releases or ends the lock.
    prepared = None if is_dry_run(options) else prepare_output(
        own.output, own.overwrite, run_id, options, wait=own.wait
    )
    max_file_bytes = own.max_file_mb * MIB
    target = min(max_file_bytes, SHARD_TARGET_BYTES)
    header = {
        "run_id": run_id,
        "reference_time": format_time(reference),
        "options": own_options(own),
        "input": {
            "files": len(files),
            "bytes": sum(f.size for f in files),
            "skipped_output_files": selection.skipped_output_files,
        },
    }
    _LOG.info("reading %d files (%d bytes) into %s", len(files), header["input"]["bytes"], own.output)

    # An input no larger than one output file gives every route one shard
    # and skips measuring routes: a side input that makes the runner store
    # the events once more before the shuffle. A function of the input alone,
    # so the output stays the same on every runner.
    single_shard = estimated_bytes(files) <= max_file_bytes
    read = pipeline | "ReadRawLines" >> ReadRawLines(
        files, own.range_bytes, own.skip_unreadable_files
    )
    # With --skip-unreadable-files, files that could not be read to their end
    # come out beside the lines, for the summary.
    if own.skip_unreadable_files:
        batches, unreadable = read.batches, read.unreadable
    else:
        batches, unreadable = read, None
    split = batches | "ValidateAndSplit" >> ValidateAndSplit(
        RuleConfig(reference, own.time_unit), privacy.config, count_types=COLLECT_SCHEMA
    )
    events, profiles, exclusion_tallies, exclusion_counts = split.events, split.profiles, [], []
    if privacy.deletion_list:
        buckets = exclusion_buckets(estimated_bytes(privacy.deletion_list), estimated_bytes(files))
        kept = {"events": events, "profiles": profiles} | "ExcludeUsers" >> ExcludeUsers(
            privacy.deletion_list, own.range_bytes, buckets, privacy.list_key, COLLECT_SCHEMA
        )
        events, profiles = kept["events"], kept["profiles"]
        exclusion_tallies, exclusion_counts = [kept["tallies"]], [kept["schema_counts"]]
    deduped = events | "DeduplicateEvents" >> DeduplicateEvents(
        target, own.keep_superseded, single_shard, COLLECT_SCHEMA
    )
    updates_and_rejects = (
        (profiles, split.groups, split.rejects)
        | "JoinUpdatesAndRejects" >> beam.Flatten()
        | "GroupUpdatesAndRejects" >> GroupIntoShards(target, single_shard)
    )
    written = {
        "Events": deduped.survivors,
        "Superseded": deduped.superseded,
        "UpdatesAndRejects": updates_and_rejects,
    } | "WritePartitions" >> WritePartitions(own.output, run_id, own.compression, max_file_bytes)
    tallies = (
        (split.tallies, deduped.tallies, *exclusion_tallies)
        | "JoinTallies" >> beam.Flatten()
        | "MergeTallies" >> beam.CombineGlobally(MergeTallies())
    )
    figures = {
        "event_names": split.event_names,
        "reject_examples": split.reject_examples,
        "duplicate_key_examples": split.duplicate_key_examples,
    } | "CollectReportFigures" >> CollectReportFigures()
    schema = (
        (split.schema_counts, deduped.schema_counts, *exclusion_counts)
        | "JoinSchemaCounts" >> beam.Flatten()
        | "CollectSchema" >> CollectSchema()
    ) if COLLECT_SCHEMA else None
    _ = written | "WriteSummary" >> WriteSummary(
        own.output,
        run_id,
        header,
        tallies,
        figures,
        stale_files=prepared.stale_files if prepared else [],
        max_reject_ratio=own.max_reject_ratio,
        unreadable_files=unreadable,
        schema=schema,
        previous_schema=previous_schema,
        fail_on_type_change=own.fail_on_type_change,
    )
    return BuiltJob(header, prepared.lock if prepared else None)


def run(argv: Sequence[str]) -> beam.runners.runner.PipelineResult:
    """Builds the pipeline from command-line arguments, runs it, and waits for it.

    Raises:
      UsageError, InputError, OutputError: before anything runs.
    """
    options = make_options(argv)
    try:
        result, _ = launch(options)
        result.wait_until_finish()
    finally:
        # A job that got to its last step removed its lock: end() leaves that be.
        for lock in held_locks():
            lock.end("the job stopped before its last step")
    return result


def launch(options: PipelineOptions) -> tuple[beam.runners.runner.PipelineResult, OutputLock | None]:
    """Builds the pipeline from options made by `make_options` and starts it.

    In-process runners run the whole job here. Returns the job and the output's
    lock (None for a dry run). Should the job not get to its last step (which
    removes the lock), or this raise, the caller ends the lock: see
    pipeline.lock.held_locks().

    Callers that need the resolved options afterwards (the output path, for
    one) make them once and pass them here, rather than resolving twice.
    """
    pipeline = beam.Pipeline(options=options)
    job = build(pipeline, options)
    if not _submits(options):
        return pipeline.run(), job.lock
    try:
        return pipeline.run(), job.lock
    except _submission_errors() as err:
        runner = options.view_as(StandardOptions).runner
        raise SubmitError(f"{runner} could not submit the job: {' '.join(str(err).split())}") from err


class SubmitError(RuntimeError):
    """The runner's service refused the job or could not be reached: nothing ran."""


def _submits(options: PipelineOptions) -> bool:
    # DataflowRunner's run() only stages files and sends the job to the
    # service: what it raises is about the submission, never about the data.
    runner = options.view_as(StandardOptions).runner or ""
    return runner.lower() in ("dataflow", "dataflowrunner") and not is_dry_run(options)


def _submission_errors() -> tuple[type[BaseException], ...]:
    from apache_beam.utils.retry import PermanentException  # noqa: PLC0415
    from google.api_core.exceptions import GoogleAPICallError  # noqa: PLC0415

    # The service's answers, a job name already in use, a staging upload refused.
    return (GoogleAPICallError, PermanentException, OSError)


def write_dataflow_job(result: beam.runners.runner.PipelineResult, path: str) -> None:
    """Writes the job a DataflowRunner dry run built to `path`, as Dataflow would receive it.

    Made as DataflowRunner makes it before it submits: the pipeline proto and
    the job's other files are staged under --staging_location (default:
    --temp_location), and the job's environment (worker image, pipeline
    options, the staged pipeline's URL) is filled in. Nothing is submitted.

    Raises:
      SubmitError: the files cannot be staged, or `path` cannot be written.
    """
    from apache_beam.runners.dataflow.internal.apiclient import (  # noqa: PLC0415
        DataflowApplicationClient,
    )

    job = result.job  # type: ignore[attr-defined]
    try:
        DataflowApplicationClient(job.options, job.root_staging_location).create_job_description(job)
        uncompressed = CompressionTypes.UNCOMPRESSED
        with FileSystems.create(path, mime_type="application/json", compression_type=uncompressed) as handle:
            handle.write(job.json().encode("utf-8"))
    except _submission_errors() as err:
        raise SubmitError(f"the Dataflow job could not be described in {path}: {' '.join(str(err).split())}") from err
