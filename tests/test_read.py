"""Tests of transforms/read.py: the ReadRawLines stage (files listed by pipeline/inputs.py)."""

import bz2
import gzip
import os

import apache_beam as beam
import pytest
import zstandard
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from e2e import read_json_lines, run_cli, summary
from pipeline.inputs import match_inputs
from transforms.read import InputFile, ReadRawLines

BOM = b"\xef\xbb\xbf"


def flatten(batch):
    rank, path, offsets, lines = batch
    assert len(offsets) == len(lines)
    for offset, line in zip(offsets, lines, strict=True):
        yield rank, path, offset, line


def write(path, data, mtime=None):
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return str(path)


def reference_lines(data):
    """(offset, line) per the contract: BOM skipped, \\n split, one \\r stripped."""
    offset = 0
    if data.startswith(BOM):
        data, offset = data[3:], 3
    pieces = data.split(b"\n")
    if pieces[-1] == b"":
        pieces.pop()
    out = []
    for piece in pieces:
        out.append((offset, piece[:-1] if piece.endswith(b"\r") else piece))
        offset += len(piece) + 1
    return out


# ReadRawLines ----------------------------------------------------------------------

MIXED = (
    BOM
    + b'{"event":"a"}\r\n'
    + b"\n"
    + b"  \t\r\n"
    + b'lone\rcr\n'
    + b"\xff\xfe bad utf8\n"
    + b'{"event":"no newline"}'
)
SECOND = b'line one\nline two\n'


def test_read_raw_lines_exact_lines(tmp_path):
    mixed = write(tmp_path / "mixed.json", MIXED, 100)
    second = write(tmp_path / "second.json.gz", gzip.compress(SECOND), 200)
    files = match_inputs([str(tmp_path / "*")])
    expected = [
        (0, mixed, 3, b'{"event":"a"}'),
        (0, mixed, 18, b""),
        (0, mixed, 19, b"  \t"),
        (0, mixed, 24, b"lone\rcr"),
        (0, mixed, 32, b"\xff\xfe bad utf8"),
        (0, mixed, 44, b'{"event":"no newline"}'),
        (1, second, 0, b"line one"),
        (1, second, 9, b"line two"),
    ]
    with TestPipeline(runner="FnApiRunner") as p:
        lines = p | ReadRawLines(files, range_bytes=1 << 20) | beam.FlatMap(flatten)
        assert_that(lines, equal_to(expected), label="CheckLines")


def test_read_raw_lines_tiny_ranges_lose_and_repeat_nothing(tmp_path):
    lines = [b'{"n":%d}' % i + (b"\r" if i % 3 == 0 else b"") + b"x" * (i % 11) for i in range(200)]
    data = BOM + b"\n".join(lines) + b"\n\n\r\n" + b"tail"
    path = write(tmp_path / "one.json", data)
    files = match_inputs([path])
    expected = [(0, path, offset, line) for offset, line in reference_lines(data)]
    assert len(expected) == 203
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | ReadRawLines(files, range_bytes=7) | beam.FlatMap(flatten)
        assert_that(out, equal_to(expected), label="CheckLines")


def test_read_raw_lines_compressed_file_over_16_mib(tmp_path):
    """A single read() of a .gz handle stops at 16 MiB; every line must still come."""
    count = 20 * 1024  # 1 KiB lines: 20 MiB decompressed
    filler = b"a" * 1016
    data = b"".join(b"%07d" % i + filler + b"\n" for i in range(count))
    assert len(data) == 20 << 20
    path = str(tmp_path / "big.ndjson.gz")
    with open(path, "wb") as raw:
        raw.write(gzip.compress(data, compresslevel=1))
    files = match_inputs([path])
    assert files[0].compressed
    with TestPipeline(runner="FnApiRunner") as p:
        # Batches are large: reduce each to (count, first offset, last offset,
        # last line) at once, then merge them into one such tuple.
        summary = (
            p
            | ReadRawLines(files, range_bytes=1 << 20)
            | "SummariseBatch" >> beam.Map(lambda b: (len(b[3]), b[2][0], b[2][-1], b[3][-1]))
            | "SummariseFile" >> beam.CombineGlobally(merge_batch_summaries)
        )
        last_offset = (count - 1) * 1024
        assert_that(
            summary,
            equal_to([(count, 0, last_offset, b"%07d" % (count - 1) + filler)]),
            label="CheckCountFirstAndLast",
        )


def merge_batch_summaries(summaries):
    summaries = list(summaries)
    last = max((s[2], s[3]) for s in summaries)
    return (sum(s[0] for s in summaries), min(s[1] for s in summaries), *last)


def test_read_raw_lines_empty_files(tmp_path):
    write(tmp_path / "empty.json", b"", 1)
    write(tmp_path / "empty.json.gz", gzip.compress(b""), 2)
    only = write(tmp_path / "one.json", b"x", 3)
    files = match_inputs([str(tmp_path / "*")])
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | ReadRawLines(files, range_bytes=4) | beam.FlatMap(flatten)
        assert_that(out, equal_to([(2, only, 0, b"x")]), label="CheckLines")


@pytest.mark.parametrize(
    "files, range_bytes, message",
    [
        ([], 10, "files"),
        ([InputFile(0, "x", 1, 0.0, False)], 0, "range_bytes"),
        # Objects are read through an injected opener (pipeline/stores.py), never unpinned.
        ([InputFile(0, "gs://b/x", 1, 0.0, False, "7")], 10, "open_objects"),
        ([InputFile(0, "s3://b/x", 1, 0.0, False, '"e"')], 10, "open_objects"),
    ],
)
def test_read_raw_lines_refuses_bad_arguments(files, range_bytes, message):
    with pytest.raises(ValueError, match=message):
        ReadRawLines(files, range_bytes)


# Compression by content: the content wins over the name -------------------------------------

CONTENT_LINES = [
    b'{"event":"E","properties":{"time":%d,"distinct_id":"u%d"}}\n' % (1_704_067_200 + i, i) for i in range(300)
]
CONTENT = b"".join(CONTENT_LINES)


def content_lines(path):
    return [(0, path, offset, line) for offset, line in reference_lines(CONTENT)]


@pytest.mark.parametrize(
    "name, data",
    [
        pytest.param("export.ndjson.gzip", gzip.compress(CONTENT, mtime=0), id="gzip_named_gzip"),
        pytest.param("export", gzip.compress(CONTENT, mtime=0), id="gzip_without_extension"),
        pytest.param("export.json", zstandard.ZstdCompressor().compress(CONTENT), id="zstd_named_json"),
        pytest.param("export.ndjson.gz", bz2.compress(CONTENT), id="bzip2_named_gz"),
        pytest.param("export.ndjson.gz", CONTENT, id="plain_named_gz"),
        pytest.param("export.ndjson.zst", CONTENT, id="plain_named_zst"),
    ],
)
@pytest.mark.parametrize("range_bytes", [1 << 20, 100])
def test_read_raw_lines_reads_by_content(tmp_path, name, data, range_bytes):
    """Small ranges: a compressed file planned as many plain ranges is read once, by the first."""
    path = write(tmp_path / name, data)
    files = match_inputs([path])
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | ReadRawLines(files, range_bytes=range_bytes) | beam.FlatMap(flatten)
        assert_that(out, equal_to(content_lines(path)), label="CheckLines")


def test_compression_by_content_end_to_end(tmp_path, small_read_ranges):
    """Before: gzip data not named .gz was rejected line by line as invalid_utf8,
    and a plain file named .gz failed the run as "not a gzipped file"."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    write(inputs / "a.ndjson.gzip", gzip.compress(b"".join(CONTENT_LINES[:100]), mtime=0), 10)
    write(inputs / "b", gzip.compress(CONTENT, mtime=0), 20)
    write(inputs / "c.ndjson.gz", b'{"event":"Plain","properties":{"time":1704067200,"distinct_id":"p"}}\n', 30)
    out = tmp_path / "out"
    assert run_cli("--input", str(inputs / "*"), "--output", str(out), "--reference-time", "2024-02-01T00:00:00Z",
                   "--range-bytes", "1000") == 0
    s = summary(out)
    assert s["input"]["lines"] == 100 + 300 + 1
    assert s["output"]["rejected"] == 0 and s["output"]["rejected_by_reason"] == {}
    # The 100 lines of a.ndjson.gzip are all in b too: superseded by the later upload.
    assert (s["output"]["events"], s["output"]["superseded"]) == (301, 100)
    names = [e["event"] for e in read_json_lines(out, "events/")]
    assert names.count("E") == 300 and names.count("Plain") == 1
