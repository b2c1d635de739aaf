"""Whether two output folders (the pipeline's, the reference's) hold the same result.

Two outputs agree when:
  1. they have the same data folders (events/day=*, profiles, groups, rejects,
     superseded/day=*), each with at least one file;
  2. every folder but profiles and groups holds the same multiset of lines,
     whatever the files' number, names and split, and the lines' order;
  3. in profiles and groups, every identity ($distinct_id, or $group_key with
     $group_id) has its updates in one file, and the same sequence of lines
     (in file order) in both outputs;
  4. their _SUMMARY.json have the same figures: input lines and blank lines,
     events, events by day, profiles, groups, superseded, rejected, rejected by
     reason, and normalised.
Top-level files (_SUMMARY.json itself, _SUCCESS, reports) are not compared as files.

Folders are reduced to digests while being read (a 128-bit hash per line, summed
modulo 2**128 for a multiset), so comparing millions of lines takes little memory.
"""


import gzip
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import orjson

_MODULUS = 1 << 128
_KEYED_FOLDERS = ("profiles", "groups")
SUMMARY_FIGURES = (
    ("input", "lines"),
    ("input", "blank_lines"),
    ("output", "events"),
    ("output", "events_by_day"),
    ("output", "profiles"),
    ("output", "groups"),
    ("output", "superseded"),
    ("output", "rejected"),
    ("output", "rejected_by_reason"),
    ("normalised", None),
)


class FolderDigest(NamedTuple):
    """What is compared of one output folder."""

    lines: int
    digest: str  # multiset hash of lines, or of (identity, line sequence) pairs
    split_identities: int  # profile/group identities found in more than one file


class OutputDigest(NamedTuple):
    folders: dict[str, FolderDigest]
    figures: dict[str, Any]


def _hash(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=16).digest(), "big")


def _read_lines(path: Path) -> Iterator[bytes]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as handle:
        tail = b""
        while chunk := handle.read(8 << 20):
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            yield from lines
        if tail:
            yield tail


def _identity(folder: str, line: bytes) -> bytes:
    record = orjson.loads(line)
    if folder == "profiles":
        return orjson.dumps(record["$distinct_id"])
    return orjson.dumps([record["$group_key"], record["$group_id"]])


def digest_folder(root: Path, folder: str) -> FolderDigest:
    """The digest of one data folder under `root` (its files in name order)."""
    files = sorted(p for p in (root / folder).iterdir() if p.is_file())
    total = 0
    count = 0
    if folder not in _KEYED_FOLDERS:
        for path in files:
            for line in _read_lines(path):
                total += _hash(line)
                count += 1
        return FolderDigest(count, f"{total % _MODULUS:032x}", 0)
    # identity -> (file, running hash of its line sequence)
    chains: dict[bytes, tuple[int, bytes]] = {}
    split: set[bytes] = set()
    for index, path in enumerate(files):
        for line in _read_lines(path):
            count += 1
            identity = _identity(folder, line)
            held = chains.get(identity)
            if held is not None and held[0] != index:
                split.add(identity)
            previous = held[1] if held is not None else b""
            chains[identity] = (index, hashlib.blake2b(previous + line, digest_size=16).digest())
    for identity, (_, chain) in chains.items():
        total += _hash(identity + b"\0" + chain)
    return FolderDigest(count, f"{total % _MODULUS:032x}", len(split))


def data_folders(root: Path) -> list[str]:
    """Relative paths of the folders under `root` that hold files, except `root` itself."""
    folders = {p.parent.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    folders.discard(".")
    return sorted(folders)


def summary_figures(summary: dict[str, Any]) -> dict[str, Any]:
    """The figures of a _SUMMARY.json that both outputs must share."""
    figures = {}
    for section, name in SUMMARY_FIGURES:
        value = summary.get(section, {})
        figures[f"{section}.{name}" if name else section] = value.get(name) if name else value
    return figures


def digest_output(root: Path) -> OutputDigest:
    """The digest of a whole output folder."""
    root = Path(root)
    summary = orjson.loads((root / "_SUMMARY.json").read_bytes())
    return OutputDigest(
        {folder: digest_folder(root, folder) for folder in data_folders(root)},
        summary_figures(summary),
    )


def differences(left: OutputDigest, right: OutputDigest) -> list[str]:
    """Human sentences for every way two outputs disagree; empty when they agree."""
    found = []
    for name, digest in (("first", left), ("second", right)):
        for folder, folder_digest in digest.folders.items():
            if folder_digest.split_identities:
                found.append(
                    f"{folder}: {folder_digest.split_identities} identities span several "
                    f"files in the {name} output"
                )
    for folder in sorted(set(left.folders) | set(right.folders)):
        a, b = left.folders.get(folder), right.folders.get(folder)
        if a is None or b is None:
            found.append(f"{folder}: only in the {'second' if a is None else 'first'} output")
        elif (a.lines, a.digest) != (b.lines, b.digest):
            found.append(f"{folder}: {a.lines} vs {b.lines} lines, contents differ")
    for figure in left.figures:
        if left.figures[figure] != right.figures.get(figure):
            found.append(
                f"summary {figure}: {left.figures[figure]!r} vs {right.figures.get(figure)!r}"
            )
    return found
