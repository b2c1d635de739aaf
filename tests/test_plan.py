"""Tests of pipeline/plan.py: a launch reads the clock once, and resolves everything before any graph exists."""

from datetime import datetime, timezone

import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.pipeline import PipelineVisitor

from e2e import write_input
from pipeline.options import MIB
from pipeline.plan import SHARD_TARGET_BYTES, plan_launch
from pipeline.run import build

LINE = b'{"event": "A", "properties": {"time": 1704067200, "distinct_id": "u"}}'
# 2024-01-31T23:59:59.9Z: a second reading of the clock could be on the next day.
BEFORE_MIDNIGHT = datetime(2024, 1, 31, 23, 59, 59, 900_000, tzinfo=timezone.utc).timestamp()


@pytest.fixture
def plans():
    """Plans made in a test; their output locks are released at its end."""
    made = []
    yield made
    for plan in made:
        if plan.lock is not None:
            plan.lock.release()


def _plan(plans, argv, **kwargs):
    plan = plan_launch(argv, **kwargs)
    plans.append(plan)
    return plan


def test_run_date_reference_time_and_run_id_come_from_one_instant(tmp_path, plans):
    write_input(tmp_path / "raw" / "2024-01-30" / "a.ndjson", [LINE])
    args = ["--input", str(tmp_path / "raw" / "{date-1}" / "*"), "--output", str(tmp_path / "out" / "{date}")]
    plan = _plan(plans, args, now=BEFORE_MIDNIGHT)
    assert plan.launched_at == BEFORE_MIDNIGHT
    assert plan.own.run_date == "2024-01-31"
    assert plan.own.input == [str(tmp_path / "raw" / "2024-01-30" / "*")]
    assert plan.own.output == str(tmp_path / "out" / "2024-01-31")
    assert plan.reference_time == int(BEFORE_MIDNIGHT)
    assert plan.header["reference_time"] == "2024-01-31T23:59:59Z"
    assert plan.run_id.startswith("20240131T235959Z-") and len(plan.run_id) == len("20240131T235959Z-") + 8
    assert plan.header["run_id"] == plan.run_id


def test_without_an_instant_the_clock_is_read_once_for_all_three(tmp_path, plans):
    write_input(tmp_path / "in" / "a.ndjson", [LINE])
    plan = _plan(plans, ["--input", str(tmp_path / "in" / "*"), "--output", str(tmp_path / "out")])
    launched = datetime.fromtimestamp(plan.launched_at, timezone.utc)
    assert plan.own.run_date == launched.date().isoformat()
    assert plan.reference_time == int(plan.launched_at)
    assert plan.run_id.startswith(launched.strftime("%Y%m%dT%H%M%SZ-"))


def test_the_plan_holds_what_the_run_needs(tmp_path, plans):
    write_input(tmp_path / "in" / "a.ndjson", [LINE] * 3, mtime=1_700_000_000)
    out = tmp_path / "out"
    plan = _plan(plans, ["--input", str(tmp_path / "in" / "*"), "--output", str(out), "--reference-time",
                         "2024-02-01T00:00:00Z", "--max-file-mb", "1"])
    size = (tmp_path / "in" / "a.ndjson").stat().st_size
    assert [f.path for f in plan.files] == [str(tmp_path / "in" / "a.ndjson")]
    assert plan.header["input"] == {"files": 1, "bytes": size, "skipped_output_files": 0}
    assert list(plan.header) == ["run_id", "reference_time", "options", "input"]
    assert plan.header["options"]["max_file_mb"] == 1 and plan.header["reference_time"] == "2024-02-01T00:00:00Z"
    assert (plan.max_file_bytes, plan.shard_target_bytes, plan.single_shard) == (MIB, MIB, True)
    assert plan.exclusion_buckets == 0 and plan.previous_schema is None and plan.privacy.config is None
    assert plan.collect_schema is True
    # The output location is taken for the run: locked, nothing else written.
    assert plan.lock is not None and plan.lock.holds() and plan.lock.holder.run_id == plan.run_id
    assert sorted(p.name for p in out.iterdir()) == ["_LOCK.json"]
    assert plan.output.stale_files == []


def test_shards_aim_at_256_mib_unless_files_must_be_smaller(tmp_path, plans):
    write_input(tmp_path / "in" / "a.ndjson", [LINE])
    plan = _plan(plans, ["--input", str(tmp_path / "in" / "*"), "--output", str(tmp_path / "out")])
    assert plan.max_file_bytes == 1024 * MIB and plan.shard_target_bytes == SHARD_TARGET_BYTES == 256 * MIB


class _Labels(PipelineVisitor):
    def __init__(self):
        self.labels = []

    def enter_composite_transform(self, node):
        self.labels.append(node.full_label)


def test_build_only_wires_stages_it_reads_and_writes_nothing(tmp_path, plans, monkeypatch, unrun_pipeline):
    write_input(tmp_path / "in" / "a.ndjson", [LINE])
    plan = _plan(plans, ["--input", str(tmp_path / "in" / "*"), "--output", str(tmp_path / "out")],
                 collect_schema=False)
    (tmp_path / "in" / "a.ndjson").unlink()  # listed once, at launch: the graph does not look again
    pipeline = unrun_pipeline(options=plan.options)

    def no_io(*args, **kwargs):
        raise AssertionError("build() reached for storage")

    for name in ("match", "exists", "open", "create", "delete", "rename", "mkdirs"):
        monkeypatch.setattr(FileSystems, name, no_io)
    build(pipeline, plan)
    labels = _Labels()
    pipeline.visit(labels)
    assert "ReadRawLines" in labels.labels and "WriteSummary" in labels.labels
    # Without the schema report (benchmarks/bench.py's no-schema run): no stage collects it.
    assert "CollectSchema" not in labels.labels
