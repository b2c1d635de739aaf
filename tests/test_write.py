"""Tests of transforms/write.py: the WritePartitions stage and its file helpers."""

import gzip
import os
import time
from concurrent.futures import Future

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

import transforms.write
from bundles import run_bundle
from transforms import FileAccessError
from transforms.write import WritePartitions, WrittenFile, _WriteShard, move_files, write_lines

DAY1 = "events/day=2024-01-01"
DAY2 = "events/day=2024-01-02"
RUN_ID = "20240201T000000Z-test"


def line(text):
    return text.encode()


def files_under(root):
    """Relative path -> bytes of every file under root."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                out[os.path.relpath(path, root)] = handle.read()
    return out


def lines_of(data, compressed):
    if compressed:
        data = gzip.decompress(data)
    assert data.endswith(b"\n")
    return data[:-1].split(b"\n")


A, B = b"\x01" * 16, b"\x02" * 16


def k(n):
    return n.to_bytes(16, "big")


@pytest.fixture
def two_days_profiles_rejects():
    """GroupIntoShards' output: day 1 in two shards (shard 1 holds 3 records),
    day 2 in one, profiles of two identities across ranks, and rejects. Every
    line is 9 bytes with its newline; batches arrive out of order."""
    return [
        (
            (DAY1, 1),
            [(1, [0], k(3), [line("d1-s1-r3")]), (0, [5, 9], k(1) + k(2), [line("d1-s1-r1"), line("d1-s1-r2")])],
        ),
        ((DAY1, 0), [(0, [1], k(0), [line("d1-s0-r1")])]),
        ((DAY2, 0), [(2, [0], k(9), [line("d2-s0-r2")]), (1, [0], k(8), [line("d2-s0-r1")])]),
        (
            ("profiles", 0),
            [(1, [0], B, [line("prof-b-1")]), (2, [0], A, [line("prof-a-2")]), (0, [3], A, [line("prof-a-1")])],
        ),
        (("rejects", 0), [(0, [7], b"", [line("reject-2")]), (0, [2], b"", [line("reject-1")])]),
    ]


ORDERED = [
    ((DAY1, 0), ([b"d1-s0-r1"], None)),
    ((DAY1, 1), ([b"d1-s1-r1", b"d1-s1-r2", b"d1-s1-r3"], None)),
    ((DAY2, 0), ([b"d2-s0-r1", b"d2-s0-r2"], None)),
    (("profiles", 0), ([b"prof-a-1", b"prof-a-2", b"prof-b-1"], [A, A, B])),
    (("rejects", 0), ([b"reject-1", b"reject-2"], None)),
]

EXPECTED_LINES = {
    "events/day=2024-01-01/part-00000-of-00002": [b"d1-s0-r1"],
    "events/day=2024-01-01/part-00001-of-00002": [b"d1-s1-r1", b"d1-s1-r2", b"d1-s1-r3"],
    "events/day=2024-01-02/part-00000-of-00001": [b"d2-s0-r1", b"d2-s0-r2"],
    "profiles/part-00000-of-00001": [b"prof-a-1", b"prof-a-2", b"prof-b-1"],
    "rejects/part-00000-of-00001": [b"reject-1", b"reject-2"],
}


def expected_written(suffix):
    return [
        WrittenFile(name.rsplit("/part-", 1)[0], name + suffix, len(lines), 9 * len(lines))
        for name, lines in EXPECTED_LINES.items()
    ]


def test_write_partitions_puts_each_shard_in_written_order(tmp_path, two_days_profiles_rejects):
    """A shard's batches come in no given order (GroupIntoShards): the writer orders their lines."""
    reversed_batches = [(key, batches[::-1]) for key, batches in two_days_profiles_rejects]
    for run, shards in enumerate((two_days_profiles_rejects, reversed_batches)):
        out_dir = str(tmp_path / f"out-{run}")
        with TestPipeline(runner="FnApiRunner") as p:
            _ = p | beam.Create(shards) | WritePartitions(out_dir, RUN_ID, "none", max_file_bytes=1 << 20)
        written = [lines_of(data, False) for name, data in files_under(out_dir).items() if not name.startswith("_")]
        assert sorted(written) == sorted(lines for _, (lines, _) in ORDERED)


@pytest.mark.parametrize(
    "compression, suffix",
    [pytest.param("gzip", ".ndjson.gz", id="gzip"), pytest.param("none", ".ndjson", id="none")],
)
def test_write_partitions_names_and_lines(tmp_path, two_days_profiles_rejects, compression, suffix):
    out_dir = str(tmp_path / "out")
    with TestPipeline(runner="FnApiRunner") as p:
        written = (
            p
            | beam.Create(two_days_profiles_rejects)
            | WritePartitions(out_dir, RUN_ID, compression, max_file_bytes=1 << 20)
        )
        assert_that(written, equal_to(expected_written(suffix)), label="CheckWrittenFiles")
    on_disk = files_under(out_dir)
    assert sorted(on_disk) == sorted(name + suffix for name in EXPECTED_LINES)
    for name, lines in EXPECTED_LINES.items():
        data = on_disk[name + suffix]
        assert lines_of(data, compression == "gzip") == lines
        if compression == "gzip":
            assert data[:2] == b"\x1f\x8b"
        else:
            assert data == b"\n".join(lines) + b"\n"
    # Only the run's (empty) temporary folder may remain; WriteSummary removes it.
    for folder, _, names in os.walk(os.path.join(out_dir, "_temporary")):
        assert names == [], folder


def test_write_partitions_takes_dedupe_output_directly(tmp_path):
    """Survivors and superseded events come as DeduplicateEvents gives them: a shard's batches, in any order."""
    out_dir = str(tmp_path / "out")
    shards = [
        ((DAY1, 0), [(0, [4, 9], k(7) + k(5), [b"kept-2", b"kept-1"])]),
        ((DAY1, 3), [(2, [0], k(3), [b"kept-3"])]),
        (("superseded/day=2024-01-01", 3), [(1, [0], k(3), [b"lost-2"]), (0, [8], k(3), [b"lost-1"])]),
    ]
    with TestPipeline(runner="FnApiRunner") as p:
        written = p | beam.Create(shards) | WritePartitions(out_dir, RUN_ID, "none", max_file_bytes=1 << 20)
        assert_that(
            written,
            equal_to(
                [
                    WrittenFile(DAY1, f"{DAY1}/part-00000-of-00002.ndjson", 2, 14),
                    WrittenFile(DAY1, f"{DAY1}/part-00001-of-00002.ndjson", 1, 7),
                    WrittenFile(
                        "superseded/day=2024-01-01",
                        "superseded/day=2024-01-01/part-00000-of-00001.ndjson",
                        2,
                        14,
                    ),
                ]
            ),
            label="CheckWrittenFiles",
        )
    on_disk = {n: d for n, d in files_under(out_dir).items() if not n.startswith("_temporary")}
    assert on_disk == {
        f"{DAY1}/part-00000-of-00002.ndjson": b"kept-2\nkept-1\n",
        f"{DAY1}/part-00001-of-00002.ndjson": b"kept-3\n",
        "superseded/day=2024-01-01/part-00000-of-00001.ndjson": b"lost-1\nlost-2\n",
    }


def test_write_partitions_max_file_bytes(tmp_path):
    """20 records of 10 bytes in one shard, at most 25 bytes a file: 10 parts of 2.
    Profiles: identities of 3, 1 and 4 records (30, 10, 40 bytes) with a 25-byte
    limit: the 3- and 4-record identities each get their own file, over the limit."""
    a, b, c = b"\x01" * 16, b"\x02" * 16, b"\x03" * 16
    events = (0, list(range(20)), b"".join(k(i) for i in range(20)), [b"event-%03d" % i for i in range(20)])
    profiles = [
        (0, [100, 101, 102], a * 3, [b"prof-a-%02d" % i for i in range(3)]),
        (0, [200], b, [b"prof-b-00"]),
        (0, [300, 301, 302, 303], c * 4, [b"prof-c-%02d" % i for i in range(4)]),
    ]
    out_dir = str(tmp_path / "out")
    with TestPipeline(runner="FnApiRunner") as p:
        written = (
            p
            | beam.Create([((DAY1, 0), [events]), (("profiles", 0), profiles)])
            | WritePartitions(out_dir, RUN_ID, "none", max_file_bytes=25)
        )
        expected = [
            WrittenFile(DAY1, f"{DAY1}/part-{i:05d}-of-00010.ndjson", 2, 20) for i in range(10)
        ] + [
            WrittenFile("profiles", "profiles/part-00000-of-00003.ndjson", 3, 30),
            WrittenFile("profiles", "profiles/part-00001-of-00003.ndjson", 1, 10),
            WrittenFile("profiles", "profiles/part-00002-of-00003.ndjson", 4, 40),
        ]
        assert_that(written, equal_to(expected), label="CheckWrittenFiles")
    on_disk = {n: d for n, d in files_under(out_dir).items() if not n.startswith("_temporary")}
    assert on_disk == {
        **{
            f"{DAY1}/part-{i:05d}-of-00010.ndjson": b"event-%03d\nevent-%03d\n" % (2 * i, 2 * i + 1)
            for i in range(10)
        },
        "profiles/part-00000-of-00003.ndjson": b"".join(b"prof-a-%02d\n" % i for i in range(3)),
        "profiles/part-00001-of-00003.ndjson": b"prof-b-00\n",
        "profiles/part-00002-of-00003.ndjson": b"".join(b"prof-c-%02d\n" % i for i in range(4)),
    }
    for name, data in on_disk.items():
        if len(data) > 25:
            assert name.startswith("profiles/") and len({line[:6] for line in data.splitlines()}) == 1


def test_write_partitions_gzip_bytes_identical_across_runs(tmp_path, two_days_profiles_rejects):
    outputs = [str(tmp_path / "first"), str(tmp_path / "second")]
    with TestPipeline(runner="FnApiRunner") as p:
        shards = p | beam.Create(two_days_profiles_rejects)
        for n, out_dir in enumerate(outputs):
            _ = shards | f"Write{n}" >> WritePartitions(out_dir, f"run-{n}", "gzip", max_file_bytes=1 << 20)
    first, second = files_under(outputs[0]), files_under(outputs[1])
    assert sorted(first) == sorted(name + ".ndjson.gz" for name in EXPECTED_LINES)
    assert first == second
    for data in first.values():
        assert data[4:8] == b"\x00\x00\x00\x00"  # gzip MTIME field: 0
        assert data[3] & 0x08 == 0  # FLG.FNAME unset: no file name stored


# files written by threads ------------------------------------------------------------------


@pytest.mark.parametrize("pending_bytes", [0, 20, 1 << 30], ids=["wait-each", "some-waiting", "all-at-bundle-end"])
def test_write_partitions_outputs_every_file_once_however_many_wait(
    tmp_path, two_days_profiles_rejects, monkeypatch, pending_bytes
):
    """Files are output by process() once written, or by finish_bundle(): the same files either way."""
    monkeypatch.setattr(transforms.write, "PENDING_BYTES", pending_bytes)
    out_dir = str(tmp_path / "out")
    with TestPipeline(runner="FnApiRunner") as p:
        written = p | beam.Create(two_days_profiles_rejects) | WritePartitions(out_dir, RUN_ID, "gzip", 1 << 20)
        assert_that(written, equal_to(expected_written(".ndjson.gz")), label="CheckWrittenFiles")
    on_disk = files_under(out_dir)
    assert {name: lines_of(data, True) for name, data in on_disk.items()} == {
        name + ".ndjson.gz": lines for name, lines in EXPECTED_LINES.items()
    }


def one_line_files(shard, count):
    """A shard of DAY1 with `count` lines "s<shard>-line<i>", each its own file at max_file_bytes 9."""
    return (DAY1, shard), [(0, list(range(count)), k(0) * count, [line(f"s{shard}-line{i}") for i in range(count)])]


def _bundle_outputs(writer, elements):
    """(files output by process(), files output by finish_bundle()) of one bundle."""
    by_process, by_finish = run_bundle(writer, elements)
    return [temp for _, temp in by_process], [temp for _, temp in by_finish]


def test_a_file_is_output_only_once_written_and_at_most_pending_bytes_wait(tmp_path, monkeypatch):
    """Each shard here is 10 files of 9 bytes (a line each); PENDING_BYTES bounds what waits unwritten."""
    shards = [one_line_files(s, 10) for s in range(3)]
    for pending_bytes, most_waiting in ((0, 0), (45, 5), (1 << 30, 30)):
        monkeypatch.setattr(transforms.write, "PENDING_BYTES", pending_bytes)
        writer = _WriteShard(str(tmp_path / f"temp-{pending_bytes}"), False, 9)
        writer.setup()
        by_process, by_finish = _bundle_outputs(writer, shards)
        writer.teardown()
        # A file written in time is output by process() even when it could have waited.
        assert len(by_finish) <= most_waiting and len(by_process) + len(by_finish) == 30
        assert sorted(by_process + by_finish) == by_process + by_finish, "files are output in the order written"
        for temp in by_process + by_finish:
            with open(temp.temp_path, "rb") as handle:
                assert handle.read() == f"s{temp.shard}-line{temp.number}\n".encode()


def test_a_file_that_cannot_be_written_fails_the_bundle_and_no_write_goes_on_after_it(tmp_path, monkeypatch):
    """The error names the file; the files queued behind it are cancelled or finished before it is raised
    (a retried bundle writes the same names: nothing of the failed attempt may still be writing)."""
    monkeypatch.setattr(transforms.write, "PENDING_BYTES", 1 << 30)
    temp = tmp_path / "temp"
    temp.mkdir()
    (temp / "rejects").write_text("a file where the rejects' folder should be")
    write = transforms.write.write_lines

    def slow_write(path, lines, compressed):  # the failing file fails late, the others queue behind it
        time.sleep(0.5 if "rejects" in path else 0.01)
        return write(path, lines, compressed)

    monkeypatch.setattr(transforms.write, "write_lines", slow_write)
    writer = _WriteShard(str(temp), False, 9)
    writer.setup()
    submitted: list[Future] = []
    submit = writer._pool.submit

    def recorded(*args):
        submitted.append(submit(*args))
        return submitted[-1]

    writer._pool.submit = recorded
    rejects = (("rejects", 0), [(0, [0], b"", [line("reject-1")])])
    many = [one_line_files(s, 50) for s in range(20)]
    with pytest.raises(FileAccessError, match=r"temp/rejects/shard-00000-00000: cannot be written \(.+\)"):
        _bundle_outputs(writer, [rejects, *many])
    assert len(submitted) == 1 + 20 * 50
    assert all(future.done() for future in submitted)
    assert sum(future.cancelled() for future in submitted) > 900, "the queue behind the failed file was left to run"
    writer.teardown()


# write_lines and move_files -----------------------------------------------------------


@pytest.mark.parametrize("compressed", [True, False])
def test_write_lines_returns_uncompressed_size(tmp_path, compressed):
    path = str(tmp_path / "sub" / "f")
    lines = [b"x" * i for i in range(5)]
    assert write_lines(path, lines, compressed) == sum(i + 1 for i in range(5))
    with open(path, "rb") as handle:
        data = handle.read()
    assert (gzip.decompress(data) if compressed else data) == b"\nx\nxx\nxxx\nxxxx\n"


def test_write_lines_large_file_in_slices(tmp_path):
    """More than one 4 MiB write slice: every line still there, in order."""
    path = str(tmp_path / "big")
    lines = [b"%09d" % i + b"y" * 990 for i in range(10_000)]
    assert write_lines(path, lines, True) == 10_000 * 1000
    with open(path, "rb") as handle:
        data = gzip.decompress(handle.read())
    assert data == b"".join(line + b"\n" for line in lines)


def test_move_files_creates_folders_and_accepts_a_done_move(tmp_path):
    src = tmp_path / "tmp" / "a"
    src.parent.mkdir()
    src.write_bytes(b"data")
    dst = str(tmp_path / "events" / "day=2024-01-01" / "part-00000-of-00001.ndjson")
    move_files([str(src)], [dst])
    assert not src.exists()
    with open(dst, "rb") as handle:
        assert handle.read() == b"data"
    # A retried call finds the move already done and accepts it.
    move_files([str(src)], [dst])
    with open(dst, "rb") as handle:
        assert handle.read() == b"data"


def test_move_files_fails_when_source_and_destination_are_missing(tmp_path):
    with pytest.raises(IOError):
        move_files([str(tmp_path / "nothing")], [str(tmp_path / "out" / "x")])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(output="", run_id="r", compression="gzip", max_file_bytes=1), "output"),
        (dict(output="o", run_id="", compression="gzip", max_file_bytes=1), "run_id"),
        (dict(output="o", run_id="r", compression="zip", max_file_bytes=1), "compression"),
        (dict(output="o", run_id="r", compression="none", max_file_bytes=0), "max_file_bytes"),
    ],
)
def test_write_partitions_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WritePartitions(**kwargs)
