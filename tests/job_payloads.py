"""Loads every pickled payload of a Beam job as a worker would: meant for a fresh process.

`python tests/job_payloads.py PIPELINE_PB [--pickle_library L] [--main_session FILE]`
reads a pipeline proto (what Dataflow stages as pipeline.pb), unpickles each
pickled DoFn, CombineFn, PTransform, source, window function, side-input view
function and coder with Beam's pickler, loads the staged main session, and
prints one JSON object per line: {"where", "urn", "loaded"} with the class it
got. A payload that does not load (a function defined in a test, in __main__,
or in a module the worker lacks) prints {"where", "urn", "error"} and the exit
status is 1.
"""

import argparse
import json
import sys
from collections.abc import Iterator

from apache_beam.coders.coders import deserialize_coder
from apache_beam.internal import pickler
from apache_beam.portability import common_urns, python_urns
from apache_beam.portability.api import beam_runner_api_pb2
from google.protobuf import wrappers_pb2

PICKLED_URNS = frozenset(
    {
        python_urns.PICKLED_CODER,
        python_urns.PICKLED_COMBINE_FN,
        python_urns.PICKLED_DOFN,
        python_urns.PICKLED_DOFN_INFO,
        python_urns.PICKLED_SOURCE,
        python_urns.PICKLED_TRANSFORM,
        python_urns.PICKLED_WINDOW_MAPPING_FN,
        python_urns.PICKLED_WINDOWFN,
        python_urns.PICKLED_VIEWFN,
    }
)
_COMBINES = frozenset(
    {
        common_urns.composites.COMBINE_PER_KEY.urn,
        common_urns.composites.COMBINE_GLOBALLY.urn,
        common_urns.combine_components.COMBINE_GROUPED_VALUES.urn,
        common_urns.combine_components.COMBINE_PER_KEY_PRECOMBINE.urn,
        common_urns.combine_components.COMBINE_PER_KEY_MERGE_ACCUMULATORS.urn,
        common_urns.combine_components.COMBINE_PER_KEY_EXTRACT_OUTPUTS.urn,
    }
)


def payloads(proto: beam_runner_api_pb2.Pipeline) -> Iterator[tuple[str, str, bytes]]:
    """(where, urn, payload) of every function spec in the job that may hold a pickle."""
    components = proto.components
    for transform in components.transforms.values():
        name, spec = transform.unique_name, transform.spec
        yield name, spec.urn, spec.payload
        if spec.urn == common_urns.primitives.PAR_DO.urn:
            pardo = beam_runner_api_pb2.ParDoPayload.FromString(spec.payload)
            yield name, pardo.do_fn.urn, pardo.do_fn.payload
            for tag, side in pardo.side_inputs.items():
                yield f"{name} side input {tag}", side.view_fn.urn, side.view_fn.payload
                yield f"{name} side input {tag}", side.window_mapping_fn.urn, side.window_mapping_fn.payload
        elif spec.urn in _COMBINES:
            combine = beam_runner_api_pb2.CombinePayload.FromString(spec.payload)
            yield name, combine.combine_fn.urn, combine.combine_fn.payload
        elif spec.urn == common_urns.deprecated_primitives.READ.urn:
            read = beam_runner_api_pb2.ReadPayload.FromString(spec.payload)
            yield name, read.source.urn, read.source.payload
        elif spec.urn == common_urns.primitives.ASSIGN_WINDOWS.urn:
            window = beam_runner_api_pb2.WindowIntoPayload.FromString(spec.payload)
            yield name, window.window_fn.urn, window.window_fn.payload
    for coder_id, coder in components.coders.items():
        yield f"coder {coder_id}", coder.spec.urn, coder.spec.payload
    for strategy_id, strategy in components.windowing_strategies.items():
        yield f"windowing {strategy_id}", strategy.window_fn.urn, strategy.window_fn.payload


def load(urn: str, payload: bytes) -> object:
    """The object a pickled payload holds, unpickled as the SDK harness does."""
    if urn == python_urns.PICKLED_CODER:
        return deserialize_coder(wrappers_pb2.BytesValue.FromString(payload).value)
    loaded = pickler.loads(payload)
    if urn == python_urns.PICKLED_DOFN_INFO:
        return loaded[0]  # (fn, args, kwargs, side inputs, windowing)
    return loaded


def _name(obj: object) -> str:
    """module.qualname of what a payload holds; for beam.Map(fn) and the like, of fn."""
    wrapped = getattr(obj, "_fn", None)  # CallableWrapperDoFn, CallableWrapperCombineFn
    if callable(wrapped):
        obj = wrapped
    if not hasattr(obj, "__qualname__"):
        obj = type(obj)
    return f"{getattr(obj, '__module__', '?')}.{obj.__qualname__}"  # type: ignore[attr-defined]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("pipeline")
    parser.add_argument("--pickle_library", default="default")
    parser.add_argument("--main_session")
    args = parser.parse_args(argv)
    pickler.set_library(args.pickle_library)
    with open(args.pipeline, "rb") as handle:
        proto = beam_runner_api_pb2.Pipeline.FromString(handle.read())
    failed = False
    if args.main_session:
        pickler.load_session(args.main_session)
        print(json.dumps({"where": "main session", "urn": "pickled_main_session", "loaded": "session"}))
    for where, urn, payload in payloads(proto):
        if urn not in PICKLED_URNS:
            continue
        try:
            report = {"where": where, "urn": urn, "loaded": _name(load(urn, payload))}
        except Exception as err:  # noqa: BLE001 - every failure is reported, then the exit status says it
            report = {"where": where, "urn": urn, "error": f"{type(err).__name__}: {err}"}
            failed = True
        print(json.dumps(report), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
