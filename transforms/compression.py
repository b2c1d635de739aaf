"""Compressed input: the kind of a file by its first bytes and its name, and decompressed streams (pure; no Beam).

A decompressed stream must end where its format says.
"""


import bz2
import codecs
import lzma
import zlib
from collections.abc import Callable

import zstandard

from transforms import Readable

# The kinds, spelled as Beam's CompressionTypes spells them, so that names
# and values agree with what Beam users know.
UNCOMPRESSED = "uncompressed"
GZIP = "gzip"
BZIP2 = "bzip2"
LZMA = "lzma"  # .xz and the older .lzma ("alone") format
ZSTD = "zstd"
DEFLATE = "deflate"  # zlib-wrapped (RFC 1950), as Beam 2.77 reads and writes it

# Beam 2.77's extension table (CompressionTypes.detect_compression_type).
_BY_EXTENSION = {
    ".bz2": BZIP2,
    ".deflate": DEFLATE,
    ".gz": GZIP,
    ".zst": ZSTD,
    ".zstd": ZSTD,
    ".xz": LZMA,
    ".lzma": LZMA,
}

HEAD_BYTES = 512  # what a reader peeks at to tell the kind
READ_BYTES = 8 << 20  # compressed bytes read at a time (one ranged request remotely)

_GZIP_MAGIC = b"\x1f\x8b"
_XZ_MAGIC = b"\xfd7zXZ\x00"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_BZIP2_BLOCK_MAGICS = (b"1AY&SY", b"\x17\x72\x45\x38\x50\x90")  # first block, or end of stream
# Control characters that no text line holds (JSON forbids them raw): a file
# starting with one is not text. Tab, newline, vertical tab, form feed and
# carriage return may appear.
_BINARY_BYTES = frozenset(range(0x00, 0x09)) | frozenset(range(0x0E, 0x20))


class CompressedDataError(ValueError):
    """Compressed data that its format refuses: a bad header, checksum or block."""


def kind_by_extension(path: str) -> str:
    """The compression a file's name announces (Beam's extension table)."""
    lowered = path.lower()
    for suffix, kind in _BY_EXTENSION.items():
        if lowered.endswith(suffix):
            return kind
    return UNCOMPRESSED


def kind_by_magic(head: bytes) -> str | None:
    """The compression a file's first bytes announce, or None.

    gzip, bzip2, xz and zstd streams always begin with their magic bytes;
    deflate (zlib) and .lzma streams have none strong enough to tell them
    from text, so they are known by name only.
    """
    if head.startswith(_GZIP_MAGIC):
        return GZIP
    # "BZh" alone could start a line of text: the block size digit and the
    # first block's magic make it certain.
    if head[:3] == b"BZh" and head[3:4] in b"123456789" and len(head) >= 4 and head[4:10] in _BZIP2_BLOCK_MAGICS:
        return BZIP2
    if head.startswith(_XZ_MAGIC):
        return LZMA
    if head.startswith(_ZSTD_MAGIC):
        return ZSTD
    # A zstd skippable frame (magic 0x184D2A50-0x184D2A5F, little-endian) may
    # come first; the frames after it are read as usual.
    if len(head) >= 4 and 0x50 <= head[0] <= 0x5F and head[1:4] == b"\x2a\x4d\x18":
        return ZSTD
    return None


def looks_like_text(head: bytes) -> bool:
    """Whether a file's first bytes could begin NDJSON: UTF-8, no control characters.

    Compressed data fails this within a few bytes; an empty file passes.
    """
    if any(b in _BINARY_BYTES for b in head):
        return False
    try:
        # Not final: the peek may end inside a multi-byte character.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True


def content_kind(head: bytes, path: str) -> str:
    """How a file must be read, from its first bytes and its name: the content wins.

    - Magic bytes of gzip, bzip2, xz or zstd: that kind, whatever the name.
    - Otherwise a name without a compression extension: uncompressed.
    - Otherwise, first bytes that look like text: uncompressed (a plain file
      given a compressed name).
    - Otherwise the kind the name announces: binary data that is not what its
      name says is read as that kind, so that it fails as corrupt rather than
      being read as lines of garbage.

    Args:
      head: the file's first bytes (up to HEAD_BYTES; fewer if it is shorter).
      path: the file's path or URL.
    """
    magic = kind_by_magic(head)
    if magic is not None:
        return magic
    named = kind_by_extension(path)
    if named == UNCOMPRESSED or looks_like_text(head):
        return UNCOMPRESSED
    return named


# --- decompression --------------------------------------------------------------------------
# One decoder per stream (gzip member, bzip2/xz stream, zstd frame, zlib
# stream); a file may hold several back to back. Each decoder takes input,
# returns at most `limit` bytes of output and what input it did not use.


class _ZlibDecoder:
    """gzip (wbits 31) or zlib-wrapped deflate (wbits 15): checks CRC-32/Adler-32 and length."""

    needs_input = True  # unused input is handed back, never held

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16 if kind == GZIP else zlib.MAX_WBITS)

    @property
    def eof(self) -> bool:
        return self._zlib.eof

    def decompress(self, data: bytes, limit: int) -> tuple[bytes, bytes]:
        try:
            out = self._zlib.decompress(data, limit)
        except zlib.error as err:
            # "Error -3 while decompressing data: incorrect data check": the
            # part after the colon is what people need.
            raise CompressedDataError(f"{self._kind}: {str(err).rpartition(': ')[2]}") from err
        return out, self._zlib.unused_data if self._zlib.eof else self._zlib.unconsumed_tail


class _BufferingDecoder:
    """bzip2 or xz/lzma: the decompressor holds unused input itself (`needs_input`)."""

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._errors: tuple[type[Exception], ...]
        if kind == BZIP2:
            self._decompressor: bz2.BZ2Decompressor | lzma.LZMADecompressor = bz2.BZ2Decompressor()
            self._errors = (OSError,)  # "Invalid data stream"
        else:
            self._decompressor = lzma.LZMADecompressor()  # FORMAT_AUTO: .xz and .lzma
            self._errors = (lzma.LZMAError,)

    @property
    def eof(self) -> bool:
        return self._decompressor.eof

    @property
    def needs_input(self) -> bool:
        # False while output is pending: feeding more then would pile up
        # compressed input inside the decompressor.
        return self._decompressor.needs_input

    def decompress(self, data: bytes, limit: int) -> tuple[bytes, bytes]:
        try:
            out = self._decompressor.decompress(data, limit)
        except self._errors as err:
            raise CompressedDataError(f"{self._kind}: {err}") from err
        return out, self._decompressor.unused_data if self._decompressor.eof else b""


class _ZstdDecoder:
    """One zstd frame. zstandard's decompressobj has no output limit: input
    goes in slices, which bounds the output of one call for data that
    compresses as NDJSON does."""

    needs_input = True
    SLICE_BYTES = 128 << 10

    def __init__(self) -> None:
        # Beam's window limit (2 GiB), so that what Beam reads, this reads.
        self._zstd = zstandard.ZstdDecompressor(max_window_size=1 << 31).decompressobj()

    @property
    def eof(self) -> bool:
        return bool(self._zstd.eof)

    def decompress(self, data: bytes, limit: int) -> tuple[bytes, bytes]:
        del limit  # see the class docstring
        view = memoryview(data)  # slices without copies
        try:
            out = self._zstd.decompress(view[: self.SLICE_BYTES])
        except zstandard.ZstdError as err:
            raise CompressedDataError(f"zstd: {err}") from err
        rest = view[self.SLICE_BYTES :]
        if self._zstd.eof:
            return out, self._zstd.unused_data + rest.tobytes()
        return out, rest  # type: ignore[return-value]


_Decoder = _ZlibDecoder | _BufferingDecoder | _ZstdDecoder


def _decoder_factory(kind: str) -> Callable[[], _Decoder]:
    if kind in (GZIP, DEFLATE):
        return lambda: _ZlibDecoder(kind)
    if kind in (BZIP2, LZMA):
        return lambda: _BufferingDecoder(kind)
    if kind == ZSTD:
        return _ZstdDecoder
    raise ValueError(f"not a compressed kind: {kind!r}")


class DecompressedStream:
    """The decompressed bytes of a compressed file, read with read(size).

    Unlike Beam's CompressedFile and Python's bz2/lzma readers, it refuses
    what is not a whole stream: input that ends inside a stream raises
    EOFError (a truncated file), and data after a stream that is not another
    stream of the same kind raises CompressedDataError (Python's bz2 and lzma
    readers drop it silently). Concatenated streams (gzip members, bzip2 and
    xz streams, zstd frames) are read one after the other; gzip and xz may be
    padded with NUL bytes between and after streams, as their tools allow.

    Args:
      raw: the compressed file, positioned at its start.
      kind: GZIP, BZIP2, LZMA, ZSTD or DEFLATE.
      read_bytes: how much compressed data to read at a time.
    """

    def __init__(self, raw: Readable, kind: str, read_bytes: int = READ_BYTES) -> None:
        self._new_decoder = _decoder_factory(kind)
        self._raw = raw
        self._pads = kind in (GZIP, LZMA)
        self._read_bytes = read_bytes
        self._decoder = self._new_decoder()
        self._input = b""
        self._output = b""  # decompressed beyond what read() was asked (zstd has no limit)…
        self._output_at = 0  # …of which this much was returned
        self._raw_done = False
        self._done = False

    def _fill(self) -> None:
        if not self._input and not self._raw_done:
            self._input = self._raw.read(self._read_bytes)
            self._raw_done = not self._input

    def _next_stream(self) -> bool:
        """After a stream's end: starts the next one, or says there is none."""
        while True:
            if self._pads:
                self._input = self._input.lstrip(b"\0")
            if self._input:
                self._decoder = self._new_decoder()
                return True
            if self._raw_done:
                return False
            self._fill()

    def read(self, size: int = -1) -> bytes:
        """Up to `size` decompressed bytes (all that is left for size < 0); b"" at the end.

        Raises:
          EOFError: the compressed data ends inside a stream.
          CompressedDataError: the data is not valid for its kind.
        """
        if size < 0:
            return b"".join(iter(lambda: self.read(READ_BYTES), b""))
        if self._output_at < len(self._output):
            out = self._output[self._output_at : self._output_at + size]
            self._output_at += len(out)
            return out
        while not self._done and size:
            if self._decoder.eof and not self._next_stream():
                self._done = True
                break
            if self._decoder.needs_input:
                self._fill()
            out, self._input = self._decoder.decompress(self._input, size)
            if out:
                if len(out) > size:
                    out, self._output, self._output_at = out[:size], out, size
                return out
            if not self._decoder.eof and self._raw_done and not self._input:
                raise EOFError("compressed data ends before the end-of-stream marker")
        return b""

    def close(self) -> None:
        """Closes nothing: the raw file belongs to the caller."""
