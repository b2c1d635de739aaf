"""The GroupIntoShards stage: route batches regrouped into size-bounded shards."""

from collections.abc import Iterable, Iterator

import apache_beam as beam

from transforms.records import RecordBatch, batch_bytes, shard_count, split_batch

RouteBatch = tuple[str, RecordBatch]
ShardKey = tuple[str, int]


def _route_size(element: RouteBatch) -> tuple[str, int]:
    route, batch = element
    return route, batch_bytes(batch)


def _key_by_shard(
    element: RouteBatch, route_bytes: dict[str, int], target_bytes: int
) -> Iterator[tuple[ShardKey, RecordBatch]]:
    route, batch = element
    shards = shard_count(route_bytes[route], target_bytes)
    for shard, part in split_batch(batch, shards).items():
        yield (route, shard), part


def _as_list(element: tuple[ShardKey, Iterable[RecordBatch]]) -> tuple[ShardKey, list[RecordBatch]]:
    key, batches = element
    return key, list(batches)


class GroupIntoShards(beam.PTransform):
    """Brings together all records of a shard of a route.

    Input: (route, RecordBatch) elements. Output: ((route, shard), [RecordBatch]),
    one element per shard holding every record of that shard, in batches in no
    given order (see records.in_upload_order).

    Guarantees: records with the same key land in the same shard; each route
    gets ceil(bytes / target_bytes) shards, so no shard is much larger than
    `target_bytes` unless one key is, and no step funnels a route through one
    worker. Elements stay batches: one per (input batch, shard), never one per
    record.
    """

    def __init__(self, target_bytes: int) -> None:
        super().__init__()
        if target_bytes <= 0:
            raise ValueError(f"target_bytes must be positive, got {target_bytes}")
        self._target_bytes = target_bytes

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        route_bytes = (
            batches
            | "MeasureBatches" >> beam.Map(_route_size)
            | "SumPerRoute" >> beam.CombinePerKey(sum)
        )
        return (
            batches
            | "KeyByShard"
            >> beam.FlatMap(
                _key_by_shard,
                route_bytes=beam.pvalue.AsDict(route_bytes),
                target_bytes=self._target_bytes,
            )
            | "GroupShards" >> beam.GroupByKey()
            | "ListShardBatches" >> beam.Map(_as_list)
        )
