"""Beam's portable runner, the job-service path Flink and Spark jobs take, writes what an in-process run writes.

`--runner PortableRunner --job_endpoint embed --environment_type LOOPBACK`
starts Beam's own job service in the launching process and submits the job to
it as a portable pipeline proto, as `--runner FlinkRunner`/`SparkRunner` do
to their job servers; LOOPBACK runs the SDK harness in the launching process.
The child process is offline (tests/offline.py): only loopback is reachable.
"""

from pathlib import Path

from e2e import run_cli, summary
from offline import BLOCKED_MARK, CLI, run_offline
from test_multiprocessing import REF, SPLIT, _corpus, _files

PORTABLE = ("--runner", "PortableRunner", "--job_endpoint", "embed", "--environment_type", "LOOPBACK")
# The --range-bytes floor lifted in the child, as the small_read_ranges fixture does here;
# and a note on stderr when the job goes through the job service (prepare, stage, run).
SUBMITTED = "portable test: job submitted to the job service"
PORTABLE_CLI = (
    "import pipeline.options\n"
    "pipeline.options.MIN_RANGE_BYTES = 1\n"
    "from apache_beam.runners.portability.portable_runner import JobServiceHandle\n"
    "submit = JobServiceHandle.submit\n"
    "def noted(self, proto_pipeline):\n"
    f"    print({SUBMITTED!r}, file=sys.stderr, flush=True)\n"
    "    return submit(self, proto_pipeline)\n"
    "JobServiceHandle.submit = noted\n"
) + CLI


def test_the_portable_runner_writes_the_same_files_as_in_process(tmp_path: Path, small_read_ranges):
    _corpus(tmp_path / "raw")
    pattern = str(tmp_path / "raw" / "*")
    in_process, portable = tmp_path / "in-process", tmp_path / "portable"

    assert run_cli("--input", pattern, "--output", str(in_process), "--reference-time", REF, *SPLIT) == 0
    child = run_offline(PORTABLE_CLI, "--input", pattern, "--output", str(portable), "--reference-time", REF,
                        *SPLIT, *PORTABLE, timeout=900)
    assert child.returncode == 0, child.stderr[-3000:]
    assert BLOCKED_MARK not in child.stderr
    assert child.stderr.count(SUBMITTED) == 1

    expected = _files(in_process)
    assert summary(in_process)["output"]["superseded"] > 0  # the corpus has work for every stage
    actual = _files(portable)
    assert sorted(actual) == sorted(expected)
    for name, data in expected.items():
        assert actual[name] == data, f"{name} differs between the in-process and the portable run"
    # The job's last step ran on the portable runner too: it removed the lock.
    assert not (portable / "_LOCK.json").exists()
