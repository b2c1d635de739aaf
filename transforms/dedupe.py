"""The DeduplicateEvents stage: one event per Mixpanel overwrite key, the latest upload."""


from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics
from apache_beam.typehints.decorators import no_annotations

from transforms import METRICS_NAMESPACE
from transforms.batches import RecordBatch, pick_latest
from transforms.layout import superseded_route
from transforms.schema import EVENTS as SCHEMA_EVENTS
from transforms.schema import add_lines
from transforms.schema_bundle import BundleTypes
from transforms.shard import GroupIntoShards, RouteBatch, ShardKey

# Output tags, read by attribute.
SURVIVORS = "survivors"
SUPERSEDED = "superseded"
TALLIES = "tallies"
SCHEMA_COUNTS = "schema_counts"
SUPERSEDED_COUNT = "superseded"


class _PickLatest(beam.DoFn):
    def __init__(self, keep_superseded: bool, count_types: bool = False) -> None:
        super().__init__()
        self._keep_superseded = keep_superseded
        self._types = BundleTypes(SCHEMA_COUNTS, sign=-1) if count_types else None
        self._superseded = Metrics.counter(METRICS_NAMESPACE, "superseded")

    def start_bundle(self) -> None:
        if self._types is not None:
            self._types.start()

    def process(self, element: tuple[ShardKey, list[RecordBatch]]) -> Iterator[Any]:
        (route, shard), batches = element
        survivors, superseded = pick_latest(batches)
        yield (route, shard), survivors
        if superseded:
            count = sum(len(b[3]) for b in superseded)
            self._superseded.inc(count)
            yield pvalue.TaggedOutput(TALLIES, {SUPERSEDED_COUNT: count})
            if self._types is not None:
                # ValidateAndSplit counted every accepted event; the schema is of
                # the written ones. Superseded events are few: re-read them.
                add_lines(self._types.tally, (line for b in superseded for line in b[3]), SCHEMA_EVENTS)
                yield from self._types.full()
            if self._keep_superseded:
                yield pvalue.TaggedOutput(SUPERSEDED, ((superseded_route(route), shard), superseded))

    def finish_bundle(self) -> Iterator[Any]:
        if self._types is not None:
            yield from self._types.finish()


class DeduplicateEvents(beam.PTransform):
    """Keeps one event per overwrite key (event, distinct_id, $insert_id, UTC day).

    Input: (events route, RecordBatch) from ValidateAndSplit. Output: a
    DoOutputsTuple: `survivors`, ((route, shard), [RecordBatch]) as
    GroupIntoShards gives them (WritePartitions' input), each shard's batches
    less their superseded records; `superseded` the same for the losers, under
    their superseded/ route (only with keep_superseded); `tallies`
    ({"superseded": n}) and `schema_counts`, the types of the superseded
    events with a negative sign, per bundle, to subtract from
    ValidateAndSplit's (only with count_types).

    Guarantees: per key exactly one record survives, the one latest in upload
    order (rank, offset); the result does not depend on bundling or workers.
    """

    def __init__(
        self,
        target_bytes: int,
        keep_superseded: bool = False,
        single_shard: bool = False,
        count_types: bool = False,
    ) -> None:
        super().__init__()
        if target_bytes <= 0:
            raise ValueError(f"target_bytes must be positive, got {target_bytes}")
        self._target_bytes = target_bytes
        self._keep_superseded = bool(keep_superseded)
        self._single_shard = bool(single_shard)
        self._count_types = bool(count_types)

    @no_annotations  # Beam takes no DoOutputsTuple as a stage's output hint (it logs a warning)
    def expand(self, events: beam.PCollection[RouteBatch]) -> pvalue.DoOutputsTuple:
        return (
            events
            | "GroupEventShards" >> GroupIntoShards(self._target_bytes, self._single_shard)
            | "PickLatest"
            >> beam.ParDo(_PickLatest(self._keep_superseded, self._count_types)).with_outputs(
                SUPERSEDED, TALLIES, SCHEMA_COUNTS, main=SURVIVORS
            )
        )
