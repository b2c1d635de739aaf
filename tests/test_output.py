"""Tests of pipeline/output.py: which output locations a run may write to."""

import os

import orjson
import pytest

from pipeline import TOOL_NAME
from pipeline.output import OutputError, prepare_output, previous_run_files

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


@pytest.mark.parametrize("overwrite", [False, True])
def test_prepare_output_missing_folder(tmp_path, overwrite):
    assert prepare_output(str(tmp_path / "not" / "there"), overwrite) == []
    assert not (tmp_path / "not" / "there").exists()


def test_prepare_output_write_probe_leaves_no_folder_behind(tmp_path):
    """The probe creates the missing folders to write its file; it must remove
    all it created, the missing parents of the output included."""
    assert prepare_output(str(tmp_path / "not" / "there"), False) == []
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_prepare_output_empty_folder(tmp_path, overwrite):
    os.makedirs(tmp_path / "out" / "empty_sub")
    assert prepare_output(str(tmp_path / "out"), overwrite) == []


def test_prepare_output_not_empty_without_overwrite(previous_run):
    before = files_under(previous_run)
    with pytest.raises(OutputError) as raised:
        prepare_output(previous_run, overwrite=False)
    assert previous_run in str(raised.value)
    assert "--overwrite" in str(raised.value)
    assert files_under(previous_run) == before


def test_prepare_output_overwrite_without_summary_of_ours(tmp_path):
    root = str(tmp_path / "out")
    touch(root, "data.csv")
    with pytest.raises(OutputError) as raised:
        prepare_output(root, overwrite=True)
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
        prepare_output(root, overwrite=True)
    assert files_under(root) == ["_SUMMARY.json", DAY]


def test_prepare_output_overwrite_previous_run(previous_run):
    replaced = prepare_output(previous_run, overwrite=True)
    assert replaced == ["_SUMMARY.json", DAY, REJECTS]
    # _SUCCESS goes at once; the rest stays until the new run is in place.
    assert files_under(previous_run) == ["_SUMMARY.json", DAY, REJECTS]
    assert not os.path.exists(os.path.join(previous_run, "_temporary"))


def test_prepare_output_overwrite_failed_previous_run_and_report(previous_run):
    """A run that failed its checks has no _SUCCESS; _REPORT.html is a run file."""
    os.remove(os.path.join(previous_run, "_SUCCESS"))
    touch(previous_run, "_REPORT.html")
    assert prepare_output(previous_run, overwrite=True) == ["_REPORT.html", "_SUMMARY.json", DAY, REJECTS]


def test_prepare_output_overwrite_with_trailing_slash(previous_run):
    assert prepare_output(previous_run + "/", overwrite=True) == ["_SUMMARY.json", DAY, REJECTS]


def test_prepare_output_foreign_file_refused_and_nothing_deleted(previous_run):
    touch(previous_run, "events/day=2024-01-01/notes.txt")
    before = files_under(previous_run)
    with pytest.raises(OutputError) as raised:
        prepare_output(previous_run, overwrite=True)
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
