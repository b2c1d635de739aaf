"""The README's promises that code can check: reason examples, options, quick start."""

import codecs
import re

import pytest

from e2e import REPO
from pipeline.options import OWN_OPTIONS
from transforms.rules import Kind, Reason, RuleConfig, classify

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
