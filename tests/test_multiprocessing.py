"""Several worker processes write the same files as one in-process run (DESIGN.md 3)."""

import random
from pathlib import Path

import orjson

from e2e import run_cli, run_cli_process, summary, write_input

REF = "2024-02-01T00:00:00Z"
T0 = 1_704_067_200  # 2024-01-01T00:00:00Z
RUN_FILES = ("_SUMMARY.json", "_SUCCESS", "_REPORT.html")
# Small ranges and files, so that both runs split the work into many bundles and shards.
SPLIT = ("--range-bytes", "16384", "--max-file-mb", "1", "--keep-superseded")


def _corpus(root: Path) -> None:
    """Events over three days, many re-sent by later uploads with changes, plus profiles,
    groups, rejects and blank lines, in plain and gzip files with distinct upload times."""
    rng = random.Random(20240201)
    padding = "x" * 200  # makes each day exceed --max-file-mb 1, so it gets several shards
    pool = [
        (rng.choice(["Signup", "Login", "Purchase"]), f"u{rng.randrange(300)}",
         T0 + rng.randrange(3 * 86400), f"id-{i}")
        for i in range(4000)
    ]
    for f in range(6):
        lines: list[bytes] = []
        for n in range(2500):
            kind = rng.random()
            if kind < 0.80:
                name, user, time, insert_id = rng.choice(pool)  # the same event in other uploads
                lines.append(orjson.dumps({"event": name, "properties": {
                    "distinct_id": user, "time": time, "$insert_id": insert_id,
                    "upload": f, "pad": padding}}))
            elif kind < 0.88:
                lines.append(orjson.dumps({"$distinct_id": f"u{rng.randrange(300)}",
                                           "$set": {"n": n, "file": f}}))
            elif kind < 0.91:
                lines.append(orjson.dumps({"$group_key": "company", "$group_id": 1 + rng.randrange(20),
                                           "$set": {"n": n}}))
            elif kind < 0.97:
                lines.append(rng.choice([b"{not json", b'{"event": "NoTime", "properties": {}}', b"[1]"]))
            else:
                lines.append(b"   ")
        suffix = ".ndjson.gz" if f % 3 == 0 else ".ndjson"
        write_input(root / f"upload-{f}{suffix}", lines, mtime=1_700_000_000 + 60 * f)


def _files(out: Path) -> dict[str, bytes]:
    """Every output file's bytes; in the run files, the run's id and folder are masked."""
    run_id = summary(out)["run_id"]
    files = {}
    for path in sorted(out.rglob("*")):
        if path.is_file():
            name = path.relative_to(out).as_posix()
            data = path.read_bytes()
            if name in RUN_FILES:
                data = data.replace(run_id.encode(), b"RUN_ID").replace(str(out).encode(), b"OUT")
            files[name] = data
    return files


def test_multi_processing_writes_the_same_files_as_in_process(tmp_path, small_read_ranges):
    _corpus(tmp_path / "raw")
    pattern = str(tmp_path / "raw" / "*")
    single, multi = tmp_path / "single", tmp_path / "multi"

    assert run_cli("--input", pattern, "--output", str(single), "--reference-time", REF, *SPLIT) == 0
    child = run_cli_process(
        "--input", pattern, "--output", str(multi), "--reference-time", REF, *SPLIT,
        "--direct_running_mode=multi_processing", "--direct_num_workers=2", small_read_ranges=True,
    )
    assert child.returncode == 0, child.stderr[-3000:]

    expected = _files(single)
    # The corpus exercises what could differ between the modes.
    s = summary(single)
    assert s["passed"] and s["output"]["superseded"] > 0 and s["output"]["rejected"] > 0
    assert s["output"]["profiles"] > 0 and s["output"]["groups"] > 0
    assert any("-of-00001." not in name for name in expected if name.startswith("events/")), (
        "some day must span several shards"
    )
    actual = _files(multi)
    assert sorted(actual) == sorted(expected)
    for name, data in expected.items():
        assert actual[name] == data, f"{name} differs between the two runs"
