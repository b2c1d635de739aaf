"""The pipeline's shape scales out: reading is spread, no step funnels everything through one key."""

import apache_beam as beam
from apache_beam.pipeline import PipelineVisitor

from e2e import write_input
from pipeline.plan import plan_launch
from pipeline.run import build


class _Labels(PipelineVisitor):
    def __init__(self):
        self.transforms = {}

    def visit_transform(self, node):
        self.transforms[node.full_label] = node.transform

    def enter_composite_transform(self, node):
        self.transforms[node.full_label] = node.transform


def _graph(tmp_path, unrun_pipeline, *flags):
    write_input(
        tmp_path / "in" / "a.ndjson", [b'{"event": "A", "properties": {"time": 1704067200, "distinct_id": "u"}}'] * 50
    )
    plan = plan_launch(["--input", str(tmp_path / "in" / "*"), "--output", str(tmp_path / "out"), *flags])
    pipeline = unrun_pipeline(options=plan.options)
    build(pipeline, plan)
    plan.lock.release()
    labels = _Labels()
    pipeline.visit(labels)
    return labels.transforms


def test_ranges_are_reshuffled_before_they_are_read(tmp_path, small_read_ranges, unrun_pipeline):
    graph = _graph(tmp_path, unrun_pipeline, "--range-bytes", "64")
    assert isinstance(graph["ReadRawLines/SpreadRanges"], beam.Reshuffle)
    names = list(graph)
    assert (
        names.index("ReadRawLines/ListRanges")
        < names.index("ReadRawLines/SpreadRanges")
        < names.index("ReadRawLines/ReadRanges")
    )


def test_large_inputs_measure_routes_and_spread_them_over_shards(tmp_path, unrun_pipeline):
    # An input smaller than one file's budget needs no measuring: one shard per route.
    graph = _graph(tmp_path, unrun_pipeline, "--max-file-mb", "1")
    assert "DeduplicateEvents/GroupEventShards/KeyBySingleShard" in graph
    # 1.2 MB against a 1 MiB budget: routes are measured and spread over shards by key.
    big = tmp_path / "big"
    big.mkdir()
    line = b'{"event": "A", "properties": {"time": 1704067200, "distinct_id": "u", "p": "' + b"x" * 2000 + b'"}}'
    write_input(big / "in" / "a.ndjson", [line] * 600)
    plan = plan_launch(["--input", str(big / "in" / "*"), "--output", str(big / "out"), "--max-file-mb", "1"])
    pipeline = unrun_pipeline(options=plan.options)
    build(pipeline, plan)
    plan.lock.release()
    labels = _Labels()
    pipeline.visit(labels)
    assert "DeduplicateEvents/GroupEventShards/KeyByShard" in labels.transforms
    assert "DeduplicateEvents/GroupEventShards/SumPerRoute" in labels.transforms
