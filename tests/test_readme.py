"""The README's promises that code can check: reason examples, options, quick start, the schema excerpt."""

import codecs
import re

import orjson
import pytest

from e2e import REPO, SAMPLE, run_cli
from pipeline.options import OWN_OPTIONS
from transforms.reasons import Kind, Reason
from transforms.rules import RuleConfig, classify
from transforms.schema_document import drift_counts

README = (REPO / "README.md").read_text(encoding="utf-8")
CONFIG = RuleConfig(reference_time=1706745600)  # 2024-02-01T00:00:00Z
_ROW = re.compile(r"^\| `([a-z0-9_]+)` \| [^|]+ \| `(\{.*\}|\[.*\])`", re.MULTILINE)


def _examples():
    for reason, example in _ROW.findall(README):
        raw = example.encode("utf-8")
        if reason == "invalid_utf8":
            raw = codecs.escape_decode(raw)[0]  # the README spells the bad byte as \xe9
        yield pytest.param(reason, raw, id=f"{reason}:{example[:30]}")


EXAMPLES = list(_examples())


@pytest.mark.parametrize("reason, line", EXAMPLES)
def test_every_reason_example_in_the_readme_gets_that_reason(reason, line):
    fate = classify(line, CONFIG)
    assert fate.kind == Kind.REJECT
    assert fate.reason == Reason(reason)


def test_the_readme_documents_every_reason_with_an_example_line():
    documented = {reason for reason, _ in _ROW.findall(README)}
    prose_only = {"too_many_properties", "too_many_keys", "list_too_long", "record_too_large"}
    assert {r.value for r in Reason} - prose_only <= documented
    for reason in Reason:
        assert f"`{reason.value}`" in README


def test_the_readme_documents_every_option():
    for name in OWN_OPTIONS:
        assert f"`--{name.replace('_', '-')}" in README, name


def test_the_quick_start_is_exactly_two_commands():
    quick = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.strip().splitlines()]
    assert commands == ["make run", "make test"]


def _subset(excerpt, actual, where="") -> None:
    """Asserts every key of the excerpt is in `actual` with the same value (recursively)."""
    if isinstance(excerpt, dict):
        assert isinstance(actual, dict), where
        for key, value in excerpt.items():
            assert key in actual, f"{where}.{key} is not in the real file"
            _subset(value, actual[key], f"{where}.{key}")
    else:
        assert excerpt == actual, where


def test_the_schema_excerpt_is_part_of_the_samples_real_schema(tmp_path):
    block = README.split("<!-- schema-excerpt:", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    excerpt = orjson.loads(block)
    out = tmp_path / "out"
    assert run_cli("--input", str(SAMPLE / "*"), "--output", str(out), "--reference-time", "2024-02-01T00:00:00Z") == 0
    actual = orjson.loads((out / "_SCHEMA.json").read_bytes())
    _subset(excerpt, actual)
    # Whole entries where the excerpt shows an event: every property of it.
    for name, entry in excerpt["events"].items():
        assert entry == actual["events"][name]


def test_the_drift_illustration_has_the_shape_drift_writes():
    block = README.split("### Drift", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    drift = orjson.loads("{" + block + "}")["drift"]
    assert sorted(drift) == ["new_events", "new_properties", "removed_events", "removed_properties", "type_changes"]
    assert drift_counts(drift) == "1 new event, 1 new property, 1 type change"
    assert "schema drift    " + drift_counts(drift) in README
