"""Type counts gathered over a bundle: what a stage gives CollectSchema (DESIGN.md §8).

ValidateAndSplit counts the types of the records it accepts; DeduplicateEvents
and ExcludeUsers count those they remove, to subtract. A partial count per
event name per batch (or per dedupe shard) meant encoding and adding up
thousands of them on their way to the combiner (1,190 for the 200,000-line
benchmark corpus: 20 batches and 30 shards of some 24 names each). One tally
held for the whole bundle gives one partial per name per bundle (48 there),
and gives them early once it holds schema.HELD_PAIRS pairs, so its memory
stays bounded (100,000 names of one pair each: 47 MB in the C tally). It is
what Beam's combiner lifting does after the elements' encoding, done before it.
"""

from collections.abc import Iterator

from apache_beam import pvalue
from apache_beam.transforms.window import GlobalWindows

from transforms.schema import HELD_PAIRS, Partial, TypeTally


class BundleTypes:
    """A DoFn's type tally for the bundle at hand, and the partial counts it gives.

    In the DoFn: `start()` in start_bundle, records added to `tally` while
    processing, `yield from full()` after each element and `yield from
    finish()` in finish_bundle. Partials go out on the output `tag`, with
    counts of `sign` (1: to add, -1: to subtract). The tally is made per
    bundle, never pickled with the DoFn. Outputs of finish_bundle are in the
    global window: the job is a batch job in the global window throughout.
    """

    __slots__ = ("_tag", "_sign", "_tally")

    def __init__(self, tag: str, sign: int) -> None:
        if sign not in (1, -1):
            raise ValueError(f"sign must be 1 or -1, got {sign!r}")
        self._tag = tag
        self._sign = sign
        self._tally: TypeTally | None = None

    @property
    def tally(self) -> TypeTally:
        if self._tally is None:
            raise RuntimeError("BundleTypes.start() was not called (start_bundle)")
        return self._tally

    def start(self) -> None:
        self._tally = TypeTally()

    def full(self) -> Iterator[pvalue.TaggedOutput]:
        """The partials so far, once the tally holds HELD_PAIRS pairs (then it starts again)."""
        if len(self.tally) >= HELD_PAIRS:
            for partial in self._take():
                yield pvalue.TaggedOutput(self._tag, partial)

    def finish(self) -> Iterator[pvalue.TaggedOutput]:
        """The bundle's remaining partials, as finish_bundle gives outputs (windowed values)."""
        for partial in self._take():
            yield pvalue.TaggedOutput(self._tag, GlobalWindows.windowed_value(partial))
        self._tally = None

    def _take(self) -> list[Partial]:
        partials = self.tally.partials(self._sign)
        self._tally = TypeTally()
        return partials
