"""The input is a set of objects: matching local patterns (pipeline/inputs.py), through the CLI too.

One object is read once however it is spelled, nothing under --output is
input, relative patterns match from the current folder, and only regular
files are read. The gs:// and s3:// side is in test_object_storage.py.
"""

import gzip
import os
import random
import socket

import orjson
import pytest

from e2e import REPO, read_output, run_cli, run_cli_process, summary, write_input
from pipeline.inputs import InputError, InputSelection, match_inputs, select_inputs
from test_end_to_end import REF, T_DAY1, T_DAY2, ev
from transforms.read import InputFile


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A fresh folder that is the current folder during the test."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path, data: bytes, mtime: float = 100.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))


def paths(patterns, **kwargs) -> list[str]:
    return [f.path for f in match_inputs(patterns, upload_order="name", **kwargs)]


def refused(capsys, status: int) -> str:
    """The one error line of a run refused before any work."""
    assert status == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("cloud-import-prep: error:")]
    assert len(errors) == 1, err
    assert "Traceback" not in err
    return errors[0]


# --- one object, many spellings -------------------------------------------------------------


def test_one_file_reached_by_every_spelling_is_read_once_under_one_name(here):
    write(here / "a.ndjson", b"1\n2\n", 100)
    (here / "sub").mkdir()
    os.symlink("a.ndjson", here / "link.ndjson")
    os.link(here / "a.ndjson", here / "sub" / "hard.ndjson")
    spellings = [
        "a.ndjson", "./a.ndjson", ".//a.ndjson", "sub/../a.ndjson", "./sub/./../a.ndjson",
        str(here / "a.ndjson"), f"{here}//a.ndjson", f"/{here}/./a.ndjson",
        "link.ndjson", "sub/hard.ndjson", "*.ndjson", "./*.ndjson", str(here / "*.ndjson"),
    ]
    expected = [InputFile(0, "a.ndjson", 4, 100.0, False, "100.0")]
    # The name reported (rejects' source) is the same whatever the order of the patterns.
    for seed in range(20):
        shuffled = list(spellings)
        random.Random(seed).shuffle(shuffled)
        assert match_inputs(shuffled) == expected
    assert match_inputs(spellings[::-1]) == expected
    for spelling in spellings:
        assert match_inputs([spelling, *spellings]) == expected


def test_the_name_kept_is_relative_first_then_fewest_dotdots_then_sorted(here):
    write(here / "data" / "a.ndjson", b"1\n")
    os.symlink("a.ndjson", here / "data" / "0-link.ndjson")
    os.chdir(here / "data")
    # Spelled only absolutely: the name stays absolute.
    assert paths([str(here / "data" / "a.ndjson")]) == [str(here / "data" / "a.ndjson")]
    # Only through `..`: the name keeps them (it is how the file is reached from here).
    assert paths(["../data/a.ndjson", str(here / "data" / "a.ndjson")]) == ["../data/a.ndjson"]
    assert paths(["../data/a.ndjson", "a.ndjson"]) == ["a.ndjson"]
    # A symlink is the object it points to: read once, under the first name in sort order.
    assert paths(["a.ndjson", "0-link.ndjson"]) == ["0-link.ndjson"]
    assert paths(["0-link.ndjson"]) == ["0-link.ndjson"]


def test_double_slashes_inside_a_local_pattern_are_one(here):
    write(here / "sub" / "b.ndjson", b"1\n")
    assert paths(["sub//*.ndjson"]) == ["sub/b.ndjson"]
    assert paths([f"{here}//sub///*.ndjson"]) == [str(here / "sub" / "b.ndjson")]


def test_the_bundled_sample_keeps_its_relative_names(monkeypatch):
    # `make run` reads `examples/sample/*` from the repository: names as typed.
    monkeypatch.chdir(REPO)
    assert paths(["examples/sample/*"]) == [
        "examples/sample/2020-10-01-export.ndjson",
        "examples/sample/2020-10-26-resend.ndjson.gz",
    ]


# --- relative patterns and folders -----------------------------------------------------------


@pytest.fixture
def tree(here):
    for name in ("a.ndjson", "b.json", "sub/c.ndjson", "sub/deep/d.ndjson", "subway/e.ndjson"):
        write(here / name, b"1\n")
    return here


@pytest.mark.parametrize(
    "pattern, expected",
    [
        ("*.ndjson", ["a.ndjson"]),
        ("*", ["a.ndjson", "b.json"]),
        ("**.ndjson", ["a.ndjson", "sub/c.ndjson", "sub/deep/d.ndjson", "subway/e.ndjson"]),
        # Beam's syntax, as on gs:// and s3://: `**` is any text, the `/` after it is literal.
        ("**/*.ndjson", ["sub/c.ndjson", "sub/deep/d.ndjson", "subway/e.ndjson"]),
        ("s*/*.ndjson", ["sub/c.ndjson", "subway/e.ndjson"]),
        ("?.json", ["b.json"]),
        ("sub/*", ["sub/c.ndjson"]),
        # A pattern ending in `/` is everything below that folder, as on object stores.
        ("sub/", ["sub/c.ndjson", "sub/deep/d.ndjson"]),
        ("./sub//", ["sub/c.ndjson", "sub/deep/d.ndjson"]),
    ],
)
def test_relative_patterns_match_from_the_current_folder(tree, pattern, expected):
    assert paths([pattern]) == expected


def test_relative_pattern_from_a_subfolder_reaches_up_with_dotdot(tree):
    os.chdir(tree / "sub" / "deep")
    assert paths(["../*.ndjson", "../../*.json"]) == ["../../b.json", "../c.ndjson"]


def test_a_folder_named_without_a_wildcard_is_refused(tree):
    with pytest.raises(InputError, match="names a folder"):
        match_inputs(["sub"])


def test_dotdot_after_a_symlinked_folder_is_the_filesystems_not_the_texts(here):
    """`link/..` is the folder the link's target is in, not the current folder."""
    write(here / "far" / "dir" / "x.ndjson", b"1\n")
    write(here / "far" / "a.ndjson", b"far\n")
    write(here / "a.ndjson", b"near\n")
    os.symlink("far/dir", here / "link")
    both = ["link/../a.ndjson", "a.ndjson"]
    assert [(f.path, f.size) for f in match_inputs(both, upload_order="name")] == [
        ("a.ndjson", 5), ("link/../a.ndjson", 4)
    ]
    # Below an output `far`, however it is spelled.
    with pytest.raises(InputError, match="'link/../a.ndjson' matches no file outside the output location 'far'"):
        select_inputs(both, "far")


def test_listings_do_not_descend_into_symlinked_folders(here):
    write(here / "real" / "x.ndjson", b"1\n")
    os.symlink("real", here / "linked")
    assert paths(["**.ndjson"]) == ["real/x.ndjson"]
    # Named in the literal part, a symlinked folder is listed; its files are the same files.
    assert paths(["linked/*"]) == ["linked/x.ndjson"]
    assert paths(["linked/*", "**.ndjson"]) == ["linked/x.ndjson"]


# --- nothing under --output is input ---------------------------------------------------------


@pytest.fixture
def output_inside(here):
    """data/ holds two inputs and an output folder; names into the output from outside it."""
    write(here / "data" / "a.ndjson", b"1\n", 100)
    write(here / "data" / "outside.ndjson", b"22\n", 200)  # shares a prefix with `out`, not a folder
    write(here / "data" / "out" / "x.ndjson", b"3\n")
    write(here / "data" / "out" / "events" / "y.ndjson.gz", gzip.compress(b"4\n"))
    os.symlink("out/x.ndjson", here / "data" / "latest.ndjson")  # the same object as out/x.ndjson
    os.link(here / "data" / "out" / "events" / "y.ndjson.gz", here / "data" / "y.ndjson.gz")
    os.symlink("data/out", here / "outlink")
    return here


@pytest.mark.parametrize(
    "output", ["data/out", "./data/out/", "data//out", "data/sub/../out", "{here}/data/out", "outlink"]
)
def test_files_under_the_output_are_left_out_and_counted_once_each(output_inside, output):
    selection = select_inputs(["data/**"], output.format(here=output_inside))
    assert selection == InputSelection(
        [
            InputFile(0, "data/a.ndjson", 2, 100.0, False, "100.0"),
            InputFile(1, "data/outside.ndjson", 3, 200.0, False, "200.0"),
        ],
        2,
    )


def test_nothing_is_left_out_without_an_output_or_with_one_elsewhere(output_inside):
    # Four objects, each under the first of its names.
    everything = ["data/a.ndjson", "data/latest.ndjson", "data/out/events/y.ndjson.gz", "data/outside.ndjson"]
    assert [f.path for f in select_inputs(["data/**"], None, "name").files] == everything
    assert select_inputs(["data/**"], "elsewhere", "name") == select_inputs(["data/**"], None, "name")
    assert select_inputs(["data/**"], "elsewhere").skipped_output_files == 0


def test_a_pattern_reaching_only_the_output_is_refused_saying_why(output_inside):
    with pytest.raises(InputError) as raised:
        select_inputs(["data/*.ndjson", "data/out/**"], "data/out/")
    assert str(raised.value) == (
        "input pattern 'data/out/**' matches no file outside the output location 'data/out/' "
        "(2 files below it, never read as input)"
    )
    # data/latest.ndjson is a symlink to a file of the output, through a symlink to it.
    with pytest.raises(InputError) as raised:
        select_inputs(["data/a.ndjson", "data/l*"], "outlink")
    assert str(raised.value) == (
        "input pattern 'data/l*' matches no file outside the output location 'outlink' "
        "(1 file below it, never read as input)"
    )


# --- only regular files ----------------------------------------------------------------------


@pytest.fixture
def specials(here):
    """A regular file beside a FIFO and a listening unix socket; a symlink to /dev/null."""
    write(here / "in" / "a.ndjson", b"1\n")
    os.symlink("/dev/null", here / "null.ndjson")
    os.mkfifo(here / "in" / "pipe.ndjson")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind("in/sock.ndjson")  # relative: unix socket paths are limited to ~100 bytes
    yield here / "in"
    sock.close()


@pytest.mark.parametrize(
    "pattern, named, kind",
    [
        ("in/pipe.ndjson", "in/pipe.ndjson", "a FIFO"),
        ("in/sock.ndjson", "in/sock.ndjson", "a socket"),
        ("in/p*", "in/pipe.ndjson", "a FIFO"),
        ("/dev/null", "/dev/null", "a character device"),
        ("null.ndjson", "null.ndjson", "a character device"),  # a symlink to /dev/null
    ],
)
def test_special_files_are_refused_naming_them(specials, pattern, named, kind):
    with pytest.raises(InputError) as raised:
        match_inputs(["in/a.ndjson", pattern])
    message = str(raised.value)
    assert f"{named!r}" in message and kind in message, message


def test_stdin_is_refused_even_when_it_is_a_regular_file(here):
    """/dev/stdin redirected from a file is a regular file by stat, but a
    different one in every process that opens it (each worker's own stdin)."""
    write(here / "a.ndjson", b"1\n")
    saved = os.dup(0)
    try:
        with open(here / "a.ndjson", "rb") as handle:
            os.dup2(handle.fileno(), 0)
        with pytest.raises(InputError, match="'/dev/stdin' is under /dev or /proc"):
            match_inputs(["/dev/stdin"])
    finally:
        os.dup2(saved, 0)
        os.close(saved)


def test_a_glob_over_a_folder_with_a_fifo_is_refused(specials):
    with pytest.raises(InputError, match="'in/pipe.ndjson' is a FIFO"):
        match_inputs(["in/*"])


def test_fifo_is_refused_by_the_cli_with_one_line_and_no_traceback(specials):
    out = specials.parent / "out"
    done = run_cli_process(
        "--input", str(specials / "a.ndjson"), "--input", str(specials / "pipe.ndjson"),
        "--output", str(out), "--reference-time", REF,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"cloud-import-prep: error: input {str(specials / 'pipe.ndjson')!r} is a FIFO "
        "(named pipe), not a regular file: only regular files are read"
    ]
    assert not out.exists()


def test_a_device_is_refused_by_the_cli(here, capsys):
    line = refused(capsys, run_cli("--input", "/dev/null", "--output", "out", "--reference-time", REF))
    assert "'/dev/null' is a character device" in line
    assert not (here / "out").exists()


# --- end to end: spellings -------------------------------------------------------------------


def test_cli_reads_a_file_given_in_four_spellings_once(here):
    lines = [ev("A", "u1", T_DAY1), b"{oops", ev("B", "u2", T_DAY2)]
    write_input(here / "a.ndjson", lines)
    (here / "sub").mkdir()
    spellings = ["a.ndjson", "./a.ndjson", str(here / "a.ndjson"), "sub/../a.ndjson"]
    for name, order in (("out1", spellings), ("out2", spellings[::-1]), ("once", ["a.ndjson"])):
        args = [a for p in order for a in ("--input", p)]
        assert run_cli(*args, "--output", name, "--reference-time", REF) == 0
    s = summary(here / "out1")
    assert (s["input"]["files"], s["input"]["lines"]) == (1, 3)
    o = s["output"]
    assert (o["events"], o["superseded"], o["rejected"]) == (2, 0, 1)
    rejects = [orjson.loads(line) for line in read_output(here / "out1")["rejects/part-00000-of-00001.ndjson.gz"]]
    assert [(r["source"], r["offset"], r["line"]) for r in rejects] == [("a.ndjson", len(lines[0]) + 1, "{oops")]
    # Same bytes whatever the order or number of spellings.
    data = {
        name: {k: v for k, v in read_output(here / name).items() if not k.startswith("_")}
        for name in ("out1", "out2", "once")
    }
    assert data["out1"] == data["out2"] == data["once"]


# --- end to end: the output inside the input -------------------------------------------------


def test_output_inside_the_input_is_never_read(here, capsys):
    x1 = {"$insert_id": "x-1"}
    write_input(
        here / "data" / "2024" / "a.ndjson", [ev("A", "u1", T_DAY1), ev("A", "u1", T_DAY1, **x1), b"{oops"], mtime=100
    )
    write_input(here / "data" / "b.ndjson.gz", [ev("B", "u2", T_DAY2), ev("A", "u1", T_DAY1 + 5, **x1)], mtime=200)
    args = ("--input", "data/**", "--output", "data/out", "--reference-time", REF)
    assert run_cli(*args) == 0
    first = read_output(here / "data" / "out")
    data_files = sorted(name for name in first if not name.startswith("_"))
    assert data_files == [
        "events/day=2024-01-01/part-00000-of-00001.ndjson.gz",
        "events/day=2024-01-02/part-00000-of-00001.ndjson.gz",
        "rejects/part-00000-of-00001.ndjson.gz",
    ]
    s = summary(here / "data" / "out")
    size = (here / "data" / "2024" / "a.ndjson").stat().st_size + (here / "data" / "b.ndjson.gz").stat().st_size
    assert s["input"] == {"files": 2, "bytes": size, "skipped_output_files": 0, "lines": 5, "blank_lines": 0}
    o = s["output"]
    assert (o["events"], o["superseded"], o["rejected"], s["balanced"]) == (3, 1, 1, True)

    # The rerun's pattern covers the first run's files: none of them is read.
    under_output = len(first)
    assert run_cli(*args, "--overwrite") == 0
    again = read_output(here / "data" / "out")
    assert {k: v for k, v in again.items() if not k.startswith("_")} == {k: first[k] for k in data_files}
    s = summary(here / "data" / "out")
    assert s["input"] == {"files": 2, "bytes": size, "skipped_output_files": under_output, "lines": 5, "blank_lines": 0}
    assert (s["output"]["events"], s["output"]["superseded"], s["output"]["rejected"], s["balanced"]) == (3, 1, 1, True)

    # A pattern that reaches only the output is refused like one that matches nothing.
    line = refused(capsys, run_cli("--input", "data/out/**", *args[2:], "--overwrite"))
    assert line == (
        "cloud-import-prep: error: input pattern 'data/out/**' matches no file outside the output "
        f"location 'data/out' ({under_output} files below it, never read as input)"
    )
    assert (here / "data" / "out" / "_SUCCESS").exists()


# match_inputs ----------------------------------------------------------------------


@pytest.fixture
def three_files_two_mtimes(tmp_path):
    """b.json and c.json uploaded at t=100, a.json later at t=200; d.gz at t=50."""
    write(tmp_path / "b.json", b"bb\n", 100)
    write(tmp_path / "a.json", b"a\n", 200)
    write(tmp_path / "c.json", b"ccc\n", 100)
    write(tmp_path / "d.json.gz", gzip.compress(b"d\n"), 50)
    return tmp_path


def test_match_inputs_ranks_by_mtime_then_path(three_files_two_mtimes):
    d = three_files_two_mtimes
    files = match_inputs([str(d / "*")])
    assert files == [
        InputFile(0, str(d / "d.json.gz"), (d / "d.json.gz").stat().st_size, 50.0, True, "50.0"),
        InputFile(1, str(d / "b.json"), 3, 100.0, False, "100.0"),
        InputFile(2, str(d / "c.json"), 4, 100.0, False, "100.0"),
        InputFile(3, str(d / "a.json"), 2, 200.0, False, "200.0"),
    ]


def test_match_inputs_upload_order_name(three_files_two_mtimes):
    d = three_files_two_mtimes
    files = match_inputs([str(d / "*")], upload_order="name")
    # Upload times are left out of the order; the version read is still the one listed.
    assert [(f.rank, f.path, f.upload_time, f.version) for f in files] == [
        (0, str(d / "a.json"), 0.0, "200.0"),
        (1, str(d / "b.json"), 0.0, "100.0"),
        (2, str(d / "c.json"), 0.0, "100.0"),
        (3, str(d / "d.json.gz"), 0.0, "50.0"),
    ]


def test_match_inputs_file_matched_twice_is_read_once(three_files_two_mtimes):
    d = three_files_two_mtimes
    files = match_inputs([str(d / "*.json"), str(d / "a.json"), str(d / "[ab].json")])
    assert [f.path for f in files] == [str(d / "b.json"), str(d / "c.json"), str(d / "a.json")]
    assert [f.rank for f in files] == [0, 1, 2]


def test_match_inputs_recursive_pattern(tmp_path):
    (tmp_path / "x" / "y").mkdir(parents=True)
    write(tmp_path / "x" / "y" / "deep.json", b"", 10)
    write(tmp_path / "top.json", b"1\n", 20)
    files = match_inputs([str(tmp_path / "**.json")])
    assert [f.path for f in files] == [str(tmp_path / "x" / "y" / "deep.json"), str(tmp_path / "top.json")]


@pytest.mark.parametrize(
    "pattern",
    ["*.nothing", "missing.json", "no_such_folder/*.json"],
)
def test_match_inputs_pattern_matching_nothing_names_it(three_files_two_mtimes, pattern):
    full = str(three_files_two_mtimes / pattern)
    with pytest.raises(InputError) as raised:
        match_inputs([str(three_files_two_mtimes / "*.json"), full])
    assert full in str(raised.value)


def test_match_inputs_folder_is_not_an_input_file(tmp_path):
    """A folder path matches the folder itself in Beam's local match; it must
    be refused up front (or expanded), never handed to the readers."""
    write(tmp_path / "a.json", b"a\n")
    try:
        files = match_inputs([str(tmp_path)])
    except InputError as err:
        assert str(tmp_path) in str(err)
    else:
        assert all(os.path.isfile(f.path) for f in files), files


@pytest.mark.parametrize(
    "patterns, upload_order, message",
    [
        ([], "mtime", "--input"),
        (["x"], "size", "upload_order"),
    ],
)
def test_match_inputs_refuses_bad_arguments(patterns, upload_order, message):
    with pytest.raises(InputError, match=message):
        match_inputs(patterns, upload_order)
