"""The GroupIntoShards stage: route batches regrouped into size-bounded shards."""

from collections.abc import Iterable, Iterator

import apache_beam as beam

from transforms.batches import (
    PackedBatch,
    RecordBatch,
    batch_bytes,
    pack,
    shard_count,
    split_batch,
    unpack,
)

RouteBatch = tuple[str, RecordBatch]
ShardKey = tuple[str, int]
# One shard of a route, every record of it, in batches: what GroupIntoShards gives.
Shard = tuple[ShardKey, list[RecordBatch]]


# A batch packed where it is made, with the uncompressed size of its lines.
SizedPackedBatch = tuple[str, int, PackedBatch]


def _pack_with_size(element: RouteBatch) -> SizedPackedBatch:
    route, batch = element
    return route, batch_bytes(batch), pack(batch)


def _route_size(element: SizedPackedBatch) -> tuple[str, int]:
    route, size, _ = element
    return route, size


def _key_by_shard(
    element: SizedPackedBatch, route_bytes: dict[str, int], target_bytes: int
) -> Iterator[tuple[ShardKey, PackedBatch]]:
    route, _, packed = element
    shards = shard_count(route_bytes[route], target_bytes)
    if shards == 1:  # most routes: the batch crosses as it was packed
        yield (route, 0), packed
        return
    for shard, part in split_batch(unpack(packed), shards).items():
        yield (route, shard), pack(part)


def _key_by_single_shard(element: RouteBatch) -> tuple[ShardKey, PackedBatch]:
    route, batch = element
    return (route, 0), pack(batch)


def _unpack_all(element: tuple[ShardKey, Iterable[PackedBatch]]) -> Shard:
    key, packed = element
    return key, [unpack(p) for p in packed]


class GroupIntoShards(beam.PTransform):
    """Brings together all records of a shard of a route.

    Input: (route, RecordBatch) elements. Output: ((route, shard), [RecordBatch]),
    one element per shard holding every record of that shard, in batches in no
    given order (see batches.in_upload_order).

    Guarantees: records with the same key land in the same shard; each route
    gets ceil(bytes / target_bytes) shards, so no shard is much larger than
    `target_bytes` unless one key is, and no step funnels a route through one
    worker. Elements stay batches: one per (input batch, shard), never one per
    record, and their lines cross the shuffle packed (batches.pack).

    With `single_shard` (for inputs known to be smaller than `target_bytes`
    as a whole), every route is one shard and nothing is measured: measuring
    needs the sizes as a side input, which makes the runner store the whole
    collection once more before the shuffle.
    """

    def __init__(self, target_bytes: int, single_shard: bool = False) -> None:
        super().__init__()
        if target_bytes <= 0:
            raise ValueError(f"target_bytes must be positive, got {target_bytes}")
        self._target_bytes = target_bytes
        self._single_shard = bool(single_shard)

    def expand(self, batches: beam.PCollection[RouteBatch]) -> beam.PCollection[Shard]:
        if self._single_shard:
            keyed = batches | "KeyBySingleShard" >> beam.Map(_key_by_single_shard)
            return keyed | "GroupShards" >> beam.GroupByKey() | "UnpackShards" >> beam.Map(_unpack_all)
        # Packed first, in the stage that makes the batches: KeyByShard waits
        # for the sizes (a side input), so the runner stores its whole input
        # until then, and packed it is several times smaller.
        packed = batches | "PackBatches" >> beam.Map(_pack_with_size)
        route_bytes = (
            packed
            | "MeasureBatches" >> beam.Map(_route_size)
            | "SumPerRoute" >> beam.CombinePerKey(sum)
        )
        return (
            packed
            | "KeyByShard"
            >> beam.FlatMap(
                _key_by_shard,
                route_bytes=beam.pvalue.AsDict(route_bytes),
                target_bytes=self._target_bytes,
            )
            | "GroupShards" >> beam.GroupByKey()
            | "UnpackShards" >> beam.Map(_unpack_all)
        )
