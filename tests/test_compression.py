"""Tests of transforms/compression.py: kinds by content and name, streams read whole or refused."""

import bz2
import gzip
import hashlib
import io
import lzma
import zlib

import pytest
import zstandard
from apache_beam.io.filesystem import CompressedFile, CompressionTypes

from transforms.compression import (
    BZIP2,
    DEFLATE,
    GZIP,
    HEAD_BYTES,
    LZMA,
    UNCOMPRESSED,
    ZSTD,
    CompressedDataError,
    DecompressedStream,
    content_kind,
    kind_by_extension,
    kind_by_magic,
    looks_like_text,
)

TEXT = b"".join(b'{"event":"e%d","properties":{"time":%d,"distinct_id":"u%d"}}\n' % (i, i, i % 7) for i in range(3000))

COMPRESS = {
    GZIP: lambda d: gzip.compress(d, mtime=0),
    BZIP2: bz2.compress,
    LZMA: lzma.compress,
    ZSTD: lambda d: zstandard.ZstdCompressor().compress(d),
    DEFLATE: zlib.compress,
}


# kind_by_magic, looks_like_text, content_kind ------------------------------------------------


@pytest.mark.parametrize(
    "head, expected",
    [
        pytest.param(gzip.compress(b"x"), GZIP, id="gzip"),
        pytest.param(b"\x1f\x8b", GZIP, id="gzip_magic_alone"),
        pytest.param(bz2.compress(b"x"), BZIP2, id="bzip2"),
        pytest.param(bz2.compress(b""), BZIP2, id="bzip2_empty_stream"),
        pytest.param(b"BZh9 is how a line of text may start", None, id="bzh_text_is_not_bzip2"),
        pytest.param(b"BZh", None, id="bzh_alone"),
        pytest.param(lzma.compress(b"x"), LZMA, id="xz"),
        pytest.param(zstandard.ZstdCompressor().compress(b"x"), ZSTD, id="zstd"),
        pytest.param(b"\x50\x2a\x4d\x18\x00\x00\x00\x00", ZSTD, id="zstd_skippable_frame_first"),
        pytest.param(zlib.compress(b"x"), None, id="zlib_has_no_magic"),
        pytest.param(lzma.compress(b"x", format=lzma.FORMAT_ALONE), None, id="lzma_alone_has_no_magic"),
        pytest.param(b'{"event":"a"}\n', None, id="ndjson"),
        pytest.param(b"", None, id="empty"),
        pytest.param(b"\x1f", None, id="half_a_gzip_magic"),
    ],
)
def test_kind_by_magic(head, expected):
    assert kind_by_magic(head[:HEAD_BYTES]) == expected


@pytest.mark.parametrize(
    "head, expected",
    [
        pytest.param(b'{"event":"a"}\r\n\t{"b": "\xc3\xa9"}\n', True, id="ndjson_utf8"),
        pytest.param(b"\xef\xbb\xbf{}\n", True, id="bom"),
        pytest.param(b"", True, id="empty"),
        pytest.param(b'{"name":"\xc3', True, id="peek_ends_inside_a_character"),
        pytest.param(b"\xff\xfe not utf8", False, id="invalid_utf8"),
        pytest.param(b"{}\x00", False, id="nul"),
        pytest.param(b"x\x01", False, id="control_character"),
        pytest.param(zlib.compress(b"x"), False, id="zlib"),
        pytest.param(zlib.compress(b"{}", level=0), False, id="zlib_stored_block"),
        pytest.param(lzma.compress(TEXT, format=lzma.FORMAT_ALONE)[:HEAD_BYTES], False, id="lzma_alone"),
    ],
)
def test_looks_like_text(head, expected):
    assert looks_like_text(head) is expected


GZ_DATA = gzip.compress(TEXT, mtime=0)[:HEAD_BYTES]
ZST_DATA = zstandard.ZstdCompressor().compress(TEXT)[:HEAD_BYTES]
BINARY = bytes(range(256)) * 2


@pytest.mark.parametrize(
    "head, path, expected",
    [
        # The content wins over the name.
        pytest.param(GZ_DATA, "a.ndjson.gz", GZIP, id="gzip_named_gz"),
        pytest.param(GZ_DATA, "a.ndjson.gzip", GZIP, id="gzip_named_gzip"),
        pytest.param(GZ_DATA, "a.json", GZIP, id="gzip_named_json"),
        pytest.param(GZ_DATA, "export", GZIP, id="gzip_without_extension"),
        pytest.param(GZ_DATA, "a.ndjson.zst", GZIP, id="gzip_named_zst"),
        pytest.param(ZST_DATA, "a.ndjson.gz", ZSTD, id="zstd_named_gz"),
        pytest.param(TEXT[:HEAD_BYTES], "a.ndjson.gz", UNCOMPRESSED, id="text_named_gz"),
        pytest.param(TEXT[:HEAD_BYTES], "a.ndjson.deflate", UNCOMPRESSED, id="text_named_deflate"),
        pytest.param(TEXT[:HEAD_BYTES], "a.ndjson.zst", UNCOMPRESSED, id="text_named_zst"),
        pytest.param(b"", "empty.gz", UNCOMPRESSED, id="empty_named_gz"),
        # No magic: the name decides for binary data.
        pytest.param(zlib.compress(TEXT)[:HEAD_BYTES], "a.deflate", DEFLATE, id="deflate_by_name"),
        pytest.param(
            lzma.compress(TEXT, format=lzma.FORMAT_ALONE)[:HEAD_BYTES], "a.lzma", LZMA, id="lzma_alone_by_name"
        ),
        pytest.param(BINARY, "a.ndjson.gz", GZIP, id="binary_named_gz_fails_as_gzip"),
        pytest.param(BINARY, "a.ndjson", UNCOMPRESSED, id="binary_named_plain_is_plain"),
        pytest.param(zlib.compress(TEXT)[:HEAD_BYTES], "a.ndjson", UNCOMPRESSED, id="zlib_named_plain_is_plain"),
        pytest.param(TEXT[:HEAD_BYTES], "a.ndjson", UNCOMPRESSED, id="text"),
    ],
)
def test_content_kind(head, path, expected):
    assert content_kind(head, path) == expected


@pytest.mark.parametrize(
    "path",
    ["a.gz", "A.GZ", "a.bz2", "a.deflate", "a.zst", "a.zstd", "a.xz", "a.lzma", "a.json", "a.gzip",
     "gz", "a.gz.json", "s3://b/k.ZST", "a.tar.gz"],
)
def test_kind_by_extension_is_beams_table(path):
    assert kind_by_extension(path) == CompressionTypes.detect_compression_type(path)


# DecompressedStream ---------------------------------------------------------------------------


class _ReadableBytes(io.BytesIO):
    mode = "rb"  # Beam's CompressedFile asks


def beams_read(data: bytes, compression_type: str) -> bytes:
    beams = CompressedFile(_ReadableBytes(data), compression_type)
    return b"".join(iter(lambda: beams.read(1 << 20), b""))


def read_all(data: bytes, kind: str, size: int = 1 << 20, read_bytes: int = 1 << 20) -> bytes:
    stream = DecompressedStream(io.BytesIO(data), kind, read_bytes=read_bytes)
    out = []
    while chunk := stream.read(size):
        assert len(chunk) <= size
        out.append(chunk)
    return b"".join(out)


@pytest.mark.parametrize("kind", sorted(COMPRESS))
@pytest.mark.parametrize("size, read_bytes", [(1 << 20, 1 << 20), (1000, 7), (1, 4096)])
def test_every_kind_reads_whole_in_any_piece_sizes(kind, size, read_bytes):
    assert read_all(COMPRESS[kind](TEXT), kind, size, read_bytes) == TEXT


def test_deflate_is_zlib_wrapped_as_beam_reads_it():
    """Beam 2.77's DEFLATE is zlib.decompressobj() (RFC 1950), not raw deflate."""
    data = zlib.compress(TEXT)
    assert beams_read(data, CompressionTypes.DEFLATE) == TEXT == read_all(data, DEFLATE)
    raw_deflate = zlib.compressobj(wbits=-15)
    with pytest.raises(CompressedDataError, match="deflate: incorrect header check"):
        read_all(raw_deflate.compress(TEXT) + raw_deflate.flush(), DEFLATE)


@pytest.mark.parametrize(
    "kind, data",
    [
        pytest.param(GZIP, gzip.compress(TEXT, mtime=0) + gzip.compress(b"tail\n", mtime=0), id="gzip_members"),
        pytest.param(GZIP, gzip.compress(TEXT, mtime=0) + b"\0" * 512 + gzip.compress(b"tail\n", mtime=0) + b"\0" * 9,
                     id="gzip_members_zero_padded"),
        pytest.param(BZIP2, bz2.compress(TEXT) + bz2.compress(b"tail\n"), id="bzip2_streams"),
        pytest.param(LZMA, lzma.compress(TEXT) + b"\0" * 4 + lzma.compress(b"tail\n") + b"\0" * 8,
                     id="xz_streams_padded"),
        pytest.param(ZSTD, zstandard.ZstdCompressor().compress(TEXT) + zstandard.ZstdCompressor().compress(b"tail\n"),
                     id="zstd_frames"),
        pytest.param(ZSTD,
                     b"\x50\x2a\x4d\x18\x03\x00\x00\x00abc" + zstandard.ZstdCompressor().compress(TEXT + b"tail\n"),
                     id="zstd_skippable_frame"),
        pytest.param(DEFLATE, zlib.compress(TEXT) + zlib.compress(b"tail\n"), id="zlib_streams"),
    ],
)
def test_concatenated_streams_read_whole(kind, data):
    assert read_all(data, kind) == TEXT + b"tail\n"
    assert read_all(data, kind, size=4096, read_bytes=100) == TEXT + b"tail\n"


def test_a_zstd_stream_written_in_many_frames_reads_whole():
    frames = b""
    compressor = zstandard.ZstdCompressor(write_checksum=True)
    for start in range(0, len(TEXT), 10_000):
        frames += compressor.compress(TEXT[start : start + 10_000])
    assert frames.count(b"\x28\xb5\x2f\xfd") >= 10
    assert read_all(frames, ZSTD, read_bytes=333) == TEXT


@pytest.mark.parametrize("kind", sorted(COMPRESS))
@pytest.mark.parametrize("cut", [1, 2, 10, 100, 0.5, -1])
def test_a_truncated_stream_raises_eof_error(kind, cut):
    """Beam's CompressedFile returns the shorter stream silently (for ZSTD and
    DEFLATE this was the tool's reader); this stream refuses it."""
    data = COMPRESS[kind](TEXT)
    keep = int(len(data) * cut) if isinstance(cut, float) else (cut if cut > 0 else len(data) + cut)
    with pytest.raises(EOFError):
        read_all(data[:keep], kind)
    with pytest.raises(EOFError):
        read_all(data[:keep], kind, size=100, read_bytes=50)


@pytest.mark.parametrize("kind", [ZSTD, DEFLATE])
def test_beams_reader_takes_a_truncated_zst_or_deflate_for_a_shorter_one(kind):
    """Why the tool no longer reads through Beam's CompressedFile."""
    # Lines that do not compress much: half the file holds many complete blocks.
    noisy = b"".join(b'{"id":"%s"}\n' % hashlib.sha256(b"%d" % i).hexdigest().encode() for i in range(20_000))
    whole = COMPRESS[kind](noisy)
    half = beams_read(whole[: len(whole) // 2], kind)  # Beam's names for the kinds are ours
    assert 0 < len(half) < len(noisy) and half == noisy[: len(half)]


def _flip(data: bytes, at: int) -> bytes:
    changed = bytearray(data)
    changed[at] ^= 0xFF
    return bytes(changed)


@pytest.mark.parametrize(
    "kind, data, message",
    [
        pytest.param(GZIP, _flip(gzip.compress(TEXT, mtime=0), -8), "gzip: incorrect data check", id="gzip_crc"),
        pytest.param(GZIP, _flip(gzip.compress(TEXT, mtime=0), -2), "gzip: incorrect length check", id="gzip_length"),
        pytest.param(GZIP, _flip(gzip.compress(TEXT, mtime=0), 2), "gzip: unknown compression method",
                     id="gzip_header"),
        pytest.param(GZIP, BINARY, "gzip: incorrect header check", id="not_gzip_at_all"),
        pytest.param(DEFLATE, _flip(zlib.compress(TEXT), -1), "deflate: incorrect data check", id="zlib_adler32"),
        pytest.param(BZIP2, _flip(bz2.compress(TEXT), 40), "bzip2: Invalid data stream", id="bzip2_block"),
        pytest.param(LZMA, _flip(lzma.compress(TEXT), -20), "lzma: Corrupt input data", id="xz_check"),
        pytest.param(ZSTD, _flip(zstandard.ZstdCompressor(write_checksum=True).compress(TEXT), -2),
                     "zstd: .*checksum", id="zstd_checksum"),
    ],
)
def test_corrupt_data_raises_compressed_data_error(kind, data, message):
    with pytest.raises(CompressedDataError, match=message):
        read_all(data, kind)


@pytest.mark.parametrize("kind", sorted(COMPRESS))
def test_data_after_the_last_stream_is_not_dropped_silently(kind):
    """Python's bz2 and lzma readers ignore trailing data that is not a stream:
    a damaged second stream would vanish without a word."""
    with pytest.raises((CompressedDataError, EOFError)):
        read_all(COMPRESS[kind](TEXT) + b"garbage after the end of the stream", kind)


def test_read_without_size_reads_everything_and_then_nothing():
    stream = DecompressedStream(io.BytesIO(gzip.compress(TEXT) * 2), GZIP)
    assert stream.read() == TEXT * 2
    assert stream.read(10) == b""
    assert stream.read() == b""


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="not a compressed kind: 'uncompressed'"):
        DecompressedStream(io.BytesIO(b""), UNCOMPRESSED)
