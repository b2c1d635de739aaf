"""Read throughput of one large object on the GCS emulator beside the same file on local disk.

Writes a deterministic NDJSON file (200 MB by default), uploads it to a
gcp-storage-emulator started on a free 127.0.0.1 port (tests/emulators.py),
then reads both copies with the pipeline's own reading code: the file is
listed and cut into ranges as ReadRawLines does (`match_inputs`,
`plan_ranges`, --range-bytes), and each range is read by the reader
`_ReadRange` uses: the listed version opened (ranged GETs of the listed GCS
generation; a local file checked against its listed size and time), its first
bytes looked at, a seek to the range's start, 8 MB chunks split into lines by
`iter_line_batches`. Prints MB/s per run and the median of the runs for each;
checks that both copies give the same number of lines. Figures only, nothing
is asserted about speed.

The emulator is a single-process Python HTTP server: its figure bounds the
product's remote-read path from below (HTTP, the storage client, chunking);
real GCS throughput depends on the network and on how many workers read
ranges at once.

Examples:
  .venv/bin/python benchmarks/read_throughput.py
  .venv/bin/python benchmarks/read_throughput.py --mb 50 --runs 5
"""


import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the emulator launcher

from apache_beam.internal.gcp import auth  # noqa: E402

from emulators import gcs_emulator  # noqa: E402
from pipeline.inputs import match_inputs  # noqa: E402
from pipeline.options import DEFAULT_RANGE_BYTES  # noqa: E402
from pipeline.stores import opener_factory  # noqa: E402
from transforms.ranges import plan_ranges  # noqa: E402
from transforms.read import _RangeReader  # noqa: E402

MB = 1_000_000


def write_corpus(path: Path, size: int) -> int:
    """A deterministic NDJSON file of about `size` bytes; returns its line count."""
    lines = 0
    with open(path, "wb") as out:
        written = 0
        block = []
        while written < size:
            line = (
                b'{"event":"Play","properties":{"distinct_id":"u%d","time":%d,"song":"s%d","pad":"%s"}}\n'
                % (lines % 9973, 1704067200 + lines, lines % 511, b"x" * (lines % 61))
            )
            block.append(line)
            written += len(line)
            lines += 1
            if len(block) == 10_000:
                out.write(b"".join(block))
                block = []
        out.write(b"".join(block))
    return lines


def read_all(path: str, size: int, range_bytes: int) -> int:
    """Reads every line of `path` range by range, as the pipeline does; returns the count."""
    (listed,) = match_inputs([path])
    assert listed.size == size
    reader = _RangeReader(opener_factory(None))
    count = 0
    for file_range in plan_ranges(0, path, size, False, range_bytes, listed.version):
        for _offsets, lines in reader.batches(file_range):
            count += len(lines)
    return count


def measure(label: str, path: str, size: int, range_bytes: int, runs: int) -> tuple[float, int]:
    rates = []
    count = 0
    for run in range(1, runs + 1):
        start = time.perf_counter()
        count = read_all(path, size, range_bytes)
        seconds = time.perf_counter() - start
        rates.append(size / MB / seconds)
        print(f"{label:>6} run {run}: {seconds:6.2f} s  {rates[-1]:7.1f} MB/s  {count} lines", flush=True)
    return statistics.median(rates), count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=200, help="size of the object in MB (10^6 bytes)")
    parser.add_argument("--runs", type=int, default=3, help="reads of each copy; the median is reported")
    parser.add_argument("--range-bytes", type=int, default=DEFAULT_RANGE_BYTES,
                        help="range size, as the pipeline's flag")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="read-throughput-") as tmp:
        local = Path(tmp) / "big.ndjson"
        lines = write_corpus(local, args.mb * MB)
        size = local.stat().st_size
        print(f"file: {size / MB:.1f} MB, {lines} lines, ranges of {args.range_bytes} bytes")
        with gcs_emulator(Path(tmp) / "emulator") as emulator:
            os.environ["STORAGE_EMULATOR_HOST"] = emulator.url
            os.environ["NO_GCE_CHECK"] = "true"
            # No Google credential discovery (~20 s of retries, BEAM_NOTES 10): anonymous.
            auth._Credentials._credentials_init = True
            auth._Credentials._credentials = None
            from google.cloud.storage import Client  # noqa: PLC0415

            client = Client(project="bench")
            bucket = client.create_bucket("read-throughput")
            start = time.perf_counter()
            bucket.blob("big.ndjson").upload_from_filename(str(local))
            print(f"upload to the emulator: {time.perf_counter() - start:.1f} s")

            local_rate, local_lines = measure("local", str(local), size, args.range_bytes, args.runs)
            gcs_rate, gcs_lines = measure("gcs", "gs://read-throughput/big.ndjson", size, args.range_bytes, args.runs)
    if local_lines != lines or gcs_lines != lines:
        print(f"line counts differ: written {lines}, local {local_lines}, gcs {gcs_lines}", file=sys.stderr)
        return 1
    print(f"median of {args.runs}: local disk {local_rate:.1f} MB/s, GCS emulator {gcs_rate:.1f} MB/s "
          f"({gcs_rate / local_rate:.2f}x local)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
