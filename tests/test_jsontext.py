"""Tests of transforms/jsontext.py: the deep writer and the colon count behind duplicate keys."""

import json

import orjson
import pytest
from hypothesis import given, settings

from rule_lines import JSON_VALUES
from transforms import jsontext


@pytest.mark.parametrize(
    "text, colons",
    [
        (b"", 0),
        (b'{"a":1}', 1),
        (b'{"a:b" : "c:d"}', 3),
        (b'{"a\\u003a":1}', 2),
        (b'{"a\\u003A":1}', 2),
        (b'{"a\\u003b":1}', 1),  # ";", not a colon
        (b'{"a":"\\\\u003a"}', 1),  # a backslash, then the text u003a
        (b'{"a":"\\\\\\u003a"}', 2),  # a backslash, then a colon
        (b'{"a":"\\"\\u003a\\n\\u003a"}', 3),
    ],
)
def test_colons_counts_escaped_colons_exactly(text: bytes, colons: int) -> None:
    assert jsontext.colons(text) == colons
    if text:
        # The count is the one of the text as written back.
        assert orjson.dumps(json.loads(text)).count(b":") == colons


@settings(max_examples=100, deadline=None)
@given(JSON_VALUES)
def test_deep_writer_matches_orjson(value: object) -> None:
    assert jsontext._serialise_deep(value, False) == orjson.dumps(value)
    assert jsontext._serialise_deep(value, True) == orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
