"""Tests of pipeline/output.py: which output locations a run may write to, and how a run leaves one."""

import os
from pathlib import Path

import orjson
import pytest

from pipeline import TOOL_NAME
from pipeline.output import (
    OutputError,
    close_output,
    mark_success,
    prepare_output,
    previous_run_files,
    remove_replaced_files,
    write_run_file,
)

DAY = "events/day=2024-01-01/part-00000-of-00001.ndjson.gz"
REJECTS = "rejects/part-00000-of-00001.ndjson.gz"


def touch(root, relative, data=b"x"):
    path = os.path.join(root, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


def files_under(root):
    return sorted(
        os.path.relpath(os.path.join(folder, name), root)
        for folder, _, names in os.walk(root)
        for name in names
    )


def summary_bytes(files, tool=TOOL_NAME):
    return orjson.dumps(
        {
            "tool": {"name": tool, "version": "0.1.0"},
            "output": {"files": [{"path": p, "lines": 1, "bytes": 2} for p in files]},
        }
    )


@pytest.fixture
def previous_run(tmp_path):
    """A finished run of this tool: a day, rejects, _SUMMARY.json listing them, _SUCCESS."""
    root = str(tmp_path / "out")
    touch(root, DAY)
    touch(root, REJECTS)
    touch(root, "_SUMMARY.json", summary_bytes([DAY, REJECTS]))
    touch(root, "_SUCCESS", b"")
    return root


def prepare(root, overwrite, run_id="run-1"):
    """prepare_output(), then the run's end: the stale files it returned, and its lock released."""
    prepared = prepare_output(root, overwrite, run_id)
    prepared.lock.release()
    return prepared.stale_files


@pytest.mark.parametrize("overwrite", [False, True])
def test_prepare_output_missing_folder(tmp_path, overwrite):
    assert prepare(str(tmp_path / "not" / "there"), overwrite) == []
    assert not (tmp_path / "not" / "there").exists()


def test_prepare_output_locks_the_location_and_the_probe_leaves_nothing_else(tmp_path):
    """The lock lives in the output folder for the run; the probe's file and
    folders are gone at once, and the lock's folders with the lock."""
    prepared = prepare_output(str(tmp_path / "not" / "there"), False, "run-1")
    assert files_under(tmp_path) == ["not/there/_LOCK.json"]
    assert orjson.loads((tmp_path / "not" / "there" / "_LOCK.json").read_bytes())["run_id"] == "run-1"
    prepared.lock.release()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_prepare_output_empty_folder(tmp_path, overwrite):
    os.makedirs(tmp_path / "out" / "empty_sub")
    assert prepare(str(tmp_path / "out"), overwrite) == []


def test_prepare_output_not_empty_without_overwrite(previous_run):
    before = files_under(previous_run)
    with pytest.raises(OutputError) as raised:
        prepare(previous_run, overwrite=False)
    assert previous_run in str(raised.value)
    assert "--overwrite" in str(raised.value)
    assert files_under(previous_run) == before


def test_prepare_output_overwrite_without_summary_of_ours(tmp_path):
    root = str(tmp_path / "out")
    touch(root, "data.csv")
    with pytest.raises(OutputError) as raised:
        prepare(root, overwrite=True)
    assert "_SUMMARY.json" in str(raised.value)
    assert files_under(root) == ["data.csv"]


@pytest.mark.parametrize(
    "summary",
    [
        pytest.param(summary_bytes([DAY], tool="another-tool"), id="another_tool"),
        pytest.param(b"{not json", id="corrupt"),
        pytest.param(b"[1, 2]", id="not_an_object"),
        pytest.param(b'{"tool": "cloud-import-prep", "output": {"files": []}}', id="tool_is_a_string"),
        pytest.param(b'{"tool": {"name": "cloud-import-prep"}, "output": []}', id="output_is_a_list"),
    ],
)
def test_prepare_output_overwrite_refuses_a_summary_not_ours(tmp_path, summary):
    root = str(tmp_path / "out")
    touch(root, DAY)
    touch(root, "_SUMMARY.json", summary)
    with pytest.raises(OutputError, match="_SUMMARY.json"):
        prepare(root, overwrite=True)
    assert files_under(root) == ["_SUMMARY.json", DAY]


def test_prepare_output_overwrite_previous_run(previous_run):
    prepared = prepare_output(previous_run, True, "run-2")
    assert prepared.stale_files == [DAY, REJECTS]
    # _SUCCESS and the summary go at once, so that nothing claims the location
    # finished while it changes; the data stays until the new run is in place.
    assert files_under(previous_run) == ["_LOCK.json", DAY, REJECTS]
    assert not os.path.exists(os.path.join(previous_run, "_temporary"))
    # The lock remembers the files the summary listed, for a retry of a killed run.
    lock = orjson.loads(Path(previous_run, "_LOCK.json").read_bytes())
    assert (lock["run_id"], lock["state"], lock["previous_files"]) == (
        "run-2", "running", ["_SUCCESS", "_SUMMARY.json", DAY, REJECTS]
    )
    prepared.lock.release()


def test_prepare_output_overwrite_failed_previous_run_and_report(previous_run):
    """A run that failed its checks has no _SUCCESS; _REPORT.html and _SCHEMA.json are run files."""
    os.remove(os.path.join(previous_run, "_SUCCESS"))
    touch(previous_run, "_REPORT.html")
    touch(previous_run, "_SCHEMA.json")
    assert prepare(previous_run, overwrite=True) == [DAY, REJECTS]
    assert files_under(previous_run) == [DAY, REJECTS]


def test_prepare_output_overwrite_with_trailing_slash(previous_run):
    assert prepare(previous_run + "/", overwrite=True) == [DAY, REJECTS]


def test_prepare_output_foreign_file_refused_and_nothing_deleted(previous_run):
    touch(previous_run, "events/day=2024-01-01/notes.txt")
    before = files_under(previous_run)
    with pytest.raises(OutputError) as raised:
        prepare(previous_run, overwrite=True)
    assert "events/day=2024-01-01/notes.txt" in str(raised.value)
    assert files_under(previous_run) == before
    assert "_SUCCESS" in before


def test_previous_run_files_plain_paths_accepted(tmp_path):
    root = str(tmp_path / "out")
    touch(
        root,
        "_SUMMARY.json",
        orjson.dumps({"tool": {"name": TOOL_NAME}, "output": {"files": [DAY, {"path": REJECTS}]}}),
    )
    assert previous_run_files(root) == [DAY, REJECTS]
    assert previous_run_files(str(tmp_path / "elsewhere")) is None


# --- a location left by an unfinished run (its lock is still there) ---------------------------


def unfinished_run(root, previous_files=(), run_id="killed-run"):
    """What a killed run leaves: its lock (ended), temporary and final-named files."""
    touch(root, "_LOCK.json", orjson.dumps({
        "tool": TOOL_NAME, "run_id": run_id, "state": "ended", "host": "h", "boot_id": None,
        "pid": None, "pid_start": None, "started": "2024-02-01T00:00:00Z", "heartbeat": 0.0,
        "lease_seconds": 300, "stopped_by": "stopped by SIGTERM", "previous_files": list(previous_files),
    }))
    touch(root, f"_temporary/{run_id}/events/day=2024-01-02/shard-00000-00000")
    touch(root, "events/day=2024-01-02/part-00000-of-00002.ndjson.gz")


def test_an_unfinished_run_is_refused_without_overwrite(tmp_path):
    root = str(tmp_path / "out")
    unfinished_run(root)
    before = files_under(root)
    with pytest.raises(
        OutputError, match="holds the unfinished run killed-run .*ended: stopped by SIGTERM. Pass --overwrite"
    ):
        prepare(root, overwrite=False)
    assert files_under(root) == before


def test_overwrite_takes_an_unfinished_run_back_with_everything_it_left(previous_run):
    """A killed --overwrite of a finished run: the killed run's files (temporary
    and final-named) and the files the finished run listed are all replaced."""
    os.remove(os.path.join(previous_run, "_SUMMARY.json"))  # the killed run removed it
    os.remove(os.path.join(previous_run, "_SUCCESS"))
    unfinished_run(previous_run, previous_files=["_SUMMARY.json", DAY, REJECTS])
    prepared = prepare_output(previous_run, True, "retry")
    assert prepared.lock.taken_from.run_id == "killed-run"
    assert prepared.stale_files == [
        "_temporary/killed-run/events/day=2024-01-02/shard-00000-00000",
        DAY,
        "events/day=2024-01-02/part-00000-of-00002.ndjson.gz",
        REJECTS,
    ]
    prepared.lock.release()


def test_overwrite_of_a_run_killed_while_writing_its_run_files_removes_them_at_once(tmp_path):
    """Killed between _SCHEMA.json and _REPORT.html: its summary and schema go at launch."""
    root = str(tmp_path / "out")
    unfinished_run(root)
    touch(root, "_SUMMARY.json")
    touch(root, "_SCHEMA.json")
    prepared = prepare_output(root, True, "retry")
    assert "_SCHEMA.json" not in files_under(root) and "_SUMMARY.json" not in files_under(root)
    assert prepared.stale_files == [
        "_temporary/killed-run/events/day=2024-01-02/shard-00000-00000",
        "events/day=2024-01-02/part-00000-of-00002.ndjson.gz",
    ]
    prepared.lock.release()


def test_overwrite_of_an_unfinished_run_still_refuses_files_not_of_the_layout(tmp_path):
    root = str(tmp_path / "out")
    unfinished_run(root)
    touch(root, "events/day=2024-01-02/notes.txt")
    touch(root, "events/day=2024-01-02/part-1-of-2.ndjson")
    before = files_under(root)
    with pytest.raises(OutputError, match="2 files that are not of this tool's output layout"):
        prepare(root, overwrite=True)
    assert files_under(root) == before
    assert orjson.loads(Path(root, "_LOCK.json").read_bytes())["state"] == "ended"


# --- the run's last step ------------------------------------------------------------------------


def test_a_run_file_is_written_through_the_runs_temporary_folder(tmp_path):
    root = str(tmp_path / "out")
    write_run_file(root, "run-1", "_SUMMARY.json", b"{}\n")
    assert (tmp_path / "out" / "_SUMMARY.json").read_bytes() == b"{}\n"
    # Nothing left in the temporary folder: the file was moved, not copied.
    assert files_under(root) == ["_SUMMARY.json"]


def test_replaced_files_not_written_again_are_removed_with_their_empty_folders(previous_run):
    stale = prepare(previous_run, overwrite=True)
    touch(previous_run, REJECTS, b"new")  # written again by the new run
    remove_replaced_files(previous_run, stale, [REJECTS])
    assert files_under(previous_run) == [REJECTS]
    assert not os.path.exists(os.path.join(previous_run, "events"))


def test_closing_the_output_removes_the_temporary_folders_then_the_lock(tmp_path):
    root = str(tmp_path / "out")
    lock = prepare_output(root, False, "run-1").lock
    write_run_file(root, "run-1", "_SUMMARY.json", b"{}\n")
    mark_success(root, "run-1")
    close_output(root, "run-1")
    assert files_under(root) == ["_SUCCESS", "_SUMMARY.json"]
    assert sorted(os.listdir(root)) == ["_SUCCESS", "_SUMMARY.json"]  # no _temporary, no _LOCK.json
    assert not lock.holds()
    lock.end("after the job")  # the launcher after a finished job: leaves it be
    assert sorted(os.listdir(root)) == ["_SUCCESS", "_SUMMARY.json"]
