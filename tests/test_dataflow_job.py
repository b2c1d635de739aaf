"""The Dataflow launch paths, built by Beam's own DataflowRunner, offline.

Each job is built by the real CLI (or the Flex Template launcher's main file)
with `--runner DataflowRunner --dry_run=True` against the GCS emulator, in a
child process where anything that reaches for Google fails at once
(tests/offline.py). `--dataflow_job_file` makes the dry run stage the job's
files on the emulator and write the job description Dataflow would receive;
its pipeline proto is then read back from the staging bucket, as Dataflow
reads it, and every pickled function in it is loaded in a fresh process
(tests/job_payloads.py), as a worker loads it from this project's image.
"""

import json
import re
import shlex
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from apache_beam.portability.api import beam_runner_api_pb2
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

import job_payloads
from offline import BLOCKED_MARK, CLI, REPO, offline_env, run_offline

# The top-level steps, as the Dataflow UI lists them (and metric names use them).
STEPS = [
    "ReadRawLines",
    "ValidateAndSplit",
    "DeduplicateEvents",
    "JoinUpdatesAndRejects",
    "GroupUpdatesAndRejects",
    "WritePartitions",
    "JoinTallies",
    "MergeTallies",
    "CollectReportFigures",
    "JoinSchemaCounts",
    "CollectSchema",
    "WriteSummary",
]
# Modules of this project whose functions the job pickles: one per stage at least.
STAGE_MODULES = {
    "transforms.read", "transforms.validate", "transforms.dedupe", "transforms.write", "pipeline.summary",
    "pipeline.schema",
}
IMAGE = "us-central1-docker.pkg.dev/my-project/pipelines/cloud-import-prep:1.0.0"
LINE = b'{"event": "Signup", "properties": {"distinct_id": "u1", "time": 1704067200}}\n'
LOAD_PAYLOADS = "import job_payloads\nsys.exit(job_payloads.main(sys.argv[1:]))\n"
# What the Flex Template launcher runs: the file, as __main__ (FLEX_TEMPLATE_PYTHON_PY_FILE).
FLEX_MAIN = (
    "import runpy\n"
    "sys.argv = ['flex_template_main.py', *sys.argv[1:]]\n"
    "runpy.run_path('scheduling/flex_template_main.py', run_name='__main__')\n"
)


class Buckets:
    """Raw, prepared and Dataflow buckets of one test on the session's GCS emulator."""

    def __init__(self, emulator) -> None:  # type: ignore[no-untyped-def]
        suffix = uuid.uuid4().hex[:8]
        self.emulator = emulator
        self.raw, self.prepared, self.dataflow = (f"{kind}-{suffix}" for kind in ("raw", "prepared", "dataflow"))
        self.client = storage.Client(
            project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": emulator.url}
        )
        for bucket in (self.raw, self.prepared, self.dataflow):
            self.client.create_bucket(bucket)

    def put(self, bucket: str, name: str, data: bytes) -> None:
        self.client.bucket(bucket).blob(name).upload_from_string(data)

    def get(self, url: str) -> bytes:
        bucket, _, name = url.removeprefix("gs://").partition("/")
        return self.client.bucket(bucket).blob(name).download_as_bytes()

    def names(self, bucket: str) -> list[str]:
        return sorted(blob.name for blob in self.client.list_blobs(bucket))

    def dataflow_args(self, *extra: str) -> list[str]:
        """What a DataflowRunner launch from docs/dataflow.md passes besides the paths."""
        return [
            "--runner", "DataflowRunner", "--project", "my-project", "--region", "us-central1",
            "--temp_location", f"gs://{self.dataflow}/tmp", "--sdk_container_image", IMAGE, *extra,
        ]


@pytest.fixture
def buckets(gcs_emulator):  # type: ignore[no-untyped-def]
    found = Buckets(gcs_emulator)
    found.put(found.raw, "events/2024-02-29/part-1.ndjson", LINE)
    return found


def _run(code: str, buckets: Buckets, *args: str):  # type: ignore[no-untyped-def]
    return run_offline(code, *args, env=offline_env(buckets.emulator.url))


def _loaded_payloads(pipeline: bytes, tmp_path: Path, *extra: str) -> tuple[int, list[dict], str]:
    """Loads every pickled payload of `pipeline` in a fresh, offline process."""
    path = tmp_path / "pipeline.pb"
    path.write_bytes(pipeline)
    child = run_offline(LOAD_PAYLOADS, str(path), *extra)
    return child.returncode, [json.loads(line) for line in child.stdout.splitlines()], child.stderr


def _every_payload_loads(buckets: Buckets, options: dict, proto: beam_runner_api_pb2.Pipeline,
                         tmp_path: Path) -> list[dict]:
    """Loads the job's pickled payloads and staged main session as a worker would; checks each loaded."""
    session = tmp_path / "pickled_main_session"
    session.write_bytes(buckets.get(options["pipelineUrl"].rsplit("/", 1)[0] + "/pickled_main_session"))
    status, loaded, stderr = _loaded_payloads(
        proto.SerializeToString(), tmp_path, "--pickle_library", options["pickle_library"],
        "--main_session", str(session),
    )
    assert status == 0, stderr
    assert [row for row in loaded if "error" in row] == []
    pickled = [p for p in job_payloads.payloads(proto) if p[1] in job_payloads.PICKLED_URNS]
    assert len(loaded) == len(pickled) + 1  # every one of them, and the main session
    return loaded


def _top_level_steps(proto: beam_runner_api_pb2.Pipeline) -> list[str]:
    (root,) = proto.root_transform_ids
    return [proto.components.transforms[t].unique_name for t in proto.components.transforms[root].subtransforms]


def _container_images(proto: beam_runner_api_pb2.Pipeline) -> set[str]:
    return {
        beam_runner_api_pb2.DockerPayload.FromString(env.payload).container_image
        for env in proto.components.environments.values()
    }


def _flags(args: list[str]) -> set[str]:
    return {arg.split("=", 1)[0] for arg in args if arg.startswith("--")}


def _dry_run_args(buckets: Buckets, job_file: Path) -> list[str]:
    """The dry-run command of docs/dataflow.md, on this test's buckets."""
    return [*buckets.dataflow_args("--dry_run=True", f"--dataflow_job_file={job_file}"),
            "--input", f"gs://{buckets.raw}/events/{{date-1}}/**",
            "--output", f"gs://{buckets.prepared}/mixpanel/{{date-1}}", "--run_date", "2024-03-01"]


def test_the_docs_dry_run_command_is_the_one_tested_here(tmp_path):
    from test_deployment import _cli_commands_in_docs  # noqa: PLC0415

    (command,) = [c for c in _cli_commands_in_docs() if "--dry_run=True" in c]
    names = Buckets.__new__(Buckets)  # bucket names only: no emulator needed
    names.raw, names.prepared, names.dataflow = "raw", "prepared", "dataflow"
    assert _flags(shlex.split(command)) == _flags(_dry_run_args(names, tmp_path / "job.json"))


def test_the_dataflow_job_has_stable_step_names_and_every_pickled_function_loads_on_a_worker(buckets, tmp_path):
    job_file = tmp_path / "job.json"
    child = _run(CLI, buckets, *_dry_run_args(buckets, job_file))
    assert child.returncode == 0, child.stderr
    assert child.stdout == (
        "cloud-import-prep: dry run: the Dataflow job was built and not submitted; nothing was written to "
        f"gs://{buckets.prepared}/mixpanel/2024-02-29; its description is in {job_file}\n"
    )
    assert BLOCKED_MARK not in child.stderr  # nothing tried to reach Google
    assert buckets.names(buckets.prepared) == []  # no lock, no probe: the output is left alone

    job = json.loads(job_file.read_text())
    environment = job["environment"]
    (pool,) = environment["workerPools"]
    assert pool["workerHarnessContainerImage"] == IMAGE
    assert [image["containerImage"] for image in pool["sdkHarnessContainerImages"]] == [IMAGE]
    options = environment["sdkPipelineOptions"]["options"]
    assert options["input"] == [f"gs://{buckets.raw}/events/2024-02-29/**"]
    assert options["output"] == f"gs://{buckets.prepared}/mixpanel/2024-02-29"
    assert options["run_date"] == "2024-03-01"
    # The staged files Dataflow reads: the pipeline, and Beam's main session (the
    # registries only, with cloudpickle), both on the Dataflow bucket.
    staged = {package["name"]: package["location"] for package in pool["packages"]}
    assert "pickled_main_session" in staged
    assert options["pipelineUrl"].startswith(f"gs://{buckets.dataflow}/tmp/")

    proto = beam_runner_api_pb2.Pipeline.FromString(buckets.get(options["pipelineUrl"]))
    assert _top_level_steps(proto) == STEPS
    assert _container_images(proto) == {IMAGE}

    loaded = _every_payload_loads(buckets, options, proto, tmp_path)
    ours = {row["loaded"].rsplit(".", 1)[0] for row in loaded if row["loaded"].startswith(("transforms.", "pipeline."))}
    assert {".".join(name.split(".")[:2]) for name in ours} >= STAGE_MODULES


def test_a_function_the_workers_cannot_import_fails_the_load(tmp_path, monkeypatch, unrun_pipeline):
    """The load above can fail: a DoFn from a module only this process has is named."""
    import apache_beam as beam  # noqa: PLC0415

    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "only_in_the_test_process.py").write_text("def shout(text):\n    return text.upper()\n")
    monkeypatch.syspath_prepend(str(modules))
    import only_in_the_test_process  # noqa: PLC0415

    pipeline = unrun_pipeline()
    _ = pipeline | beam.Create(["a"]) | "Shout" >> beam.Map(only_in_the_test_process.shout)
    status, loaded, _ = _loaded_payloads(pipeline.to_runner_api().SerializeToString(), tmp_path)
    assert status == 1
    assert [row for row in loaded if "error" in row] == [
        {"where": "Shout", "urn": "beam:dofn:pickled_python_info:v1",
         "error": "ModuleNotFoundError: No module named 'only_in_the_test_process'"}
    ]


def test_the_flex_template_launcher_describes_a_job_on_the_image_with_the_dates_resolved(buckets, tmp_path):
    job_file = tmp_path / "job.json"
    # The template parameters, as Dataflow's launcher passes them, and what it adds itself.
    child = _run(FLEX_MAIN, buckets,
                 f"--input=gs://{buckets.raw}/events/{{date-1:%Y-%m-%d}}/**",
                 f"--output=gs://{buckets.prepared}/mixpanel/{{date-1}}",
                 "--run_date=2024-03-01", "--overwrite=true", "--max_reject_ratio=0.01",
                 f"--sdk_container_image={IMAGE}", "--project=my-project", "--region=us-central1",
                 f"--temp_location=gs://{buckets.dataflow}/tmp", "--job_name=cloud-import-prep-20240301",
                 "--dry_run=True", f"--dataflow_job_file={job_file}")
    assert child.returncode == 0, child.stderr
    assert BLOCKED_MARK not in child.stderr
    job = json.loads(job_file.read_text())
    assert job["name"] == "cloud-import-prep-20240301"
    (pool,) = job["environment"]["workerPools"]
    assert pool["workerHarnessContainerImage"] == IMAGE
    options = job["environment"]["sdkPipelineOptions"]["options"]
    assert (options["input"], options["output"], options["run_date"]) == (
        [f"gs://{buckets.raw}/events/2024-02-29/**"], f"gs://{buckets.prepared}/mixpanel/2024-02-29", "2024-03-01"
    )
    assert (options["overwrite"], options["max_reject_ratio"], options["wait"]) == (True, 0.01, False)
    proto = beam_runner_api_pb2.Pipeline.FromString(buckets.get(options["pipelineUrl"]))
    assert _top_level_steps(proto) == STEPS
    assert _container_images(proto) == {IMAGE}


def _cloud_scheduler_launch(buckets: Buckets) -> tuple[list[str], dict]:
    """scheduling/flex_template_launch.json as the launcher gets it: parameters and environment as flags."""
    text = (REPO / "scheduling" / "flex_template_launch.json").read_text(encoding="utf-8")
    for name, bucket in (("my-raw-bucket", buckets.raw), ("my-prepared-bucket", buckets.prepared),
                         ("my-dataflow-bucket", buckets.dataflow)):
        text = text.replace(name, bucket)
    launch = json.loads(text)["launchParameter"]
    environment = launch["environment"]
    args = [f"--{name}={value}" for name, value in launch["parameters"].items()]
    args += [f"--job_name={launch['jobName']}", f"--temp_location={environment['tempLocation']}",
             f"--service_account_email={environment['serviceAccountEmail']}",
             f"--machine_type={environment['machineType']}", f"--max_num_workers={environment['maxWorkers']}"]
    return args, {"name": launch["jobName"], "image": launch["parameters"]["sdk_container_image"],
                  "serviceAccountEmail": environment["serviceAccountEmail"],
                  "machineType": environment["machineType"], "maxWorkers": environment["maxWorkers"]}


def _data_pipelines_launch(buckets: Buckets) -> tuple[list[str], dict]:
    """The Data Pipelines schedule of docs/scheduling.md as the launcher gets it (its parameters, no run date)."""
    page = (REPO / "docs" / "scheduling.md").read_text(encoding="utf-8")
    command = page.split("gcloud beta datapipelines pipeline create", 1)[1].split("```", 1)[0]
    (value,) = re.findall(r'--parameters="([^"]+)"', command)
    value = value.replace("$RAW", buckets.raw).replace("$PREPARED", buckets.prepared).replace("$IMAGE", IMAGE)
    args = [f"--{pair}" for pair in value.split(",")]
    args += ["--job_name=cloud-import-prep-daily", f"--temp_location=gs://{buckets.dataflow}/tmp"]
    return args, {"name": "cloud-import-prep-daily", "image": IMAGE}


@pytest.mark.parametrize("schedule", [_cloud_scheduler_launch, _data_pipelines_launch],
                         ids=["cloud_scheduler_body", "docs_data_pipelines"])
def test_a_scheduled_launch_builds_the_job_for_the_day_before_the_launch(buckets, tmp_path, schedule):
    """Without run_date, the run date is the UTC date at launch: {date-1} is the day before."""
    now = datetime.now(timezone.utc).date()
    days = [(now - timedelta(days=d)).isoformat() for d in (1, 0)]  # midnight may pass meanwhile
    for day in days:
        buckets.put(buckets.raw, f"events/{day}/part-1.ndjson", LINE)
        # The schema the run of the day before wrote: the schedules compare with it.
        before = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
        buckets.put(buckets.prepared, f"mixpanel/{before}/_SCHEMA.json", b'{"events": {}, "conflicts": {}}')
    args, expected = schedule(buckets)
    job_file = tmp_path / "job.json"
    child = _run(FLEX_MAIN, buckets, *args, "--project=my-project", "--region=us-central1",
                 "--dry_run=True", f"--dataflow_job_file={job_file}")
    assert child.returncode == 0, child.stderr
    job = json.loads(job_file.read_text())
    assert job["name"] == expected["name"]
    (pool,) = job["environment"]["workerPools"]
    assert pool["workerHarnessContainerImage"] == expected["image"]
    if "machineType" in expected:
        assert pool["machineType"] == expected["machineType"]
        assert pool["autoscalingSettings"]["maxNumWorkers"] == expected["maxWorkers"]
        assert job["environment"]["serviceAccountEmail"] == expected["serviceAccountEmail"]
    options = job["environment"]["sdkPipelineOptions"]["options"]
    day = next(d for d in days if options["output"] == f"gs://{buckets.prepared}/mixpanel/{d}")
    assert options["input"] == [f"gs://{buckets.raw}/events/{day}/**"]
    assert options["run_date"] == (date.fromisoformat(day) + timedelta(days=1)).isoformat()
    assert (options["overwrite"], options["max_reject_ratio"], options["wait"]) == (True, 0.01, False)
    before = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
    assert options["previous_schema"] == f"gs://{buckets.prepared}/mixpanel/{before}/_SCHEMA.json"


def test_a_dry_run_leaves_a_previous_run_in_place(buckets):
    """Even with --overwrite: a dry run's job never runs, so it must not start replacing anything."""
    previous = {
        "mixpanel/2024-02-29/_SUMMARY.json": json.dumps(
            {
                "tool": {"name": "cloud-import-prep"},
                "output": {"files": [{"path": "events/day=2024-01-01/part-00000-of-00001.ndjson.gz"}]},
            }
        ).encode(),
        "mixpanel/2024-02-29/_SUCCESS": b"",
        "mixpanel/2024-02-29/events/day=2024-01-01/part-00000-of-00001.ndjson.gz": b"old",
    }
    for name, data in previous.items():
        buckets.put(buckets.prepared, name, data)
    child = _run(CLI, buckets, *buckets.dataflow_args("--dry_run=True"), "--overwrite",
                 "--input", f"gs://{buckets.raw}/events/{{date-1}}/**",
                 "--output", f"gs://{buckets.prepared}/mixpanel/{{date-1}}", "--run_date", "2024-03-01")
    assert child.returncode == 0, child.stderr
    assert buckets.names(buckets.prepared) == sorted(previous)
    assert buckets.names(buckets.dataflow) == []  # without --dataflow_job_file nothing is staged


def test_a_real_submission_fails_at_once_without_reaching_google(buckets):
    """Proves the offline guard: the one Dataflow API call is refused, not retried, in one line."""
    started = time.monotonic()
    child = _run(CLI, buckets, *buckets.dataflow_args(),
                 "--input", f"gs://{buckets.raw}/events/2024-02-29/**",
                 "--output", f"gs://{buckets.prepared}/mixpanel/2024-02-29")
    elapsed = time.monotonic() - started
    assert child.returncode == 2, child.stderr
    blocked = [line for line in child.stderr.splitlines() if line.startswith(BLOCKED_MARK)]
    assert blocked == [
        f"{BLOCKED_MARK}: gRPC call /google.dataflow.v1beta3.JobsV1Beta3/CreateJob to "
        "dataflow.googleapis.com:443 (only loopback addresses are allowed)"
    ]
    errors = [line for line in child.stderr.splitlines() if line.startswith("cloud-import-prep: error:")]
    assert errors == [
        "cloud-import-prep: error: DataflowRunner could not submit the job: 403 "
        f"{BLOCKED_MARK}: gRPC call /google.dataflow.v1beta3.JobsV1Beta3/CreateJob to dataflow.googleapis.com:443"
    ]
    assert "Traceback" not in child.stderr
    # The run took the output's lock before submitting; having written nothing, it removed it.
    assert buckets.names(buckets.prepared) == []
    assert elapsed < 120, f"took {elapsed:.0f} s"


GUARD_PROBES = """
import socket, time, urllib.request
import grpc
started = time.monotonic()
def refused(probe):
    try:
        probe()
    except Exception as err:
        return type(err).__name__
    return "reached"
results = {
    "https": refused(lambda: urllib.request.urlopen("https://dataflow.googleapis.com/", timeout=30)),
    "metadata": refused(lambda: socket.create_connection(("169.254.169.254", 80), timeout=30)),
    "lookup": refused(lambda: socket.getaddrinfo("storage.googleapis.com", 443)),
    "grpc": refused(lambda: grpc.secure_channel("dataflow.googleapis.com:443", grpc.ssl_channel_credentials())
                    .unary_unary("/google.dataflow.v1beta3.JobsV1Beta3/CreateJob")(b"", timeout=30)),
}
print(json.dumps({"results": results, "seconds": time.monotonic() - started}))
"""


def test_the_offline_guard_refuses_every_route_to_google_within_a_second():
    child = run_offline("import json\n" + GUARD_PROBES)
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout)
    assert report["results"] == {
        "https": "URLError", "metadata": "NetworkBlocked", "lookup": "NetworkBlocked", "grpc": "Refused",
    }
    assert report["seconds"] < 1, report
    assert re.findall(rf"^{BLOCKED_MARK}: (name lookup of|connection to|gRPC call) ", child.stderr, re.M) == [
        "name lookup of", "connection to", "name lookup of", "gRPC call",
    ]


def test_loopback_stays_reachable_under_the_guard(gcs_emulator):
    code = f"import urllib.request\nprint(urllib.request.urlopen({gcs_emulator.url + '/storage/v1/b'!r}).status)\n"
    child = run_offline(code)
    assert (child.returncode, child.stdout) == (0, "200\n"), child.stderr


def test_offline_children_run_this_checkout():
    """The child imports the code under test, not another installed copy of it."""
    child = run_offline("import pipeline\nprint(pipeline.__file__)\n")
    assert child.stdout.strip() == str(REPO / "pipeline" / "__init__.py")
