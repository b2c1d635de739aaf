"""Tests of transforms/limits.py: DESIGN.md §2's limits and placeholder values."""

import pytest

from transforms.limits import (
    MAX_EVENT_NAME_CHARS,
    MAX_ID_CHARS,
    MAX_INSERT_ID_BYTES,
    MAX_LIST_ELEMENTS,
    MAX_NESTING,
    MAX_OBJECT_KEYS,
    MAX_OPERATION_ENTRIES,
    MAX_PROPERTIES,
    MAX_RECORD_BYTES,
    PLACEHOLDERS,
    is_placeholder,
)


def test_limits_are_those_of_design_md() -> None:
    # Each is the largest value accepted: "255 or more properties" is refused, and so on.
    assert (MAX_EVENT_NAME_CHARS, MAX_ID_CHARS, MAX_INSERT_ID_BYTES) == (255, 255, 36)
    assert (MAX_PROPERTIES, MAX_NESTING, MAX_OBJECT_KEYS, MAX_LIST_ELEMENTS) == (254, 3, 254, 254)
    assert (MAX_RECORD_BYTES, MAX_OPERATION_ENTRIES) == (999_999, 1999)


def test_placeholders_are_the_list_of_design_md() -> None:
    assert {
        "00000000-0000-0000-0000-000000000000", "anon", "anonymous", "nil", "none", "null", "n/a", "na",
        "undefined", "unknown", "<nil>", "0", "-1", "true", "false", "[]", "{}", "lmy47d",
    } == PLACEHOLDERS


@pytest.mark.parametrize(
    "value", ["anon", " Anonymous ", "NULL", "\tnone\n", "<NIL>", "0", " -1", "[]", "{}", "LMY47D", "N/A",
              "00000000-0000-0000-0000-000000000000"]
)
def test_placeholders_are_found_trimmed_in_any_case(value: str) -> None:
    assert is_placeholder(value)


@pytest.mark.parametrize("value", ["", " ", "u1", "00", "nulll", "anon user", "1", "0x0", "-1.0", "n / a"])
def test_other_values_are_not_placeholders(value: str) -> None:
    assert not is_placeholder(value)
