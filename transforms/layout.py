"""The output layout (DESIGN.md §4): route folders, part-file names, written order, where files are cut (pure; no Beam).

A route is an output folder: "events/day=YYYY-MM-DD", "superseded/day=…",
"profiles", "groups" or "rejects". Its records are written in shards, each
shard's lines in written order and cut into files of a bounded size.
"""

import re
from collections.abc import Iterable

from transforms.batches import RecordBatch, in_upload_order, keys_of

ShardLines = tuple[list[bytes], list[bytes] | None]  # (lines, keys to cut files by)

PROFILES_ROUTE = "profiles"
GROUPS_ROUTE = "groups"
REJECTS_ROUTE = "rejects"
EVENTS_PREFIX = "events/day="
SUPERSEDED_PREFIX = "superseded/day="

# Every output folder there is (DESIGN.md §4). Output paths are built from
# routes, and a route from a day the rules formatted; this is checked again
# where paths are made, so that no value from a record can steer a file.
_OUTPUT_ROUTE = re.compile(
    r"(?:events|superseded)/day=[0-9]{4}-[0-9]{2}-[0-9]{2}|profiles|groups|rejects"
)


def check_route(route: str) -> str:
    """Returns `route` if it is one of the output folders; raises otherwise.

    Raises:
      ValueError: the route is not `events/day=YYYY-MM-DD`,
        `superseded/day=YYYY-MM-DD`, `profiles`, `groups` or `rejects`: a bug,
        which must fail the job rather than write anywhere else.
    """
    if type(route) is not str or not _OUTPUT_ROUTE.fullmatch(route):
        raise ValueError(f"{str(route)[:80]!r} is not an output folder of this tool (a bug)")
    return route


_PART_FILE = re.compile(
    rf"(?:{_OUTPUT_ROUTE.pattern})/part-[0-9]{{5}}-of-[0-9]{{5}}\.ndjson(?:\.gz)?"
)


def is_part_file(path: str) -> bool:
    """Whether a path relative to the output root names a data file of the layout."""
    return _PART_FILE.fullmatch(path) is not None


def events_route(day: str) -> str:
    """The output folder of events of one UTC day ("YYYY-MM-DD")."""
    return EVENTS_PREFIX + day


def superseded_route(route: str) -> str:
    """The folder for the events that lost the dedupe in an events folder."""
    return SUPERSEDED_PREFIX + route[len(EVENTS_PREFIX) :]


def part_name(index: int, total: int, compressed: bool) -> str:
    """The file name of part `index` of `total` in one output folder."""
    suffix = ".ndjson.gz" if compressed else ".ndjson"
    return f"part-{index:05d}-of-{total:05d}{suffix}"


def order_for_writing(route: str, batches: Iterable[RecordBatch]) -> ShardLines:
    """The lines of a shard in written order, with the keys files are cut by.

    Profile and group updates are ordered by identity, then upload order, so
    that one identity's updates stay together and in order; their keys come
    along so that a file is only ever cut between identities. Everything else
    is in upload order and may be cut anywhere (keys None).
    """
    ordered = in_upload_order(batches)
    lines = [line for b in ordered for line in b[3]]
    if route not in (PROFILES_ROUTE, GROUPS_ROUTE):
        return lines, None
    keys = [key for b in ordered for key in keys_of(b)]
    order = sorted(range(len(keys)), key=keys.__getitem__)  # stable: keeps upload order
    return [lines[i] for i in order], [keys[i] for i in order]


def split_into_files(lines: list[bytes], keys: list[bytes] | None, max_bytes: int) -> list[list[bytes]]:
    """Cuts ordered lines into files of at most `max_bytes` uncompressed.

    With `keys`, a file is cut only where the key changes, so an identity's
    updates share one file (a single identity larger than `max_bytes` gets a
    file of its own, over the limit).
    """
    if sum(map(len, lines)) + len(lines) <= max_bytes:
        return [lines] if lines else []
    files: list[list[bytes]] = []
    start = 0  # first line of the file being filled
    size = 0  # bytes of lines[start:i]
    boundary = 0  # the latest place after `start` where the file may end
    size_to_boundary = 0  # bytes of lines[start:boundary]
    for i, line in enumerate(lines):
        length = len(line) + 1
        if i > start and (keys is None or keys[i] != keys[i - 1]):
            boundary, size_to_boundary = i, size
        if size + length > max_bytes and boundary > start:
            files.append(lines[start:boundary])
            size -= size_to_boundary
            start, size_to_boundary = boundary, 0
        size += length
    if start < len(lines):
        files.append(lines[start:])
    return files
