"""Batches of input lines classified: records by route, the run's tallies, examples and reject lines (pure; no Beam).

classify_batch() applies the rules (transforms/rules.py) to every line of a
batch read from one file and gathers the results by route, as RecordBatches
(transforms/batches.py), with what the summary, the report and the schema
count of them.
"""

import base64
from collections import Counter
from typing import NamedTuple

import orjson

from transforms.batches import RecordBatch
from transforms.layout import EVENTS_PREFIX
from transforms.privacy import PrivacyConfig
from transforms.reasons import (
    DUPLICATE_KEYS,
    INSERT_ID_GENERATED,
    NORMALISED_DISTINCT_ID,
    NORMALISED_TIME,
    Kind,
)
from transforms.rules import RuleConfig, classify
from transforms.schema import GROUPS as SCHEMA_GROUPS
from transforms.schema import PROFILES as SCHEMA_PROFILES
from transforms.schema import TypeTally

# Tally names; they become the summary's figures (see pipeline/summary.py).
# PROFILES, GROUPS and REJECTED are not read there (the summary counts those
# lines in the files written): they stay as the live Beam metrics of TOTALS.
LINES = "lines"
BLANK_LINES = "blank_lines"
EVENTS_ACCEPTED = "events_accepted"
PROFILES = "profiles"
GROUPS = "groups"
REJECTED = "rejected"
# Counted for every batch; each is also a Beam metric of the same name (transforms/validate.py).
TOTALS = (LINES, BLANK_LINES, EVENTS_ACCEPTED, PROFILES, GROUPS, REJECTED)
REJECTED_PREFIX = "rejected_"
NORMALISED_PREFIX = "normalised_"
PROFILE_OPERATION_PREFIX = "operation_profiles_"
GROUP_OPERATION_PREFIX = "operation_groups_"
EXAMPLES_PER_REASON = 5
DUPLICATE_KEY_EXAMPLES = 5  # accepted lines shown that gave a key twice
EXAMPLE_CHARS = 300  # examples are for people: a glimpse, not the record
# The kinds as module globals, compared by identity (Kind is an IntEnum: each member is one object).
_BLANK, _EVENT, _PROFILE, _GROUP, _REJECT = Kind.BLANK, Kind.EVENT, Kind.PROFILE, Kind.GROUP, Kind.REJECT
_NORMALISED_FLAGS = (
    (NORMALISED_TIME, NORMALISED_PREFIX + "time"),
    (NORMALISED_DISTINCT_ID, NORMALISED_PREFIX + "distinct_id"),
    (INSERT_ID_GENERATED, NORMALISED_PREFIX + "insert_id_generated"),
    (DUPLICATE_KEYS, NORMALISED_PREFIX + "duplicate_keys"),
)


def reject_line(reason: str, detail: str, path: str, offset: int, raw: bytes) -> bytes:
    """The rejects-file line for one refused input line.

    The raw line is kept byte for byte: as a JSON string when it is UTF-8,
    else base64 under "line_base64".
    """
    record: dict[str, object] = {
        "reason": reason,
        "detail": detail,
        "source": path,
        "offset": offset,
    }
    try:
        record["line"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        record["line_base64"] = base64.b64encode(raw).decode("ascii")
    # An exact-size copy: orjson's result keeps a 4+ KiB allocation, and
    # rejects are held until they are written.
    return bytes(memoryview(orjson.dumps(record)))


def line_example(path: str, offset: int, raw: bytes) -> dict[str, object]:
    """A short, JSON-safe glimpse of an input line for the run report.

    The report shows rejects this way, and accepted lines that gave a key twice.
    """
    example: dict[str, object] = {"source": path, "offset": offset}
    try:
        example["line"] = raw.decode("utf-8")[:EXAMPLE_CHARS]
    except UnicodeDecodeError:
        example["line_base64"] = base64.b64encode(raw[: EXAMPLE_CHARS * 3 // 4]).decode("ascii")
    return example


def position_example(path: str, offset: int, raw: bytes) -> dict[str, object]:
    """Where an input line is, without what it holds (--redact-examples)."""
    return {"source": path, "offset": offset}


# (rank, offset, example): ordered by upload position, so the first few are stable.
Example = tuple[int, int, dict[str, object]]


class _Columns:
    """Records of one route being gathered from a batch, column by column."""

    __slots__ = ("offsets", "keys", "lines")

    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.keys: list[bytes] = []
        self.lines: list[bytes] = []

    def batch(self, rank: int) -> RecordBatch:
        return rank, self.offsets, b"".join(self.keys), self.lines


class ClassifiedBatch(NamedTuple):
    """One batch of input lines, classified. Empty categories are None."""

    events: dict[str, RecordBatch]  # events route -> its records
    profiles: RecordBatch | None
    groups: RecordBatch | None
    rejects: RecordBatch | None
    tallies: Counter[str]
    event_names: Counter[str]  # accepted events per name
    examples: dict[str, list[Example]]  # reason -> the batch's first few rejects
    duplicate_key_examples: list[Example]  # the batch's first few accepted lines that gave a key twice


def classify_batch(
    rank: int,
    path: str,
    offsets: list[int],
    lines: list[bytes],
    config: RuleConfig,
    privacy: PrivacyConfig | None = None,
    types: TypeTally | None = None,
) -> ClassifiedBatch:
    """Classifies every line of a batch and gathers the results by route.

    Every line is counted exactly once: as blank, or in exactly one of the
    events, profiles, groups and rejects. Each output batch keeps the input's
    order (ascending offsets). Accepted lines that gave a key twice are
    counted under "normalised_duplicate_keys" (events, superseded or not,
    and updates alike), and the first few are kept as examples. With
    `privacy`, accepted records are dropped and hashed as it says
    (privacy.Scrubber), and examples may show positions only. With `types`,
    the types of the accepted records, as written, are counted into it for
    the schema report.
    """
    events: dict[str, _Columns] = {}
    profiles, groups, rejects = _Columns(), _Columns(), _Columns()
    tallies: Counter[str] = Counter()
    # Chosen once per batch: a run without privacy classifies as it always did.
    classify_line = classify if privacy is None else privacy.classifier(config, tallies)
    example_of = position_example if privacy is not None and privacy.redact_examples else line_example
    normalised = Counter[int]()
    event_names: list[str] = []  # counted once per batch, at C speed
    examples: dict[str, list[Example]] = {}
    repeated_keys: list[Example] = []
    if types is not None:
        types.add_file(rank, path)
    for offset, raw in zip(offsets, lines, strict=True):
        # One unpacking instead of an attribute lookup per field: this loop runs once per line.
        kind, line, day, key, name, flags, reason, detail, values = classify_line(raw, config)
        if kind is _EVENT:
            columns = events.get(day)
            if columns is None:
                columns = events[day] = _Columns()
            columns.offsets.append(offset)
            columns.keys.append(key)
            columns.lines.append(line)
            event_names.append(name)
            if types is not None:
                types.add_event(name, values, rank, offset)
        elif kind is _REJECT:
            code = reason.value  # type: ignore[union-attr]
            rejects.offsets.append(offset)
            rejects.lines.append(reject_line(code, detail, path, offset, raw))
            tallies[REJECTED_PREFIX + code] += 1
            shown = examples.setdefault(code, [])
            if len(shown) < EXAMPLES_PER_REASON:
                shown.append((rank, offset, example_of(path, offset, raw)))
        elif kind is _BLANK:
            tallies[BLANK_LINES] += 1
        else:
            columns, prefix = (
                (profiles, PROFILE_OPERATION_PREFIX) if kind is _PROFILE else (groups, GROUP_OPERATION_PREFIX)
            )
            columns.offsets.append(offset)
            columns.keys.append(key)
            columns.lines.append(line)
            tallies[prefix + name] += 1
            if types is not None:
                section = SCHEMA_PROFILES if kind is _PROFILE else SCHEMA_GROUPS
                types.add_update(section, name, values, rank, offset)
        if flags:  # 0 for blanks and rejects
            normalised[flags] += 1
            if flags & DUPLICATE_KEYS and len(repeated_keys) < DUPLICATE_KEY_EXAMPLES:
                repeated_keys.append((rank, offset, example_of(path, offset, raw)))
        # Frees the parsed record now: the next line's parse then reuses its
        # memory, still in the CPU's cache (measured: 10 % of the classifier).
        values = None
    tallies[LINES] += len(lines)
    tallies[EVENTS_ACCEPTED] += sum(len(c.lines) for c in events.values())
    tallies[PROFILES] += len(profiles.lines)
    tallies[GROUPS] += len(groups.lines)
    tallies[REJECTED] += len(rejects.lines)
    for flags, count in normalised.items():
        for flag, name in _NORMALISED_FLAGS:
            if flags & flag:
                tallies[name] += count
    return ClassifiedBatch(
        {EVENTS_PREFIX + day: c.batch(rank) for day, c in events.items()},
        profiles.batch(rank) if profiles.lines else None,
        groups.batch(rank) if groups.lines else None,
        rejects.batch(rank) if rejects.lines else None,
        tallies,
        Counter(event_names),
        examples,
        repeated_keys,
    )
