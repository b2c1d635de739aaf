"""Tests of transforms/reasons.py: the closed set of reject reasons, their meanings, and the Fate of a line."""

import pytest

from transforms.reasons import (
    DUPLICATE_KEYS,
    INSERT_ID_GENERATED,
    NORMALISED_DISTINCT_ID,
    NORMALISED_TIME,
    REASON_MEANINGS,
    Fate,
    Kind,
    Reason,
)

# ---------------------------------------------------------------- interface


def test_reasons_are_the_closed_set_of_design_md() -> None:
    assert [r.value for r in Reason] == [
        "invalid_utf8",
        "invalid_json",
        "not_an_object",
        "unknown_record_type",
        "missing_event_name",
        "invalid_event_name",
        "invalid_properties",
        "missing_time",
        "invalid_time",
        "time_out_of_range",
        "invalid_distinct_id",
        "missing_distinct_id",
        "invalid_insert_id",
        "too_many_properties",
        "nesting_too_deep",
        "too_many_keys",
        "list_too_long",
        "record_too_large",
        "unexpected_field",
        "invalid_group",
        "missing_operation",
        "multiple_operations",
        "invalid_operation",
        "unsupported_operation",
    ]


@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_has_a_meaning(reason: Reason) -> None:
    assert reason.meaning == REASON_MEANINGS[reason]
    assert reason.meaning.endswith(".") and len(reason.meaning) > 20


def test_interface_shapes() -> None:
    assert [k.value for k in Kind] == [0, 1, 2, 3, 4]
    assert (NORMALISED_TIME, NORMALISED_DISTINCT_ID, INSERT_ID_GENERATED, DUPLICATE_KEYS) == (
        1,
        2,
        4,
        8,
    )
    assert Fate._fields == (
        "kind",
        "line",
        "day",
        "key",
        "name",
        "normalised",
        "reason",
        "detail",
        "values",
    )
