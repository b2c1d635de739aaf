"""Tests of transforms/ranges.py: range planning and the lines each range owns."""

import io
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transforms.compression import BZIP2, DEFLATE, GZIP, LZMA, UNCOMPRESSED, ZSTD
from transforms.ranges import (
    BOM,
    UNBOUNDED,
    FileRange,
    Reading,
    iter_line_batches,
    plan_ranges,
    range_reading,
)


def reference_lines(data):
    """The contract's line split: skip a BOM, split on \\n, drop the empty piece
    after a final \\n, strip one trailing \\r; offsets count every byte."""
    offset = 0
    if data.startswith(BOM):
        data = data[3:]
        offset = 3
    pieces = data.split(b"\n")
    if pieces[-1] == b"":
        pieces.pop()
    out = []
    for piece in pieces:
        out.append((offset, piece[:-1] if piece.endswith(b"\r") else piece))
        offset += len(piece) + 1
    return out


def read_range(data, start, end, chunk_bytes):
    """Every (offset, line) iter_line_batches yields for one range, in order."""
    out = []
    for offsets, lines in iter_line_batches(io.BytesIO(data), start, end, chunk_bytes):
        assert len(offsets) == len(lines)
        assert lines, "a batch must not be empty"
        out.extend(zip(offsets, lines, strict=True))
    return out


def read_all_ranges(data, range_bytes, chunk_bytes):
    out = []
    for file_range in plan_ranges(0, "f", len(data), False, range_bytes):
        out.extend(read_range(data, file_range.start, file_range.end, chunk_bytes))
    return out


# plan_ranges ---------------------------------------------------------------


@pytest.mark.parametrize(
    "size, compressed, range_bytes, expected",
    [
        pytest.param(
            10_000, True, 100, [FileRange(3, "p", 0, UNBOUNDED, True)], id="compressed_one_unbounded_range"
        ),
        pytest.param(0, True, 100, [FileRange(3, "p", 0, UNBOUNDED, True)], id="empty_compressed"),
        pytest.param(0, False, 100, [FileRange(3, "p", 0, 0, False)], id="empty_file"),
        pytest.param(1, False, 100, [FileRange(3, "p", 0, 1, False)], id="smaller_than_range"),
        pytest.param(
            20,
            False,
            10,
            [FileRange(3, "p", 0, 10, False), FileRange(3, "p", 10, 20, False)],
            id="exact_multiple",
        ),
        pytest.param(
            21,
            False,
            10,
            [
                FileRange(3, "p", 0, 10, False),
                FileRange(3, "p", 10, 20, False),
                FileRange(3, "p", 20, 21, False),
            ],
            id="short_last_range",
        ),
        pytest.param(
            3, False, 1, [FileRange(3, "p", i, i + 1, False) for i in range(3)], id="one_byte_ranges"
        ),
    ],
)
def test_plan_ranges(size, compressed, range_bytes, expected):
    # Every range carries the file's listed size and version, for the reader to check.
    expected = [r._replace(size=size, version="v7") for r in expected]
    assert plan_ranges(3, "p", size, compressed, range_bytes, "v7") == expected


@pytest.mark.parametrize("size", [0, 1, 7, 64, 65, 1000])
@pytest.mark.parametrize("range_bytes", [1, 2, 7, 64, 5000])
def test_plan_ranges_covers_file_exactly_once(size, range_bytes):
    ranges = plan_ranges(0, "p", size, False, range_bytes)
    covered = [b for r in ranges for b in range(r.start, r.end)]
    assert covered == list(range(size))
    assert all(r.end - r.start <= range_bytes for r in ranges)


@pytest.mark.parametrize("range_bytes", [0, -1])
def test_plan_ranges_refuses_non_positive_range_bytes(range_bytes):
    with pytest.raises(ValueError, match="range_bytes"):
        plan_ranges(0, "p", 100, False, range_bytes)


# range_reading: the plan (by name) corrected by the content -------------------------

PLAIN_BY_NAME = plan_ranges(1, "a.ndjson", 25, False, 10, "v")  # [0,10) [10,20) [20,25)
GZ_BY_NAME = plan_ranges(1, "a.ndjson.gz", 25, True, 10, "v")  # [0, UNBOUNDED)


@pytest.mark.parametrize(
    "file_range, kind, expected",
    [
        pytest.param(PLAIN_BY_NAME[0], UNCOMPRESSED, Reading(UNCOMPRESSED, 0, 10), id="plain_as_planned_first"),
        pytest.param(PLAIN_BY_NAME[1], UNCOMPRESSED, Reading(UNCOMPRESSED, 10, 20), id="plain_as_planned_middle"),
        pytest.param(PLAIN_BY_NAME[2], UNCOMPRESSED, Reading(UNCOMPRESSED, 20, 25), id="plain_as_planned_last"),
        pytest.param(PLAIN_BY_NAME[0], GZIP, Reading(GZIP, 0, UNBOUNDED), id="gzip_named_plain_first_reads_all"),
        pytest.param(PLAIN_BY_NAME[1], GZIP, None, id="gzip_named_plain_middle_reads_nothing"),
        pytest.param(PLAIN_BY_NAME[2], ZSTD, None, id="zstd_named_plain_last_reads_nothing"),
        pytest.param(GZ_BY_NAME[0], GZIP, Reading(GZIP, 0, UNBOUNDED), id="gzip_as_planned"),
        pytest.param(GZ_BY_NAME[0], UNCOMPRESSED, Reading(UNCOMPRESSED, 0, UNBOUNDED), id="plain_named_gz_read_whole"),
        pytest.param(GZ_BY_NAME[0], BZIP2, Reading(BZIP2, 0, UNBOUNDED), id="bzip2_named_gz"),
        pytest.param(GZ_BY_NAME[0], LZMA, Reading(LZMA, 0, UNBOUNDED), id="xz_named_gz"),
        pytest.param(GZ_BY_NAME[0], DEFLATE, Reading(DEFLATE, 0, UNBOUNDED), id="deflate"),
        pytest.param(
            FileRange(0, "e", 0, 0, False, 0, "v"), UNCOMPRESSED, Reading(UNCOMPRESSED, 0, 0), id="empty_file"
        ),
    ],
)
def test_range_reading(file_range, kind, expected):
    assert range_reading(file_range, kind) == expected


@pytest.mark.parametrize("kind", [GZIP, BZIP2, LZMA, ZSTD, DEFLATE])
@pytest.mark.parametrize("size, range_bytes", [(1, 1), (25, 10), (1000, 7)])
def test_a_compressed_file_planned_as_plain_is_read_by_exactly_one_range(kind, size, range_bytes):
    readings = [range_reading(r, kind) for r in plan_ranges(0, "x.json", size, False, range_bytes)]
    assert [r for r in readings if r is not None] == [Reading(kind, 0, UNBOUNDED)]


# iter_line_batches: single ranges ---------------------------------------------------


@pytest.mark.parametrize(
    "data, expected",
    [
        pytest.param(b"", [], id="empty"),
        pytest.param(b"a\nbb\n", [(0, b"a"), (2, b"bb")], id="lf"),
        pytest.param(b"a\r\nbb\r\n", [(0, b"a"), (3, b"bb")], id="crlf"),
        pytest.param(b"a\rb\nc\r", [(0, b"a\rb"), (4, b"c")], id="lone_cr_kept_inside_line"),
        pytest.param(b"a\r\r\n", [(0, b"a\r")], id="only_one_cr_stripped"),
        pytest.param(b"a\nlast", [(0, b"a"), (2, b"last")], id="final_line_without_newline"),
        pytest.param(b"a\nlast\r", [(0, b"a"), (2, b"last")], id="final_line_cr_without_newline"),
        pytest.param(b"\n\n", [(0, b""), (1, b"")], id="empty_lines_kept"),
        pytest.param(b"a\n\r\nb", [(0, b"a"), (2, b""), (4, b"b")], id="empty_crlf_line_kept"),
        pytest.param(BOM + b"a\nb\n", [(3, b"a"), (5, b"b")], id="bom_skipped_offsets_count_it"),
        pytest.param(BOM, [], id="bom_only"),
        pytest.param(BOM + b"\n", [(3, b"")], id="bom_then_empty_line"),
        pytest.param(BOM + BOM + b"a", [(3, BOM + b"a")], id="second_bom_is_data"),
        pytest.param(b"a\n" + BOM + b"b\n", [(0, b"a"), (2, BOM + b"b")], id="bom_only_at_file_start"),
        pytest.param(b"\xef\xbbx\n", [(0, b"\xef\xbbx")], id="partial_bom_is_data"),
        pytest.param(b"  \t\n", [(0, b"  \t")], id="blank_line_kept_as_is"),
    ],
)
@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 1 << 20])
def test_iter_line_batches_whole_file(data, expected, chunk_bytes):
    assert read_range(data, 0, UNBOUNDED, chunk_bytes) == expected
    assert read_range(data, 0, max(len(data), 1), chunk_bytes) == expected


def test_iter_line_batches_batches_follow_chunks():
    """A file much larger than a chunk comes in several batches, not one."""
    data = b"aaa\n" * 64
    batches = list(iter_line_batches(io.BytesIO(data), 0, UNBOUNDED, chunk_bytes=8))
    assert len(batches) >= 16
    assert all(len(lines) <= 4 for _, lines in batches)
    assert [o for offsets, _ in batches for o in offsets] == list(range(0, 256, 4))


@pytest.mark.parametrize(
    "start, end, expected",
    [
        pytest.param(0, 1, [(0, b"aaa")], id="range_inside_first_line_owns_it"),
        pytest.param(1, 4, [], id="no_line_starts_in_range"),
        pytest.param(1, 5, [(4, b"bbb")], id="line_starting_at_last_byte"),
        pytest.param(4, 5, [(4, b"bbb")], id="line_starting_at_range_start"),
        pytest.param(5, 11, [(8, b"cc")], id="straddling_line_belongs_to_previous_range"),
        pytest.param(5, 12, [(8, b"cc"), (11, b"d")], id="unterminated_last_line_starts_inside"),
        pytest.param(9, 100, [(11, b"d")], id="range_past_eof"),
        pytest.param(12, 100, [], id="range_after_last_line"),
        pytest.param(5, 5, [], id="empty_range"),
    ],
)
def test_iter_line_batches_ranges(start, end, expected):
    data = b"aaa\nbbb\ncc\nd"
    assert read_range(data, start, end, 2) == expected
    assert read_range(data, start, end, 1 << 20) == expected


@pytest.mark.parametrize("range_bytes", [1, 2, 3, 4, 5])
def test_iter_line_batches_bom_line_owned_once_when_range_ends_inside_bom(range_bytes):
    data = BOM + b"first\nsecond\n"
    assert read_all_ranges(data, range_bytes, 2) == [(3, b"first"), (9, b"second")]


def test_iter_line_batches_reads_short_reads_to_eof():
    """A handle whose read() returns less than asked (as compressed Beam
    handles do past 16 MiB) is read until b""."""

    class ShortReads(io.BytesIO):
        def read(self, size=-1):
            return super().read(min(size, 3) if size and size > 0 else 3)

    data = b"".join(b"line%03d\n" % i for i in range(100))
    out = []
    for offsets, lines in iter_line_batches(ShortReads(data), 0, UNBOUNDED, chunk_bytes=1000):
        out.extend(zip(offsets, lines, strict=True))
    assert out == reference_lines(data)


# iter_line_batches: every split agrees with the reference --------------------------

ALPHABET = (b"a", b"\n", b"\r", b"\xef", b"\xbb", b"\xbf")


def check_all_splits(data):
    expected = reference_lines(data)
    assert read_range(data, 0, UNBOUNDED, 1 << 20) == expected
    for range_bytes in range(1, 9):
        for chunk_bytes in range(1, 6):
            got = read_all_ranges(data, range_bytes, chunk_bytes)
            assert got == expected, (data, range_bytes, chunk_bytes)


def test_iter_line_batches_every_short_string():
    """Exhaustive: every string of up to 4 symbols, every range and chunk size."""
    for length in range(5):
        for symbols in itertools.product(ALPHABET, repeat=length):
            check_all_splits(b"".join(symbols))


def test_iter_line_batches_bom_prefixed_short_strings():
    for length in range(4):
        for symbols in itertools.product(ALPHABET, repeat=length):
            check_all_splits(BOM + b"".join(symbols))


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    bom=st.booleans(),
    symbols=st.lists(st.sampled_from(ALPHABET), max_size=40),
)
def test_iter_line_batches_random_strings(bom, symbols):
    check_all_splits((BOM if bom else b"") + b"".join(symbols))
