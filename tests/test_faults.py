"""Faults: damaged and vanishing input, a full disk, retried bundles.

Each must end in a clear one-line error naming the file and no `_SUCCESS`, or,
for a retried bundle, in the same output as a run without the fault.

A full disk is simulated by `fullfs://`, a FileSystem registered for this test
process: local disk whose writes fail with ENOSPC once a byte budget is spent.
The in-process runner runs every stage in this process, so it sees it too.
"""

import bz2
import errno
import gzip
import lzma
import os
import posixpath
import zlib
from pathlib import Path

import orjson
import pytest
import zstandard
from apache_beam.io.filesystem import CompressionTypes, FileMetadata, FileSystem
from apache_beam.io.localfilesystem import LocalFileSystem
from apache_beam.pvalue import TaggedOutput

import pipeline.plan
from bundles import run_bundle
from e2e import folders, read_output, run_cli, run_cli_process, summary, write_input
from pipeline.cli import file_access_problem
from pipeline.inputs import match_inputs
from pipeline.summary import _FinishRun
from transforms import FileAccessError
from transforms.layout import part_name
from transforms.ranges import FileRange, plan_ranges
from transforms.read import UNREADABLE, UnreadableFile, _ReadRange
from transforms.write import TEMP_FOLDER, _NameFiles, _WriteShard, temp_root

REF = "2024-02-01T00:00:00Z"
T0 = 1_704_067_200


def ev(name: str, user: str, time: int, **props: object) -> bytes:
    return orjson.dumps({"event": name, "properties": {"distinct_id": user, "time": time, **props}})


GOOD = [ev("Signup", f"u{i}", T0 + i, **{"$insert_id": f"id-{i}"}) for i in range(50)] + [b"{junk"]
PAYLOAD = b"\n".join(GOOD) + b"\n"


def _gz_truncated() -> bytes:
    return gzip.compress(PAYLOAD, mtime=0)[:-40]


def _gz_corrupt() -> bytes:
    data = bytearray(gzip.compress(PAYLOAD, mtime=0))
    data[30:60] = b"\xff" * 30
    return bytes(data)


def _gz_bad_crc() -> bytes:
    data = bytearray(gzip.compress(PAYLOAD, mtime=0))
    data[-8] ^= 0xFF  # the trailer's CRC-32
    return bytes(data)


def _zst() -> bytes:
    return zstandard.ZstdCompressor(write_checksum=True).compress(PAYLOAD)


TRUNCATED = "the compressed data ends early: the file is truncated"
DAMAGED = {
    "truncated.ndjson.gz": (_gz_truncated, TRUNCATED),
    "corrupt.ndjson.gz": (_gz_corrupt, "the compressed data is corrupt (gzip: invalid "),
    "bad-crc.ndjson.gz": (_gz_bad_crc, "the compressed data is corrupt (gzip: incorrect data check)"),
    "binary-not-gzip.ndjson.gz": (
        lambda: bytes(range(256)) * 4, "the compressed data is corrupt (gzip: incorrect header check)"
    ),
    "truncated.ndjson.bz2": (lambda: bz2.compress(PAYLOAD)[:-10], TRUNCATED),
    "corrupt.ndjson.xz": (lambda: lzma.compress(PAYLOAD)[:40] + b"\0" * 40 + lzma.compress(PAYLOAD)[80:],
                          "the compressed data is corrupt (lzma: Corrupt input data)"),
    "truncated.ndjson.xz": (lambda: lzma.compress(PAYLOAD)[:-30], TRUNCATED),
    "truncated.ndjson.lzma": (lambda: lzma.compress(PAYLOAD, format=lzma.FORMAT_ALONE)[:-30], TRUNCATED),
    # Beam's reader took these two for shorter files, silently.
    "truncated.ndjson.zst": (lambda: _zst()[:-30], TRUNCATED),
    "truncated.ndjson.deflate": (lambda: zlib.compress(PAYLOAD)[:-30], TRUNCATED),
    "corrupt.ndjson.zst": (lambda: _zst()[:-2] + b"\0\0", "the compressed data is corrupt (zstd: "),
    "corrupt.ndjson.deflate": (
        lambda: zlib.compress(PAYLOAD)[:-1] + b"\0", "the compressed data is corrupt (deflate: incorrect data check)"
    ),
    # Compressed by content, whatever the name.
    "truncated-gzip.json": (_gz_truncated, TRUNCATED),
    "truncated-zstd": (lambda: _zst()[:-30], TRUNCATED),
}


def _read(path: Path, skip: bool = False) -> list:
    compressed = CompressionTypes.detect_compression_type(str(path)) != CompressionTypes.UNCOMPRESSED
    (file,) = match_inputs([str(path)])
    ranges = plan_ranges(0, str(path), file.size, compressed, 1 << 20, file.version)
    return [out for r in ranges for out in _ReadRange(skip_unreadable=skip).process(r)]


# --- reading: one range at a time -----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_a_damaged_compressed_file_fails_naming_the_file_and_the_damage(tmp_path, name):
    make, what = DAMAGED[name]
    path = tmp_path / name
    path.write_bytes(make())
    with pytest.raises(FileAccessError) as raised:
        _read(path)
    assert str(raised.value).startswith(f"{path}: ") and what in str(raised.value)
    skipped = _read(path, skip=True)
    assert [type(o) for o in skipped] == [TaggedOutput]
    (report,) = skipped
    assert report.tag == UNREADABLE
    assert report.value == UnreadableFile(str(path), 0, str(raised.value)[len(f"{path}: "):], 0)


def test_a_vanished_file_fails_naming_it(tmp_path):
    path = tmp_path / "gone.ndjson"
    with pytest.raises(FileAccessError) as raised:
        list(_ReadRange().process(FileRange(0, str(path), 0, 10, False, 10, "1.0")))
    assert str(raised.value) == f"{path}: the file vanished since it was listed (No such file or directory)"


def _listed_range(path: Path) -> FileRange:
    (file,) = match_inputs([str(path)])
    (file_range,) = plan_ranges(file.rank, file.path, file.size, file.compressed, 1 << 20, file.version)
    return file_range


@pytest.mark.parametrize("change", ["longer", "same size, new mtime", "shorter"])
def test_a_file_changed_since_it_was_listed_is_refused(tmp_path, change):
    path = tmp_path / "a.ndjson"
    path.write_bytes(PAYLOAD)
    os.utime(path, (T0, T0))
    listed = _listed_range(path)
    if change == "longer":
        path.write_bytes(PAYLOAD + PAYLOAD)
        os.utime(path, (T0, T0))  # the size alone tells
    elif change == "shorter":
        path.write_bytes(PAYLOAD[:100])
    else:
        path.write_bytes(PAYLOAD.replace(b"Signup", b"SignUp"))
        os.utime(path, (T0 + 1, T0 + 1))
    size, mtime = path.stat().st_size, path.stat().st_mtime
    with pytest.raises(FileAccessError) as raised:
        list(_ReadRange().process(listed))
    assert str(raised.value) == (
        f"{path}: the file changed since it was listed (size {len(PAYLOAD)}, modified at {float(T0)!r}; "
        f"now size {size}, modified at {mtime!r})"
    )
    (skipped,) = _ReadRange(skip_unreadable=True).process(listed)
    assert skipped.value == UnreadableFile(str(path), 0, str(raised.value)[len(f"{path}: "):], 0)


def test_a_file_changed_while_it_is_read_is_refused_at_the_end_of_its_range(tmp_path):
    path = tmp_path / "a.ndjson"
    path.write_bytes(PAYLOAD)
    os.utime(path, (T0, T0))
    reading = _ReadRange(skip_unreadable=True).process(_listed_range(path))
    first = next(reading)  # the one batch of the file: read before the change
    with open(path, "ab") as appending:
        appending.write(ev("Late", "u", T0) + b"\n")
    (skipped,) = list(reading)
    assert first[3] == GOOD
    assert skipped.value.error.startswith("the file changed since it was listed")
    assert skipped.value.lines_read == len(GOOD)


def test_a_connection_error_is_never_skipped_so_that_a_retry_can_read_the_file(tmp_path, monkeypatch):
    path = tmp_path / "a.ndjson"
    path.write_bytes(PAYLOAD)

    def reset(*args, **kwargs):
        raise ConnectionResetError(104, "Connection reset by peer")

    monkeypatch.setattr("transforms.read._open_local", reset)
    with pytest.raises(FileAccessError, match="Connection reset"):
        _read(path, skip=True)


@pytest.mark.parametrize("suffix, compress", [
    (".gz", lambda d: gzip.compress(d, mtime=0) + gzip.compress(d, mtime=0)),  # two members
    (".bz2", lambda d: bz2.compress(d) + bz2.compress(d)),  # two streams
    (".xz", lzma.compress),
    (".lzma", lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE)),
    (".zst", lambda d: zstandard.ZstdCompressor().compress(d)),
    (".deflate", zlib.compress),
])
def test_healthy_compressed_files_of_every_kind_read_in_full(tmp_path, suffix, compress):
    path = tmp_path / f"ok.ndjson{suffix}"
    path.write_bytes(compress(PAYLOAD))
    lines = [line for _, _, _, batch in _read(path) for line in batch]
    copies = 2 if suffix in (".gz", ".bz2") else 1
    assert lines == GOOD * copies


def test_a_plain_file_named_gz_is_read_as_plain(tmp_path):
    path = tmp_path / "not-gzip.ndjson.gz"
    path.write_bytes(PAYLOAD)
    assert [line for _, _, _, batch in _read(path) for line in batch] == GOOD


# --- whole runs: fail with one line, or skip and account ------------------------------------


def test_a_truncated_gz_fails_the_run_with_one_line_and_no_traceback(tmp_path):
    write_input(tmp_path / "in" / "good.ndjson", GOOD)
    bad = tmp_path / "in" / "truncated.ndjson.gz"
    bad.write_bytes(_gz_truncated())
    out = tmp_path / "out"
    done = run_cli_process("--input", str(tmp_path / "in" / "*"), "--output", str(out), "--reference-time", REF)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == f"cloud-import-prep: error: {bad}: the compressed data ends early: the file is truncated"
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (out / "_SUCCESS").exists() and not (out / "_SUMMARY.json").exists()


TRUNCATED_KINDS = {
    "t.ndjson.zst": lambda: _zst()[:-30],
    "t.ndjson.deflate": lambda: zlib.compress(PAYLOAD)[:-30],
    "t.ndjson.bz2": lambda: bz2.compress(PAYLOAD)[:-10],
    "t.ndjson.xz": lambda: lzma.compress(PAYLOAD)[:-30],
}


@pytest.mark.parametrize("name", sorted(TRUNCATED_KINDS))
def test_a_truncated_file_of_any_kind_fails_the_run_with_one_line(tmp_path, capsys, name):
    """Before: a half .zst or .deflate passed with half its lines."""
    write_input(tmp_path / "in" / "good.ndjson", GOOD)
    bad = tmp_path / "in" / name
    bad.write_bytes(TRUNCATED_KINDS[name]())
    out = tmp_path / "out"
    assert run_cli("--input", str(tmp_path / "in" / "*"), "--output", str(out), "--reference-time", REF) == 1
    assert capsys.readouterr().err == f"cloud-import-prep: error: {bad}: {TRUNCATED}\n"
    assert not (out / "_SUCCESS").exists() and not (out / "_SUMMARY.json").exists()


def test_truncated_files_of_every_kind_are_listed_with_skip_unreadable_files(tmp_path):
    write_input(tmp_path / "in" / "good.ndjson", GOOD)
    for name, make in TRUNCATED_KINDS.items():
        (tmp_path / "in" / name).write_bytes(make())
    out = tmp_path / "out"
    assert run_cli("--input", str(tmp_path / "in" / "*"), "--output", str(out), "--reference-time", REF,
                   "--skip-unreadable-files") == 0
    s = summary(out)
    # Files this small are read in one piece: nothing of them reaches the run.
    assert s["input"]["unreadable_files"] == [
        {"path": str(tmp_path / "in" / name), "error": TRUNCATED, "lines_read": 0} for name in sorted(TRUNCATED_KINDS)
    ]
    assert s["input"]["lines"] == len(GOOD) and s["output"]["events"] == 50 and s["output"]["rejected"] == 1
    assert s["passed"] and (out / "_SUCCESS").exists()


def test_a_file_error_is_recognised_in_a_remote_job_error_text():
    # What a runner with worker processes (or Dataflow) raises: the workers' traceback as text.
    text = (
        "Pipeline job failed: Error received from SDK harness for instruction 5: Traceback "
        "(most recent call last):\n  File \"/w/transforms/read.py\", line 215, in process\n"
        "transforms.FileAccessError: gs://raw/a b's.ndjson.gz: the compressed data ends early: the file is "
        "truncated [while running 'ReadRawLines/ReadRanges'] [while running 'Outer']\n\n"
    )
    assert file_access_problem(RuntimeError(text)) == (
        "gs://raw/a b's.ndjson.gz: the compressed data ends early: the file is truncated"
    )
    assert file_access_problem(RuntimeError("Traceback ...\nKeyError: 'x'")) is None
    assert file_access_problem(FileAccessError("/x: gone [while running 'A']")) == "/x: gone"


def test_a_bug_is_not_taken_for_a_file_error(tmp_path, monkeypatch):
    """Only FileAccessError becomes a one-line message; anything else keeps its traceback."""
    write_input(tmp_path / "in" / "a.ndjson", GOOD)

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr("transforms.records.classify_batch", broken)
    monkeypatch.setattr("transforms.validate.classify_batch", broken)
    with pytest.raises(Exception, match="a bug"):
        run_cli("--input", str(tmp_path / "in" / "*"), "--output", str(tmp_path / "out"), "--reference-time", REF)
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def test_skip_unreadable_files_lists_the_file_keeps_what_was_read_and_processes_the_rest(tmp_path):
    write_input(tmp_path / "in" / "good.ndjson", GOOD)
    # Two 8 MiB reads' worth of lines come through before the damage: they stay in the run.
    big = [ev("Big", f"b{i}", T0 + i) for i in range(20)] + [b" " * 999] * 20_000
    damaged = tmp_path / "in" / "big.ndjson.gz"
    damaged.write_bytes(gzip.compress(b"\n".join(big) + b"\n", mtime=0)[:-200])
    corrupt = tmp_path / "in" / "corrupt.ndjson.gz"
    corrupt.write_bytes(_gz_corrupt())
    out = tmp_path / "out"
    assert run_cli("--input", str(tmp_path / "in" / "*"), "--output", str(out), "--reference-time", REF,
                   "--skip-unreadable-files") == 0
    s = summary(out)
    unreadable = s["input"]["unreadable_files"]
    assert [u["path"] for u in unreadable] == [str(damaged), str(corrupt)]
    assert unreadable[0]["error"] == "the compressed data ends early: the file is truncated"
    assert unreadable[1]["error"].startswith("the compressed data is corrupt") and unreadable[1]["lines_read"] == 0
    lines_read = unreadable[0]["lines_read"]
    assert 20 < lines_read < len(big)
    assert s["input"]["lines"] == len(GOOD) + lines_read
    assert s["input"]["blank_lines"] == lines_read - 20
    assert s["output"]["events_by_day"] == {"2024-01-01": 70}
    assert s["passed"] and s["balanced"] and (out / "_SUCCESS").exists()
    assert s["options"]["skip_unreadable_files"] is True


def test_a_file_that_vanishes_after_the_launch_fails_the_run_or_is_skipped(
    tmp_path, monkeypatch, capsys, small_read_ranges
):
    write_input(tmp_path / "in" / "a.ndjson", GOOD)
    victim = write_input(tmp_path / "in" / "b.ndjson", [ev("Gone", "u", T0)] * 400)
    real_prepare = pipeline.plan.prepare_output

    def prepare_then_vanish(*args, **kwargs):  # runs after the inputs are matched
        stale = real_prepare(*args, **kwargs)
        victim.unlink(missing_ok=True)
        return stale

    monkeypatch.setattr(pipeline.plan, "prepare_output", prepare_then_vanish)
    args = ("--input", str(tmp_path / "in" / "*"), "--reference-time", REF, "--range-bytes", "1000")
    assert run_cli(*args, "--output", str(tmp_path / "failed")) == 1
    err = capsys.readouterr().err
    assert err == (
        f"cloud-import-prep: error: {victim}: the file vanished since it was listed (No such file or directory)\n"
    )
    assert not (tmp_path / "failed" / "_SUCCESS").exists()

    write_input(victim, [ev("Gone", "u", T0)] * 400)
    assert run_cli(*args, "--output", str(tmp_path / "skipped"), "--skip-unreadable-files") == 0
    s = summary(tmp_path / "skipped")
    # Read in many ranges, the file is listed once.
    (entry,) = s["input"]["unreadable_files"]
    assert entry == {"path": str(victim), "error": "the file vanished since it was listed (No such file or directory)",
                     "lines_read": 0}
    assert s["input"]["lines"] == len(GOOD) and s["passed"]


# --- a disk that fills, an output that cannot be written ------------------------------------

PREFIX = "fullfs://"


class _FillingFile:
    """A file being written on a disk with FullFileSystem.budget bytes left."""

    def __init__(self, raw):  # type: ignore[no-untyped-def]
        self._raw = raw

    def write(self, data) -> int:  # type: ignore[no-untyped-def]
        left = FullFileSystem.budget
        if left is not None:
            if len(data) > left:
                self._raw.write(bytes(data)[:left])
                FullFileSystem.budget = 0
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            FullFileSystem.budget = left - len(data)
        return self._raw.write(data)

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self._raw, name)

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc) -> None:  # type: ignore[no-untyped-def]
        self._raw.close()


class FullFileSystem(FileSystem):
    """fullfs:///abs/path is /abs/path on local disk; writes fail once `budget` bytes are spent."""

    budget: int | None = None

    def __init__(self, pipeline_options=None):  # type: ignore[no-untyped-def]
        super().__init__(pipeline_options)
        self._disk = LocalFileSystem(pipeline_options)

    @classmethod
    def scheme(cls) -> str:
        return "fullfs"

    @staticmethod
    def _local(path: str) -> str:
        return path[len(PREFIX):] if path.startswith(PREFIX) else path

    def join(self, basepath, *paths):  # type: ignore[no-untyped-def]
        return PREFIX + posixpath.join(self._local(basepath), *paths)

    def split(self, path):  # type: ignore[no-untyped-def]
        head, tail = posixpath.split(self._local(path))
        return PREFIX + head, tail

    def mkdirs(self, path):  # type: ignore[no-untyped-def]
        self._disk.mkdirs(self._local(path))

    def has_dirs(self) -> bool:
        return True

    def _list(self, dir_or_prefix):  # type: ignore[no-untyped-def]
        for m in self._disk._list(self._local(dir_or_prefix)):
            yield FileMetadata(PREFIX + m.path, m.size_in_bytes, m.last_updated_in_seconds)

    def create(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):  # type: ignore[no-untyped-def]
        return _FillingFile(self._disk.create(self._local(path), mime_type, compression_type))

    def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):  # type: ignore[no-untyped-def]
        return self._disk.open(self._local(path), mime_type, compression_type)

    def copy(self, sources, destinations):  # type: ignore[no-untyped-def]
        self._disk.copy([self._local(p) for p in sources], [self._local(p) for p in destinations])

    def rename(self, sources, destinations):  # type: ignore[no-untyped-def]
        self._disk.rename([self._local(p) for p in sources], [self._local(p) for p in destinations])

    def exists(self, path):  # type: ignore[no-untyped-def]
        return self._disk.exists(self._local(path))

    def size(self, path):  # type: ignore[no-untyped-def]
        return self._disk.size(self._local(path))

    def last_updated(self, path):  # type: ignore[no-untyped-def]
        return self._disk.last_updated(self._local(path))

    def checksum(self, path):  # type: ignore[no-untyped-def]
        return self._disk.checksum(self._local(path))

    def metadata(self, path):  # type: ignore[no-untyped-def]
        m = self._disk.metadata(self._local(path))
        return FileMetadata(PREFIX + m.path, m.size_in_bytes, m.last_updated_in_seconds)

    def delete(self, paths):  # type: ignore[no-untyped-def]
        self._disk.delete([self._local(p) for p in paths])


PROBE_BYTES = len(b"write probe of cloud-import-prep; safe to delete\n")  # pipeline/output.py's probe
LOCK_BYTES = 600  # room for the run's _LOCK.json (pipeline/lock.py), written once on a new location


@pytest.fixture
def disk(monkeypatch):
    """Sets how many bytes the fullfs:// disk takes before it is full."""
    def fill_after(budget: int | None) -> None:
        monkeypatch.setattr(FullFileSystem, "budget", budget)
    return fill_after


def _days(folder: Path) -> None:
    write_input(folder / "a.ndjson", [ev("A", f"u{i}", T0 + 3000 * i, pad="x" * 300) for i in range(200)] + [b"junk"])


def test_a_full_fullfs_disk_works_like_local_disk_until_it_is_full(tmp_path, disk):
    _days(tmp_path / "in")
    disk(None)
    assert run_cli("--input", str(tmp_path / "in" / "*"), "--output", PREFIX + str(tmp_path / "out"),
                   "--reference-time", REF) == 0
    assert summary(tmp_path / "out")["passed"] and (tmp_path / "out" / "_SUCCESS").exists()
    assert TEMP_FOLDER not in folders(tmp_path / "out") and summary(tmp_path / "out")["output"]["rejected"] == 1


def test_a_disk_that_fills_while_the_data_is_written_stops_the_run_with_one_line(tmp_path, disk, capsys):
    _days(tmp_path / "in")
    disk(LOCK_BYTES + PROBE_BYTES + 100)
    out = tmp_path / "out"
    assert run_cli("--input", str(tmp_path / "in" / "*"), "--output", PREFIX + str(out), "--reference-time", REF) == 1
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("cloud-import-prep: error:")]
    assert line.startswith(f"cloud-import-prep: error: {PREFIX}{out}/{TEMP_FOLDER}/")
    assert line.endswith(f": cannot be written ([Errno {errno.ENOSPC}] No space left on device)")
    assert "Traceback" not in err
    assert not (out / "_SUCCESS").exists() and not (out / "_SUMMARY.json").exists()


def test_a_disk_that_fills_while_the_summary_is_written_leaves_no_success(tmp_path, disk, capsys):
    _days(tmp_path / "in")
    disk(None)
    args = ("--input", str(tmp_path / "in" / "*"), "--output", str(tmp_path / "measure"), "--reference-time", REF)
    assert run_cli(*args) == 0
    data_bytes = sum(p.stat().st_size for p in (tmp_path / "measure").rglob("*.gz"))
    disk(LOCK_BYTES + PROBE_BYTES + data_bytes + 10)  # room for the data, not for _SUMMARY.json
    out = tmp_path / "out"
    assert run_cli("--input", str(tmp_path / "in" / "*"), "--output", PREFIX + str(out), "--reference-time", REF) == 1
    err = capsys.readouterr().err
    assert f"cloud-import-prep: error: {PREFIX}{out}/_SUMMARY.json: cannot be written ([Errno 28]" in err
    assert not (out / "_SUCCESS").exists() and not (out / "_SUMMARY.json").exists()
    assert {k: v for k, v in read_output(out).items() if k.endswith(".gz")} == {
        k: v for k, v in read_output(tmp_path / "measure").items() if k.endswith(".gz")
    }


@pytest.mark.parametrize("where", ["full disk", "below a file"])
def test_an_output_location_that_cannot_be_written_is_refused_before_any_work(tmp_path, disk, capsys, where):
    _days(tmp_path / "in")
    if where == "full disk":
        disk(0)
        output = PREFIX + str(tmp_path / "out")
    else:
        (tmp_path / "file").write_text("not a folder")
        output = str(tmp_path / "file" / "out")
    assert run_cli("--input", str(tmp_path / "in" / "*"), "--output", output, "--reference-time", REF) == 2
    err = capsys.readouterr().err
    assert f"cloud-import-prep: error: output location {output!r} is not writable" in err
    assert "Traceback" not in err


# --- retried bundles ------------------------------------------------------------------------
# FnApiRunner does not retry: a bundle that raises fails the job (fn_api_runner has no
# retry loop). Runners that retry (Dataflow: up to 4 times in batch) call the DoFns again
# on the same elements, after a failure anywhere in the bundle. These tests make those
# calls: the files written must be the same, once each, with nothing left behind.

DAY = "events/day=2024-01-01"


def _shards() -> list:
    events = [ev("A", f"u{i}", T0 + i, **{"$insert_id": f"i{i}"}) for i in range(30)]
    profiles = [orjson.dumps({"$distinct_id": f"p{i % 3}", "$set": {"n": i}}) for i in range(9)]
    keys = [bytes([i % 3]) * 16 for i in range(9)]
    return [
        ((DAY, 0), [(0, list(range(15)), b"", events[:15])]),
        ((DAY, 1), [(0, list(range(15, 30)), b"", events[15:])]),
        (("profiles", 0), [(0, list(range(9)), b"".join(keys), profiles)]),
    ]


def _finish(out: Path, run_id: str, written: list) -> list:
    header = {"run_id": run_id, "reference_time": REF, "options": {}, "input": {"files": 1, "bytes": 1}}
    tallies = {"lines": 39, "events_accepted": 30, "profiles": 9}
    finish = _FinishRun(str(out), run_id, header, [], None)
    return list(finish.process(written, tallies, [], {}))


def _write_bundle(writer: _WriteShard, elements: list) -> list:
    """One bundle of the write stage, as a runner runs it: the files of process and finish_bundle."""
    by_process, by_finish = run_bundle(writer, elements)
    return by_process + by_finish


def _write_all(out: Path, run_id: str, attempts: int) -> list:
    """Runs the write stage as a runner would, each bundle (one shard) run `attempts` times."""
    temp = temp_root(str(out), run_id)
    writer = _WriteShard(temp, True, 400)  # small files: each shard is cut into several
    writer.setup()
    by_route: dict = {}
    for element in _shards():
        for _ in range(attempts):
            temps = _write_bundle(writer, [element])
        for route, temp_file in temps:
            by_route.setdefault(route, []).append(temp_file)
    writer.teardown()
    namer = _NameFiles(str(out), True)
    written = []
    for route, temps in sorted(by_route.items()):
        for _ in range(attempts):
            files = list(namer.process((route, temps)))
        written += files
    summaries = [_finish(out, run_id, written) for _ in range(attempts)]
    assert all(s == summaries[0] for s in summaries)
    return written


def test_retried_write_move_and_finish_calls_leave_the_same_files_once(tmp_path):
    once, retried = tmp_path / "once", tmp_path / "retried"
    written_once = _write_all(once, "run-1", attempts=1)
    written_retried = _write_all(retried, "run-1", attempts=3)
    assert written_retried == written_once and len(written_once) > 3
    assert read_output(retried) == read_output(once)
    lines = [line for name, v in read_output(retried).items() if not name.startswith("_") for line in v]
    assert len(lines) == len(set(lines)) == 39, "a line lost or written twice"
    assert TEMP_FOLDER not in folders(retried) and (retried / "_SUCCESS").exists()
    assert summary(retried)["balanced"] and summary(retried)["passed"]


def test_a_move_interrupted_halfway_completes_when_retried(tmp_path):
    out, clean = tmp_path / "out", tmp_path / "clean"
    expected = _write_all(clean, "run-2", attempts=1)
    writer = _WriteShard(temp_root(str(out), "run-2"), True, 400)
    writer.setup()
    temps = [t for _, t in _write_bundle(writer, _shards()[:2])]
    writer.teardown()
    ordered = sorted(temps)
    # The first attempt died after moving the first half of the files into place.
    for i, temp in enumerate(ordered[: len(ordered) // 2]):
        final = out / DAY / part_name(i, len(ordered), True)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(temp.temp_path, final)
    retried = list(_NameFiles(str(out), True).process((DAY, temps)))
    assert retried == [f for f in expected if f.route == DAY]
    assert not list((out / TEMP_FOLDER).rglob("*.*")) and not [p for p in (out / TEMP_FOLDER).rglob("*") if p.is_file()]
    assert {k: v for k, v in read_output(out).items() if k.startswith(DAY)} == {
        k: v for k, v in read_output(clean).items() if k.startswith(DAY)
    }
