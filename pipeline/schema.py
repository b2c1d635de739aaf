"""The schema report in the job: the CollectSchema stage, an earlier run's schema, drift and its check."""

from collections.abc import Iterable
from typing import Any

import apache_beam as beam
import orjson
from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipeline.options import UsageError
from pipeline.output import SCHEMA_FILE
from transforms import os_error_text, read_all
from transforms.schema import NameTypes, Partial, SchemaKey, finish_name, merge
from transforms.schema_document import Outline, SchemaShapeError, document_of, drift, outline

# The summary's check that --fail-on-type-change adds.
TYPE_CHANGES_CHECK = "type_changes_ok"


class _AddTypes(beam.CombineFn):
    """Adds up the partial type counts of one event name (or of profiles, or groups)."""

    def create_accumulator(self) -> NameTypes:
        return NameTypes()

    def add_input(self, acc: NameTypes, part: NameTypes) -> NameTypes:
        return merge(acc, part)

    def merge_accumulators(self, accs: Iterable[NameTypes]) -> NameTypes:
        merged = NameTypes()
        for acc in accs:
            merge(merged, acc)
        return merged

    def extract_output(self, acc: NameTypes) -> NameTypes:
        return finish_name(acc)


class CollectSchema(beam.PTransform):
    """Adds up the types of the written records per event name (DESIGN.md §8).

    Input: ((section, name), schema.NameTypes) partial counts, from
    ValidateAndSplit (the accepted records) and DeduplicateEvents (the
    superseded events, negative). Output: ((section, name), NameTypes), each
    name once with its final figures (schema.finish_name), which the job's
    last step lays out as _SCHEMA.json (schema_document.document_of).

    A combiner, so it works on every runner without a second pass over the
    data; every figure is a sum, so the bundles and the order of merges
    change nothing. The last step sees each name once, complete, and keeps
    the largest (schema.EventNames), in bounded memory.
    """

    def expand(self, partials: beam.PCollection[Partial]) -> beam.PCollection[Partial]:
        return partials | "AddTypesPerName" >> beam.CombinePerKey(_AddTypes())


def read_previous_schema(path: str) -> Outline:
    """Reads an earlier run's _SCHEMA.json (local, gs://, s3://) for --previous-schema.

    Only what drift compares is kept: it travels with the job to its last step.

    Raises:
      UsageError: the file cannot be read, is not JSON, or has not the shape
        of a _SCHEMA.json, in one line naming the path.
    """
    flag = f"--previous-schema {path!r}"
    data = None
    try:
        if FileSystems.exists(path):
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
                data = read_all(handle)
    except (BeamIOError, OSError, ValueError) as err:  # a store's refusal, a bad bucket name
        raise UsageError(f"{flag} cannot be read: {' '.join(os_error_text(err).split())}") from None
    if data is None:
        raise UsageError(f"{flag}: no such file (an earlier run's {SCHEMA_FILE} was expected)")
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise UsageError(f"{flag} is not JSON ({err.msg} at character {err.pos})") from None
    try:
        return outline(document)
    except SchemaShapeError as err:
        raise UsageError(f"{flag} is not a {SCHEMA_FILE} of this tool: {err}") from None


def complete_schema(
    names: Iterable[tuple[SchemaKey, NameTypes]],
    previous: Outline | None,
    summary: dict[str, Any],
    fail_on_type_change: bool,
) -> dict[str, Any]:
    """The document to write, from CollectSchema's output: with `drift` when there is an earlier run's schema.

    With `fail_on_type_change`, the summary gets the check TYPE_CHANGES_CHECK,
    and fails (`passed` false) when a type changed.
    """
    complete = document_of(names)
    if previous is None:
        return complete
    complete["drift"] = found = drift(previous, outline(complete))
    if fail_on_type_change:
        ok = not found["type_changes"]
        summary["checks"][TYPE_CHANGES_CHECK] = ok
        summary["passed"] = summary["passed"] and ok
    return complete


def read_schema(output: str) -> dict[str, Any] | None:
    """The _SCHEMA.json under `output`, or None if there is none."""
    path = FileSystems.join(output, SCHEMA_FILE)
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        document: dict[str, Any] = orjson.loads(read_all(handle))
    return document

