"""End-to-end on object storage: the real CLI against gs:// (gcp-storage-emulator) and s3:// (moto).

Outputs are read back from the emulator and compared with a local run of the
same input, whose files get the objects' upload times as mtimes: the same
upload order, hence the same bytes. The emulators run on 127.0.0.1 only
(tests/emulators.py); their clock is set per upload, so object times are
chosen by the tests, not by the calendar.
"""

import gzip
import json
import os
import re
import shutil
import threading
import time
import urllib.request
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import apache_beam as beam
import boto3
import botocore.loaders
import botocore.session
import orjson
import pytest
from apache_beam.internal.gcp import auth
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

import pipeline.plan
from e2e import SAMPLE, run_cli, run_cli_process, write_input
from emulators import s3_server as start_s3_server
from pipeline import stores
from pipeline.inputs import match_inputs
from pipeline.run import run as run_pipeline
from test_end_to_end import REF, T_DAY1, T_DAY2, _mixed_corpus, ev
from transforms.ranges import iter_line_batches, plan_ranges
from transforms.read import ReadRawLines

T0 = 1_719_835_200  # 2024-07-01T12:00:00Z: a summer time, where BEAM_NOTES 6 bites
S3_KEYS = ["--s3_access_key_id", "testing", "--s3_secret_access_key", "testing"]


# --- stores: a fresh bucket per test on the session's emulators -----------------------------


class Store:
    """A bucket on an emulator, with what tests do to it."""

    scheme = ""

    def __init__(self, emulator, bucket: str) -> None:
        self.emulator = emulator
        self.bucket = bucket
        self.args: list[str] = []  # what the CLI needs to reach the store

    def url(self, key: str = "") -> str:
        return f"{self.scheme}://{self.bucket}/{key}"

    def upload(self, key: str, data: bytes, at: float) -> None:
        """Stores an object whose upload time is `at` (UNIX seconds)."""
        self.emulator.set_clock(at)
        self._put(key, data)

    def upload_tree(self, local: Path, prefix: str, times: dict[str, float]) -> None:
        """Uploads every file under `local` to `prefix`, at times[relative path]; gives
        the local files the same times as mtimes, for a local run to compare with."""
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            rel = path.relative_to(local).as_posix()
            self.upload(prefix + rel, path.read_bytes(), times[rel])
            os.utime(path, (times[rel], times[rel]))

    def read_all(self, prefix: str) -> dict[str, bytes]:
        """Every object below `prefix`: relative name -> bytes."""
        return {key[len(prefix) :]: data for key, data in self._objects(prefix)}

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def _put(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def _objects(self, prefix: str):
        raise NotImplementedError


class GcsStore(Store):
    scheme = "gs"

    def __init__(self, emulator, bucket: str) -> None:
        super().__init__(emulator, bucket)
        self.client = storage.Client(
            project="test",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": emulator.url},
        )
        self.client.create_bucket(bucket)

    def _put(self, key: str, data: bytes) -> None:
        self.client.bucket(self.bucket).blob(key).upload_from_string(data)

    def delete(self, key: str) -> None:
        self.client.bucket(self.bucket).blob(key).delete()

    def _objects(self, prefix: str):
        for blob in self.client.list_blobs(self.bucket, prefix=prefix):
            yield blob.name, blob.download_as_bytes(raw_download=True)

    def patch_metadata(self, key: str, at: float) -> None:
        """Edits an object's custom metadata at time `at` (moves `updated` only)."""
        self.emulator.set_clock(at)
        blob = self.client.bucket(self.bucket).blob(key)
        blob.metadata = {"reviewed": "yes"}
        blob.patch()


class S3Store(Store):
    scheme = "s3"

    def __init__(self, emulator, bucket: str) -> None:
        super().__init__(emulator, bucket)
        self.client = boto3.client(
            "s3",
            endpoint_url=emulator.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        self.client.create_bucket(Bucket=bucket)
        self.args = ["--s3_endpoint_url", emulator.url, *S3_KEYS, "--s3_region_name", "us-east-1"]

    def _put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def _objects(self, prefix: str):
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", ()):
                yield item["Key"], self.client.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()


def _bucket_name() -> str:
    return "t-" + uuid.uuid4().hex[:16]


@pytest.fixture
def gcs_env(gcs_emulator, monkeypatch):
    """Points this process's GCS clients (Beam's included) at the emulator.

    Beam would first spend ~20 s looking for Google credentials (BEAM_NOTES 10):
    it is told there are none, and goes anonymous at once.
    """
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.url)
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setattr(auth._Credentials, "_credentials_init", True)
    monkeypatch.setattr(auth._Credentials, "_credentials", None)
    yield gcs_emulator
    gcs_emulator.set_clock(None)


@pytest.fixture
def gcs(gcs_env):
    return GcsStore(gcs_env, _bucket_name())


@pytest.fixture
def s3(s3_server, monkeypatch):
    """A fresh bucket on the S3 server.

    Beam 2.77 builds a new boto3 session for every S3 filesystem call, which
    reloads the AWS service model (about 0.3 s a call, minutes for this file).
    Here sessions share one model loader: the requests are the same, five
    times faster. The child-process test runs without this.
    """
    loader = botocore.loaders.create_loader()
    session = boto3.session.Session

    def session_sharing_the_loader(*args, **kwargs):
        if "botocore_session" not in kwargs:
            kwargs["botocore_session"] = botocore.session.get_session()
            kwargs["botocore_session"].register_component("data_loader", loader)
        return session(*args, **kwargs)

    monkeypatch.setattr(boto3.session, "Session", session_sharing_the_loader)
    yield S3Store(s3_server, _bucket_name())
    s3_server.set_clock(None)


@pytest.fixture(params=["gs", "s3"])
def store(request):
    """Each test runs once on the GCS emulator and once on the S3 server."""
    return request.getfixturevalue("gcs" if request.param == "gs" else "s3")


@pytest.fixture
def new_york_time():
    """The process runs in America/New_York (a DST zone) during the test."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


# --- running and comparing ------------------------------------------------------------------


def run_remote(store: Store, inputs: list[str], output: str, *extra: str) -> int:
    args = [a for pattern in inputs for a in ("--input", pattern)]
    return run_cli(*args, "--output", output, "--reference-time", REF, *store.args, *extra)


def run_local(inputs: list[Path], output: Path, *extra: str) -> int:
    args = [a for pattern in inputs for a in ("--input", str(pattern))]
    return run_cli(*args, "--output", str(output), "--reference-time", REF, *extra)


def local_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def data_files(files: dict[str, bytes]) -> list[str]:
    """The names of the output files proper, without the run files (_SUMMARY.json, …)."""
    return sorted(name for name in files if not name.startswith("_"))


def lines_of(data: bytes, name: str) -> list[bytes]:
    return (gzip.decompress(data) if name.endswith(".gz") else data).splitlines()


def assert_same_as_local(
    remote: dict[str, bytes], local: dict[str, bytes], prefixes: dict[str, str]
) -> None:
    """The remote output is the local one: data files and _SUCCESS byte for byte;
    rejects and the summary once remote names are put back as the local ones.

    Args:
      prefixes: remote prefix -> local prefix (input folder, output folder).
    """
    assert sorted(remote) == sorted(local)

    def localise(text: str) -> str:
        for remote_prefix, local_prefix in prefixes.items():
            text = text.replace(remote_prefix, local_prefix)
        return text

    longer = {}  # rejects files are longer by the longer source names
    for name, data in local.items():
        if name.startswith("rejects/"):
            remote_lines = lines_of(remote[name], name)
            localised = [localise(line.decode()).encode() for line in remote_lines]
            assert localised == lines_of(data, name), name
            longer[name] = sum(map(len, remote_lines)) - sum(map(len, localised))
        elif name == "_SUCCESS" or not name.startswith("_"):
            assert remote[name] == data, name
        # Other run files (_SUMMARY.json below; a report) may hold run ids and times.
    remote_summary = orjson.loads(localise(remote["_SUMMARY.json"].decode()))
    local_summary = orjson.loads(local["_SUMMARY.json"])
    for f in remote_summary["output"]["files"]:
        f["bytes"] -= longer.get(f["path"], 0)
    for summary in (remote_summary, local_summary):
        summary.pop("run_id")
        summary["options"].pop("run_date", None)  # today's date: the runs may straddle midnight
    assert remote_summary == local_summary


def assert_no_temporary_objects(store: Store, prefix: str) -> None:
    assert not [name for name in store.read_all(prefix) if name.startswith("_temporary")]


def refused(capsys, status: int) -> str:
    """The one error line of a run refused before any work."""
    assert status == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("cloud-import-prep: error:")]
    assert len(errors) == 1, err
    assert "Traceback" not in err
    return errors[0]


# --- the end-to-end expectations, on object storage -----------------------------------------


def test_sample_gives_the_local_bytes(store, tmp_path):
    local_in = tmp_path / "in"
    shutil.copytree(SAMPLE, local_in)
    store.upload_tree(local_in, "raw/", {"2020-10-01-export.ndjson": T0, "2020-10-26-resend.ndjson.gz": T0 + 3600})
    assert run_remote(store, [store.url("raw/*")], store.url("prepared")) == 0
    assert run_local([local_in / "*"], tmp_path / "out") == 0

    remote = store.read_all("prepared/")
    assert_same_as_local(
        remote,
        local_files(tmp_path / "out"),
        {store.url("raw/"): f"{local_in}/", store.url("prepared"): str(tmp_path / "out")},
    )
    # The expectations of the local sample test, read from the store.
    s = orjson.loads(remote["_SUMMARY.json"])
    o = s["output"]
    assert s["input"] == {
        "files": 2, "bytes": s["input"]["bytes"], "skipped_output_files": 0, "lines": 25, "blank_lines": 1
    }
    assert (o["events"], o["superseded"], o["profiles"], o["groups"], o["rejected"]) == (14, 1, 6, 1, 2)
    assert o["rejected_by_reason"] == {"invalid_json": 1, "missing_time": 1}
    assert s["passed"] is True
    assert data_files(remote) == sorted(
        [f"events/day={d}/part-00000-of-00001.ndjson.gz" for d in o["events_by_day"]]
        + [f"{r}/part-00000-of-00001.ndjson.gz" for r in ("groups", "profiles", "rejects")]
    )
    assert {"_SUMMARY.json", "_SUCCESS"} <= set(remote)
    rejects = [orjson.loads(line) for line in lines_of(remote["rejects/part-00000-of-00001.ndjson.gz"], ".gz")]
    assert [(r["reason"], r["offset"], r["source"]) for r in rejects] == [
        ("missing_time", 255, store.url("raw/2020-10-26-resend.ndjson.gz")),
        ("invalid_json", 342, store.url("raw/2020-10-26-resend.ndjson.gz")),
    ]
    assert_no_temporary_objects(store, "prepared/")


def test_recursive_glob_and_small_ranges_give_the_local_bytes(store, tmp_path, small_read_ranges):
    """`**` across prefixes; uncompressed objects read in many ranges (seeks on the
    remote handle); two objects with the same upload time (S3's 1 s precision)."""
    local_in = tmp_path / "in"
    _mixed_corpus(local_in / "2024" / "01")
    shutil.copytree(SAMPLE, local_in / "sample")
    times = {
        "2024/01/plain.ndjson": T0 + 10,
        "2024/01/more.ndjson": T0 + 10,  # a tie: path order decides
        "2024/01/packed.ndjson.gz": T0 + 20,
        "sample/2020-10-01-export.ndjson": T0,
        "sample/2020-10-26-resend.ndjson.gz": T0 + 30,
    }
    store.upload_tree(local_in, "in/", times)
    out = store.url("out")
    assert run_remote(store, [store.url("in/**")], out, "--range-bytes", "4096") == 0
    assert run_local([local_in / "**"], tmp_path / "out", "--range-bytes", "4096") == 0
    remote = store.read_all("out/")
    assert_same_as_local(
        remote, local_files(tmp_path / "out"), {store.url("in/"): f"{local_in}/", out: str(tmp_path / "out")}
    )
    summary = orjson.loads(remote["_SUMMARY.json"])
    assert summary["input"]["files"] == 5 and summary["passed"] is True


def test_latest_upload_wins_by_object_time_then_path(store, tmp_path):
    def dup(insert_id, version):
        return ev("Signup", "u1", T_DAY1 + 60, **{"$insert_id": insert_id, "version": version})

    store.upload("in/b.ndjson", dup("abc-1", "old") + b"\n", T0)
    store.upload("in/a.ndjson", dup("abc-1", "new") + b"\n", T0 + 10)  # later, though first by name
    store.upload("in/c.ndjson", dup("abc-2", "first") + b"\n", T0 + 5)
    store.upload("in/d.ndjson", dup("abc-2", "second") + b"\n", T0 + 5)  # same time: path decides
    assert run_remote(store, [store.url("in/*")], store.url("out"), "--keep-superseded") == 0
    out = store.read_all("out/")
    part = "day=2024-01-01/part-00000-of-00001.ndjson.gz"
    kept = [orjson.loads(line)["properties"] for line in lines_of(out[f"events/{part}"], ".gz")]
    gone = [orjson.loads(line)["properties"] for line in lines_of(out[f"superseded/{part}"], ".gz")]
    assert sorted((p["$insert_id"], p["version"]) for p in kept) == [("abc-1", "new"), ("abc-2", "second")]
    assert sorted((p["$insert_id"], p["version"]) for p in gone) == [("abc-1", "old"), ("abc-2", "first")]


def test_gcs_upload_time_is_creation_not_a_later_metadata_edit(gcs, tmp_path):
    """BEAM_NOTES 11: editing metadata moves GCS `updated`, not `time_created`;
    an edited object is not a new upload."""
    old = ev("Signup", "u1", T_DAY1, **{"$insert_id": "abc-1", "version": "old"})
    new = ev("Signup", "u1", T_DAY1, **{"$insert_id": "abc-1", "version": "new"})
    gcs.upload("in/old.ndjson", old + b"\n", T0)
    gcs.upload("in/new.ndjson", new + b"\n", T0 + 10)
    gcs.patch_metadata("in/old.ndjson", T0 + 20)
    blob = gcs.client.bucket(gcs.bucket).get_blob("in/old.ndjson")
    assert blob.updated.timestamp() == T0 + 20  # the emulator moved `updated`

    files = match_inputs([gcs.url("in/*")])
    assert [(f.path.rsplit("/", 1)[1], f.upload_time) for f in files] == [("old.ndjson", T0), ("new.ndjson", T0 + 10)]
    assert run_remote(gcs, [gcs.url("in/*")], gcs.url("out")) == 0
    out = gcs.read_all("out/")
    (line,) = lines_of(out["events/day=2024-01-01/part-00000-of-00001.ndjson.gz"], ".gz")
    assert orjson.loads(line)["properties"]["version"] == "new"


def test_upload_times_do_not_depend_on_the_time_zone(store, new_york_time):
    """BEAM_NOTES 6, in process and without the CLI's TZ=UTC: in New York, Beam's
    mktime conversion puts 03:00Z on 2024-03-10 (after the DST switch) an hour
    early, before an object uploaded at 02:30Z."""
    earlier = datetime(2024, 3, 10, 2, 30, tzinfo=timezone.utc).timestamp()
    later = datetime(2024, 3, 10, 3, 0, tzinfo=timezone.utc).timestamp()
    store.upload("in/x.ndjson", ev("Play", "u1", T_DAY1, **{"$insert_id": "id-1", "v": "earlier"}) + b"\n", earlier)
    store.upload("in/w.ndjson", ev("Play", "u1", T_DAY1, **{"$insert_id": "id-1", "v": "later"}) + b"\n", later)
    if store.scheme == "gs":  # the trap is live in this process
        from apache_beam.io.gcp.gcsio import GcsIO  # noqa: PLC0415

        beams = GcsIO._updated_to_seconds(datetime.fromtimestamp(later, timezone.utc))
        assert beams == later - 3600 < earlier

    options = PipelineOptions(store.args)
    files = match_inputs([store.url("in/*")], options=options)
    assert [(f.path, f.upload_time) for f in files] == [
        (store.url("in/x.ndjson"), earlier),
        (store.url("in/w.ndjson"), later),
    ]
    result = run_pipeline(
        ["--input", store.url("in/*"), "--output", store.url("out"), "--reference-time", REF, *store.args]
    )
    result.wait_until_finish()
    assert os.environ["TZ"] == "America/New_York"
    (line,) = lines_of(store.read_all("out/")["events/day=2024-01-01/part-00000-of-00001.ndjson.gz"], ".gz")
    assert orjson.loads(line)["properties"]["v"] == "later"


def test_overwrite_replaces_only_the_previous_run(store, capsys):
    store.upload("in1/a.ndjson", ev("A", "u", T_DAY1) + b"\n" + ev("A", "u", T_DAY2) + b"\n", T0)
    store.upload("in2/a.ndjson", ev("B", "u", T_DAY2) + b"\n", T0)
    out = store.url("out")
    assert run_remote(store, [store.url("in1/*")], out) == 0
    assert "--overwrite" in refused(capsys, run_remote(store, [store.url("in2/*")], out))
    assert run_remote(store, [store.url("in2/*")], out, "--overwrite") == 0
    replaced = store.read_all("out/")
    assert data_files(replaced) == ["events/day=2024-01-02/part-00000-of-00001.ndjson.gz"]
    assert {"_SUMMARY.json", "_SUCCESS"} <= set(replaced)
    store.upload("out/notes.txt", b"mine", T0)
    assert "notes.txt" in refused(capsys, run_remote(store, [store.url("in1/*")], out, "--overwrite"))
    after = store.read_all("out/")
    assert after["notes.txt"] == b"mine" and "_SUCCESS" in after
    assert_no_temporary_objects(store, "out/")


# --- reading: chunked, ranged, seeking ------------------------------------------------------


class _Spy:
    """A read handle that records what is asked of it."""

    def __init__(self, handle) -> None:
        self._handle = handle
        self.calls: list[tuple[str, int]] = []

    def read(self, size=-1):
        self.calls.append(("read", size))
        return self._handle.read(size)

    def seek(self, offset, whence=0):
        self.calls.append(("seek", offset))
        return self._handle.seek(offset, whence)

    def readline(self, *args):  # pragma: no cover - must not be called
        self.calls.append(("readline", -1))
        return self._handle.readline(*args)

    def __iter__(self):  # pragma: no cover - must not be called
        raise AssertionError("line iteration on a remote handle")


def test_a_large_object_is_read_in_ranges_by_chunks_and_seeks(store):
    lines = [b'{"n":%d,"pad":"%s"}' % (i, b"x" * (i % 97)) for i in range(40_000)]
    data = b"\n".join(lines) + b"\n"  # about 2.6 MB
    store.upload("big/one.ndjson", data, T0)
    url = store.url("big/one.ndjson")
    (listed,) = match_inputs([url], options=PipelineOptions(store.args))
    opener = stores.ObjectOpener(PipelineOptions(store.args))  # the pipeline's reader of objects
    ranges = plan_ranges(0, url, len(data), False, 1 << 20, listed.version)
    assert len(ranges) == 3
    seen: list[bytes] = []
    for r in ranges:
        with opener.open(url, r.size, r.version) as handle:
            spy = _Spy(handle)
            for _, batch in iter_line_batches(spy, r.start, r.end, chunk_bytes=256 << 10):
                seen.extend(batch)
        assert {name for name, _ in spy.calls} <= {"read", "seek"}
        assert all(size == 256 << 10 for name, size in spy.calls if name == "read")
        assert (("seek", r.start - 1) in spy.calls) == (r.start > 0)
    assert seen == lines

    # The same through the pipeline stage: three ranges, every line once.
    files = match_inputs([url], options=PipelineOptions(store.args))
    pipeline = beam.Pipeline(runner="FnApiRunner", options=PipelineOptions(store.args))
    counted = (
        pipeline
        | ReadRawLines(files, range_bytes=1 << 20, open_objects=stores.opener_factory(PipelineOptions(store.args)))
        | beam.Map(lambda batch: len(batch[3]))
        | beam.CombineGlobally(sum)
    )
    assert_that(counted, equal_to([len(lines)]))
    result = pipeline.run()
    result.wait_until_finish()
    (ranges_read,) = result.metrics().query(MetricsFilter().with_name("ranges_read"))["counters"]
    assert ranges_read.committed == 3


# --- objects that vanish or change after they were listed ----------------------------------
# The object is changed between listing and reading the way test_faults.py changes a local
# file: pipeline.plan.plan_launch lists the inputs, then calls prepare_output; the change is made
# there, after the listing and before the pipeline runs. The stores' own errors are then
# what the readers see.

VANISHED = {"gs": "the object vanished since it was listed (404 Not Found)",
            "s3": "the object vanished since it was listed (NoSuchKey)"}


def _after_listing(monkeypatch, change) -> None:
    real_prepare = pipeline.plan.prepare_output

    def prepare_then_change(*args, **kwargs):
        stale = real_prepare(*args, **kwargs)
        change()
        return stale

    monkeypatch.setattr(pipeline.plan, "prepare_output", prepare_then_change)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("cloud-import-prep: error:")]
    assert len(errors) == 1, err
    return errors[0]


GOOD = [ev("Signup", f"u{i}", T_DAY1 + i, **{"$insert_id": f"id-{i}"}) for i in range(20)]
VICTIM = [ev("Gone", f"v{i}", T_DAY1 + i) for i in range(200)]  # about 13 KB: many 1000-byte ranges


def test_an_object_deleted_after_listing_fails_the_run_or_is_skipped(store, monkeypatch, capsys, small_read_ranges):
    """Before: on gs:// a run ended in about seven tracebacks, with or without --skip-unreadable-files."""
    store.upload("in/a.ndjson", b"\n".join(GOOD) + b"\n", T0)
    store.upload("in/b.ndjson", b"\n".join(VICTIM) + b"\n", T0 + 10)
    _after_listing(monkeypatch, lambda: store.delete("in/b.ndjson"))
    args = ("--range-bytes", "1000")
    assert run_remote(store, [store.url("in/*")], store.url("failed"), *args) == 1
    victim = store.url("in/b.ndjson")
    assert _one_error_line(capsys) == f"cloud-import-prep: error: {victim}: {VANISHED[store.scheme]}"
    assert "failed/_SUCCESS" not in store.read_all("")

    store.upload("in/b.ndjson", b"\n".join(VICTIM) + b"\n", T0 + 10)
    assert run_remote(store, [store.url("in/*")], store.url("skipped"), *args, "--skip-unreadable-files") == 0
    summary = orjson.loads(store.read_all("skipped/")["_SUMMARY.json"])
    # Read in 14 ranges, the object is listed once.
    assert summary["input"]["unreadable_files"] == [{"path": victim, "error": VANISHED[store.scheme], "lines_read": 0}]
    assert summary["input"]["lines"] == len(GOOD) and summary["output"]["events"] == len(GOOD)
    assert summary["passed"] is True


def test_an_object_replaced_after_listing_fails_the_run_or_is_skipped(store, monkeypatch, capsys, small_read_ranges):
    """The new content is refused, not read: S3 answers If-Match on GET with 412 (moto as
    S3), GCS answers ifGenerationMatch with 412 (the emulator with tests/emulators.py's
    preconditions, as GCS documents them)."""
    store.upload("in/a.ndjson", b"\n".join(GOOD) + b"\n", T0)
    store.upload("in/b.ndjson", b"\n".join(VICTIM) + b"\n", T0 + 10)
    (_, listed) = match_inputs([store.url("in/*")], options=PipelineOptions(store.args))
    unchanged = pipeline.plan.prepare_output
    replaced = [ev("Lost", f"n{i}", T_DAY1 + i) for i in range(200)]  # the same size, other bytes
    assert len(b"\n".join(replaced)) == len(b"\n".join(VICTIM))
    _after_listing(monkeypatch, lambda: store.upload("in/b.ndjson", b"\n".join(replaced) + b"\n", T0 + 20))
    version = "ETag" if store.scheme == "s3" else "generation"
    changed = f"the object changed since it was listed ({version} {listed.version} is no longer current)"
    assert run_remote(store, [store.url("in/*")], store.url("failed"), "--range-bytes", "1000") == 1
    assert _one_error_line(capsys) == f"cloud-import-prep: error: {listed.path}: {changed}"

    # Listed again (as `replaced`), then replaced again after listing: skipped, nothing
    # of either content read.
    monkeypatch.setattr(pipeline.plan, "prepare_output", unchanged)
    _after_listing(monkeypatch, lambda: store.upload("in/b.ndjson", b"\n".join(VICTIM) + b"\n", T0 + 30))
    flags = ("--range-bytes", "1000", "--skip-unreadable-files")
    assert run_remote(store, [store.url("in/*")], store.url("skipped"), *flags) == 0
    summary = orjson.loads(store.read_all("skipped/")["_SUMMARY.json"])
    (unreadable,) = summary["input"]["unreadable_files"]
    assert unreadable["path"] == listed.path and unreadable["lines_read"] == 0
    assert unreadable["error"].startswith("the object changed since it was listed")
    assert summary["input"]["lines"] == len(GOOD) and summary["passed"] is True
    names = {orjson.loads(line)["event"] for line in lines_of(store.read_all("skipped/")[
        "events/day=2024-01-01/part-00000-of-00001.ndjson.gz"], ".gz")}
    assert names == {"Signup"}  # nothing of the new content, nothing of the old


def test_worker_processes_read_objects_with_the_pipelines_options(s3, tmp_path):
    """--direct_running_mode multi_processing: FnApiRunner alone gives its worker processes no
    pipeline options (Beam's FileSystems there would know no --s3_endpoint_url and no keys);
    the readers carry the options themselves. A gzip object named .json is read by content
    there too."""
    s3.upload("in/a.ndjson", b"\n".join(GOOD) + b"\n", T0)
    s3.upload("in/b.json", gzip.compress(b"\n".join(VICTIM) + b"\n", mtime=0), T0 + 10)
    done = run_cli_process(
        "--input", s3.url("in/*"), "--output", str(tmp_path / "out"), "--reference-time", REF, *s3.args,
        "--range-bytes", "1000", "--direct_running_mode", "multi_processing", "--direct_num_workers", "2",
        small_read_ranges=True,
    )
    assert done.returncode == 0, done.stderr
    summary = orjson.loads((tmp_path / "out" / "_SUMMARY.json").read_bytes())
    assert summary["input"]["lines"] == len(GOOD) + len(VICTIM)
    assert summary["output"]["events"] == len(GOOD) + len(VICTIM) and summary["output"]["rejected"] == 0


def test_worker_processes_write_objects_with_the_pipelines_options(s3, tmp_path):
    """--direct_running_mode multi_processing with an S3 output and the keys as flags: the
    workers' own S3 file system writes the files, so it must be given the options (endpoint,
    keys) the run was given, as Beam's job service gives them its workers."""
    s3.upload("in/a.ndjson", b"\n".join(GOOD) + b"\n", T0)
    done = run_cli_process(
        "--input", s3.url("in/*"), "--output", s3.url("out"), "--reference-time", REF, *s3.args,
        "--direct_running_mode", "multi_processing", "--direct_num_workers", "2",
    )
    assert done.returncode == 0, done.stderr
    written = s3.read_all("out/")
    summary = orjson.loads(written["_SUMMARY.json"])
    assert summary["passed"] is True and summary["output"]["events"] == len(GOOD)
    assert "_SUCCESS" in written


# --- refused before any work, in one readable line ------------------------------------------


def test_missing_input_bucket_is_refused(store, capsys):
    missing = store.url("").replace(store.bucket, store.bucket + "-missing")
    line = refused(capsys, run_remote(store, [missing + "in/*"], store.url("out")))
    assert f"bucket {missing.rstrip('/')} does not exist" in line
    assert store.read_all("") == {}


def test_missing_output_bucket_is_refused(store, capsys):
    store.upload("in/a.ndjson", ev("A", "u", T_DAY1) + b"\n", T0)
    missing = store.url("").replace(store.bucket, store.bucket + "-missing")
    line = refused(capsys, run_remote(store, [store.url("in/*")], missing + "out"))
    assert f"bucket {missing.rstrip('/')} does not exist" in line


def test_pattern_matching_nothing_is_refused(store, capsys):
    store.upload("in/a.ndjson", ev("A", "u", T_DAY1) + b"\n", T0)
    line = refused(capsys, run_remote(store, [store.url("in/*"), store.url("in/*.gz")], store.url("out")))
    assert f"input pattern '{store.url('in/*.gz')}' matches no file" in line
    assert list(store.read_all("")) == ["in/a.ndjson"]


def test_s3_without_credentials_is_refused(s3, capsys, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata request
    s3.upload("in/a.ndjson", ev("A", "u", T_DAY1) + b"\n", T0)
    status = run_cli("--input", s3.url("in/*"), "--output", s3.url("out"), "--s3_endpoint_url", s3.emulator.url)
    line = refused(capsys, status)
    assert "no AWS credentials found" in line and "--s3_access_key_id" in line


@pytest.fixture(scope="module")
def locked_s3(tmp_path_factory):
    """An S3 server that checks credentials, with a read-only user.

    Yields the server's URL and the read-only user's keys as CLI arguments;
    bucket "locked" holds in/a.ndjson.
    """
    with start_s3_server(tmp_path_factory.mktemp("locked-s3")) as server:
        admin = dict(
            endpoint_url=server.url, aws_access_key_id="admin", aws_secret_access_key="admin", region_name="us-east-1"
        )
        s3_client, iam = boto3.client("s3", **admin), boto3.client("iam", **admin)
        s3_client.create_bucket(Bucket="locked")
        s3_client.put_object(Bucket="locked", Key="in/a.ndjson", Body=ev("A", "u", T_DAY1) + b"\n")
        iam.create_user(UserName="reader")
        policy = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetObject"], "Resource": "*"}]}
        iam.put_user_policy(UserName="reader", PolicyName="read-only", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        request = urllib.request.Request(  # from now on moto checks every request's credentials
            server.url + "/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
        )
        urllib.request.urlopen(request, timeout=10).close()
        reader = ["--s3_access_key_id", key["AccessKeyId"], "--s3_secret_access_key", key["SecretAccessKey"]]
        yield server.url, reader


def test_s3_credentials_refused_by_the_server(locked_s3, capsys):
    url, _ = locked_s3
    status = run_cli("--input", "s3://locked/in/*", "--output", "s3://locked/out",
                     "--s3_endpoint_url", url, "--s3_region_name", "us-east-1", *S3_KEYS)
    line = refused(capsys, status)
    assert "AWS refused the credentials in use (InvalidAccessKeyId" in line


def test_s3_output_not_writable_is_refused(locked_s3, capsys):
    url, reader = locked_s3
    status = run_cli("--input", "s3://locked/in/*", "--output", "s3://locked/out",
                     "--s3_endpoint_url", url, "--s3_region_name", "us-east-1", *reader)
    line = refused(capsys, status)
    assert "output location 's3://locked/out' is not writable" in line and "s3:PutObject" in line


@contextmanager
def gcs_stub(routes):
    """A fake GCS JSON API on 127.0.0.1 answering (method, path regex) -> (status, JSON)."""

    class Handler(BaseHTTPRequestHandler):
        def answer(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, body = next(
                (reply for (method, pattern), reply in routes.items()
                 if method == self.command and re.search(pattern, self.path)),
                (404, {"error": {"code": 404, "message": "Not Found"}}),
            )
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _gcs_error(code, message):
    return code, {"error": {"code": code, "message": message, "errors": [{"message": message}]}}


def test_gcs_without_credentials_is_refused(gcs_env, monkeypatch, capsys, tmp_path):
    """Without Application Default Credentials Beam goes anonymous; GCS answers 401."""
    denied = _gcs_error(401, "Anonymous caller does not have storage.objects.list access to the bucket.")
    with gcs_stub({("GET", r"/storage/v1/b/private/o"): denied}) as url:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
        line = refused(capsys, run_cli("--input", "gs://private/in/*", "--output", str(tmp_path / "out")))
    assert "no Google Cloud credentials found" in line and "gcloud auth application-default login" in line
    assert not (tmp_path / "out").exists()


def test_gcs_output_not_writable_is_refused(gcs_env, monkeypatch, capsys, tmp_path):
    from google.oauth2.credentials import Credentials  # noqa: PLC0415

    # Credentials that are present (a fixed token, never refreshed): the 403 is then about rights.
    monkeypatch.setattr(auth._Credentials, "_credentials", auth._ApitoolsCredentialsAdapter(Credentials("t")))
    write_input(tmp_path / "in" / "a.ndjson", [ev("A", "u", T_DAY1)])
    routes = {
        ("GET", r"/storage/v1/b/readonly/o\?"): (200, {"kind": "storage#objects"}),
        ("POST", r"/upload/storage/v1/b/readonly/o"): _gcs_error(403, "x does not have storage.objects.create access"),
    }
    with gcs_stub(routes) as url:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
        line = refused(capsys, run_cli("--input", str(tmp_path / "in" / "*"), "--output", "gs://readonly/out"))
    assert "output location 'gs://readonly/out' is not writable" in line
    assert "storage.objects.create" in line


def test_local_output_not_writable_is_refused(tmp_path, capsys):
    write_input(tmp_path / "in" / "a.ndjson", [ev("A", "u", T_DAY1)])
    (tmp_path / "file").write_text("a file, not a folder")
    line = refused(capsys, run_local([tmp_path / "in" / "*"], tmp_path / "file" / "out"))
    assert "is not writable" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "in"]


def test_writability_probe_leaves_nothing_behind(store, tmp_path):
    store.upload("in/a.ndjson", ev("A", "u", T_DAY1) + b"\n", T0)
    stores.probe_writable(store.url("out/_temporary"), PipelineOptions(store.args))
    assert list(store.read_all("")) == ["in/a.ndjson"]


# --- the input is a set of objects -----------------------------------------------------------


def test_a_prefix_pattern_reads_every_object_below_it(store):
    """`in/` is every object below the prefix, at any depth; folder markers are
    no input; `in//a.ndjson` is another key than `in/a.ndjson`, so both are read."""
    a = ev("A", "u1", T_DAY1) + b"\n"
    below = {  # key: (bytes, upload time)
        "in/a.ndjson": (a, T0),
        "in/2024/01/b.ndjson": (ev("B", "u2", T_DAY1) + b"\n" + ev("C", "u3", T_DAY2) + b"\n", T0 + 1),
        "in/2024/01/deep/c.ndjson.gz": (gzip.compress(ev("D", "u4", T_DAY2) + b"\n", mtime=0), T0 + 2),
        "in//a.ndjson": (a, T0 + 3),  # the same line again: superseded
    }
    for key, (data, at) in below.items():
        store.upload(key, data, at)
    store.upload("in/2024/", b"", T0)  # a folder marker
    store.upload("inbox/x.ndjson", ev("X", "u9", T_DAY1) + b"\n", T0)  # `in` as a string prefix only
    store.upload("other/y.ndjson", ev("Y", "u9", T_DAY1) + b"\n", T0)
    options = PipelineOptions(store.args)
    assert [f.path for f in match_inputs([store.url("in/")], options=options)] == [store.url(k) for k in below]
    # The same objects through other patterns are read once.
    twice = [store.url("in/"), store.url("in/*"), store.url("in/**.ndjson"), store.url("in//a.ndjson")]
    assert [f.path for f in match_inputs(twice, options=options)] == [store.url(k) for k in below]

    assert run_remote(store, [store.url("in/")], store.url("out")) == 0
    s = orjson.loads(store.read_all("out/")["_SUMMARY.json"])
    size = sum(len(data) for data, _ in below.values())
    assert s["input"] == {"files": 4, "bytes": size, "skipped_output_files": 0, "lines": 5, "blank_lines": 0}
    o = s["output"]
    assert (o["events"], o["superseded"], o["rejected"], s["balanced"]) == (4, 1, 0, True)
    assert o["events_by_day"] == {"2024-01-01": 2, "2024-01-02": 2}


def test_output_below_the_input_prefix_is_never_read(store, capsys):
    store.upload("data/a.ndjson", ev("A", "u1", T_DAY1) + b"\n" + b"{oops\n", T0)
    store.upload("data/2024/b.ndjson", ev("B", "u2", T_DAY2) + b"\n", T0 + 1)
    args = [store.url("data/")], store.url("data/out")
    assert run_remote(store, *args) == 0
    first = store.read_all("data/out/")
    assert orjson.loads(first["_SUMMARY.json"])["input"]["skipped_output_files"] == 0

    # The rerun's pattern covers the first run's objects: none of them is read.
    assert run_remote(store, *args, "--overwrite") == 0
    again = store.read_all("data/out/")
    s = orjson.loads(again["_SUMMARY.json"])
    assert s["input"] == {
        "files": 2, "bytes": s["input"]["bytes"], "skipped_output_files": len(first), "lines": 3, "blank_lines": 0
    }
    assert (s["output"]["events"], s["output"]["rejected"], s["balanced"]) == (2, 1, True)
    assert data_files(again) == data_files(first) == [
        "events/day=2024-01-01/part-00000-of-00001.ndjson.gz",
        "events/day=2024-01-02/part-00000-of-00001.ndjson.gz",
        "rejects/part-00000-of-00001.ndjson.gz",
    ]
    assert all(again[name] == first[name] for name in data_files(first))

    line = refused(capsys, run_remote(store, [store.url("data/out/**")], store.url("data/out"), "--overwrite"))
    assert line == (
        f"cloud-import-prep: error: input pattern '{store.url('data/out/**')}' matches no file outside "
        f"the output location '{store.url('data/out')}' ({len(again)} files below it, never read as input)"
    )


# --- the real entry point in a child process ------------------------------------------------


def test_module_entry_point_on_s3_in_another_time_zone(s3):
    """`python -m pipeline` in a fresh process: the --s3_* options reach Beam's
    filesystem before the inputs are listed. (GCS is run in process: a fresh
    process would spend ~20 s looking for Google credentials, BEAM_NOTES 10.)"""
    s3.upload("raw/a.ndjson", ev("A", "u", T_DAY1) + b"\n" + ev("B", "u", T_DAY1 + 1) + b"\n", T0)
    done = run_cli_process(
        "--input", s3.url("raw/*"), "--output", s3.url("out"), "--reference-time", REF, *s3.args,
        env={"TZ": "America/New_York"},
    )
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout) == orjson.loads(s3.read_all("out/")["_SUMMARY.json"])
    missing = run_cli_process("--input", s3.url("nothing/*"), "--output", s3.url("out2"), *s3.args)
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines()[-1] == (
        f"cloud-import-prep: error: input pattern '{s3.url('nothing/*')}' matches no file"
    )


def test_match_objects_follows_beams_glob_syntax(gcs):
    for key in ("a/x.json", "a/y.json.gz", "a/b/z.json", "a/b/c/w.json", "ab.json", "a/"):
        gcs.upload(key, b"1\n" if not key.endswith("/") else b"", T0)
    names = lambda pattern: sorted(o.path[len(gcs.url()):] for o in stores.match_objects(gcs.url(pattern)))  # noqa: E731
    assert names("a/*") == ["a/", "a/x.json", "a/y.json.gz"]
    assert names("a/**") == ["a/", "a/b/c/w.json", "a/b/z.json", "a/x.json", "a/y.json.gz"]
    assert names("a/**.json") == ["a/b/c/w.json", "a/b/z.json", "a/x.json"]
    assert names("a/?.json") == ["a/x.json"]
    assert names("a/[xy].json*") == ["a/x.json", "a/y.json.gz"]
    assert names("a/x.json") == ["a/x.json"]
    # Ending in `/`: every object below the prefix, at any depth (Beam's own `*` stays in one level).
    assert names("a/b/") == ["a/b/c/w.json", "a/b/z.json"]
    assert names("") == ["a/", "a/b/c/w.json", "a/b/z.json", "a/x.json", "a/y.json.gz", "ab.json"]
    assert names("*.json") == ["ab.json"]
    # The folder marker "a/" (empty, named like a folder) is no input file.
    assert [f.path for f in match_inputs([gcs.url("a/**")])] == [
        gcs.url(k) for k in ("a/b/c/w.json", "a/b/z.json", "a/x.json", "a/y.json.gz")
    ]
