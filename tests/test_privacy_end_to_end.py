"""Privacy end to end (DESIGN.md §7): the real CLI on local files, on object storage, and a Dataflow dry run.

Outputs are read back and compared with pseudonyms computed here, with the
standard library's hmac, not with the code under test.
"""

import gzip
import hashlib
import hmac
import json
import random
import re
import shlex
import subprocess
from collections import Counter
from pathlib import Path

import orjson
import pytest
from apache_beam.portability.api import beam_runner_api_pb2

from e2e import read_output, run_cli, run_cli_process, summary, write_input
from offline import BLOCKED_MARK, CLI
from test_dataflow_job import Buckets, _dry_run_args, _every_payload_loads, _run, _top_level_steps
from test_determinism import FLAGS as DETERMINISM_FLAGS
from test_determinism import _corpus, _result
from test_object_storage import S3Store, gcs, gcs_env, run_remote, s3, store  # noqa: F401 (fixtures)
from transforms.rules import RuleConfig, classify

REF = "2024-02-01T00:00:00Z"
T = 1_704_067_200  # 2024-01-01T00:00:00Z
SECRET = "Zq-secret-HMAC-key-7731"  # distinctive, so that a leak is found by a plain search
CONFIG = RuleConfig(1_706_745_600)


def H(value: str) -> str:
    """The pseudonym of a string under SECRET, computed independently of the pipeline."""
    return hmac.new(SECRET.encode(), value.encode(), hashlib.sha256).hexdigest()


def line(record: dict) -> bytes:
    return orjson.dumps(record)


def event(name: str, **properties) -> bytes:
    return line({"event": name, "properties": properties})


def written(record: dict) -> bytes:
    """The clean line the rules write for `record` (its $insert_id generated as for any line)."""
    fate = classify(line(record), CONFIG)
    assert fate.line, fate
    return fate.line


# Two uploads: b.ndjson is the later one.
A = [
    event("Signup", time=T, distinct_id="alice", email="alice@x", **{"$insert_id": "a1"}),  # excluded
    event("Signup", time=T, distinct_id="bob", email="bob@x", plan="pro", **{"$insert_id": "b1"}),  # superseded
    event("Page", time=T + 60, distinct_id="bob", ctx={"email": "bob@x", "page": "/"}),  # superseded (see B[1])
    event("Page", time=T + 60, phone="555", **{"$device_id": "dev-1"}),  # no user: never excluded
    event("Page", time=T + 120, distinct_id=42),  # listed as "42": excluded
    line({"$distinct_id": "alice", "$set": {"plan": "free"}}),  # excluded
    line({"$distinct_id": "bob", "$set": {"email": "bob@x", "plan": "pro"}}),
    line({"$distinct_id": "carol", "$set": {"email": "carol@x"}}),  # nothing left to set: rejected
    line({"$group_key": "company", "$group_id": "acme", "$set": {"phone": "123"}}),
    b'{"event":"Buy","properties":{"time":1704067200,"distinct_id":"carol","email":"carol@secret.example"',
    b"",
]
B = [
    event("Signup", time=T + 5, distinct_id="bob", email="bob@new", plan="team", **{"$insert_id": "b1"}),
    # The same as A[2] once the email is gone: the same generated $insert_id, one event.
    event("Page", time=T + 60, distinct_id="bob", ctx={"email": "other@x", "page": "/"}),
]
DELETION_LIST = b"alice\n 42 \n\nnobody\n"
PRIVACY = ["--drop-property", "email", "--hash-property", "distinct_id,phone", "--keep-superseded",
           "--compression", "none"]


@pytest.fixture
def files(tmp_path):
    raw = tmp_path / "raw"
    write_input(raw / "a.ndjson", A, mtime=1_700_000_000)
    write_input(raw / "b.ndjson", B, mtime=1_700_000_100)
    key = tmp_path / "hmac.key"
    key.write_text(SECRET + "\n")  # the newline is not part of the key
    deletion_list = tmp_path / "deleted.txt"
    deletion_list.write_bytes(DELETION_LIST)
    return raw, key, deletion_list


def run_privately(files, out: Path, *extra: str) -> int:
    raw, key, deletion_list = files
    return run_cli("--input", str(raw / "*"), "--output", str(out), "--reference-time", REF, *PRIVACY,
                   "--hash-key-file", str(key), "--exclude-users", str(deletion_list), *extra)


EXPECTED_FILES = {
    "events/day=2024-01-01/part-00000-of-00001.ndjson": [
        written({"event": "Page", "properties": {"time": T + 60, "phone": H("555"), "$device_id": "dev-1"}}),
        line({"event": "Signup", "properties": {"time": T + 5, "distinct_id": H("bob"), "plan": "team",
                                                "$insert_id": "b1"}}),
        written({"event": "Page", "properties": {"time": T + 60, "distinct_id": H("bob"), "ctx": {"page": "/"}}}),
    ],
    "superseded/day=2024-01-01/part-00000-of-00001.ndjson": [
        line(
            {"event": "Signup", "properties": {"time": T, "distinct_id": H("bob"), "plan": "pro", "$insert_id": "b1"}}
        ),
        written({"event": "Page", "properties": {"time": T + 60, "distinct_id": H("bob"), "ctx": {"page": "/"}}}),
    ],
    "profiles/part-00000-of-00001.ndjson": [line({"$distinct_id": H("bob"), "$set": {"plan": "pro"}})],
    "groups/part-00000-of-00001.ndjson": [
        line({"$group_key": "company", "$group_id": "acme", "$set": {"phone": H("123")}})
    ],
}


def test_drop_hash_and_exclude_give_exactly_this_output(files, tmp_path):
    out = tmp_path / "out"
    assert run_privately(files, out) == 0

    output = read_output(out)
    for name, lines in EXPECTED_FILES.items():
        assert output[name] == lines, name
    rejects = [orjson.loads(r) for r in output["rejects/part-00000-of-00001.ndjson"]]
    # Rejects keep the raw line, privacy or not: they are raw data.
    assert [(r["reason"], r["offset"], r["line"].encode()) for r in rejects] == [
        ("invalid_operation", sum(len(x) + 1 for x in A[:7]), A[7]),
        ("invalid_json", sum(len(x) + 1 for x in A[:9]), A[9]),
    ]
    assert rejects[0]["detail"] == '$set is empty once --drop-property removed "email"'
    s = summary(out)
    assert s["output"]["events"] == 3 and s["output"]["superseded"] == 2
    assert s["output"]["profiles"] == 1 and s["output"]["groups"] == 1 and s["output"]["rejected"] == 2
    assert s["output"]["excluded"] == 3
    assert s["input"]["lines"] == 13 and s["input"]["blank_lines"] == 1
    assert s["balanced"] is True and s["passed"] is True
    assert s["privacy"] == {
        "dropped": {"email": 6},
        "hashed": {"distinct_id": 8, "phone": 2},
        "excluded": {"events": 2, "profiles": 1},
        "listed_ids": 3,
    }
    assert s["options"]["drop_property"] == ["email"]
    assert s["options"]["hash_property"] == ["distinct_id", "phone"]
    assert s["options"]["hash_key_file"] == str(files[1])
    assert s["options"]["exclude_users"] == str(files[2]) and s["options"]["redact_examples"] is False


def test_without_privacy_options_the_summary_says_nothing_was_done(files, tmp_path):
    out = tmp_path / "out"
    assert run_cli("--input", str(files[0] / "*"), "--output", str(out), "--reference-time", REF) == 0
    s = summary(out)
    assert s["output"]["excluded"] == 0
    assert s["privacy"] == {"dropped": {}, "hashed": {}, "excluded": {"events": 0, "profiles": 0},
                            "listed_ids": 0}
    assert s["options"]["hash_key_file"] is None and s["options"]["drop_property"] == []


def test_redacted_examples_leave_the_content_in_the_rejects_files_only(files, tmp_path):
    raw = files[0]
    write_input(raw / "c.ndjson", [b'{"event":"E","properties":{"time":1704067200,"distinct_id":"u","x":1,"x":2,'
                                   b'"card":"4111-1111"}}'], mtime=1_700_000_200)
    out = tmp_path / "out"
    done = run_cli_process("--input", str(raw / "*"), "--output", str(out), "--reference-time", REF,
                           "--redact-examples")
    assert done.returncode == 0, done.stderr
    s = summary(out)
    assert s["details"]["reject_examples"] == {
        "invalid_json": [{"source": str(raw / "a.ndjson"), "offset": sum(len(x) + 1 for x in A[:9])}],
    }
    assert s["details"]["duplicate_key_examples"] == [{"source": str(raw / "c.ndjson"), "offset": 0}]
    shown = done.stdout + done.stderr + (out / "_SUMMARY.json").read_text() + (out / "_REPORT.html").read_text()
    for secret in ("carol@secret.example", "4111-1111"):
        assert secret not in shown
    rejects = b"".join(read_output(out)["rejects/part-00000-of-00001.ndjson.gz"])
    assert b"carol@secret.example" in rejects


def _events(out: Path) -> tuple[Counter, int, dict]:
    """The written events with hashed ids made plain again and generated $insert_ids left out."""
    plain = {H(f"u{i}"): f"u{i}" for i in range(40)}
    events: Counter = Counter()
    for name, lines in read_output(out).items():
        if name.startswith("events/"):
            for raw in lines:
                record = orjson.loads(raw)
                properties = record["properties"]
                properties["distinct_id"] = plain.get(properties["distinct_id"], properties["distinct_id"])
                if not properties["$insert_id"].startswith("id-"):
                    del properties["$insert_id"]  # generated: over the hashed id, so another one
                events[orjson.dumps(record, option=orjson.OPT_SORT_KEYS)] += 1
    s = summary(out)
    return events, s["output"]["superseded"], s["output"]["events_by_day"]


def test_hashing_distinct_id_keeps_the_same_events_through_the_dedupe(tmp_path):
    rng = random.Random(13)
    pool = [(rng.choice(["A", "B"]), f"u{rng.randrange(40)}", T + rng.randrange(3 * 86_400), f"id-{i}")
            for i in range(300)]
    for f in range(3):
        lines = []
        for _ in range(400):
            name, user, time, insert_id = rng.choice(pool)
            properties = {"time": time, "distinct_id": user, "v": rng.randrange(3)}
            if rng.random() < 0.5:
                properties["$insert_id"] = insert_id
            lines.append(event(name, **properties))
        write_input(tmp_path / "raw" / f"{f}.ndjson", lines, mtime=1_700_000_000 + f)
    key = tmp_path / "k"
    key.write_text(SECRET)
    plain, hashed = tmp_path / "plain", tmp_path / "hashed"
    args = ["--input", str(tmp_path / "raw" / "*"), "--reference-time", REF]
    assert run_cli(*args, "--output", str(plain)) == 0
    assert run_cli(*args, "--output", str(hashed), "--hash-property", "distinct_id", "--hash-key-file", str(key)) == 0
    events, superseded, by_day = _events(plain)
    assert superseded > 100  # the corpus has plenty to deduplicate
    assert _events(hashed) == (events, superseded, by_day)


def test_privacy_output_is_the_same_with_other_ranges_and_two_worker_processes(tmp_path):
    raw = tmp_path / "raw"
    paths = _corpus(raw)
    key = tmp_path / "k"
    key.write_bytes(SECRET.encode())
    listed = tmp_path / "deleted.txt"
    listed.write_text("".join(f"u{i}\n" for i in range(0, 200, 3)))  # a third of the corpus's users
    flags = [*DETERMINISM_FLAGS, "--drop-property", "pad", "--hash-property", "distinct_id",
             "--hash-key-file", str(key), "--exclude-users", str(listed)]
    reference = tmp_path / "reference"
    assert run_cli(*[a for p in paths for a in ("--input", str(p))], "--output", str(reference), *flags) == 0
    files, s = _result(reference)
    assert s["output"]["excluded"] > 100 and s["output"]["events"] > 100 and s["balanced"] is True
    out = tmp_path / "workers"
    child = run_cli_process(
        *[a for p in reversed(paths) for a in ("--input", str(p))], "--output", str(out), "--range-bytes", "65521",
        *flags, "--direct_running_mode=multi_processing", "--direct_num_workers=2", small_read_ranges=True,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert _result(out) == (files, s)


# --- the key never shows ---------------------------------------------------------------------


def _leaks(text: str) -> bool:
    return SECRET in text or SECRET.encode().hex() in text


def test_the_key_shows_nowhere_a_run_writes_or_prints(files, tmp_path):
    raw, key, deletion_list = files
    out = tmp_path / "out"
    # A run that fails its checks logs them; one that is refused prints its error.
    done = run_cli_process("--input", str(raw / "*"), "--output", str(out), "--reference-time", REF, *PRIVACY,
                           "--hash-key-file", str(key), "--exclude-users", str(deletion_list),
                           "--max-reject-ratio", "0")
    assert done.returncode == 1, done.stderr
    assert not _leaks(done.stdout) and not _leaks(done.stderr)
    for path in out.rglob("*"):
        if path.is_file():
            assert not _leaks(path.read_bytes().decode("utf-8", "replace")), path
    assert str(key) in (out / "_SUMMARY.json").read_text() and str(key) in (out / "_REPORT.html").read_text()
    refused = run_cli_process("--input", str(raw / "*"), "--output", str(tmp_path / "other"), *PRIVACY,
                              "--hash-key-file", str(key), "--exclude-users", str(tmp_path / "missing.txt"))
    assert refused.returncode == 2 and not _leaks(refused.stdout + refused.stderr)
    assert not _leaks((Path(__file__).parent.parent / "metadata.json").read_text())


def test_a_dataflow_job_carries_the_key_file_path_and_its_functions_load_on_a_worker(gcs_emulator, tmp_path):
    """The options a Dataflow job shows hold the key file's path, never the key; the job's
    pickled stages (ExcludeUsers and the Scrubber's config among them) load on a worker."""
    buckets = Buckets(gcs_emulator)
    buckets.put(buckets.raw, "events/2024-02-29/part-1.ndjson", A[0] + b"\n")
    buckets.put(buckets.raw, "privacy/key", SECRET.encode())
    buckets.put(buckets.raw, "privacy/deleted.txt", DELETION_LIST)
    job_file = tmp_path / "job.json"
    child = _run(CLI, buckets, *_dry_run_args(buckets, job_file), "--drop-property", "email",
                 "--hash-property", "distinct_id", "--hash-key-file", f"gs://{buckets.raw}/privacy/key",
                 "--exclude-users", f"gs://{buckets.raw}/privacy/deleted.txt", "--redact-examples")
    assert child.returncode == 0, child.stderr
    assert BLOCKED_MARK not in child.stderr and not _leaks(child.stdout + child.stderr)
    description = job_file.read_text()
    assert not _leaks(description)
    options = json.loads(description)["environment"]["sdkPipelineOptions"]["options"]
    assert options["hash_key_file"] == f"gs://{buckets.raw}/privacy/key"
    assert options["exclude_users"] == f"gs://{buckets.raw}/privacy/deleted.txt"
    proto = beam_runner_api_pb2.Pipeline.FromString(buckets.get(options["pipelineUrl"]))
    steps = _top_level_steps(proto)
    assert steps.index("ValidateAndSplit") < steps.index("ExcludeUsers") < steps.index("DeduplicateEvents")
    loaded = _every_payload_loads(buckets, options, proto, tmp_path)
    assert {"transforms.exclude._ProbeUsers", "transforms.exclude._RemoveListed",
            "transforms.validate._ClassifyBatches"} <= {row["loaded"] for row in loaded}


# --- refused before any work -----------------------------------------------------------------


def test_help_lists_the_privacy_options():
    done = run_cli_process("--help")
    assert done.returncode == 0
    for flag in ("--drop-property", "--hash-property", "--hash-key-file", "--exclude-users", "--redact-examples"):
        assert flag in done.stdout


@pytest.mark.parametrize(
    "setup, flags, message",
    [
        pytest.param(None, ["--hash-property", "email", "--hash-key-file", "{tmp}/missing.key"],
                     "--hash-key-file: input pattern '{tmp}/missing.key' matches no file", id="missing_key_file"),
        pytest.param(None, ["--hash-property", "email", "--hash-key-file", "{tmp}"],
                     "--hash-key-file: input pattern '{tmp}' names a folder", id="key_file_is_a_folder"),
        pytest.param(b"\n", ["--hash-property", "email", "--hash-key-file", "{tmp}/k"],
                     "--hash-key-file '{tmp}/k' holds no key: it is empty (but for a newline)", id="empty_key"),
        pytest.param(None, ["--hash-property", "email"],
                     "--hash-property needs --hash-key-file: the file holding the secret key", id="no_key"),
        pytest.param(None, ["--exclude-users", "{tmp}/missing.txt"],
                     "--exclude-users: input pattern '{tmp}/missing.txt' matches no file", id="missing_list"),
        pytest.param(None, ["--drop-property", "time"],
                     "--drop-property time is refused: every event needs its time", id="refused_name"),
    ],
)
def test_what_privacy_cannot_do_is_refused_before_any_work(files, tmp_path, setup, flags, message):
    if setup is not None:
        (tmp_path / "k").write_bytes(setup)
    out = tmp_path / "out"
    done = run_cli_process("--input", str(files[0] / "*"), "--output", str(out),
                           *[f.replace("{tmp}", str(tmp_path)) for f in flags])
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("cloud-import-prep: error: " + message.replace("{tmp}", str(tmp_path)))
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr and done.stdout == ""
    assert not out.exists()


def test_a_deletion_list_that_cannot_be_read_to_its_end_fails_the_run(files, tmp_path, capsys):
    # Never skipped, whatever --skip-unreadable-files says: a lost deletion request is not a warning.
    raw, _, _ = files
    broken = tmp_path / "deleted.txt.gz"
    broken.write_bytes(gzip.compress(DELETION_LIST * 1000)[:-20])
    out = tmp_path / "out"
    status = run_cli("--input", str(raw / "*"), "--output", str(out), "--reference-time", REF,
                     "--exclude-users", str(broken), "--skip-unreadable-files")
    assert status == 1
    err = capsys.readouterr().err
    assert f"cloud-import-prep: error: {broken}: the compressed data ends early: the file is truncated\n" in err
    assert not (out / "_SUCCESS").exists()


# --- on object storage -----------------------------------------------------------------------


def test_key_and_deletion_list_on_object_storage_give_the_local_output(store, files, tmp_path):  # noqa: F811
    raw, _, _ = files
    for name in ("a.ndjson", "b.ndjson"):
        store.upload(f"in/{name}", (raw / name).read_bytes(), 1_700_000_000 if name == "a.ndjson" else 1_700_000_100)
    store.upload("privacy/hmac.key", (SECRET + "\r\n").encode(), 1_700_000_000)  # a CRLF is one newline too
    store.upload("privacy/deleted.txt.gz", gzip.compress(DELETION_LIST), 1_700_000_000)
    status = run_remote(store, [store.url("in/*")], store.url("out"), *PRIVACY,
                        "--hash-key-file", store.url("privacy/hmac.key"),
                        "--exclude-users", store.url("privacy/deleted.txt.gz"))
    assert status == 0
    remote = store.read_all("out/")
    for name, lines in EXPECTED_FILES.items():
        assert remote[name].splitlines() == lines, name
    s = orjson.loads(remote["_SUMMARY.json"])
    assert s["output"]["excluded"] == 3 and s["privacy"]["listed_ids"] == 3 and s["passed"] is True


def test_a_missing_key_object_is_refused_in_one_line(store, files, capsys):  # noqa: F811
    store.upload("in/a.ndjson", (files[0] / "a.ndjson").read_bytes(), 1_700_000_000)
    status = run_remote(store, [store.url("in/*")], store.url("out"), "--hash-property", "email",
                        "--hash-key-file", store.url("privacy/none.key"))
    assert status == 2
    err = capsys.readouterr().err
    assert err == (f"cloud-import-prep: error: --hash-key-file: input pattern '{store.url('privacy/none.key')}' "
                   "matches no file\n")
    assert err.count("\n") == 1
    assert list(store.read_all("")) == ["in/a.ndjson"]


# --- the worked example of docs/privacy.md --------------------------------------------------


def test_the_docs_privacy_example_gives_what_the_page_shows(tmp_path, monkeypatch):
    from test_deployment import _cli_commands_in_docs  # noqa: PLC0415

    page = (Path(__file__).parent.parent / "docs" / "privacy.md").read_text(encoding="utf-8")
    section = page.split("\n## A worked example\n", 1)[1].split("\n## ", 1)[0]
    (given, setup, shown) = re.findall(r"```(?:ndjson|sh)\n(.*?)```", section, re.S)
    write_input(tmp_path / "raw" / "export.ndjson", [x.encode() for x in given.splitlines()])
    for command in setup.splitlines()[:2]:  # the key and the list
        subprocess.run(["bash", "-c", command.split("#")[0]], cwd=tmp_path, check=True)
    (command,) = [c for c in _cli_commands_in_docs() if "--exclude-users deleted.txt" in c]
    monkeypatch.chdir(tmp_path)
    assert run_cli(*shlex.split(command)[1:]) == 0

    output = read_output(tmp_path / "prepared")
    assert [x.encode() for x in shown.splitlines()] == [
        *output["events/day=2024-01-01/part-00000-of-00001.ndjson.gz"],
        *output["profiles/part-00000-of-00001.ndjson.gz"],
    ]
    s = summary(tmp_path / "prepared")
    assert f'"excluded": {s["output"]["excluded"]}' in section
    assert json.loads(re.search(r'`"privacy": (\{.*\})`', section)[1]) == s["privacy"]


def test_excluded_users_are_not_in_the_schema(tmp_path):
    # _SCHEMA.json counts what was written: a run that excludes a user must
    # describe exactly what a run on the input without that user's lines does.
    # "carol" is the only user with a list-typed plan and a "Refund" event.
    lines = [
        event("Signup", time=T, distinct_id="alice", plan="free", **{"$insert_id": "s1"}),
        event("Signup", time=T, distinct_id="carol", plan=["x"], **{"$insert_id": "s2"}),
        event("Refund", time=T + 5, distinct_id="carol", amount=3, **{"$insert_id": "r1"}),
        event("Signup", time=T + 9, distinct_id="dave", plan="pro", **{"$insert_id": "s3"}),
        line({"$distinct_id": "carol", "$set": {"vip": True}}),
        line({"$distinct_id": "alice", "$set": {"vip": "no"}}),
    ]
    kept = [raw for raw in lines if b'"carol"' not in raw]
    write_input(tmp_path / "all" / "a.ndjson", lines)
    write_input(tmp_path / "kept" / "a.ndjson", kept)
    (tmp_path / "deleted.txt").write_text("carol\n")
    common = ("--reference-time", REF)
    assert run_cli("--input", str(tmp_path / "all" / "*"), "--output", str(tmp_path / "excluded"),
                   "--exclude-users", str(tmp_path / "deleted.txt"), *common) == 0
    assert run_cli("--input", str(tmp_path / "kept" / "*"), "--output", str(tmp_path / "plain"), *common) == 0

    def types_of(out: str) -> dict:
        schema = json.loads((tmp_path / out / "_SCHEMA.json").read_bytes())
        return {section: schema[section] for section in ("events", "profiles", "groups", "conflicts")}

    excluded = types_of("excluded")
    assert excluded == types_of("plain")
    assert sorted(excluded["events"]) == ["Signup"]
    assert excluded["events"]["Signup"]["properties"]["plan"]["types"] == {"string": 2}
    assert excluded["profiles"]["properties"]["vip"]["types"] == {"string": 1}
    assert summary(tmp_path / "excluded")["output"]["excluded"] == 3
