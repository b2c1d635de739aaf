"""Tests of pipeline/lock_files.py: the three operations the output lock is built on, on every store."""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.lock_files import BeamLockFile, ObjectLockFile, lock_file
from pipeline.stores import _s3_client
from test_lock import bucket_url  # noqa: F401 (a fixture: a fresh gs:// or s3:// bucket)


def _check_create_replace_delete(file) -> None:
    """Create-if-absent, compare-and-replace and compare-and-delete, each refused on another version."""
    assert file.read() is None
    first = file.write(b"one", None)
    assert first is not None
    assert file.write(b"two", None) is None  # it exists: a second creation fails
    assert file.read() == (b"one", first)
    second = file.write(b"two", first)
    assert second is not None and second != first
    assert file.write(b"three", first) is None  # the version has moved on
    assert file.delete(first) is False
    assert file.read() == (b"two", second)
    assert file.delete(second) is True
    assert file.read() is None


def test_a_store_lock_file_is_created_once_replaced_and_deleted_only_at_its_version(bucket_url):  # noqa: F811
    url, options = bucket_url
    file = lock_file(url + "/_LOCK.json", options)
    assert isinstance(file, ObjectLockFile)
    _check_create_replace_delete(file)


def test_other_filesystems_check_each_condition_then_write(tmp_path):
    file = lock_file(str(tmp_path / "_LOCK.json"), None)
    assert isinstance(file, BeamLockFile)
    _check_create_replace_delete(file)


def test_a_store_refuses_a_replace_that_lost_to_a_delete(bucket_url):  # noqa: F811
    # The heartbeat replaces the lock at its version while the run's last step deletes it
    # (release_run_lock): whichever comes second, no lock may be left. moto checked
    # If-Match and then wrote, so a delete in between let the replace re-create it.
    url, options = bucket_url
    file = lock_file(url + "/_LOCK.json", options)
    delete = _unconditional_delete(file.url, options)
    with ThreadPoolExecutor(max_workers=1) as heartbeat:
        for attempt in range(200):
            beat = heartbeat.submit(file.write, b"beat", file.write(b"held", None))
            delete()
            replaced = beat.result()
            left = file.read()
            assert not (replaced is not None and left is not None), f"the lock came back at try {attempt}"
            if left is not None:
                assert file.delete(left[1])


def _unconditional_delete(url: str, options: PipelineOptions) -> Callable[[], None]:
    """Deletes the object at `url` whatever its version, as release_run_lock does.

    On s3:// with boto3 itself: Beam's S3 delete takes a quarter of a second.
    """
    if not url.startswith("s3://"):
        return lambda: FileSystems.delete([url])
    client = _s3_client(options)
    bucket, key = url.removeprefix("s3://").split("/", 1)

    def delete() -> None:
        client.delete_object(Bucket=bucket, Key=key)

    return delete
