"""End-to-end: the real CLI on files on disk, output read back and compared."""

import hashlib
import subprocess
import sys

import orjson
import pytest

from e2e import REPO, SAMPLE, folders, read_json_lines, read_output, run_cli, run_cli_process, summary, write_input

REF = "2024-02-01T00:00:00Z"
T_DAY1 = 1704067200  # 2024-01-01T00:00:00Z
T_DAY2 = T_DAY1 + 86400


def ev(name, distinct_id, time, **props) -> bytes:
    return orjson.dumps({"event": name, "properties": {"distinct_id": distinct_id, "time": time, **props}})


def run(inputs, out, *extra) -> int:
    args = []
    for pattern in inputs:
        args += ["--input", str(pattern)]
    return run_cli(*args, "--output", str(out), "--reference-time", REF, *extra)


# --- the bundled sample ---------------------------------------------------------------------


def test_sample_run_balances_and_writes_the_layout(tmp_path):
    out = tmp_path / "out"
    assert run([SAMPLE / "*"], out) == 0
    s = summary(out)
    assert s["input"] == {
        "files": 2, "bytes": s["input"]["bytes"], "skipped_output_files": 0, "lines": 25, "blank_lines": 1
    }
    o = s["output"]
    assert (o["events"], o["superseded"], o["profiles"], o["groups"], o["rejected"]) == (14, 1, 6, 1, 2)
    assert o["rejected_by_reason"] == {"invalid_json": 1, "missing_time": 1}
    assert o["events_by_day"] == {
        "2020-09-28": 1, "2020-09-29": 1, "2020-09-30": 3, "2020-10-01": 2,
        "2020-10-02": 2, "2020-10-03": 2, "2020-10-04": 2, "2020-10-25": 1,
    }
    assert s["normalised"] == {"time": 1, "distinct_id": 0, "insert_id_generated": 14, "duplicate_keys": 0}
    assert s["balanced"] is True and s["passed"] is True
    files = read_output(out)
    assert sorted(files) == sorted(
        [f"events/day={d}/part-00000-of-00001.ndjson.gz" for d in o["events_by_day"]]
        + [
            "groups/part-00000-of-00001.ndjson.gz",
            "profiles/part-00000-of-00001.ndjson.gz",
            "rejects/part-00000-of-00001.ndjson.gz",
            "_REPORT.html",
            "_SCHEMA.json",
            "_SUMMARY.json",
            "_SUCCESS",
        ]
    )
    assert [f["path"] for f in o["files"]] == sorted(p for p in files if not p.startswith("_"))
    assert "_temporary" not in folders(out)
    council = read_json_lines(out, "events/day=2020-10-25")
    assert council == [
        {"event": "Council", "properties": {"distinct_id": "Frodo", "time": 1603620000,
         "$insert_id": "council-of-elrond-1", "location": "Rivendell"}}
    ]
    rejects = read_json_lines(out, "rejects/")
    assert [(r["reason"], r["offset"]) for r in rejects] == [("missing_time", 255), ("invalid_json", 342)]
    assert all(r["source"].endswith("2020-10-26-resend.ndjson.gz") for r in rejects)


# --- deduplication --------------------------------------------------------------------------


def _dup(version: str) -> bytes:
    return ev("Signup", "u1", T_DAY1 + 60, **{"$insert_id": "abc-123", "version": version})


def test_latest_upload_wins_by_modification_time(tmp_path):
    write_input(tmp_path / "in" / "a.ndjson", [_dup("new")], mtime=2_000_000)
    write_input(tmp_path / "in" / "b.ndjson", [_dup("old")], mtime=1_000_000)
    out = tmp_path / "out"
    assert run([tmp_path / "in" / "*"], out, "--keep-superseded") == 0
    assert [e["properties"]["version"] for e in read_json_lines(out, "events/")] == ["new"]
    assert [e["properties"]["version"] for e in read_json_lines(out, "superseded/")] == ["old"]
    assert summary(out)["output"]["superseded"] == 1


def test_equal_modification_times_fall_back_to_path_order(tmp_path):
    write_input(tmp_path / "in" / "a.ndjson", [_dup("first")], mtime=1_000_000)
    write_input(tmp_path / "in" / "b.ndjson", [_dup("second")], mtime=1_000_000)
    out = tmp_path / "out"
    assert run([tmp_path / "in" / "*"], out) == 0
    assert [e["properties"]["version"] for e in read_json_lines(out, "events/")] == ["second"]
    assert not (out / "superseded").exists()


def test_upload_order_name_ignores_modification_times(tmp_path):
    write_input(tmp_path / "in" / "a.ndjson", [_dup("a")], mtime=2_000_000)
    write_input(tmp_path / "in" / "b.ndjson", [_dup("b")], mtime=1_000_000)
    out = tmp_path / "out"
    assert run([tmp_path / "in" / "*"], out, "--upload-order", "name") == 0
    assert [e["properties"]["version"] for e in read_json_lines(out, "events/")] == ["b"]


def test_later_line_of_the_same_file_wins(tmp_path):
    write_input(tmp_path / "in" / "a.ndjson", [_dup("1"), _dup("2"), _dup("3")])
    out = tmp_path / "out"
    assert run([tmp_path / "in" / "*"], out) == 0
    assert [e["properties"]["version"] for e in read_json_lines(out, "events/")] == ["3"]
    assert summary(out)["output"]["superseded"] == 2


def test_event_resent_on_another_utc_day_survives_twice(tmp_path):
    day1 = ev("Signup", "u1", T_DAY1 + 10, **{"$insert_id": "same-id"})
    day2 = ev("Signup", "u1", T_DAY2 + 10, **{"$insert_id": "same-id"})
    write_input(tmp_path / "in" / "a.ndjson", [day1, day2])
    out = tmp_path / "out"
    assert run([tmp_path / "in" / "*"], out) == 0
    s = summary(out)["output"]
    assert s["events_by_day"] == {"2024-01-01": 1, "2024-01-02": 1}
    assert s["superseded"] == 0


def test_events_without_insert_id_collapse_only_when_identical(tmp_path):
    same = ev("Play", "u2", T_DAY1 + 5, song="a")
    other = ev("Play", "u2", T_DAY1 + 5, song="b")
    write_input(tmp_path / "in" / "1.ndjson", [same, other], mtime=1_000_000)
    write_input(tmp_path / "in" / "2.ndjson", [same], mtime=2_000_000)
    out = tmp_path / "out"
    assert run([tmp_path / "in" / "*"], out) == 0
    events = read_json_lines(out, "events/")
    assert sorted(e["properties"]["song"] for e in events) == ["a", "b"]
    ids = {e["properties"]["$insert_id"] for e in events}
    assert len(ids) == 2 and all(len(i) == 32 for i in ids)
    assert summary(out)["output"]["superseded"] == 1


# --- profiles and groups --------------------------------------------------------------------


def test_profile_updates_of_one_identity_keep_upload_order_in_one_file(tmp_path):
    def upd(who, n):
        return orjson.dumps({"$distinct_id": who, "$set": {"n": n}})

    write_input(tmp_path / "in" / "z.ndjson", [upd("ann", 1), upd("bob", 1), upd("ann", 2)], mtime=1_000_000)
    write_input(tmp_path / "in" / "a.ndjson", [upd("bob", 2), upd("ann", 3), upd(7, 1)], mtime=2_000_000)
    out = tmp_path / "out"
    assert run([tmp_path / "in" / "*"], out) == 0
    files = {k: v for k, v in read_output(out).items() if k.startswith("profiles/")}
    assert len(files) == 1
    seen = {}
    for line in next(iter(files.values())):
        record = orjson.loads(line)
        seen.setdefault(record["$distinct_id"], []).append(record["$set"]["n"])
    assert seen == {"ann": [1, 2, 3], "bob": [1, 2], "7": [1]}
    assert summary(out)["normalised"]["distinct_id"] == 1


def test_group_updates_are_written_apart_from_profiles(tmp_path):
    group = orjson.dumps({"$group_key": "company", "$group_id": 42, "$set": {"plan": "pro"}})
    write_input(tmp_path / "in" / "a.ndjson", [group])
    out = tmp_path / "out"
    assert run([tmp_path / "in" / "*"], out) == 0
    assert read_json_lines(out, "groups/") == [{"$group_key": "company", "$group_id": "42", "$set": {"plan": "pro"}}]
    assert not (out / "profiles").exists() and not (out / "events").exists()


# --- reading --------------------------------------------------------------------------------


def test_line_endings_bom_and_missing_final_newline(tmp_path):
    good = ev("A", "u", T_DAY1 + 1, **{"$insert_id": "a1"})
    bad = b"{not json"
    write_input(tmp_path / "in" / "crlf.ndjson", [good, bad], ending=b"\r\n")
    write_input(tmp_path / "in" / "nofinal.ndjson", [bad, ev("B", "u", T_DAY1 + 2)], final_newline=False)
    (tmp_path / "in" / "bom.ndjson").write_bytes(b"\xef\xbb\xbf" + bad + b"\n" + ev("C", "u", T_DAY1 + 3) + b"\n")
    out = tmp_path / "out"
    assert run([tmp_path / "in" / "*"], out) == 0
    names = sorted(e["event"] for e in read_json_lines(out, "events/"))
    assert names == ["A", "B", "C"]
    rejects = {(r["source"].rsplit("/", 1)[-1], r["offset"], r["line"]) for r in read_json_lines(out, "rejects/")}
    assert rejects == {
        ("crlf.ndjson", len(good) + 2, "{not json"),
        ("nofinal.ndjson", 0, "{not json"),
        ("bom.ndjson", 3, "{not json"),
    }
    assert summary(out)["input"]["lines"] == 6


def _mixed_corpus(folder):
    lines = []
    for i in range(300):
        lines.append(ev(f"E{i % 7}", f"u{i % 13}", T_DAY1 + i * 997, n=i))
        if i % 10 == 0:
            lines.append(b"")
            lines.append(b"garbage " + str(i).encode())
            lines.append(orjson.dumps({"$distinct_id": f"u{i % 13}", "$set": {"n": i}}))
    write_input(folder / "plain.ndjson", lines[:200], ending=b"\r\n")
    write_input(folder / "more.ndjson", lines[200:])
    write_input(folder / "packed.ndjson.gz", lines[::3])


# --- duplicate JSON keys --------------------------------------------------------------------

DUPLICATE_KEY_LINES = [
    # 0: a repeated property; superseded by line 2 (same overwrite key), still counted.
    b'{"event":"Signup","properties":{"time":1704067200,"distinct_id":"u1","$insert_id":"s-1",'
    b'"plan":"free","plan":"pro"}}',
    # 1: time given twice, with spaces around the colons: the integer, given last, wins.
    b'{"event" : "Play", "properties" : {"time" : "2024-01-01T10:00:00Z", "time" : 1704103200,'
    b' "distinct_id" : "u2", "$insert_id" : "p-1"}}',
    # 2: the latest upload of line 0's event.
    b'{"event":"Signup","properties":{"time":1704067200,"distinct_id":"u1","$insert_id":"s-1",'
    b'"plan":"free","plan":"team"}}',
    # 3: the same key in sibling objects is no duplicate.
    b'{"event":"Play","properties":{"time":1704067200,"distinct_id":"u3","$insert_id":"p-2",'
    b'"tags":[{"a":1},{"a":2}],"url":"https://h:443/x"}}',
    # 4: an operation given twice, and a repeated key inside the winner.
    b'{"$distinct_id":"u1","$set":{"plan":"free"},"$set":{"plan":"pro","seats":{"n":1,"n":2}}}',
    # 5: a group id given twice: the string, given last, wins (nothing normalised).
    b'{"$group_key":"company","$group_id":7,"$group_id":"acme","$set":{"name":"Acme"}}',
    # 6: a reject with a repeated key: not counted.
    b'{"event":"Signup","event":"Signup","properties":{"time":1704067200}}',
    # 7: "a\u003ab" is "a:b": a repeated key; its $insert_id is generated from the winner.
    b'{"event":"Play","properties":{"time":1704067200,"distinct_id":"u4","a\\u003ab":1,"a:b":2}}',
    b"",
]


def test_duplicate_keys_last_one_wins_and_is_counted(tmp_path):
    source = write_input(tmp_path / "in" / "dups.ndjson", DUPLICATE_KEY_LINES)
    out = tmp_path / "out"
    assert run([source], out, "--keep-superseded", "--compression", "none") == 0
    s = summary(out)
    o = s["output"]
    assert (o["events"], o["superseded"], o["profiles"], o["groups"], o["rejected"]) == (4, 1, 1, 1, 1)
    assert o["rejected_by_reason"] == {"missing_distinct_id": 1}
    assert s["normalised"] == {"time": 0, "distinct_id": 0, "insert_id_generated": 1, "duplicate_keys": 6}
    assert s["passed"] is True

    generated = hashlib.blake2b(
        orjson.dumps(["Play", "u4", T_DAY1, {"time": T_DAY1, "distinct_id": "u4", "a:b": 2}],
                     option=orjson.OPT_SORT_KEYS),
        digest_size=16,
    ).hexdigest()
    files = read_output(out)
    assert {name: lines for name, lines in files.items() if not name.startswith(("_", "rejects/"))} == {
        "events/day=2024-01-01/part-00000-of-00001.ndjson": [
            b'{"event":"Play","properties":{"time":1704103200,"distinct_id":"u2","$insert_id":"p-1"}}',
            b'{"event":"Signup","properties":{"time":1704067200,"distinct_id":"u1","$insert_id":"s-1",'
            b'"plan":"team"}}',
            DUPLICATE_KEY_LINES[3],
            b'{"event":"Play","properties":{"time":1704067200,"distinct_id":"u4","a:b":2,"$insert_id":"'
            + generated.encode() + b'"}}',
        ],
        "superseded/day=2024-01-01/part-00000-of-00001.ndjson": [
            b'{"event":"Signup","properties":{"time":1704067200,"distinct_id":"u1","$insert_id":"s-1",'
            b'"plan":"pro"}}',
        ],
        "profiles/part-00000-of-00001.ndjson": [b'{"$distinct_id":"u1","$set":{"plan":"pro","seats":{"n":2}}}'],
        "groups/part-00000-of-00001.ndjson": [b'{"$group_key":"company","$group_id":"acme","$set":{"name":"Acme"}}'],
    }
    (reject,) = read_json_lines(out, "rejects/")
    assert (reject["reason"], reject["line"]) == ("missing_distinct_id", DUPLICATE_KEY_LINES[6].decode())

    # The first five, in upload order, in the summary and the report.
    offsets = [sum(len(line) + 1 for line in DUPLICATE_KEY_LINES[:i]) for i in range(len(DUPLICATE_KEY_LINES))]
    shown = [{"source": str(source), "offset": offsets[i], "line": DUPLICATE_KEY_LINES[i].decode()}
             for i in (0, 1, 2, 4, 5)]
    assert s["details"]["duplicate_key_examples"] == shown
    report = (out / "_REPORT.html").read_text()
    section = report[report.index('<div id="duplicate-keys"') :].split("</section>")[0]
    assert section.startswith('<div id="duplicate-keys" class="duplicates" data-count="6">')
    assert section.count('<span class="source mono">' + str(source) + "</span>") == 5


def test_tiny_ranges_lose_and_duplicate_no_line(tmp_path, small_read_ranges):
    _mixed_corpus(tmp_path / "in")
    default, tiny = tmp_path / "default", tmp_path / "tiny"
    assert run([tmp_path / "in" / "*"], default) == 0
    assert run([tmp_path / "in" / "*"], tiny, "--range-bytes", "7") == 0
    data_files = lambda root: {k: v for k, v in read_output(root).items() if not k.startswith("_")}  # noqa: E731
    assert data_files(tiny) == data_files(default)
    assert summary(tiny)["output"] == summary(default)["output"]
    assert summary(tiny)["input"]["lines"] == 300 + 30 * 3 + (300 + 90 + 2) // 3


def test_rerun_gives_the_same_bytes(tmp_path):
    _mixed_corpus(tmp_path / "in")
    first, second = tmp_path / "first", tmp_path / "second"
    assert run([tmp_path / "in" / "*"], first) == 0
    assert run([tmp_path / "in" / "*"], second) == 0
    data = lambda root: {p.relative_to(root): p.read_bytes() for p in root.rglob("*.gz")}  # noqa: E731
    assert data(first) == data(second) and data(first)


# --- options --------------------------------------------------------------------------------


def test_time_unit_ms_and_uncompressed_output(tmp_path):
    write_input(tmp_path / "in" / "a.ndjson", [ev("A", "u", T_DAY1 + 1.5, **{"$insert_id": "x"})])
    out = tmp_path / "out"
    assert run([tmp_path / "in" / "*"], out, "--time-unit", "ms", "--compression", "none") == 0
    assert list(read_output(out)) == [
        "_REPORT.html", "_SCHEMA.json", "_SUCCESS", "_SUMMARY.json", "events/day=2024-01-01/part-00000-of-00001.ndjson"
    ]
    assert read_json_lines(out, "events/")[0]["properties"]["time"] == (T_DAY1 + 1) * 1000 + 500


def test_max_file_mb_splits_a_day_into_bounded_parts(tmp_path):
    pad = "x" * 1000
    lines = [ev("Big", f"u{i}", T_DAY1 + i, pad=pad) for i in range(2600)]  # about 2.7 MiB
    write_input(tmp_path / "in" / "a.ndjson", lines)
    out = tmp_path / "out"
    assert run([tmp_path / "in" / "*"], out, "--max-file-mb", "1") == 0
    parts = {k: v for k, v in read_output(out).items() if k.startswith("events/")}
    assert sorted(parts) == [f"events/day=2024-01-01/part-{i:05d}-of-00003.ndjson.gz" for i in range(3)]
    assert all(sum(len(line) + 1 for line in v) <= 1 << 20 for v in parts.values())
    assert sum(len(v) for v in parts.values()) == 2600


def test_reject_ratio_gate_fails_the_run_but_writes_the_summary(tmp_path):
    write_input(tmp_path / "in" / "a.ndjson", [b"junk", ev("A", "u", T_DAY1)])
    out = tmp_path / "out"
    assert run([tmp_path / "in" / "*"], out, "--max-reject-ratio", "0.25") == 1
    s = summary(out)
    assert s["passed"] is False and s["balanced"] is True
    assert s["checks"]["reject_ratio"] == 0.5 and s["checks"]["reject_ratio_ok"] is False
    assert not (out / "_SUCCESS").exists()


def test_only_blank_lines_write_no_data_files(tmp_path):
    write_input(tmp_path / "in" / "a.ndjson", [b"", b"  ", b"\t"])
    out = tmp_path / "out"
    assert run([tmp_path / "in" / "*"], out) == 0
    assert sorted(read_output(out)) == ["_REPORT.html", "_SCHEMA.json", "_SUCCESS", "_SUMMARY.json"]
    assert folders(out) == []
    assert summary(out)["input"]["blank_lines"] == 3


# --- the output location --------------------------------------------------------------------


def test_overwrite_replaces_only_the_previous_run(tmp_path, capsys):
    write_input(tmp_path / "in1" / "a.ndjson", [ev("A", "u", T_DAY1), ev("A", "u", T_DAY2)])
    write_input(tmp_path / "in2" / "a.ndjson", [ev("B", "u", T_DAY2)])
    out = tmp_path / "out"
    assert run([tmp_path / "in1" / "*"], out) == 0
    assert run([tmp_path / "in2" / "*"], out) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert run([tmp_path / "in2" / "*"], out, "--overwrite") == 0
    assert sorted(read_output(out)) == [
        "_REPORT.html", "_SCHEMA.json", "_SUCCESS", "_SUMMARY.json",
        "events/day=2024-01-02/part-00000-of-00001.ndjson.gz"
    ]
    assert folders(out) == ["events", "events/day=2024-01-02"]
    (out / "notes.txt").write_text("mine")
    assert run([tmp_path / "in1" / "*"], out, "--overwrite") == 2
    assert "notes.txt" in capsys.readouterr().err
    assert (out / "_SUCCESS").exists() and (out / "notes.txt").read_text() == "mine"


def test_pattern_matching_nothing_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    assert run([tmp_path / "nowhere" / "*.ndjson"], out) == 2
    err = capsys.readouterr().err
    assert "matches no file" in err and "nowhere" in err
    assert not out.exists()


# --- the real entry point -------------------------------------------------------------------


def test_module_entry_point_with_direct_runner_in_another_time_zone(tmp_path):
    out = tmp_path / "out"
    done = run_cli_process(
        "--input", str(SAMPLE / "*"), "--output", str(out), "--runner", "DirectRunner",
        env={"TZ": "America/New_York"},
    )
    assert done.returncode == 0, done.stderr
    printed = orjson.loads(done.stdout)
    assert printed == summary(out) and printed["passed"] is True


def test_help_describes_every_option():
    done = run_cli_process("--help")
    assert done.returncode == 0
    for flag in ("--input", "--output", "--reference-time", "--time-unit", "--upload-order",
                 "--keep-superseded", "--compression", "--max-file-mb", "--max-reject-ratio",
                 "--overwrite", "--range-bytes"):
        assert flag in done.stdout


def test_the_process_entry_point_returns_mains_status_and_skips_the_final_collection(tmp_path):
    # A child, as the console script runs it: the status is main()'s, and what
    # the interpreter tracks is frozen, so its last full collection is skipped.
    probe = (
        "import gc, sys\n"
        "from pipeline.cli import process_main\n"
        "status = process_main()\n"
        "print(status, gc.get_freeze_count() > 10_000, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, "--input", str(tmp_path / "nothing*"), "--output", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=REPO, timeout=300, check=False,
    )
    assert done.stderr.splitlines()[-1] == "2 True", done.stderr


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--max-file-mb", "0"], "--max-file-mb"),
        (["--direct_running_mode", "multi_threading"], "multi_threading"),
        (["--reference-time", "yesterday"], "--reference-time"),
    ],
)
def test_bad_flags_are_refused_with_the_flag_named(tmp_path, capsys, flags, message):
    write_input(tmp_path / "in" / "a.ndjson", [ev("A", "u", T_DAY1)])
    assert run_cli("--input", str(tmp_path / "in" / "*"), "--output", str(tmp_path / "out"), *flags) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --- options refused before any work, through the real entry point --------------------------


@pytest.mark.parametrize(
    "flags, named",
    [
        pytest.param(["--max-reject-rate", "0.01"], "unknown option --max-reject-rate", id="misspelled_gate"),
        pytest.param(["--keep-supersede"], "unknown option --keep-supersede", id="misspelled_flag"),
        pytest.param(["--runner", "NoSuchRunner"], "--runner 'NoSuchRunner'", id="unknown_runner"),
        pytest.param(["--temp_location", "gs://Bad_Bucket!/x"], "--temp_location 'gs://Bad_Bucket!/x'",
                     id="bad_bucket_name"),
        pytest.param(["--output", "gs://x/"], "--output 'gs://x/'", id="bad_output_bucket_name"),
        pytest.param(["--range-bytes", "1000"], "--range-bytes must be at least 1048576", id="tiny_range_bytes"),
        pytest.param(["--time-unit", "h"], "argument --time-unit/--time_unit: invalid choice: 'h'",
                     id="argparse_choice"),
        pytest.param(["--direct_num_workers", "abc"], "argument --direct_num_workers: invalid int value: 'abc'",
                     id="beams_int"),
    ],
)
def test_refused_options_exit_2_with_one_line_naming_them(tmp_path, flags, named):
    write_input(tmp_path / "in" / "a.ndjson", [ev("A", "u", T_DAY1)])
    out = tmp_path / "out"
    done = run_cli_process("--input", str(tmp_path / "in" / "*"), "--output", str(out), *flags)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.endswith("\n"), done.stderr
    assert done.stderr.startswith("cloud-import-prep: error: ") and named in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not out.exists()


def test_beam_options_in_equals_form_run_the_job(tmp_path):
    write_input(tmp_path / "in" / "a.ndjson", [ev("A", "u", T_DAY1), ev("B", "u", T_DAY2)])
    out = tmp_path / "out"
    done = run_cli_process(
        "--input", str(tmp_path / "in" / "*"), "--output", str(out), f"--reference-time={REF}",
        "--runner=DirectRunner", "--experiments=cloud_import_prep_e2e", "--direct_num_workers=1",
    )
    assert done.returncode == 0, done.stderr
    assert "Discarding" not in done.stderr and "Unparseable" not in done.stderr
    assert summary(out)["passed"] is True and summary(out)["output"]["events"] == 2
