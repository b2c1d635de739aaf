"""Tests of pipeline/lock_files.py: the three operations the output lock is built on, on every store."""

from pipeline.lock_files import BeamLockFile, ObjectLockFile, lock_file
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

