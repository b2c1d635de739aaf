"""A run killed, stopped or raced at any moment, then the scheduler's retry: end to end, on every store.

Each test runs the real CLI in child processes against local disk, the GCS
emulator and the S3 server. A run is held at a chosen stage by the test hook
transforms.PAUSE_ENV (it writes a marker file and stops there), then killed
with a real SIGKILL, or stopped with SIGINT/SIGTERM. The same command with
--overwrite must then write exactly what an uninterrupted run writes: the
same files, byte for byte, the same figures.
"""

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import orjson
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from e2e import SAMPLE, start_cli_process
from transforms import PAUSE_ENV

REF = "2024-02-01T00:00:00Z"
T0 = 1_706_000_000  # upload times of the sample files: T0, T0 + 60, …
STAGES = ("read", "write", "move", "finish")
PAUSE_SECONDS = 120  # deadline for a child to reach its pause point
RUN_SECONDS = 300


@dataclass
class Site:
    """A store to run against: where the input is, where outputs go, how to read them back."""

    kind: str
    input: str
    new_output: Callable[[], str]
    read: Callable[[str], dict[str, bytes]]  # output URL -> relative name -> bytes
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    reference: dict[str, bytes] = field(default_factory=dict)

    def command(self, output: str, *extra: str) -> list[str]:
        return ["--input", self.input, "--output", output, "--reference-time", REF, *self.args, *extra]

    def start(
        self, output: str, *extra: str, pause_at: str | None = None, marker: Path | None = None,
        tempdir: Path | None = None,
    ) -> subprocess.Popen:
        env = dict(self.env)
        if pause_at is not None:
            env[PAUSE_ENV] = f"{pause_at}:{marker}"
        if tempdir is not None:
            tempdir.mkdir(exist_ok=True)
            env["TMPDIR"] = str(tempdir)
        return start_cli_process(*self.command(output, *extra), env=env)

    def run(self, output: str, *extra: str) -> tuple[int, str]:
        child = self.start(output, *extra)
        _, err = child.communicate(timeout=RUN_SECONDS)
        return child.returncode, err


def _sample_files() -> list[Path]:
    return sorted(p for p in SAMPLE.iterdir() if p.is_file())


def _local_site(tmp: Path) -> Site:
    inputs = tmp / "in"
    inputs.mkdir()
    for i, path in enumerate(_sample_files()):
        copy = inputs / path.name
        shutil.copyfile(path, copy)
        os.utime(copy, (T0 + 60 * i, T0 + 60 * i))

    def new_output() -> str:
        return str(tmp / ("out-" + uuid.uuid4().hex[:8]))

    def read(output: str) -> dict[str, bytes]:
        root = Path(output)
        if not root.exists():
            return {}
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    return Site("local", str(inputs / "*"), new_output, read)


def _gcs_site(emulator) -> Site:
    client = storage.Client(
        project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": emulator.url}
    )
    bucket = "r-" + uuid.uuid4().hex[:12]
    client.create_bucket(bucket)
    for i, path in enumerate(_sample_files()):
        emulator.set_clock(T0 + 60 * i)
        client.bucket(bucket).blob("in/" + path.name).upload_from_string(path.read_bytes())
    emulator.set_clock(None)

    def read(output: str) -> dict[str, bytes]:
        prefix = output[len(f"gs://{bucket}/") :] + "/"
        return {
            b.name[len(prefix) :]: b.download_as_bytes(raw_download=True)
            for b in client.list_blobs(bucket, prefix=prefix)
        }

    return Site(
        "gs",
        f"gs://{bucket}/in/*",
        lambda: f"gs://{bucket}/out-{uuid.uuid4().hex[:8]}",
        read,
        env={"STORAGE_EMULATOR_HOST": emulator.url, "NO_GCE_CHECK": "true"},
    )


def _s3_site(server) -> Site:
    client = boto3.client(
        "s3",
        endpoint_url=server.url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    bucket = "r-" + uuid.uuid4().hex[:12]
    client.create_bucket(Bucket=bucket)
    for i, path in enumerate(_sample_files()):
        server.set_clock(T0 + 60 * i)
        client.put_object(Bucket=bucket, Key="in/" + path.name, Body=path.read_bytes())
    server.set_clock(None)

    def read(output: str) -> dict[str, bytes]:
        prefix = output[len(f"s3://{bucket}/") :] + "/"
        found = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", ()):
                body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                found[item["Key"][len(prefix) :]] = body
        return found

    return Site(
        "s3",
        f"s3://{bucket}/in/*",
        lambda: f"s3://{bucket}/out-{uuid.uuid4().hex[:8]}",
        read,
        args=["--s3_endpoint_url", server.url, "--s3_access_key_id", "testing",
              "--s3_secret_access_key", "testing", "--s3_region_name", "us-east-1"],
    )


def _with_reference(made: Site) -> Site:
    output = made.new_output()
    status, err = made.run(output)
    assert status == 0, err
    made.reference = made.read(output)
    assert "_SUCCESS" in made.reference and "_LOCK.json" not in made.reference
    return made


@pytest.fixture(scope="module")
def local_site(tmp_path_factory):
    return _with_reference(_local_site(tmp_path_factory.mktemp("recovery")))


@pytest.fixture(scope="module", params=["local", "gs", "s3"])
def site(request):
    """Each test runs on local disk, the GCS emulator and the S3 server; the
    site's reference is what an uninterrupted run writes."""
    if request.param == "local":
        return request.getfixturevalue("local_site")
    if request.param == "gs":
        return _with_reference(_gcs_site(request.getfixturevalue("gcs_emulator")))
    return _with_reference(_s3_site(request.getfixturevalue("s3_server")))


# --- what the tests look at ----------------------------------------------------------------


def wait_for_pause(child: subprocess.Popen, marker: Path) -> None:
    deadline = time.monotonic() + PAUSE_SECONDS
    while not marker.exists():
        if child.poll() is not None:
            pytest.fail(f"the run ended ({child.returncode}) before its pause point:\n{child.stderr.read()}")
        if time.monotonic() > deadline:
            child.kill()
            pytest.fail("the run did not reach its pause point in time")
        time.sleep(0.05)


def kill(child: subprocess.Popen, tempdir: Path) -> None:
    """SIGKILLs a child started with a temp dir of its own (Site.start), and removes that.

    A killed run cannot clean up after itself: Beam's local temp dir
    (beam-pipeline-temp*, which Pipeline.run() removes on its way out) stays.
    """
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    shutil.rmtree(tempdir)


def lock_of(files: dict[str, bytes]) -> dict:
    return orjson.loads(files["_LOCK.json"])


def assert_not_finished(files: dict[str, bytes]) -> None:
    """Nothing claims the location finished: no _SUCCESS, no summary at all."""
    assert "_SUCCESS" not in files
    assert "_SUMMARY.json" not in files
    assert "_LOCK.json" in files


def _figures(summary_bytes: bytes) -> dict:
    summary = orjson.loads(summary_bytes)
    return {k: summary[k] for k in ("input", "output", "normalised", "balanced", "checks", "passed", "details")}


def assert_same_as_reference(files: dict[str, bytes], reference: dict[str, bytes]) -> None:
    """The data files, _SCHEMA.json and _SUCCESS byte for byte; the summary's figures; nothing else left."""
    assert sorted(files) == sorted(reference)
    for name, data in reference.items():
        if not name.startswith("_") or name in ("_SUCCESS", "_SCHEMA.json"):
            assert files[name] == data, name
    assert _figures(files["_SUMMARY.json"]) == _figures(reference["_SUMMARY.json"])


def one_error_line(err: str) -> str:
    """The error line of stderr; asserts there is exactly one and no traceback."""
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("cloud-import-prep: error:")]
    assert len(errors) == 1, err
    return errors[0]


# --- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_a_run_killed_at_any_stage_is_redone_by_the_retry(site, stage, tmp_path):
    output = site.new_output()
    child = site.start(output, pause_at=stage, marker=tmp_path / "paused", tempdir=tmp_path / "tempdir")
    wait_for_pause(child, tmp_path / "paused")
    assert_not_finished(site.read(output))
    run_id = lock_of(site.read(output))["run_id"]
    if stage == "read":
        # Meanwhile a second run into the location is refused, --overwrite or not,
        # naming the run that holds it, and changes nothing.
        before = site.read(output)
        status, err = site.run(output, "--overwrite")
        assert status == 2
        assert f"is in use by run {run_id}" in one_error_line(err)
        assert site.read(output) == before
    kill(child, tmp_path / "tempdir")

    left = site.read(output)
    assert_not_finished(left)
    if stage == "move":
        assert any(not name.startswith("_") for name in left)  # final-named files of the killed run
    if stage == "move" and site.kind == "local":
        assert any(name.startswith("_temporary/") for name in left)
    if stage == "move":
        status, err = site.run(output)
        assert status == 2
        assert f"holds the unfinished run {run_id}" in one_error_line(err)
        assert site.read(output) == left

    status, err = site.run(output, "--overwrite")
    assert status == 0, err
    assert_same_as_reference(site.read(output), site.reference)


@pytest.mark.parametrize("stage", ["read", "move"])
def test_a_killed_overwrite_of_a_finished_run_never_leaves_a_summary_claiming_a_pass(site, stage, tmp_path):
    output = site.new_output()
    status, err = site.run(output)
    assert status == 0, err
    child = site.start(output, "--overwrite", pause_at=stage, marker=tmp_path / "paused",
                       tempdir=tmp_path / "tempdir")
    wait_for_pause(child, tmp_path / "paused")
    assert_not_finished(site.read(output))
    kill(child, tmp_path / "tempdir")
    assert_not_finished(site.read(output))

    status, err = site.run(output, "--overwrite")
    assert status == 0, err
    assert_same_as_reference(site.read(output), site.reference)


def _stop_with(site: Site, signum: signal.Signals, tmp_path: Path) -> None:
    """Stops a run that has moved a first file into place, with others still temporary."""
    output = site.new_output()
    child = site.start(output, pause_at="move", marker=tmp_path / "paused")
    wait_for_pause(child, tmp_path / "paused")
    run_id = lock_of(site.read(output))["run_id"]
    assert any(name.startswith(f"_temporary/{run_id}/") for name in site.read(output))
    assert any(not name.startswith("_") for name in site.read(output))
    child.send_signal(signum)
    _, err = child.communicate(timeout=60)

    assert child.returncode == 128 + signum
    assert one_error_line(err) == (
        f"cloud-import-prep: error: stopped by {signum.name}; the output location is "
        "left unfinished (no _SUCCESS): run the same command with --overwrite to redo it"
    )
    left = site.read(output)
    assert not any(name.startswith("_temporary/") for name in left)  # removed on the way out
    assert_not_finished(left)
    lock = lock_of(left)
    assert (lock["run_id"], lock["state"], lock["stopped_by"]) == (run_id, "ended", f"stopped by {signum.name}")
    if site.kind == "local":
        assert not (Path(output) / "_temporary").exists()

    status, err = site.run(output, "--overwrite")
    assert status == 0, err
    assert_same_as_reference(site.read(output), site.reference)


def test_sigterm_stops_the_run_in_one_line_and_the_retry_works(site, tmp_path):
    _stop_with(site, signal.SIGTERM, tmp_path)


def test_sigint_stops_the_run_in_one_line_and_the_retry_works(local_site, tmp_path):
    _stop_with(local_site, signal.SIGINT, tmp_path)


def test_a_run_stopped_before_it_wrote_anything_leaves_the_location_as_it_found_it(local_site, tmp_path):
    output = local_site.new_output()
    child = local_site.start(output, pause_at="write", marker=tmp_path / "paused")
    wait_for_pause(child, tmp_path / "paused")
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 143
    assert "stopped by SIGTERM" in one_error_line(err)
    assert local_site.read(output) == {}  # its temporary files and its lock are gone
    status, err = local_site.run(output)  # so a plain rerun works, without --overwrite
    assert status == 0, err
    assert_same_as_reference(local_site.read(output), local_site.reference)
