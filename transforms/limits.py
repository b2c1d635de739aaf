"""Mixpanel's limits and placeholder values (DESIGN.md §2), for the event and update rules (pure; no Beam)."""

MAX_EVENT_NAME_CHARS = 255
MAX_ID_CHARS = 255
MAX_INSERT_ID_BYTES = 36
MAX_PROPERTIES = 254  # "255 or more properties" is refused
MAX_NESTING = 3
MAX_OBJECT_KEYS = 254
MAX_LIST_ELEMENTS = 254
MAX_RECORD_BYTES = 999_999  # "1,000,000 bytes or more" is refused
MAX_OPERATION_ENTRIES = 1999  # "2,000+ in one op" is refused

PLACEHOLDERS = frozenset(
    (
        "00000000-0000-0000-0000-000000000000",
        "anon",
        "anonymous",
        "nil",
        "none",
        "null",
        "n/a",
        "na",
        "undefined",
        "unknown",
        "<nil>",
        "0",
        "-1",
        "true",
        "false",
        "[]",
        "{}",
        "lmy47d",
    )
)
_LONGEST_PLACEHOLDER = max(len(p) for p in PLACEHOLDERS)


def is_placeholder(value: str) -> bool:
    """Whether a string is one of DESIGN.md's placeholder values (trimmed, any case)."""
    trimmed = value.strip()
    return len(trimmed) <= _LONGEST_PLACEHOLDER and trimmed.lower() in PLACEHOLDERS
