"""The output is a function of the input bytes and upload times alone (DESIGN.md §3).

One corpus, prepared once the plain way; then again with the input files named
in other orders, with other read-range sizes, and with two worker processes:
every data file must be the same, byte for byte, and so must the summary's
figures. (test_multiprocessing.py compares worker processes with one process
on the same command line; here they also get the files in another order and
other ranges.)
"""

import random
from pathlib import Path

import orjson
import pytest
from e2e import run_cli, run_cli_process, summary, write_input

REF = "2024-02-01T00:00:00Z"
T0 = 1_704_067_200  # 2024-01-01T00:00:00Z
# Over 1 MiB of events, so that with --max-file-mb 1 the days are written in several shards.
FLAGS = ("--reference-time", REF, "--max-file-mb", "1", "--keep-superseded")
# Options that differ between the runs by design, and the run's own id.
VARYING = ("input", "output", "range_bytes", "run_date")


def _corpus(root: Path) -> list[Path]:
    """Seven files: plain, gzip, CRLF, a BOM, no final newline, multi-byte text, equal
    upload times; events re-sent across files, profile and group updates, rejects, blanks."""
    rng = random.Random(7)
    pad = "é€𝄞" * 60  # multi-byte characters, so that ranges start inside characters
    pool = [(rng.choice(["Signup", "Login", "Buy"]), f"u{rng.randrange(200)}", T0 + rng.randrange(2 * 86400),
             f"id-{i}") for i in range(2500)]
    paths = []
    for f in range(7):
        lines = []
        for n in range(600):
            kind = rng.random()
            if kind < 0.8:
                name, user, time, insert_id = rng.choice(pool)
                props = {"distinct_id": user, "time": time, "$insert_id": insert_id, "upload": f, "pad": pad,
                         "v": rng.choice([1, "1", 1.5, None])}  # a type conflict, for _SCHEMA.json
                if rng.random() < 0.3:
                    del props["$insert_id"]
                    props["time"] = time + 0.5
                lines.append(orjson.dumps({"event": name, "properties": props}))
            elif kind < 0.88:
                lines.append(orjson.dumps({"$distinct_id": f"u{rng.randrange(200)}", "$set": {"n": n, "f": f}}))
            elif kind < 0.91:
                lines.append(orjson.dumps({"$group_key": "company", "$group_id": rng.randrange(30), "$set": {"n": n}}))
            elif kind < 0.97:
                lines.append(rng.choice([b"{broken", b'{"event": "E", "properties": {}}', b"\xff\xfe", b"[]"]))
            else:
                lines.append(rng.choice([b"", b"  ", b"\t"]))
        name = ["a.ndjson", "b.ndjson.gz", "c-crlf.ndjson", "d-bom.ndjson", "e.ndjson", "f.ndjson.gz", "g.ndjson"][f]
        if "bom" in name:
            lines[0] = b"\xef\xbb\xbf" + lines[0]
        path = write_input(root / name, lines, ending=b"\r\n" if "crlf" in name else b"\n",
                           final_newline=f != 4, mtime=1_700_000_000 + 60 * (f // 2))  # pairs share a time
        paths.append(path)
    return paths


def _result(out: Path) -> tuple[dict[str, bytes], dict]:
    """The data files' and _SCHEMA.json's bytes, and the summary without what differs by design."""
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
             and (not p.name.startswith("_") or p.name == "_SCHEMA.json")}
    s = summary(out)
    s.pop("run_id")
    for name in VARYING:
        s["options"].pop(name)
    return files, s


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The corpus, and its output prepared with the files named in upload order."""
    root = tmp_path_factory.mktemp("determinism")
    paths = _corpus(root / "raw")
    out = root / "reference"
    args = [a for p in paths for a in ("--input", str(p))]
    assert run_cli(*args, "--output", str(out), *FLAGS) == 0
    files, s = _result(out)
    # The corpus exercises what could differ: several shards of a day, every category.
    assert any("-of-00001." not in name for name in files if name.startswith("events/"))
    o = s["output"]
    assert all(o[k] > 0 for k in ("events", "superseded", "profiles", "groups", "rejected"))
    assert s["input"]["blank_lines"] > 0 and s["normalised"]["insert_id_generated"] > 0
    schema = orjson.loads(files["_SCHEMA.json"])
    assert {name: keys for name, keys in schema["conflicts"].items()} == {n: ["v"] for n in ("Buy", "Login", "Signup")}
    return root, paths, (files, s)


def test_the_order_in_which_input_files_are_named_does_not_change_the_output(prepared):
    root, paths, expected = prepared
    shuffled = paths[:]
    random.Random(1).shuffle(shuffled)
    orders = {
        "reversed": [a for p in reversed(paths) for a in ("--input", str(p))],
        # The same files named twice (a glob and each path): still read once each.
        "shuffled_and_globbed": ["--input", str(root / "raw" / "*")] + [a for p in shuffled for a in ("--input", str(p))],
    }
    for label, args in orders.items():
        out = root / label
        assert run_cli(*args, "--output", str(out), *FLAGS) == 0
        files, s = _result(out)
        assert sorted(files) == sorted(expected[0]), label
        assert files == expected[0], label
        assert s == expected[1], label


@pytest.mark.parametrize("range_bytes", [4093, 131_071])
def test_the_read_range_size_does_not_change_the_output(prepared, range_bytes, small_read_ranges):
    root, paths, expected = prepared
    out = root / f"ranges-{range_bytes}"
    args = [a for p in paths for a in ("--input", str(p))]
    assert run_cli(*args, "--output", str(out), "--range-bytes", str(range_bytes), *FLAGS) == 0
    files, s = _result(out)
    assert files == expected[0]
    assert s == expected[1]


def test_two_worker_processes_given_the_files_in_another_order_and_other_ranges(prepared):
    root, paths, expected = prepared
    out = root / "workers"
    args = [a for p in reversed(paths) for a in ("--input", str(p))]
    child = run_cli_process(
        *args, "--output", str(out), "--range-bytes", "65521", *FLAGS,
        "--direct_running_mode=multi_processing", "--direct_num_workers=2", small_read_ranges=True,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    files, s = _result(out)
    assert files == expected[0]
    assert s == expected[1]
