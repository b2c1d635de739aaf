"""Fuzz run: many hostile generated lines through the record rules and through the pipeline.

Generates N lines (default 100,000; deterministic for a seed): random bytes,
valid events, profile and group updates mutated byte by byte (cuts, stray
bytes, NUL, CR, invalid UTF-8), JSON-like text no serialiser writes (NaN,
1e400, 5,000-digit numbers, lone surrogates, duplicate keys), nesting up to
10,000 levels and a few lines over the 1,000,000-byte record limit. Then:

1. classify() on every line, counting crashes (any exception: the rules must
   be total) and the fates;
2. the real CLI (in-process FnApiRunner) on the same lines written as files
   (plain, gzip, CRLF), checking that it exits 0, that its books balance,
   that it counted every line and that its figures are the classifier's.

Prints one JSON object of figures; the exit status is 1 if anything crashed
or disagreed. Examples:
  python benchmarks/fuzz.py
  python benchmarks/fuzz.py --lines 1000000 --seed 2
"""

import argparse
import contextlib
import gzip
import io
import json
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script (python benchmarks/fuzz.py): make the package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from transforms.ranges import BOM
from transforms.reasons import Kind
from transforms.rules import RuleConfig, classify

REFERENCE_TIME = "2024-02-01T00:00:00Z"
REFERENCE_SECONDS = 1_706_745_600
FILES = 4  # the lines are spread over this many input files
T0 = 1_704_067_200

_ODD = [
    b"null", b"true", b"false", b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e-400", b"9" * 5000,
    b"18446744073709551616", b"-0", b"01", b"1.", b".5", b"+1", b'"\\ud800"', b'"\\u0000"', b'"\x00"',
    b'"\xff"', b'"\xed\xa0\x80"', b'""', b'" "', b'"null"', b'"0"', b'"anon"', b"1704067200",
    b"1704067200000", b'"2024-01-01T00:00:00Z"', b'"2024-02-30"', b"[]", b"{}", b"1.7e308", b"-1.7e308",
]
_KEYS = [
    b'"event"', b'"properties"', b'"time"', b'"distinct_id"', b'"$insert_id"', b'"$device_id"',
    b'"$distinct_id"', b'"$group_key"', b'"$group_id"', b'"$set"', b'"$set_once"', b'"$add"',
    b'"$union"', b'"$append"', b'"$remove"', b'"$unset"', b'"$delete"', b'"$token"', b'"x"', b'""',
]
_STRAY = [b"\x00", b"\xff", b"\xc3", b"\r", b",", b"}", b"]", b'"', b"\\", b"\xef\xbb\xbf", b" ", b"\t"]


def _scalar(rng: random.Random) -> bytes:
    pick = rng.random()
    if pick < 0.4:
        return rng.choice(_ODD)
    if pick < 0.6:
        return str(rng.randint(-(2**70), 2**70)).encode()
    if pick < 0.8:
        return orjson.dumps(rng.uniform(-1e12, 1e13))
    return orjson.dumps("".join(chr(rng.randint(1, 0x2FFF)) for _ in range(rng.randint(0, 8))))


def _value(rng: random.Random, depth: int = 0) -> bytes:
    pick = rng.random()
    if depth > 4 or pick < 0.5:
        return _scalar(rng)
    if pick < 0.75:
        items = [_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]
        return b"[" + b",".join(items) + b"]"
    pairs = [rng.choice(_KEYS) + b":" + _value(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    return b"{" + b",".join(pairs) + b"}"


def _deep(rng: random.Random) -> bytes:
    levels = rng.choice([50, 300, 1000, 1023, 1024, 1025, 3000, 10_000])
    if rng.random() < 0.5:
        inner = b"[" * levels + b"]" * levels
    else:
        inner = b'{"a":' * levels + b"1" + b"}" * levels
    return b'{"event":"Deep","properties":{"time":%d,"distinct_id":"u","p":%s}}' % (T0, inner)


def _event(rng: random.Random, n: int) -> bytes:
    props: dict[str, Any] = {"time": T0 + rng.randrange(86400 * 30), "distinct_id": f"u{rng.randrange(1000)}", "n": n}
    if rng.random() < 0.5:
        props["$insert_id"] = f"id-{rng.randrange(50_000)}"
    if rng.random() < 0.2:
        props["time"] = rng.choice([props["time"] * 1000, str(props["time"]), props["time"] + 0.5])
    return orjson.dumps({"event": rng.choice(["Play", "Buy", "Login"]), "properties": props})


def _at_a_limit(rng: random.Random, n: int) -> bytes:
    """An event at or just over one of Mixpanel's limits (properties, keys, list length, fields)."""
    count = rng.choice([253, 254, 255, 300])
    props: dict = {"time": T0, "distinct_id": "u", "n": n}
    pick = rng.random()
    if pick < 0.25:
        props.update({f"p{i}": i for i in range(count - 3)})
    elif pick < 0.5:
        props["wide"] = {f"k{i}": i for i in range(count)}
    elif pick < 0.75:
        props["long"] = list(range(count))
    else:
        return orjson.dumps({"event": "E", "properties": props, "extra": n})
    return orjson.dumps({"event": "E", "properties": props})


def _update(rng: random.Random) -> bytes:
    op = rng.choice(["$set", "$set_once", "$add", "$union", "$append", "$remove", "$unset", "$delete"])
    value = {"$unset": ["a"], "$delete": "", "$add": {"n": 1}, "$union": {"l": [1]}}.get(op, {"a": 1})
    if rng.random() < 0.5:
        return orjson.dumps({"$distinct_id": f"u{rng.randrange(1000)}", op: value})
    return orjson.dumps({"$group_key": "company", "$group_id": rng.randrange(100), op: value})


def _mutate(rng: random.Random, line: bytes) -> bytes:
    for _ in range(rng.randint(1, 3)):
        at = rng.randint(0, len(line))
        how = rng.random()
        if how < 0.3:
            line = line[:at]
        elif how < 0.6:
            line = line[:at] + rng.choice(_STRAY) + line[at:]
        elif how < 0.8:
            line = line[:at] + line[at + 1 :]
        else:
            line = line[:at] + rng.choice(_ODD) + line[at:]
    return line


def hostile_line(rng: random.Random, n: int) -> bytes:
    """One generated line, without a newline in it (the files keep one line per line)."""
    pick = rng.random()
    if pick < 0.10:
        line = rng.randbytes(rng.randint(0, 120))
    elif pick < 0.35:
        line = _event(rng, n)
    elif pick < 0.45:
        line = _update(rng)
    elif pick < 0.65:
        line = _mutate(rng, _event(rng, n) if rng.random() < 0.7 else _update(rng))
    elif pick < 0.85:
        if rng.random() < 0.5:
            line = _value(rng)
        else:
            line = b'{"event":' + _scalar(rng) + b',"properties":' + _value(rng) + b"}"
    elif pick < 0.88:
        line = rng.choice([b"", b" ", b"\t", b" \t \r"])
    elif pick < 0.9:
        line = _at_a_limit(rng, n)
    elif pick < 0.9995:
        line = _mutate(rng, _deep(rng)) if rng.random() < 0.3 else _deep(rng)
    else:  # about 1 in 2,000: over the record size limit
        line = b'{"event":"Big","properties":{"time":%d,"distinct_id":"u","blob":"%s"}}' % (
            T0, b"x" * rng.randint(999_900, 1_200_000))
    return line.replace(b"\n", b"\\n")


def generate(lines: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [hostile_line(rng, n) for n in range(lines)]


def run_classifier(lines: Sequence[bytes], config: RuleConfig) -> tuple[Counter, list[str], float]:
    """Classifies every line; returns the fates, the crashes (as text) and the seconds taken."""
    fates: Counter = Counter()
    crashes = []
    start = time.perf_counter()
    for line in lines:
        try:  # a fuzz harness: any exception is a finding, counted rather than raised
            fate = classify(line, config)
        except Exception as err:  # noqa: BLE001
            crashes.append(f"{type(err).__name__}: {err} on {line[:80]!r}")
            continue
        if fate.kind == Kind.REJECT:
            assert fate.reason is not None  # a reject always names its reason
            fates[fate.reason.value] += 1
        else:
            fates[fate.kind.name.lower()] += 1
    return fates, crashes, time.perf_counter() - start


def _as_read(lines: Sequence[bytes], ending: bytes) -> list[bytes]:
    """The lines as the reader gives them back: one trailing \\r dropped, a first BOM skipped."""
    if ending == b"\r\n":
        out = list(lines)  # the \r before \n is the one dropped; a \r of the line itself stays
    else:
        out = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    if out and out[0].startswith(BOM):
        out[0] = out[0][3:]
    return out


def run_pipeline(lines: Sequence[bytes], folder: Path, config: RuleConfig) -> dict:
    """Runs the CLI on the lines (as FILES files); returns figures and what disagreed."""
    from pipeline.cli import main as pipeline_main  # noqa: PLC0415

    raw = folder / "raw"
    raw.mkdir(parents=True)
    size = -(-len(lines) // FILES)
    expected: Counter = Counter()
    for i in range(FILES):
        part = list(lines[i * size : (i + 1) * size])
        ending = b"\r\n" if i == 2 else b"\n"
        data = ending.join(part) + ending
        name = f"part-{i}.ndjson" + (".gz" if i == 1 else "")
        (raw / name).write_bytes(gzip.compress(data, 1) if name.endswith(".gz") else data)
        for line in _as_read(part, ending):
            fate = classify(line, config)
            expected[fate.kind] += 1
    out = folder / "out"
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the CLI prints its summary there
        status = pipeline_main(["--input", str(raw / "*"), "--output", str(out), "--reference-time", REFERENCE_TIME,
                                "--range-bytes", str(4 << 20), "--runner", "FnApiRunner"])
    seconds = time.perf_counter() - start
    summary = json.loads((out / "_SUMMARY.json").read_bytes()) if (out / "_SUMMARY.json").exists() else None
    problems = []
    if status != 0 or summary is None:
        problems.append(f"exit status {status}")
    else:
        o = summary["output"]
        got = {
            Kind.BLANK: summary["input"]["blank_lines"],
            Kind.EVENT: o["events"] + o["superseded"],
            Kind.PROFILE: o["profiles"],
            Kind.GROUP: o["groups"],
            Kind.REJECT: o["rejected"],
        }
        if summary["input"]["lines"] != len(lines):
            problems.append(f"lines {summary['input']['lines']} != {len(lines)}")
        if not summary["balanced"]:
            problems.append("books do not balance")
        if got != {kind: expected[kind] for kind in got}:
            problems.append(f"pipeline {got} != classifier {dict(expected)}")
    return {"exit_status": status, "seconds": round(seconds, 2), "problems": problems,
            "lines": summary["input"]["lines"] if summary else None,
            "balanced": summary["balanced"] if summary else None}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=100_000, help="Lines to generate. Example: --lines 1000000")
    parser.add_argument("--seed", type=int, default=1, help="Generator seed. Example: --seed 2")
    parser.add_argument("--no-pipeline", action="store_true", help="Only run the classifier.")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="Where to write the input and output (default: a temporary folder, removed).")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    lines = generate(args.lines, args.seed)
    generated = time.perf_counter() - start
    config = RuleConfig(REFERENCE_SECONDS)
    fates, crashes, seconds = run_classifier(lines, config)
    figures: dict = {
        "lines": len(lines),
        "seed": args.seed,
        "bytes": sum(len(line) + 1 for line in lines),
        "generate_seconds": round(generated, 2),
        "classifier": {"crashes": len(crashes), "seconds": round(seconds, 2),
                       "lines_per_second": round(len(lines) / seconds) if seconds else None,
                       "first_crashes": crashes[:5]},
        "fates": dict(fates.most_common()),
    }
    failed = bool(crashes)
    if not args.no_pipeline:
        if args.workdir is None:
            with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
                figures["pipeline"] = run_pipeline(lines, Path(folder), config)
        else:
            figures["pipeline"] = run_pipeline(lines, args.workdir, config)
        failed = failed or bool(figures["pipeline"]["problems"])
    print(json.dumps(figures, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
