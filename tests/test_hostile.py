"""Big and hostile input: it is accounted for like any other, and nothing crashes.

A 50 MB line, JSON nested 10,000 levels deep, numbers no double can hold,
bytes that are not UTF-8, NUL bytes and stray carriage returns each become a
reject with a reason (or, where the rules allow, a clean record), and a
reject keeps the raw line byte for byte.
"""

import base64
import subprocess
import sys

import orjson
import pytest

from e2e import REPO, read_json_lines, run_cli, summary, write_input
from transforms.reasons import Kind, Reason
from transforms.rules import RuleConfig, classify

REF = "2024-02-01T00:00:00Z"
CONFIG = RuleConfig(1_706_745_600)
T0 = 1_704_067_200
BIG = 50 << 20  # 50 MiB
# The peak memory of a run over a 50 MiB line was 0.5 GiB here (0.18 GiB for a tiny
# input): an in-process runner holds a few copies of an element it shuffles.
MAX_RSS_BYTES = 1 << 30


def ev(name: str = "E", **props: object) -> bytes:
    return orjson.dumps({"event": name, "properties": {"distinct_id": "u", "time": T0, **props}})


def _kept(reject: dict) -> bytes:
    """The raw line a reject holds."""
    if "line" in reject:
        return reject["line"].encode("utf-8")
    return base64.b64decode(reject["line_base64"], validate=True)


_CHILD = """
import resource, sys
from pipeline.cli import main
status = main(sys.argv[1:])
print("peak_rss_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(status)
"""


def test_a_50_mb_line_is_rejected_as_record_too_large_in_bounded_memory(tmp_path):
    big = b'{"event":"Big","properties":{"time":%d,"distinct_id":"u","blob":"' % T0 + b"x" * BIG + b'"}}'
    before, after = ev("Before"), ev("After")
    write_input(tmp_path / "in" / "big.ndjson", [before, big, after], final_newline=False)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, "--input", str(tmp_path / "in" / "*"), "--output", str(out),
         "--reference-time", REF],
        capture_output=True, text=True, cwd=REPO, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    peak = int(done.stderr.rsplit("peak_rss_kib", 1)[1].split()[0]) * 1024
    assert peak < MAX_RSS_BYTES, f"peak RSS {peak >> 20} MiB"
    s = summary(out)
    assert s["output"]["rejected_by_reason"] == {"record_too_large": 1}
    assert s["output"]["events"] == 2 and s["balanced"] and s["passed"]
    (reject,) = read_json_lines(out, "rejects/")
    assert reject["reason"] == "record_too_large" and reject["offset"] == len(before) + 1
    assert _kept(reject) == big
    # The report's example is a glimpse, not the record.
    (example,) = s["details"]["reject_examples"]["record_too_large"]
    assert len(example["line"]) <= 300


def _deep_list(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def _deep_object(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


HOSTILE = {
    # name: (raw line, expected reason or kind)
    "list_10000_deep": (_deep_list(10_000), Reason.INVALID_JSON),
    "object_10000_deep": (_deep_object(10_000), Reason.INVALID_JSON),
    "event_property_10000_deep": (b'{"event":"E","properties":{"time":%d,"distinct_id":"u","p":' % T0
                                  + _deep_list(10_000) + b"}}", Reason.INVALID_JSON),
    "event_property_1000_deep_lists": (b'{"event":"E","properties":{"time":%d,"distinct_id":"u","p":' % T0
                                       + _deep_list(1000) + b"}}", Kind.EVENT),
    "event_property_1000_deep_objects": (b'{"event":"E","properties":{"time":%d,"distinct_id":"u","p":' % T0
                                         + _deep_object(1000) + b"}}", Reason.NESTING_TOO_DEEP),
    "profile_set_1000_deep": (b'{"$distinct_id":"p","$set":{"a":' + _deep_object(1000) + b"}}", Kind.PROFILE),
    "time_1e400": (b'{"event":"E","properties":{"time":1e400,"distinct_id":"u"}}', Reason.INVALID_JSON),
    "time_5000_digits": (b'{"event":"E","properties":{"time":' + b"9" * 5000 + b',"distinct_id":"u"}}',
                         Reason.INVALID_JSON),
    "time_string_5000_digits": (b'{"event":"E","properties":{"time":"' + b"9" * 5000 + b'","distinct_id":"u"}}',
                                Reason.TIME_OUT_OF_RANGE),
    "time_negative_huge": (b'{"event":"E","properties":{"time":-1.7e308,"distinct_id":"u"}}', Reason.TIME_OUT_OF_RANGE),
    "time_2_to_the_64": (b'{"event":"E","properties":{"time":18446744073709551616,"distinct_id":"u"}}',
                         Reason.TIME_OUT_OF_RANGE),
    "distinct_id_2_to_the_70": (b'{"event":"E","properties":{"time":%d,"distinct_id":1180591620717411303424}}' % T0,
                                Reason.INVALID_DISTINCT_ID),
    "property_huge_int": (b'{"event":"E","properties":{"time":%d,"distinct_id":"u","n":%d}}' % (T0, 2**64 - 1),
                          Kind.EVENT),
    "nul_alone": (b"\x00", Reason.INVALID_JSON),
    "nul_in_string": (b'{"event":"E\x00","properties":{"time":%d,"distinct_id":"u"}}' % T0, Reason.INVALID_JSON),
    "escaped_nul": (b'{"event":"E\\u0000","properties":{"time":%d,"distinct_id":"u"}}' % T0, Kind.EVENT),
    "latin1": (b'{"event":"caf\xe9","properties":{"time":%d,"distinct_id":"u"}}' % T0, Reason.INVALID_UTF8),
    "overlong_slash": (b"\xc0\xaf", Reason.INVALID_UTF8),
    "encoded_surrogate": (b'"\xed\xa0\x80"', Reason.INVALID_UTF8),
    "escaped_lone_surrogate": (b'{"event":"\\ud800","properties":{"time":1,"distinct_id":"u"}}', Reason.INVALID_JSON),
    "bom_inside_a_file": (b"\xef\xbb\xbf" + ev("Bom"), Reason.INVALID_JSON),
    "carriage_return_inside": (b"{\"a\r\":1}\rx", Reason.INVALID_JSON),
    "only_nul_and_ff": (b"\x00\xff" * 100, Reason.INVALID_UTF8),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_lines_get_the_expected_fate(name):
    line, expected = HOSTILE[name]
    fate = classify(line, CONFIG)
    if isinstance(expected, Reason):
        assert (fate.kind, fate.reason) == (Kind.REJECT, expected), fate.detail
    else:
        assert fate.kind == expected, (fate.reason, fate.detail)
        assert orjson.loads(fate.line)  # the written line is valid JSON again


def test_hostile_lines_in_a_run_are_accounted_for_and_rejects_keep_them_byte_for_byte(tmp_path):
    lines = [line for line, _ in HOSTILE.values()]
    # Endings the reader removes: a trailing \r once, a \r\n. What stays is kept.
    lines += [b"\xff\xfe\x00abc\r", b"{oops\r\r", b"\x00" * 10]
    write_input(tmp_path / "in" / "hostile.ndjson", lines)
    write_input(tmp_path / "in" / "hostile.ndjson.gz", lines[::-1], ending=b"\r\n")
    out = tmp_path / "out"
    assert run_cli("--input", str(tmp_path / "in" / "*"), "--output", str(out), "--reference-time", REF) == 0
    s = summary(out)
    assert s["balanced"] and s["input"]["lines"] == 2 * len(lines)
    accepted = sum(1 for _, expected in HOSTILE.values() if isinstance(expected, Kind))
    assert s["output"]["rejected"] == 2 * (len(lines) - accepted)

    expected = {}
    for suffix, ordered, ending in ((".ndjson", lines, b"\n"), (".ndjson.gz", lines[::-1], b"\r\n")):
        offset = 0
        for line in ordered:
            kept = line[:-1] if ending == b"\n" and line.endswith(b"\r") else line
            expected[(suffix, offset)] = kept
            offset += len(line) + len(ending)
    rejects = read_json_lines(out, "rejects/")
    assert len(rejects) == s["output"]["rejected"]
    for reject in rejects:
        suffix = ".ndjson.gz" if reject["source"].endswith(".gz") else ".ndjson"
        assert _kept(reject) == expected[(suffix, reject["offset"])], reject["reason"]
    by_reason = s["output"]["rejected_by_reason"]
    assert by_reason["invalid_utf8"] >= 10 and by_reason["invalid_json"] >= 20


def test_a_small_fuzz_run_finds_no_crash_and_the_pipeline_agrees(tmp_path, capsys):
    """benchmarks/fuzz.py at a CI-sized scale (the full run is 100,000 lines)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # benchmarks/ is a folder of the repo, not an installed package
    from benchmarks import fuzz  # noqa: PLC0415

    assert fuzz.main(["--lines", "2500", "--seed", "3", "--workdir", str(tmp_path)]) == 0
    figures = orjson.loads(capsys.readouterr().out)
    assert figures["classifier"]["crashes"] == 0
    assert figures["pipeline"]["problems"] == [] and figures["pipeline"]["lines"] == 2500
    assert len(figures["fates"]) >= 15  # the generator reaches most rules
