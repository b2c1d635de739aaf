"""The ExcludeUsers stage: the events and profile updates of users on a deletion list removed."""


from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics
from apache_beam.typehints.decorators import no_annotations

from transforms import METRICS_NAMESPACE
from transforms.batches import RecordBatch, pack, unpack
from transforms.layout import EVENTS_PREFIX, PROFILES_ROUTE
from transforms.privacy import (
    EXCLUDED_EVENTS,
    EXCLUDED_PROFILES,
    LISTED_IDS,
    HashKey,
    listed_digests,
    listed_positions,
    probes,
    split_digests,
    without,
)
from transforms.read import Batch, InputFile, OpenerFactory, ReadRawLines
from transforms.schema import EVENTS as SCHEMA_EVENTS
from transforms.schema import PROFILES as SCHEMA_PROFILES
from transforms.schema import add_lines
from transforms.schema_bundle import BundleTypes
from transforms.shard import RouteBatch

# Output tags, read by attribute.
EVENTS = "events"
PROFILES = "profiles"
TALLIES = "tallies"
SCHEMA_COUNTS = "schema_counts"
_BATCHES = "batches"
_PROBES = "probes"
# Tags of the join by batch (CoGroupByKey passes tags under 10 characters as data).
_EVENT_BATCHES = "events"
_PROFILE_BATCHES = "profiles"
_LISTED = "listed"
_HITS = "hits"

# A batch's identity in the join: its route, rank and first offset (batches of
# one route and file cover disjoint offsets).
BatchRef = tuple[str, int, int]


class _ProbeUsers(beam.DoFn):
    """Keys each batch by its identity, and sends its records' user ids to their buckets."""

    def __init__(self, buckets: int) -> None:
        super().__init__()
        self._buckets = buckets

    def process(self, element: tuple[str, RecordBatch]) -> Iterator[Any]:
        route, batch = element
        ref: BatchRef = (route, batch[0], batch[1][0])
        yield ref, pack(batch)
        for bucket, probe in probes(route, batch, self._buckets).items():
            yield pvalue.TaggedOutput(_PROBES, (bucket, (ref, probe)))


def _key_listed(batch: Batch, key: HashKey | None, buckets: int) -> Iterator[tuple[int, bytes]]:
    _, _, _, lines = batch
    yield from listed_digests(lines, key, buckets).items()


class _FindListed(beam.DoFn):
    """Per bucket: which probed records are listed, as (batch ref, positions)."""

    def process(self, element: tuple[int, dict[str, list[Any]]]) -> Iterator[Any]:
        _, grouped = element
        listed: set[bytes] = set()
        for digests in grouped[_LISTED]:
            listed.update(split_digests(digests))
        if not listed:
            return
        # Each id falls in one bucket: the buckets' counts add up to the list's distinct ids.
        yield pvalue.TaggedOutput(TALLIES, {LISTED_IDS: len(listed)})
        for ref, probe in grouped[_PROBES]:
            positions = listed_positions(listed, probe)
            if positions:
                yield ref, positions


class _RemoveListed(beam.DoFn):
    """Per batch: the batch less its listed records, on the output of its kind."""

    def __init__(self, count_types: bool = False) -> None:
        super().__init__()
        self._types = BundleTypes(SCHEMA_COUNTS, sign=-1) if count_types else None
        self._counters = {
            name: Metrics.counter(METRICS_NAMESPACE, name) for name in (EXCLUDED_EVENTS, EXCLUDED_PROFILES)
        }

    def start_bundle(self) -> None:
        if self._types is not None:
            self._types.start()

    def finish_bundle(self) -> Iterator[Any]:
        if self._types is not None:
            yield from self._types.finish()

    def process(self, element: tuple[BatchRef, dict[str, list[Any]]]) -> Iterator[Any]:
        (route, _, _), grouped = element
        (packed,) = grouped[_EVENT_BATCHES] or grouped[_PROFILE_BATCHES]
        batch: RecordBatch | None = unpack(packed)
        positions = {p for found in grouped[_HITS] for p in found}
        if positions:
            is_events = route.startswith(EVENTS_PREFIX)
            if self._types is not None:
                # ValidateAndSplit counted the types of every accepted record;
                # the schema is of the written ones.
                removed = [batch[3][i] for i in sorted(positions)]  # type: ignore[index]
                add_lines(self._types.tally, removed, SCHEMA_EVENTS if is_events else SCHEMA_PROFILES)
                yield from self._types.full()
            batch = without(batch, positions)  # type: ignore[arg-type]
            name = EXCLUDED_EVENTS if is_events else EXCLUDED_PROFILES
            self._counters[name].inc(len(positions))
            yield pvalue.TaggedOutput(TALLIES, {name: len(positions)})
        if batch is None:
            return
        if route == PROFILES_ROUTE:
            yield pvalue.TaggedOutput(PROFILES, (route, batch))
        else:
            yield route, batch


class ExcludeUsers(beam.PTransform):
    """Removes every event and profile update of a user that a deletion list names (DESIGN.md §7).

    Input: {"events": ..., "profiles": ...}, those outputs of ValidateAndSplit:
    (route, RecordBatch) elements. Output: a dict of "events" and "profiles",
    the same batches less the records of listed users (a batch left empty is
    dropped), "tallies": {"excluded_events": n}, {"excluded_profiles": n}
    and {"excluded_listed_ids": n}, the distinct ids of the list, and
    "schema_counts": with `count_types`, the types of the removed records with
    a negative sign, per bundle (transforms/schema_bundle.py), to subtract
    from ValidateAndSplit's.

    A record's user is its distinct_id as written (an event's; a profile
    update's $distinct_id): see privacy.probes and privacy.listed_id for how
    the list's lines and the records' ids are compared; with `key` (the run
    hashes distinct_ids), the list's ids are hashed the same way first.
    Removed records are counted, never written anywhere.

    A keyed join, not a set held by every worker: the list is read in
    parallel ranges (ReadRawLines) and its ids' digests are grouped with the
    records' ids in `buckets` buckets by digest; each bucket holds only its
    share of the list. The records themselves wait in their batches, keyed
    by batch, for the positions found listed: batches are never cut up, so
    what follows sees them exactly as ValidateAndSplit made them, less the
    listed records. The result does not depend on `buckets`. A list on gs://
    or s3:// is read with `open_objects`, as ReadRawLines reads it.
    """

    def __init__(
        self,
        files: Sequence[InputFile],
        range_bytes: int,
        buckets: int,
        key: HashKey | None = None,
        count_types: bool = False,
        open_objects: OpenerFactory | None = None,
    ) -> None:
        super().__init__()
        if not files:
            raise ValueError("files must not be empty")
        if buckets <= 0:
            raise ValueError(f"buckets must be positive, got {buckets}")
        if key is not None and not isinstance(key, HashKey):
            raise TypeError(f"key must be a HashKey or None, got {type(key).__name__}")
        self._files = list(files)
        self._range_bytes = range_bytes
        self._buckets = buckets
        self._key = key
        self._count_types = bool(count_types)
        self._open_objects = open_objects

    @no_annotations  # Beam takes no dict as a stage's input or output hint (it logs a warning)
    def expand(self, records: Mapping[str, beam.PCollection[RouteBatch]]) -> dict[str, beam.PCollection[Any]]:
        # Events and profiles are probed apart: a Flatten of the two would make the
        # in-process runner hold every record once more before probing them.
        events = records["events"] | "ProbeEvents" >> beam.ParDo(_ProbeUsers(self._buckets)).with_outputs(
            _PROBES, main=_BATCHES
        )
        profiles = records["profiles"] | "ProbeProfiles" >> beam.ParDo(
            _ProbeUsers(self._buckets)
        ).with_outputs(_PROBES, main=_BATCHES)
        listed = (
            records["events"].pipeline
            | "ReadDeletionList" >> ReadRawLines(self._files, self._range_bytes, open_objects=self._open_objects)
            | "KeyListedIds" >> beam.FlatMap(_key_listed, self._key, self._buckets)
        )
        probes = (events[_PROBES], profiles[_PROBES]) | "JoinProbes" >> beam.Flatten()
        found = (
            {_LISTED: listed, _PROBES: probes}
            | "GroupByBucket" >> beam.CoGroupByKey()
            | "FindListed" >> beam.ParDo(_FindListed()).with_outputs(TALLIES, main=_HITS)
        )
        kept = (
            {_EVENT_BATCHES: events[_BATCHES], _PROFILE_BATCHES: profiles[_BATCHES], _HITS: found[_HITS]}
            | "GroupByBatch" >> beam.CoGroupByKey()
            | "RemoveListed"
            >> beam.ParDo(_RemoveListed(self._count_types)).with_outputs(
                PROFILES, TALLIES, SCHEMA_COUNTS, main=EVENTS
            )
        )
        tallies = (found[TALLIES], kept[TALLIES]) | "JoinExclusionTallies" >> beam.Flatten()
        return {
            EVENTS: kept[EVENTS],
            PROFILES: kept[PROFILES],
            TALLIES: tallies,
            SCHEMA_COUNTS: kept[SCHEMA_COUNTS],
        }
