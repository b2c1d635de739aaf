"""Tests of pipeline/lock.py: one run per output location, on local disk, gs:// and s3://."""

import dataclasses
import os
import socket
import subprocess
import sys
import time
import uuid

import boto3
import orjson
import pytest
from apache_beam.internal.gcp import auth
from apache_beam.io.filesystems import FileSystems
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from pipeline import TOOL_NAME
from pipeline import lock as lock_module
from pipeline.lock import (
    ENDED,
    LEASE_SECONDS,
    RUNNING,
    Holder,
    LockError,
    OutputLock,
    boot_id,
    holder_alive,
    process_start,
    release_run_lock,
)
from pipeline.lock_files import ObjectLockFile

NOW = 1_800_000_000.0


def holder(**changes) -> Holder:
    fields = dict(
        run_id="20240201T000000Z-abcdef12",
        state=RUNNING,
        host=socket.gethostname(),
        boot_id=boot_id(),
        pid=os.getpid(),
        pid_start=process_start(os.getpid()),
        started="2024-02-01T00:00:00Z",
        heartbeat=NOW,
        lease_seconds=LEASE_SECONDS,
    )
    fields.update(changes)
    return Holder(**fields)


def dead_pid() -> tuple[int, int | None]:
    """The pid and start time of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    start = process_start(child.pid)
    child.kill()
    child.wait()
    return child.pid, start


# --- what a lock says, and whether its holder lives ---------------------------------------------


def test_holder_round_trips_and_only_our_locks_are_read():
    h = holder(previous_files=("a", "b"))
    assert Holder.from_bytes(h.to_bytes()) == h
    assert orjson.loads(h.to_bytes())["tool"] == TOOL_NAME
    for foreign in (b"", b"{not json", b"[]", b'{"tool": "other"}', b'{"tool": "cloud-import-prep"}',
                    orjson.dumps({**orjson.loads(h.to_bytes()), "previous_files": "a"})):
        assert Holder.from_bytes(foreign) is None, foreign


def test_process_start_tells_a_live_process_from_an_ended_one():
    assert process_start(os.getpid()) is not None
    pid, start = dead_pid()
    assert start is not None
    assert process_start(pid) is None


def test_a_holder_on_this_machine_lives_exactly_as_long_as_its_process():
    assert holder_alive(holder(), NOW)
    # However fresh its heartbeat: the process is what counts here.
    pid, start = dead_pid()
    assert not holder_alive(holder(pid=pid, pid_start=start), NOW)
    # A reused pid is another process: its start time differs.
    assert not holder_alive(holder(pid_start=(process_start(os.getpid()) or 0) + 1), NOW)


def test_a_holder_elsewhere_lives_until_its_lease_runs_out():
    elsewhere = holder(host="another-machine", boot_id="another-boot")
    assert holder_alive(elsewhere, NOW + LEASE_SECONDS - 1)
    assert not holder_alive(elsewhere, NOW + LEASE_SECONDS)
    # Same name, other boot: the pid is from before the restart.
    assert not holder_alive(holder(boot_id="an-earlier-boot"), NOW + LEASE_SECONDS)


def test_a_no_wait_launch_is_held_for_its_lease_and_an_ended_run_never():
    no_wait = holder(pid=None, pid_start=None, lease_seconds=lock_module.NO_WAIT_LEASE_SECONDS)
    assert holder_alive(no_wait, NOW + 3600)
    assert not holder_alive(no_wait, NOW + lock_module.NO_WAIT_LEASE_SECONDS)
    assert not holder_alive(holder(state=ENDED), NOW)


# --- local disk: flock ---------------------------------------------------------------------------


def read_lock(root) -> dict:
    with open(os.path.join(root, "_LOCK.json"), "rb") as handle:
        return orjson.loads(handle.read())


def test_local_lock_refuses_a_second_run_naming_the_first(tmp_path):
    root = str(tmp_path / "out")
    first = OutputLock.acquire(root, "run-1", overwrite=False)
    assert read_lock(root)["run_id"] == "run-1"
    with pytest.raises(LockError, match=r"is in use by run run-1 \(started .* process \d+\)"):
        OutputLock.acquire(root, "run-2", overwrite=True)
    first.release()
    assert not os.path.exists(root)  # the lock's folders went with it
    OutputLock.acquire(root, "run-3", overwrite=False).release()


def test_local_lock_of_a_killed_process_is_taken_back_only_with_overwrite(tmp_path):
    root = str(tmp_path / "out")
    code = (
        "import sys, time; from pipeline.lock import OutputLock; "
        f"OutputLock.acquire({root!r}, 'killed-run', overwrite=False); print('held', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "held\n"
    with pytest.raises(LockError, match="in use by run killed-run"):
        OutputLock.acquire(root, "run-2", overwrite=True)
    child.kill()
    child.wait()

    with pytest.raises(LockError, match="holds the unfinished run killed-run .* it is no longer running"):
        OutputLock.acquire(root, "run-2", overwrite=False)
    taken = OutputLock.acquire(root, "run-2", overwrite=True)
    assert taken.taken_from.run_id == "killed-run"
    assert read_lock(root)["run_id"] == "run-2"
    taken.release()


def test_a_run_that_ends_before_writing_anything_leaves_the_location_as_it_found_it(tmp_path):
    root = str(tmp_path / "out")
    OutputLock.acquire(root, "run-1", overwrite=False).end("the run failed")
    assert not os.path.exists(root)
    os.makedirs(root)
    OutputLock.acquire(root, "run-2", overwrite=False).end("the run failed")
    assert os.listdir(root) == []


def test_ending_a_lock_marks_it_and_a_run_that_took_it_over_keeps_it(tmp_path):
    root = str(tmp_path / "out")
    first = OutputLock.acquire(root, "run-1", overwrite=False)
    with open(os.path.join(root, "written-meanwhile"), "wb"):
        pass
    first.end("the run failed")
    assert (read_lock(root)["state"], read_lock(root)["stopped_by"]) == (ENDED, "the run failed")
    second = OutputLock.acquire(root, "run-2", overwrite=True)
    first.end("again")  # no longer run-1's: left alone
    first.release()
    assert read_lock(root)["run_id"] == "run-2"
    second.release()


def test_a_lock_file_that_is_not_ours_is_refused_and_kept(tmp_path):
    root = tmp_path / "out"
    root.mkdir()
    (root / "_LOCK.json").write_bytes(b"mine")
    with pytest.raises(LockError, match="holds a _LOCK.json that is not this tool's"):
        OutputLock.acquire(str(root), "run-1", overwrite=True)
    assert (root / "_LOCK.json").read_bytes() == b"mine"


def test_the_last_step_removes_only_its_own_runs_lock(tmp_path):
    root = str(tmp_path / "out")
    held = OutputLock.acquire(root, "run-1", overwrite=False)
    release_run_lock(root, "another-run")
    assert read_lock(root)["run_id"] == "run-1"
    release_run_lock(root, "run-1")
    assert not os.path.exists(os.path.join(root, "_LOCK.json"))
    release_run_lock(root, "run-1")  # nothing left: nothing to do
    held.end("after the job")  # the launcher after a finished job: leaves nothing behind
    assert os.listdir(root) == []


# --- object stores: create-if-absent, compare-and-replace --------------------------------------


@pytest.fixture(params=["gs", "s3"])
def bucket_url(request, monkeypatch):
    """A fresh bucket on the GCS emulator or the S3 server; returns (url, options)."""
    from apache_beam.options.pipeline_options import PipelineOptions  # noqa: PLC0415

    bucket = "l-" + uuid.uuid4().hex[:12]
    if request.param == "gs":
        emulator = request.getfixturevalue("gcs_emulator")
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
        monkeypatch.setattr(auth._Credentials, "_credentials_init", True)
        monkeypatch.setattr(auth._Credentials, "_credentials", None)
        client = storage.Client(
            project="t", credentials=AnonymousCredentials(), client_options={"api_endpoint": emulator.url}
        )
        client.create_bucket(bucket)
        yield f"gs://{bucket}/out", PipelineOptions([])
        return
    server = request.getfixturevalue("s3_server")
    boto3.client("s3", endpoint_url=server.url, aws_access_key_id="t", aws_secret_access_key="t",
                 region_name="us-east-1").create_bucket(Bucket=bucket)
    options = PipelineOptions(["--s3_endpoint_url", server.url, "--s3_access_key_id", "t",
                               "--s3_secret_access_key", "t", "--s3_region_name", "us-east-1"])
    # The job's last step reaches the store through Beam's filesystems, which
    # a pipeline configures from its options.
    FileSystems.set_options(options)
    yield f"s3://{bucket}/out", options
    FileSystems.set_options(PipelineOptions([]))


def stored(url, options) -> Holder | None:
    found = ObjectLockFile(url + "/_LOCK.json", options).read()
    return None if found is None else Holder.from_bytes(found[0])


def plant(url, options, h: Holder) -> None:
    assert ObjectLockFile(url + "/_LOCK.json", options).write(h.to_bytes(), None) is not None


def test_store_lock_is_created_once_and_a_second_run_is_refused(bucket_url):
    url, options = bucket_url
    first = OutputLock.acquire(url, "run-1", overwrite=False, options=options)
    assert stored(url, options).run_id == "run-1"
    # Same machine, live process (this one): held, whatever --overwrite says.
    with pytest.raises(LockError, match="is in use by run run-1"):
        OutputLock.acquire(url, "run-2", overwrite=True, options=options)
    first.release()
    assert stored(url, options) is None


def test_store_lock_of_a_dead_process_on_this_machine_is_taken_back_at_once(bucket_url):
    url, options = bucket_url
    pid, start = dead_pid()
    plant(url, options, holder(run_id="killed", pid=pid, pid_start=start, heartbeat=time.time()))
    with pytest.raises(LockError, match="holds the unfinished run killed"):
        OutputLock.acquire(url, "run-2", overwrite=False, options=options)
    taken = OutputLock.acquire(url, "run-2", overwrite=True, options=options)
    assert taken.taken_from.run_id == "killed"
    assert stored(url, options).run_id == "run-2"
    taken.release()


def test_store_lock_from_another_machine_holds_until_its_lease_runs_out(bucket_url):
    url, options = bucket_url
    elsewhere = holder(run_id="elsewhere", host="another-machine", boot_id="b", pid=1, pid_start=1)
    plant(url, options, dataclasses.replace(elsewhere, heartbeat=time.time()))
    with pytest.raises(LockError, match=r"in use by run elsewhere \(started .* on another-machine, process 1\)"):
        OutputLock.acquire(url, "run-2", overwrite=True, options=options)
    # Once its lease lapsed, it is taken back.
    lock_file = ObjectLockFile(url + "/_LOCK.json", options)
    assert lock_file.delete(lock_file.read()[1])
    plant(url, options, dataclasses.replace(elsewhere, heartbeat=time.time() - LEASE_SECONDS - 1))
    taken = OutputLock.acquire(url, "run-2", overwrite=True, options=options)
    assert taken.taken_from.run_id == "elsewhere"
    taken.release()


def test_store_lock_heartbeat_refreshes_it_and_stops_once_the_last_step_removed_it(bucket_url, monkeypatch):
    url, options = bucket_url
    monkeypatch.setattr(lock_module, "HEARTBEAT_SECONDS", 0.05)
    held = OutputLock.acquire(url, "run-1", overwrite=False, options=options)
    first_beat = stored(url, options).heartbeat
    deadline = time.monotonic() + 30
    while stored(url, options).heartbeat == first_beat and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stored(url, options).heartbeat > first_beat
    release_run_lock(url, "run-1")  # the job's last step, through Beam's filesystems
    held._heartbeat.join(timeout=30)
    assert not held._heartbeat.is_alive()
    assert stored(url, options) is None  # the heartbeat never brings it back
    held.end("after the job")
    assert stored(url, options) is None


def test_store_lock_ended_by_a_failed_run_is_taken_back_with_overwrite(bucket_url):
    url, options = bucket_url
    failed = OutputLock.acquire(url, "run-1", overwrite=False, options=options)
    ObjectLockFile(url + "/events/day=2024-01-01/part-00000-of-00001.ndjson", options).write(b"x", None)
    failed.end("the run failed")
    assert (stored(url, options).state, stored(url, options).stopped_by) == (ENDED, "the run failed")
    with pytest.raises(LockError, match="it ended: the run failed. Pass --overwrite"):
        OutputLock.acquire(url, "run-2", overwrite=False, options=options)
    OutputLock.acquire(url, "run-2", overwrite=True, options=options).release()


def test_a_store_run_that_ends_before_writing_anything_removes_its_lock(bucket_url):
    url, options = bucket_url
    OutputLock.acquire(url, "run-1", overwrite=False, options=options).end("the run failed")
    assert stored(url, options) is None
