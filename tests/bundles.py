"""One bundle of a DoFn run by hand, as a runner runs it, for tests of bundle-level behaviour."""

from collections.abc import Iterable

import apache_beam as beam


def run_bundle(dofn: beam.DoFn, elements: Iterable) -> tuple[list, list]:
    """(outputs of process(), values output by finish_bundle()) of one bundle of `dofn`.

    `dofn` must be set up; each element goes through process() in turn, then
    finish_bundle() runs (its WindowedValues unwrapped).
    """
    dofn.start_bundle()
    by_process = [output for element in elements for output in dofn.process(element)]
    return by_process, [windowed.value for windowed in dofn.finish_bundle()]
