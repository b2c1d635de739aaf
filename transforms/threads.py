"""DoFns whose heavy work runs on a pool of threads: for work that releases the GIL.

zlib, zstd and file writes release the GIL while they run, so on a machine with a
spare core the stage goes on with its next elements while threads compress and
write the last ones. Results are output in the order their work was given, each
once done; finish_bundle waits for the rest, so a runner never commits a bundle
whose work is unfinished.
"""

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

THREADS = 2  # the second core of a small machine; Dataflow workers run bundles on threads anyway


class OnThreads(beam.DoFn):
    """Base of a DoFn that hands its work to threads with `submit` and outputs results when done.

    At most `waiting` units of work (weights given to submit: bytes, batches) wait
    unfinished; beyond that, process() waits for the oldest. A failed piece of work
    cancels those queued behind it and waits for those running before its error is
    raised: a retried bundle may redo the same work (write the same files), so
    nothing of the failed attempt may still be running.
    """

    def __init__(self, waiting: int, threads: int = THREADS) -> None:
        super().__init__()
        if waiting < 0 or threads < 1:
            raise ValueError(f"waiting must be >= 0 and threads >= 1, got {waiting}, {threads}")
        self._waiting = waiting
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self._queue: deque[tuple[Future[Any], int]] = deque()
        self._weight = 0

    def setup(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix=type(self).__name__)

    def start_bundle(self) -> None:
        self._abandon()  # what a failed bundle before this one left, if anything

    def finish_bundle(self) -> Iterator[WindowedValue]:
        for output in self._take(keep=0):
            yield GlobalWindows.windowed_value(output)

    def teardown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, weight: int, work: Callable[..., Any], *args: Any) -> Iterator[Any]:
        """Hands `work(*args)` to a thread; gives the outputs of whatever work is done by now."""
        if self._pool is None:
            raise RuntimeError("setup() runs before any bundle")
        self._queue.append((self._pool.submit(work, *args), weight))
        self._weight += weight
        return self._take(keep=self._waiting)

    def outputs(self, result: Any) -> Iterator[Any]:
        """What a finished piece of work outputs (its result); subclasses may do more here."""
        yield result

    def _take(self, keep: int) -> Iterator[Any]:
        """Outputs finished work in order, waiting for the oldest while more than `keep` waits."""
        while self._queue and (self._weight > keep or self._queue[0][0].done()):
            future, weight = self._queue.popleft()
            self._weight -= weight
            try:
                result = future.result()
            except BaseException:
                self._abandon()
                raise
            yield from self.outputs(result)

    def _abandon(self) -> None:
        for future, _ in self._queue:
            future.cancel()
        wait([future for future, _ in self._queue])
        self._queue.clear()
        self._weight = 0
