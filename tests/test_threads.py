"""Tests of transforms/threads.py: DoFns whose work runs on threads (the writer of write.py is one)."""

import threading
import time

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from bundles import run_bundle
from transforms.threads import OnThreads


class MapOnThreads(OnThreads):
    """beam.Map(function) with the function run on threads: the smallest OnThreads."""

    def __init__(self, function, waiting, threads=2):
        super().__init__(waiting, threads)
        self._function = function

    def process(self, element):
        yield from self.submit(1, self._function, element)


def square(n):
    return n * n


@pytest.mark.parametrize("waiting", [0, 3, 1000])
def test_map_on_threads_in_a_pipeline_outputs_what_map_outputs(waiting):
    with TestPipeline(runner="FnApiRunner") as p:
        squares = p | beam.Create(range(500)) | beam.ParDo(MapOnThreads(square, waiting))
        assert_that(squares, equal_to([n * n for n in range(500)]))


def test_results_come_in_the_order_given_and_at_most_waiting_wait():
    release = threading.Event()

    def slow_first(n):
        if n == 0:
            release.wait(10)
        return n

    dofn = MapOnThreads(slow_first, waiting=3, threads=2)
    dofn.setup()
    dofn.start_bundle()
    outputs = []
    for n in range(3):  # 0 blocks its thread: nothing can be output before it
        outputs += dofn.process(n)
    assert outputs == []
    waited = threading.Timer(0.3, release.set)
    waited.start()
    outputs += dofn.process(3)  # a fourth waiting: process waits for 0, then gives 1 and 2 if done
    assert outputs[0] == 0 and outputs == sorted(outputs)
    outputs += [windowed.value for windowed in dofn.finish_bundle()]
    assert outputs == [0, 1, 2, 3]
    dofn.teardown()


def test_with_nothing_allowed_to_wait_every_result_is_output_by_process():
    dofn = MapOnThreads(square, waiting=0)
    dofn.setup()
    assert run_bundle(dofn, range(20)) == ([n * n for n in range(20)], [])
    dofn.teardown()


def test_a_failure_is_raised_and_cancels_the_work_queued_behind_it():
    started = []

    def fails_on_zero(n):
        started.append(n)
        time.sleep(0.3 if n == 0 else 0.01)
        if n == 0:
            raise ValueError("zero")
        return n

    dofn = MapOnThreads(fails_on_zero, waiting=1000, threads=1)
    dofn.setup()
    with pytest.raises(ValueError, match="zero"):
        run_bundle(dofn, range(100))
    settled = list(started)
    time.sleep(0.2)
    assert started == settled, "work went on after the error was raised"
    assert len(started) < 10, "the queue behind the failure was left to run"
    # The next bundle starts clean.
    assert run_bundle(dofn, [1, 2]) in (([1, 2], []), ([1], [2]), ([], [1, 2]))
    dofn.teardown()


def test_refuses_bad_settings_and_work_before_setup():
    with pytest.raises(ValueError, match="waiting must be >= 0 and threads >= 1, got -1, 2"):
        MapOnThreads(square, waiting=-1)
    with pytest.raises(ValueError, match="got 0, 0"):
        MapOnThreads(square, waiting=0, threads=0)
    dofn = MapOnThreads(square, waiting=0)
    with pytest.raises(RuntimeError, match="setup"):
        list(dofn.process(1))
