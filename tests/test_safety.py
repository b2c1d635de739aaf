"""Safety: where files go, what --overwrite removes, what logs hold, when _SUCCESS is withheld."""

import logging
import re
from pathlib import Path

import orjson
import pytest

from e2e import read_json_lines, run_cli, summary, write_input
from transforms.layout import check_route
from transforms.write import _NameFiles, _TempFile, _WriteShard

REF = "2024-02-01T00:00:00Z"
T0 = 1_704_067_200
LAYOUT = re.compile(
    r"(?:(?:events|superseded)/day=\d{4}-\d{2}-\d{2}|profiles|groups|rejects)/part-\d{5}-of-\d{5}\.ndjson\.gz"
    r"|_SUMMARY\.json|_SCHEMA\.json|_REPORT\.html|_SUCCESS"
)
# Values a record could hold to try to steer a file somewhere.
STEERING = ["../../escape", "/etc/cron.d/x", "day=../../x", "events/day=2024-01-01/../../..", "..",
            "C:\\Windows\\x", "%2e%2e%2f", "a/../../b", "\u0000", "~root", "$(rm -rf /)"]


def ev(name: object, user: object, time: object = T0, **props: object) -> bytes:
    return orjson.dumps({"event": name, "properties": {"distinct_id": user, "time": time, **props}})


def _every_file(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# --- output paths come from validated values only -------------------------------------------


def test_record_values_cannot_steer_where_a_file_is_written(tmp_path):
    lines = []
    for i, value in enumerate(STEERING):
        lines.append(ev(value, value, T0 + i, **{"$insert_id": f"i{i}", "day": value, value: value}))
        lines.append(orjson.dumps({"$distinct_id": value, "$set": {value: value}}))
        lines.append(orjson.dumps({"$group_key": value, "$group_id": value, "$set": {"x": value}}))
        lines.append(orjson.dumps({"event": "E", "properties": {"distinct_id": "u", "time": value}}))
    write_input(tmp_path / "in" / "a.ndjson", lines)
    out = tmp_path / "nested" / "out"
    assert run_cli("--input", str(tmp_path / "in" / "*"), "--output", str(out), "--reference-time", REF,
                   "--keep-superseded") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "nested"]
    assert sorted(p.name for p in (tmp_path / "nested").iterdir()) == ["out"]
    files = _every_file(out)
    assert all(LAYOUT.fullmatch(name) for name in files), files
    names = {e["event"] for e in read_json_lines(out, "events/")}
    assert set(STEERING) <= names  # written, as data, in the folder of their day


@pytest.mark.parametrize("route", [
    "events/day=2024-01-01", "superseded/day=1971-01-01", "profiles", "groups", "rejects",
])
def test_check_route_accepts_the_output_folders(route):
    assert check_route(route) == route


@pytest.mark.parametrize("route", [
    "events/day=../../x", "events/day=2024-01-01/../..", "/events/day=2024-01-01", "profiles/../x",
    "events/day=2024-1-1", "events/day=2024-01-01 ", "rejects\n", "", "superseded/day=2024-01-01x",
    "events/day=２０２４-01-01", "events", "day=2024-01-01", "groups/", None, 7,
])
def test_check_route_refuses_anything_else(route):
    with pytest.raises(ValueError, match="not an output folder"):
        check_route(route)


def test_the_writers_refuse_a_bad_route_before_writing_anything(tmp_path):
    writer = _WriteShard(str(tmp_path / "out" / "_temporary" / "r"), True, 1000)
    with pytest.raises(ValueError, match="not an output folder"):
        list(writer.process((("events/day=../../../escape", 0), [(0, [0], b"", [b"{}"])])))
    namer = _NameFiles(str(tmp_path / "out"), True)
    temp = _TempFile(0, 0, str(tmp_path / "t"), 1, 3)
    with pytest.raises(ValueError, match="not an output folder"):
        list(namer.process(("../escape", [temp])))
    assert list(tmp_path.rglob("*")) == []


# --- --overwrite removes only what the previous run listed ----------------------------------


def test_overwrite_never_removes_what_a_tampered_summary_points_outside_the_output(tmp_path):
    write_input(tmp_path / "in1" / "a.ndjson", [ev("A", "u", T0), ev("A", "u", T0 + 86400)])
    write_input(tmp_path / "in2" / "a.ndjson", [ev("B", "u", T0)])
    out = tmp_path / "out"
    assert run_cli("--input", str(tmp_path / "in1" / "*"), "--output", str(out), "--reference-time", REF) == 0
    victims = [tmp_path / "victim.txt", tmp_path / "in1" / "a.ndjson", out.parent / "elsewhere" / "x.gz"]
    victims[0].write_text("keep me")
    victims[2].parent.mkdir()
    victims[2].write_text("keep me too")
    listed = summary(out)
    listed["output"]["files"] += [
        {"path": "../victim.txt"}, {"path": str(victims[0])}, {"path": "../in1/a.ndjson"},
        {"path": "events/../../elsewhere/x.gz"}, {"path": "/"}, {"path": ".."}, {"path": ""},
    ]
    (out / "_SUMMARY.json").write_bytes(orjson.dumps(listed))
    assert run_cli("--input", str(tmp_path / "in2" / "*"), "--output", str(out), "--reference-time", REF,
                   "--overwrite") == 0
    assert all(v.exists() for v in victims)
    assert victims[0].read_text() == "keep me" and victims[2].read_text() == "keep me too"
    assert _every_file(out) == ["_REPORT.html", "_SCHEMA.json", "_SUCCESS", "_SUMMARY.json",
                                "events/day=2024-01-01/part-00000-of-00001.ndjson.gz"]


@pytest.mark.parametrize("intruder", [
    "events/day=2024-01-01/part-00007-of-00009.ndjson.gz",  # named like ours, not listed
    "_temporary/20240101T000000Z-deadbeef/events/day=2024-01-01/shard-00000-00000",  # a crashed run's
    "profiles/notes.txt",
])
def test_overwrite_refuses_a_location_holding_files_the_previous_run_did_not_list(tmp_path, capsys, intruder):
    write_input(tmp_path / "in" / "a.ndjson", [ev("A", "u", T0)])
    out = tmp_path / "out"
    assert run_cli("--input", str(tmp_path / "in" / "*"), "--output", str(out), "--reference-time", REF) == 0
    before = {name: (out / name).read_bytes() for name in _every_file(out)}
    (out / intruder).parent.mkdir(parents=True, exist_ok=True)
    (out / intruder).write_bytes(b"someone else's")
    assert run_cli("--input", str(tmp_path / "in" / "*"), "--output", str(out), "--reference-time", REF,
                   "--overwrite") == 2
    assert intruder.split("/")[0] in capsys.readouterr().err
    # Nothing removed, not even the previous run's _SUCCESS.
    assert {name: (out / name).read_bytes() for name in _every_file(out) if name != intruder} == before


# --- the quality gate -----------------------------------------------------------------------


def test_the_reject_ratio_gate_is_inclusive_and_a_failed_rerun_leaves_no_success(tmp_path, capsys):
    write_input(tmp_path / "in" / "a.ndjson", [ev("A", "u", T0), b"junk", ev("B", "u", T0), b"{", b"  "])
    out = tmp_path / "out"
    args = ("--input", str(tmp_path / "in" / "*"), "--output", str(out), "--reference-time", REF)
    assert run_cli(*args, "--max-reject-ratio", "0.5") == 0  # 2 of 4 non-blank lines: exactly the limit
    assert summary(out)["checks"]["reject_ratio"] == 0.5 and (out / "_SUCCESS").exists()
    capsys.readouterr()
    assert run_cli(*args, "--max-reject-ratio", "0.49", "--overwrite") == 1
    s = summary(out)
    assert s["passed"] is False and s["checks"]["reject_ratio_ok"] is False and s["balanced"] is True
    assert not (out / "_SUCCESS").exists(), "the previous run's _SUCCESS must not survive a failed rerun"
    assert "failed its checks" in capsys.readouterr().err
    assert (out / "events" / "day=2024-01-01" / "part-00000-of-00001.ndjson.gz").exists()


# --- logs hold no payloads ------------------------------------------------------------------

SECRET = "s3cr3t-payload"


def test_logs_of_a_run_hold_no_record_values(tmp_path, caplog, capsys):
    def secret(n: int) -> str:
        return f"{SECRET}-{n}"

    lines = [
        ev(secret(1), secret(2), T0, **{"$insert_id": "abc", "email": secret(3), secret(4): 1}),
        ev(secret(5), secret(6), T0 + 1),
        orjson.dumps({"$distinct_id": secret(7), "$set": {"name": secret(8)}}),
        orjson.dumps({"$group_key": "company", "$group_id": secret(9), "$set": {"plan": secret(10)}}),
        ("{" + secret(11)).encode(),  # invalid_json
        ev(secret(12), "null"),  # invalid_distinct_id, a placeholder
        orjson.dumps({"event": "E", "properties": {"distinct_id": secret(13), "time": secret(14)}}),
        orjson.dumps({"$distinct_id": secret(15), "$add": {"n": secret(16)}}),  # invalid_operation
        orjson.dumps(
            {"event": "E", "properties": {"distinct_id": "u", "time": T0, secret(17): {"a": {"b": {"c": {}}}}}}
        ),
        orjson.dumps({secret(18): 1}),  # unknown_record_type
        ("\xff" + secret(19)).encode("latin-1"),  # invalid_utf8
    ]
    write_input(tmp_path / "in" / "a.ndjson", lines)
    (tmp_path / "in" / "b.ndjson.gz").write_bytes(b"\x1f\x8b" + secret(20).encode())  # unreadable
    caplog.set_level(logging.DEBUG, logger="pipeline")
    caplog.set_level(logging.DEBUG, logger="transforms")
    status = run_cli("--input", str(tmp_path / "in" / "*"), "--output", str(tmp_path / "out"),
                     "--reference-time", REF, "--max-reject-ratio", "0.1", "--skip-unreadable-files")
    assert status == 1  # the gate failed: its ERROR log is among those checked
    logged = [r for r in caplog.records if r.name.startswith(("pipeline", "transforms"))]
    assert {r.levelno for r in logged} >= {logging.INFO, logging.WARNING, logging.ERROR}
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "")
        assert SECRET not in text, f"{record.name} logged a record value: {text[:200]}"
    assert SECRET not in capsys.readouterr().err  # logs and the headline
    # The values are in the data, where they belong.
    assert any(SECRET in r.get("line", "") for r in read_json_lines(tmp_path / "out", "rejects/"))
