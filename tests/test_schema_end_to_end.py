"""End-to-end: _SCHEMA.json of real runs, drift against the run of the day before, its gate."""

import orjson

from e2e import run_cli, run_cli_process, summary, write_input

REF = "2024-02-01T00:00:00Z"
T = 1_706_000_000  # 2024-01-23


def ev(name, user, insert_id, **props) -> bytes:
    return orjson.dumps(
        {"event": name, "properties": {"distinct_id": user, "time": T, "$insert_id": insert_id, **props}}
    )


DAY1 = [
    ev("Signup", "u1", "s1", plan="pro"),
    ev("Signup", "u2", "s2", plan="free"),
    ev("Buy", "u1", "b1", price=9.5),
    b'{"$distinct_id": "u1", "$set": {"plan": "pro"}}',
]
DAY2 = [
    ev("Signup", "u3", "s3", plan="pro"),
    ev("Signup", "u4", "s4", plan=2),  # planted: plan was only ever a string
    ev("Buy", "u3", "b3", price=3.0, coupon="X"),
    ev("Refund", "u1", "r1", amount=9.5),  # planted: a new event
    b'{"$distinct_id": "u3", "$set": {"plan": 1}}',
]


def _run_days(tmp_path):
    write_input(tmp_path / "day1" / "a.ndjson", DAY1, mtime=T)
    write_input(tmp_path / "day2" / "a.ndjson", DAY2, mtime=T)
    first = tmp_path / "out" / "2024-01-30"
    assert run_cli("--input", str(tmp_path / "day1" / "*"), "--output", str(first), "--reference-time", REF) == 0
    return first


def test_a_second_run_finds_the_planted_type_change_and_new_event(tmp_path):
    first = _run_days(tmp_path)
    schema = orjson.loads((first / "_SCHEMA.json").read_bytes())
    assert schema["events"]["Signup"] == {"count": 2, "properties": {
        "$insert_id": {"types": {"string": 2}}, "distinct_id": {"types": {"string": 2}},
        "plan": {"types": {"string": 2}}, "time": {"types": {"integer": 2}}}}
    assert "drift" not in schema

    # The day after, as a schedule launches it: the previous schema through a placeholder.
    second = tmp_path / "out" / "2024-01-31"
    child = run_cli_process(
        "--input", str(tmp_path / "day2" / "*"), "--output", str(tmp_path / "out" / "{date-1}"),
        "--run-date", "2024-02-01", "--previous-schema", str(tmp_path / "out" / "{date-2}" / "_SCHEMA.json"),
        "--reference-time", REF,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    schema = orjson.loads((second / "_SCHEMA.json").read_bytes())
    assert schema["drift"] == {
        "new_events": ["Refund"],
        "removed_events": [],
        "new_properties": {"Buy": ["coupon"]},
        "removed_properties": {},
        "type_changes": {"Signup": {"plan": {"before": ["string"], "after": ["integer", "string"]}}},
    }
    assert schema["conflicts"] == {"Signup": ["plan"]}
    assert schema["events"]["Signup"]["properties"]["plan"]["examples"] == {
        "string": {"source": str(tmp_path / "day2" / "a.ndjson"), "offset": 0},
        "integer": {"source": str(tmp_path / "day2" / "a.ndjson"), "offset": len(DAY2[0]) + 1},
    }
    assert schema["events"]["Buy"]["properties"]["price"] == {"types": {"number": 1}}  # 3.0 is a number
    assert schema["profiles"]["properties"]["plan"] == {"types": {"integer": 1}}  # profiles: no drift
    headline = [line for line in child.stderr.splitlines() if "schema drift" in line]
    assert headline == ["  schema drift    1 new event, 1 new property, 1 type change"]
    assert summary(second)["passed"] is True
    assert "type_changes_ok" not in summary(second)["checks"]
    assert (second / "_SUCCESS").exists()
    report = (second / "_REPORT.html").read_text(encoding="utf-8")
    assert '<section id="schema">' in report
    assert 'data-drift="type_changes" data-name="Signup" data-key="plan"' in report
    assert 'data-kind="event" data-name="Signup" data-key="plan"' in report


def test_fail_on_type_change_fails_the_checks_and_keeps_the_files(tmp_path):
    first = _run_days(tmp_path)
    out = tmp_path / "gated"
    child = run_cli_process(
        "--input", str(tmp_path / "day2" / "*"), "--output", str(out), "--reference-time", REF,
        "--previous-schema", str(first / "_SCHEMA.json"), "--fail-on-type-change",
    )
    assert child.returncode == 1, child.stderr[-3000:]
    s = summary(out)
    assert s["checks"]["type_changes_ok"] is False and s["passed"] is False and s["balanced"] is True
    assert (out / "_SCHEMA.json").exists() and (out / "_REPORT.html").exists()
    assert not (out / "_SUCCESS").exists()
    assert "FAILED (type_changes_ok)" in child.stderr
    assert "Traceback" not in child.stderr

    # Without a type change the gate passes: the same day compared with itself.
    again = tmp_path / "same"
    assert run_cli("--input", str(tmp_path / "day1" / "*"), "--output", str(again), "--reference-time", REF,
                   "--previous-schema", str(first / "_SCHEMA.json"), "--fail-on-type-change") == 0
    assert summary(again)["checks"]["type_changes_ok"] is True and (again / "_SUCCESS").exists()
    assert orjson.loads((again / "_SCHEMA.json").read_bytes())["drift"] == {
        "new_events": [], "removed_events": [], "new_properties": {}, "removed_properties": {}, "type_changes": {}}


def test_a_bad_previous_schema_is_refused_before_any_work(tmp_path):
    write_input(tmp_path / "in" / "a.ndjson", DAY1, mtime=T)
    (tmp_path / "text.json").write_bytes(b"not json at all")
    (tmp_path / "other.json").write_bytes(b'{"events": {"A": {"count": "many", "properties": {}}}}')
    cases = [
        (["--previous-schema", str(tmp_path / "missing.json")], "no such file"),
        (["--previous-schema", str(tmp_path / "text.json")], "is not JSON"),
        (["--previous-schema", str(tmp_path / "other.json")],
         'is not a _SCHEMA.json of this tool: events["A"].count is not a non-negative integer'),
        (["--fail-on-type-change"], "--fail-on-type-change needs --previous-schema"),
    ]
    for args, message in cases:
        out = tmp_path / "out"
        child = run_cli_process("--input", str(tmp_path / "in" / "*"), "--output", str(out), *args)
        assert child.returncode == 2, child.stderr[-2000:]
        errors = [line for line in child.stderr.splitlines() if line.startswith("cloud-import-prep: error:")]
        assert len(errors) == 1 and message in errors[0], child.stderr[-2000:]
        assert "Traceback" not in child.stderr
        assert not out.exists()  # refused before the output was touched


def test_overwrite_replaces_the_schema_of_the_previous_run(tmp_path):
    first = _run_days(tmp_path)
    before = (first / "_SCHEMA.json").read_bytes()
    assert run_cli("--input", str(tmp_path / "day2" / "*"), "--output", str(first), "--reference-time", REF,
                   "--overwrite") == 0
    after = orjson.loads((first / "_SCHEMA.json").read_bytes())
    assert (first / "_SCHEMA.json").read_bytes() != before and "Refund" in after["events"]
    # And the same input again gives the same bytes.
    data = (first / "_SCHEMA.json").read_bytes()
    assert run_cli("--input", str(tmp_path / "day2" / "*"), "--output", str(first), "--reference-time", REF,
                   "--overwrite") == 0
    assert (first / "_SCHEMA.json").read_bytes() == data
