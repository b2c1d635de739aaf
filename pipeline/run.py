"""Builds the job from a launch plan (pipeline/plan.py), and runs or submits it."""


import logging
import shutil
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipeline.lock import held_locks
from pipeline.plan import LaunchPlan, plan_launch
from pipeline.runner_guards import is_dry_run
from pipeline.schema import CollectSchema
from pipeline.stores import opener_factory
from pipeline.summary import CollectReportFigures, MergeTallies, WriteSummary
from transforms.dedupe import DeduplicateEvents
from transforms.exclude import ExcludeUsers
from transforms.read import ReadRawLines
from transforms.rules import RuleConfig
from transforms.shard import GroupIntoShards
from transforms.validate import ValidateAndSplit
from transforms.write import WritePartitions

_LOG = logging.getLogger(__name__)


def build(pipeline: beam.Pipeline, plan: LaunchPlan) -> None:
    """Adds the whole job to `pipeline`, as `plan` has it.

    Wiring only: everything that could be refused was checked, listed and
    read by plan_launch, and the output location taken; nothing here reads
    or writes a file, lists a folder or reads the clock.
    """
    own = plan.own
    collect_schema = plan.collect_schema
    # gs:// and s3:// objects are read on the workers by store clients made
    # from the pipeline's options (credentials, --s3_endpoint_url, …).
    open_objects = opener_factory(plan.options)
    read = pipeline | "ReadRawLines" >> ReadRawLines(
        plan.files, own.range_bytes, own.skip_unreadable_files, open_objects
    )
    # With --skip-unreadable-files, files that could not be read to their end
    # come out beside the lines, for the summary.
    if own.skip_unreadable_files:
        batches, unreadable = read.batches, read.unreadable
    else:
        batches, unreadable = read, None
    split = batches | "ValidateAndSplit" >> ValidateAndSplit(
        RuleConfig(plan.reference_time, own.time_unit), plan.privacy.config, count_types=collect_schema
    )
    events, profiles, exclusion_tallies, exclusion_counts = split.events, split.profiles, [], []
    if plan.privacy.deletion_list:
        kept = {"events": events, "profiles": profiles} | "ExcludeUsers" >> ExcludeUsers(
            plan.privacy.deletion_list,
            own.range_bytes,
            plan.exclusion_buckets,
            plan.privacy.list_key,
            collect_schema,
            open_objects,
        )
        events, profiles = kept["events"], kept["profiles"]
        exclusion_tallies, exclusion_counts = [kept["tallies"]], [kept["schema_counts"]]
    target = plan.shard_target_bytes
    deduped = events | "DeduplicateEvents" >> DeduplicateEvents(
        target, own.keep_superseded, plan.single_shard, collect_schema
    )
    updates_and_rejects = (
        (profiles, split.groups, split.rejects)
        | "JoinUpdatesAndRejects" >> beam.Flatten()
        | "GroupUpdatesAndRejects" >> GroupIntoShards(target, plan.single_shard)
    )
    written = {
        "Events": deduped.survivors,
        "Superseded": deduped.superseded,
        "UpdatesAndRejects": updates_and_rejects,
    } | "WritePartitions" >> WritePartitions(own.output, plan.run_id, own.compression, plan.max_file_bytes)
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
    ) if collect_schema else None
    _ = written | "WriteSummary" >> WriteSummary(
        own.output,
        plan.run_id,
        plan.header,
        tallies,
        figures,
        stale_files=plan.output.stale_files if plan.output is not None else [],
        max_reject_ratio=own.max_reject_ratio,
        unreadable_files=unreadable,
        schema=schema,
        previous_schema=plan.previous_schema,
        fail_on_type_change=own.fail_on_type_change,
    )


def run(argv: Sequence[str]) -> beam.runners.runner.PipelineResult:
    """Plans the run from command-line arguments, runs it, and waits for it.

    Raises:
      UsageError, InputError, OutputError: before anything runs.
    """
    try:
        result = launch(plan_launch(argv))
        result.wait_until_finish()
    finally:
        # A job that got to its last step removed its lock: end() leaves that be.
        for lock in held_locks():
            lock.end("the job stopped before its last step")
    return result


def launch(plan: LaunchPlan) -> beam.runners.runner.PipelineResult:
    """Builds the job `plan` describes and starts it.

    In-process runners run the whole job here. Should the job not get to its
    last step (which removes the output's lock, plan.lock), or this raise,
    the caller ends the lock: see pipeline.lock.held_locks().
    """
    pipeline = beam.Pipeline(runner=plan.runner, options=plan.options)
    try:
        build(pipeline, plan)
    except BaseException:
        # Pipeline() made a local temp dir that only Pipeline.run() removes. A
        # graph refused while it is wired (by Beam's type checks, say) never
        # runs: each such launch would leave its directory behind.
        shutil.rmtree(pipeline.local_tempdir, ignore_errors=True)
        raise
    if not _submits(plan.options):
        return pipeline.run()
    try:
        return pipeline.run()
    except _submission_errors() as err:
        runner = plan.options.view_as(StandardOptions).runner
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
