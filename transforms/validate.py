"""The ValidateAndSplit stage: raw line batches to events, profiles, groups, rejects."""


from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics
from apache_beam.typehints.decorators import no_annotations

from transforms import METRICS_NAMESPACE
from transforms.layout import GROUPS_ROUTE, PROFILES_ROUTE, REJECTS_ROUTE
from transforms.privacy import PrivacyConfig
from transforms.read import Batch
from transforms.reasons import Reason
from transforms.records import REJECTED_PREFIX, TOTALS, classify_batch
from transforms.rules import RuleConfig
from transforms.schema_bundle import BundleTypes

# Output tags, read by attribute: outputs.events, outputs.profiles, ...
EVENTS = "events"
PROFILES = "profiles"
GROUPS = "groups"
REJECTS = "rejects"
TALLIES = "tallies"
EVENT_NAMES = "event_names"
REJECT_EXAMPLES = "reject_examples"
# Apart from REJECT_EXAMPLES, which is keyed by reason: these lines were
# accepted, and a consumer of one must never take them for the other.
DUPLICATE_KEY_EXAMPLES = "duplicate_key_examples"
SCHEMA_COUNTS = "schema_counts"


class _ClassifyBatches(beam.DoFn):
    def __init__(
        self, config: RuleConfig, privacy: PrivacyConfig | None = None, count_types: bool = False
    ) -> None:
        super().__init__()
        self._config = config
        self._privacy = privacy
        self._types = BundleTypes(SCHEMA_COUNTS, sign=1) if count_types else None
        # The batch's tallies, also as Beam metrics: what the Dataflow UI shows while the job runs.
        self._counters = {name: Metrics.counter(METRICS_NAMESPACE, name) for name in TOTALS}
        for reason in Reason:
            name = REJECTED_PREFIX + reason.value
            self._counters[name] = Metrics.counter(METRICS_NAMESPACE, name)

    def start_bundle(self) -> None:
        if self._types is not None:
            self._types.start()

    def process(self, batch: Batch) -> Iterator[Any]:
        rank, path, offsets, lines = batch
        types = self._types
        result = classify_batch(
            rank, path, offsets, lines, self._config, self._privacy, None if types is None else types.tally
        )
        yield from result.events.items()
        if result.profiles is not None:
            yield pvalue.TaggedOutput(PROFILES, (PROFILES_ROUTE, result.profiles))
        if result.groups is not None:
            yield pvalue.TaggedOutput(GROUPS, (GROUPS_ROUTE, result.groups))
        if result.rejects is not None:
            yield pvalue.TaggedOutput(REJECTS, (REJECTS_ROUTE, result.rejects))
        for name, count in result.tallies.items():
            counter = self._counters.get(name)
            if counter is not None:
                counter.inc(count)
        yield pvalue.TaggedOutput(TALLIES, dict(result.tallies))
        if result.event_names:
            yield pvalue.TaggedOutput(EVENT_NAMES, list(result.event_names.items()))
        for reason, examples in result.examples.items():
            yield pvalue.TaggedOutput(REJECT_EXAMPLES, (reason, examples))
        if result.duplicate_key_examples:
            yield pvalue.TaggedOutput(DUPLICATE_KEY_EXAMPLES, result.duplicate_key_examples)
        if types is not None:
            yield from types.full()

    def finish_bundle(self) -> Iterator[Any]:
        if self._types is not None:
            yield from self._types.finish()


class ValidateAndSplit(beam.PTransform):
    """Classifies raw lines by DESIGN.md §2 and splits them by record type.

    Input: `Batch` tuples from ReadRawLines. Output: a DoOutputsTuple with
    `events` (route, RecordBatch) per UTC day, `profiles`, `groups` and
    `rejects` (route, RecordBatch), `tallies` (dict of counts per batch), `event_names`
    ([(name, count)] per batch), `reject_examples` ((reason, [example])
    per batch, the batch's first few) and `duplicate_key_examples`
    ([example] per batch: its first few accepted lines that gave a key
    twice), where an example is (rank, offset, records.line_example(...)),
    and `schema_counts`, ((section, name), schema.NameTypes): the types of
    the accepted records, per bundle (transforms/schema_bundle.py; none
    without count_types).

    Guarantees: every input line is counted in `tallies["lines"]` and ends in
    exactly one of: blank (counted), events, profiles, groups, rejects.

    With `privacy` (DESIGN.md §7), accepted records come out with its
    properties dropped and hashed (counted per name in `tallies`), and with
    its redact_examples, examples hold (source, offset) only.
    """

    def __init__(
        self, config: RuleConfig, privacy: PrivacyConfig | None = None, count_types: bool = False
    ) -> None:
        super().__init__()
        if not isinstance(config, RuleConfig):
            raise TypeError(f"config must be a RuleConfig, got {type(config).__name__}")
        if privacy is not None and not isinstance(privacy, PrivacyConfig):
            raise TypeError(f"privacy must be a PrivacyConfig or None, got {type(privacy).__name__}")
        self._config = config
        self._privacy = privacy
        self._count_types = bool(count_types)

    @no_annotations  # Beam takes no DoOutputsTuple as a stage's output hint (it logs a warning)
    def expand(self, batches: beam.PCollection[Batch]) -> pvalue.DoOutputsTuple:
        classify = _ClassifyBatches(self._config, self._privacy, self._count_types)
        return batches | "ClassifyLines" >> beam.ParDo(classify).with_outputs(
            PROFILES,
            GROUPS,
            REJECTS,
            TALLIES,
            EVENT_NAMES,
            REJECT_EXAMPLES,
            DUPLICATE_KEY_EXAMPLES,
            SCHEMA_COUNTS,
            main=EVENTS,
        )
