"""Tests of transforms/layout.py: route folders, part-file names, the written order and file cuts."""

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.layout import (
    GROUPS_ROUTE,
    PROFILES_ROUTE,
    REJECTS_ROUTE,
    events_route,
    order_for_writing,
    part_name,
    split_into_files,
    superseded_route,
)


def written_size(lines):
    return sum(len(line) + 1 for line in lines)


# routes and names ------------------------------------------------------------------


def test_routes():
    assert events_route("2024-01-31") == "events/day=2024-01-31"
    assert superseded_route("events/day=2024-01-31") == "superseded/day=2024-01-31"
    assert (PROFILES_ROUTE, GROUPS_ROUTE, REJECTS_ROUTE) == ("profiles", "groups", "rejects")


@pytest.mark.parametrize(
    "index, total, compressed, expected",
    [
        (0, 1, True, "part-00000-of-00001.ndjson.gz"),
        (0, 2, True, "part-00000-of-00002.ndjson.gz"),
        (1, 2, False, "part-00001-of-00002.ndjson"),
        (41, 123, False, "part-00041-of-00123.ndjson"),
    ],
)
def test_part_name(index, total, compressed, expected):
    assert part_name(index, total, compressed) == expected


# order_for_writing -----------------------------------------------------------------

IA, IB = b"\x01" * 16, b"\x02" * 16


@pytest.mark.parametrize("route", [PROFILES_ROUTE, GROUPS_ROUTE])
def test_order_for_writing_updates_by_identity_then_upload_order(route):
    batches = [
        (1, [0, 4], IB + IA, [b"b2", b"a2"]),
        (0, [5, 9], IA + IB, [b"a1", b"b1"]),
        (2, [0], IA, [b"a3"]),
    ]
    for order in itertools.permutations(batches):
        assert order_for_writing(route, list(order)) == (
            [b"a1", b"a2", b"a3", b"b1", b"b2"],
            [IA, IA, IA, IB, IB],
        )


@pytest.mark.parametrize("route", ["events/day=2024-01-01", "superseded/day=2024-01-01"])
def test_order_for_writing_events_in_upload_order_without_keys(route):
    batches = [(1, [0], IA, [b"3"]), (0, [9], IB, [b"2"]), (0, [5], IA, [b"1"]), (2, [0, 1], IB + IA, [b"4", b"5"])]
    for order in itertools.permutations(batches):
        assert order_for_writing(route, list(order)) == ([b"1", b"2", b"3", b"4", b"5"], None)


def test_order_for_writing_rejects_in_upload_order_without_keys():
    batches = [(1, [0, 7], b"", [b"r3", b"r4"]), (0, [9], b"", [b"r2"]), (0, [2], b"", [b"r1"])]
    for order in itertools.permutations(batches):
        assert order_for_writing(REJECTS_ROUTE, list(order)) == ([b"r1", b"r2", b"r3", b"r4"], None)


def test_order_for_writing_nothing():
    assert order_for_writing(PROFILES_ROUTE, []) == ([], [])
    assert order_for_writing(REJECTS_ROUTE, []) == ([], None)


# split_into_files ------------------------------------------------------------------


def sized(sizes):
    """Lines whose length plus newline is each of `sizes`, neighbours told apart."""
    return [bytes([97 + i % 26]) * (s - 1) for i, s in enumerate(sizes)]


@pytest.mark.parametrize(
    "sizes, max_bytes, expected_sizes",
    [
        pytest.param([], 10, [], id="nothing"),
        pytest.param([5, 5], 10, [[5, 5]], id="exactly_full"),
        pytest.param([5, 5, 1], 10, [[5, 5], [1]], id="one_byte_over"),
        pytest.param([3, 3, 3, 3, 3], 7, [[3, 3], [3, 3], [3]], id="several_parts"),
        pytest.param([2, 20, 2], 10, [[2], [20], [2]], id="oversize_line_alone"),
        pytest.param([20], 10, [[20]], id="only_an_oversize_line"),
    ],
)
def test_split_into_files_without_keys(sizes, max_bytes, expected_sizes):
    lines = [b"x" * (s - 1) for s in sizes]
    files = split_into_files(lines, None, max_bytes)
    assert [[len(line) + 1 for line in f] for f in files] == expected_sizes
    assert [line for f in files for line in f] == lines


@pytest.mark.parametrize(
    "identities, max_bytes, expected",
    [
        pytest.param("", 8, [], id="nothing"),
        pytest.param("aabb", 8, ["aabb"], id="fits"),
        pytest.param("aabbb", 8, ["aa", "bbb"], id="cut_between_identities"),
        pytest.param("abbb", 6, ["a", "bbb"], id="identity_run_moved_whole"),
        pytest.param("abbbbbc", 6, ["a", "bbbbb", "c"], id="oversize_identity_own_file"),
        pytest.param("bbbbb", 4, ["bbbbb"], id="only_oversize_identity"),
        pytest.param("abbbbbbcc", 8, ["a", "bbbbbb", "cc"], id="oversize_after_small"),
        pytest.param("aabbcc", 4, ["aa", "bb", "cc"], id="one_identity_per_file"),
        pytest.param("abcde", 4, ["ab", "cd", "e"], id="small_identities_packed"),
    ],
)
def test_split_into_files_keeps_identities_together(identities, max_bytes, expected):
    # Every line is 2 bytes written: its identity's letter and the newline.
    lines = [c.encode() for c in identities]
    keys = [c.encode() * 16 for c in identities]
    files = split_into_files(lines, keys, max_bytes)
    assert [b"".join(f).decode() for f in files] == expected


def check_split(lines, keys, max_bytes, files):
    """Every documented property of split_into_files' result."""
    assert [line for f in files for line in f] == lines, "concatenation equals input"
    assert all(files), "no empty files"
    # Keys of each file, by the positions of its lines.
    bounds = list(itertools.accumulate(len(f) for f in files))
    file_keys = [keys[s:e] if keys is not None else None for s, e in itertools.pairwise([0, *bounds])]
    for f, fk in zip(files, file_keys, strict=True):
        if written_size(f) > max_bytes:
            if keys is None:
                assert len(f) == 1, "only a single line may exceed the limit"
            else:
                assert len(set(fk)) == 1, "only a single identity may exceed the limit"
    if keys is not None:
        # No identity is split across files.
        owners = {}
        for n, fk in enumerate(file_keys):
            for k in fk:
                assert owners.setdefault(k, n) == n
    # Greedy: a file is cut only when the next line (identity) would not fit.
    for n in range(len(files) - 1):
        nxt, nk = files[n + 1], file_keys[n + 1]
        first = nxt[:1] if keys is None else [line for line, k in zip(nxt, nk, strict=True) if k == nk[0]]
        assert written_size(files[n]) + written_size(first) > max_bytes
    if written_size(lines) <= max_bytes:
        assert files == ([lines] if lines else [])


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    runs=st.lists(st.tuples(st.integers(0, 5), st.lists(st.integers(1, 12), min_size=1, max_size=6)), max_size=12),
    max_bytes=st.integers(1, 30),
)
def test_split_into_files_identity_properties(runs, max_bytes):
    batches = []
    offset = 0
    for ident, sizes in runs:
        lines = sized(sizes)
        offsets = list(range(offset, offset + len(lines)))
        offset += len(lines)
        batches.append((0, offsets, bytes([ident]) * 16 * len(lines), lines))
    lines, keys = order_for_writing(PROFILES_ROUTE, batches)
    check_split(lines, keys, max_bytes, split_into_files(lines, keys, max_bytes))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(sizes=st.lists(st.integers(1, 12), max_size=40), max_bytes=st.integers(1, 30))
def test_split_into_files_line_properties(sizes, max_bytes):
    lines = sized(sizes)
    check_split(lines, None, max_bytes, split_into_files(lines, None, max_bytes))


@pytest.mark.parametrize("seed", range(5))
def test_split_into_files_seeded_random_properties(seed):
    rng = random.Random(seed)
    for _ in range(400):
        n = rng.randrange(0, 80)
        lines = sized([rng.randrange(1, 40) for _ in range(n)])
        max_bytes = rng.randrange(1, 200)
        check_split(lines, None, max_bytes, split_into_files(lines, None, max_bytes))
        # Keyed: runs of one identity, identities ascending as order_for_writing leaves them.
        keys = sorted(bytes([rng.randrange(rng.randrange(1, 30))]) * 16 for _ in range(n))
        check_split(lines, keys, max_bytes, split_into_files(lines, keys, max_bytes))
