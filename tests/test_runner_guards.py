"""What a job on other machines cannot use is refused before any work (pipeline/runner_guards.py).

A remote runner given a local --input reads the workers' disks, where the files
are not; a local --output is written to disks that vanish with the workers;
Dataflow workers without --sdk_container_image lack this package. Each is
refused in make_options, in one line, before the input is listed or the output
locked; and Beam's --dry_run, a string option Beam takes as true whatever its
value, is read as the bool it means. So are runners Beam cannot create, and
what Beam's own option checks for the runner find.
"""

from datetime import date

import pytest
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, StandardOptions
from apache_beam.options.pipeline_options import TestOptions as BeamTestOptions
from apache_beam.runners.runner import create_runner

from e2e import run_cli, write_input
from offline import block_network
from pipeline.options import UsageError
from pipeline.plan import make_options
from pipeline.runner_guards import check_dry_run

GCS = ["--input", "gs://raw-bucket/events/*", "--output", "gs://prepared-bucket/out"]
IMAGE = ["--sdk_container_image", "r/p/i:1"]
DATAFLOW = ["--runner", "DataflowRunner", "--project", "my-project", "--region", "us-central1",
            "--temp_location", "gs://dataflow-bucket/tmp"]
REMOTE_FLINK = ["--runner", "FlinkRunner", "--flink_master", "flink-jobmanager:8081"]
REMOTE_SPARK = ["--runner", "SparkRunner", "--spark_master_url", "spark://spark-master:7077"]
EMBEDDED_JOB_SERVICE = ["--runner", "PortableRunner", "--job_endpoint", "embed"]
DATAFLOW_REACH = "DataflowRunner runs the job on Google Cloud workers, which cannot reach this machine's files"
LOOPBACK_HINT = " (or --environment_type LOOPBACK, to run the job in this process)"
VALID = ["--input", "/raw/*.json", "--output", "/out"]
TODAY = date(2024, 2, 1)  # what {date} stands for without --run-date


@pytest.fixture(autouse=True, scope="module")
def offline():  # type: ignore[no-untyped-def]
    """Beam's own checks of a Dataflow launch ask Cloud Storage about the temp bucket
    (unless --dry_run): here, anything that reaches for the network fails at once."""
    unblock = block_network()
    yield
    unblock()


def refusal(argv: list[str]) -> str:
    with pytest.raises(UsageError) as raised:
        make_options(argv, TODAY)
    return str(raised.value)


@pytest.mark.parametrize(
    "argv, message",
    [
        pytest.param(["--input", "/raw/*", "--output", "gs://prepared-bucket/out", *DATAFLOW, *IMAGE],
                     f"--input '/raw/*' is a local path, but {DATAFLOW_REACH}: use gs:// or s3:// paths",
                     id="dataflow_local_input"),
        pytest.param(["--input", "gs://raw-bucket/*", "--input", "raw/*.json", "--output", "s3://prepared/out",
                      *DATAFLOW, *IMAGE],
                     f"--input 'raw/*.json' is a local path, but {DATAFLOW_REACH}: use gs:// or s3:// paths",
                     id="dataflow_second_input_relative"),
        pytest.param(["--input", "gs://raw-bucket/*", "--output", "/tmp/prepared", *DATAFLOW, *IMAGE],
                     f"--output '/tmp/prepared' is a local path, but {DATAFLOW_REACH}: use gs:// or s3:// paths",
                     id="dataflow_local_output"),
        pytest.param(["--input", "gs://raw-bucket/*", "--output", "/tmp/prepared", *DATAFLOW, *IMAGE,
                      "--dry_run=True"],
                     f"--output '/tmp/prepared' is a local path, but {DATAFLOW_REACH}: use gs:// or s3:// paths",
                     id="dataflow_dry_run_too"),
        pytest.param(["--input", "file:///raw/*", "--output", "gs://prepared-bucket/out", *DATAFLOW, *IMAGE],
                     f"--input 'file:///raw/*' is a local path, but {DATAFLOW_REACH}: use gs:// or s3:// paths",
                     id="dataflow_file_url"),
        pytest.param(["--input", "/raw/*", "--output", "gs://prepared-bucket/out", *REMOTE_FLINK],
                     "--input '/raw/*' is a local path, but FlinkRunner runs the job in DOCKER environments, not "
                     "in this process, which cannot reach this machine's files: use gs:// or s3:// paths"
                     + LOOPBACK_HINT, id="flink_cluster"),
        pytest.param(["--input", "gs://raw-bucket/*", "--output", "/out", *REMOTE_SPARK],
                     "--output '/out' is a local path, but SparkRunner runs the job in DOCKER environments, not "
                     "in this process, which cannot reach this machine's files: use gs:// or s3:// paths"
                     + LOOPBACK_HINT, id="spark_cluster"),
        pytest.param(["--input", "/raw/*", "--output", "/out", *EMBEDDED_JOB_SERVICE],
                     "--input '/raw/*' is a local path, but PortableRunner runs the job in DOCKER environments, not "
                     "in this process, which cannot reach this machine's files: use gs:// or s3:// paths"
                     + LOOPBACK_HINT, id="portable_default_docker"),
        pytest.param(["--input", "/raw/*", "--output", "/out", *EMBEDDED_JOB_SERVICE, "--environment_type",
                      "PROCESS", "--environment_config", '{"command": "/opt/apache/beam/boot"}'],
                     "--input '/raw/*' is a local path, but PortableRunner runs the job in PROCESS environments, not "
                     "in this process, which cannot reach this machine's files: use gs:// or s3:// paths"
                     + LOOPBACK_HINT, id="portable_process"),
        pytest.param(["--input", "/raw/*", "--output", "/out", *EMBEDDED_JOB_SERVICE, "--environment_type",
                      "EXTERNAL", "--environment_config", "localhost:50000"],
                     "--input '/raw/*' is a local path, but PortableRunner runs the job in EXTERNAL environments, not "
                     "in this process, which cannot reach this machine's files: use gs:// or s3:// paths"
                     + LOOPBACK_HINT, id="portable_external_worker_pool"),
        pytest.param([*GCS, *DATAFLOW, *IMAGE, "--exclude-users", "/privacy/deleted.txt"],
                     f"--exclude-users '/privacy/deleted.txt' is a local path, but {DATAFLOW_REACH}: use gs:// "
                     "or s3:// paths", id="dataflow_local_deletion_list"),
        pytest.param([*GCS, *DATAFLOW],
                     "--sdk_container_image is required with DataflowRunner: the image built from this project's "
                     "Dockerfile (workers on Beam's stock image lack this package), e.g. --sdk_container_image "
                     "REGION-docker.pkg.dev/PROJECT/REPO/cloud-import-prep:TAG", id="dataflow_without_image"),
        pytest.param([*GCS, *DATAFLOW, "--dry_run=True"],
                     "--sdk_container_image is required with DataflowRunner: the image built from this project's "
                     "Dockerfile (workers on Beam's stock image lack this package), e.g. --sdk_container_image "
                     "REGION-docker.pkg.dev/PROJECT/REPO/cloud-import-prep:TAG", id="dataflow_dry_run_without_image"),
        pytest.param([*GCS, *EMBEDDED_JOB_SERVICE, "--environment_type", "SUBMARINE"],
                     "--environment_type/--environment_config refused by Beam: Unknown environment type: SUBMARINE",
                     id="unknown_environment_type"),
        pytest.param([*GCS, "--dry_run=True"],
                     "--dry_run=True only applies to DataflowRunner; FnApiRunner would ignore it and run the whole job",
                     id="dry_run_of_a_local_run"),
        pytest.param([*GCS, *DATAFLOW, *IMAGE, "--dry_run=maybe"], "--dry_run must be True or False, got 'maybe'",
                     id="dry_run_neither"),
    ],
)
def test_what_a_remote_job_cannot_use_is_refused(argv, message):
    assert refusal(argv) == message


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([*GCS, *DATAFLOW, *IMAGE, "--dry_run=True"], id="dataflow_gs"),
        pytest.param(["--input", "s3://raw/*", "--output", "s3://prepared/out", *DATAFLOW, "--dry_run=True",
                      "--worker_harness_container_image", "r/p/i:1"], id="dataflow_s3_legacy_image_flag"),
        pytest.param(["--input", "/raw/*", "--output", "/out"], id="in_process_default"),
        pytest.param(["--input", "/raw/*", "--output", "/out", "--runner", "DirectRunner"], id="direct_runner"),
        pytest.param(["--input", "/raw/*", "--output", "/out", *EMBEDDED_JOB_SERVICE, "--environment_type",
                      "LOOPBACK"], id="portable_loopback"),
        pytest.param(["--input", "/raw/*", "--output", "/out", "--runner", "FlinkRunner"], id="flink_local_auto"),
        pytest.param(["--input", "/raw/*", "--output", "/out", "--runner", "SparkRunner"], id="spark_local"),
        pytest.param(["--input", "/raw/*", "--output", "/out", *REMOTE_FLINK, "--environment_type", "LOOPBACK"],
                     id="flink_cluster_loopback"),
        pytest.param(["--input", "/raw/*", "--output", "/out", "--runner", "PrismRunner"], id="prism_loopback"),
        pytest.param([*GCS, *EMBEDDED_JOB_SERVICE, "--environment_type", "DOCKER"], id="portable_docker_gs"),
    ],
)
def test_paths_the_job_can_reach_are_accepted(argv):
    make_options(argv, TODAY)


@pytest.mark.parametrize(("value", "expected"), [("True", True), ("true", True), ("False", False), ("false", False)])
def test_dry_run_is_the_bool_it_says(value, expected):
    # Beam alone takes "False", a non-empty string, for a dry run.
    options = PipelineOptions([f"--dry_run={value}"])
    assert options.view_as(BeamTestOptions).dry_run == value
    assert check_dry_run(options, create_runner("DataflowRunner")) is expected
    assert options.view_as(BeamTestOptions).dry_run is expected


def test_the_cli_refuses_before_listing_or_locking_anything(tmp_path, capsys):
    out = tmp_path / "out"
    # The input does not exist: the guard answers before the listing would.
    assert run_cli("--input", str(tmp_path / "raw" / "*"), "--output", str(out), *DATAFLOW, *IMAGE) == 2
    assert capsys.readouterr().err == (
        f"cloud-import-prep: error: --input '{tmp_path}/raw/*' is a local path, but {DATAFLOW_REACH}: "
        "use gs:// or s3:// paths\n"
    )
    assert not out.exists()


def test_a_local_hash_key_file_is_fine_for_a_remote_job():
    # The key is read once at launch, on this machine; the workers never open the file.
    options = make_options([*GCS, *DATAFLOW, *IMAGE, "--hash-property", "email", "--hash-key-file", "/keys/k",
                            "--exclude-users", "gs://privacy-bucket/deleted.txt"], TODAY)
    assert options.get_all_options()["hash_key_file"] == "/keys/k"


# --- the runner, and Beam's own checks for it -------------------------------------------------

KNOWN_RUNNERS = ", ".join(StandardOptions.KNOWN_RUNNER_NAMES)


@pytest.mark.parametrize(
    "runner, message",
    [
        pytest.param("NoSuchRunner", f"--runner 'NoSuchRunner' is not a runner Beam knows; use one of {KNOWN_RUNNERS}, "
                     "or the module path of a PipelineRunner class", id="unknown"),
        pytest.param("Dataflw", "--runner 'Dataflw' is not a runner Beam knows (did you mean DataflowRunner?); "
                     f"use one of {KNOWN_RUNNERS}, or the module path of a PipelineRunner class", id="misspelled"),
        pytest.param("os.nothing", "--runner 'os.nothing' cannot be loaded: module 'os' has no attribute 'nothing'",
                     id="no_such_class"),
        pytest.param("no_such_module.Runner", "--runner 'no_such_module.Runner' cannot be loaded: "
                     "No module named 'no_such_module'", id="no_such_module"),
        pytest.param("collections.OrderedDict", "--runner 'collections.OrderedDict' is not a PipelineRunner class",
                     id="not_a_runner"),
    ],
)
def test_runners_beam_cannot_create_are_refused(runner, message):
    assert refusal(VALID + ["--runner", runner]) == message


DATAFLOW_DRY_RUN = [*DATAFLOW, "--dry_run=True"]


@pytest.mark.parametrize(
    "extra, found",
    [
        pytest.param(["--runner", "DataflowRunner"], "Missing GCS path option: temp_location; Missing GCS path option: "
                     "staging_location; Missing required option: project; Missing required option: region",
                     id="nothing_dataflow_needs"),
        pytest.param(DATAFLOW_DRY_RUN + ["--num_workers", "5", "--max_num_workers", "2"],
                     "num_workers (5) cannot exceed max_num_workers (2)", id="more_workers_than_the_maximum"),
        pytest.param(DATAFLOW_DRY_RUN + ["--job_name", "Daily_Import"],
                     "Invalid job_name (Daily_Import); the name must consist of only the characters [-a-z0-9], "
                     "starting with a letter and ending with a letter or number", id="job_name"),
    ],
)
def test_beams_own_checks_for_the_runner_are_usage_errors(extra, found):
    # Beam raises them from Pipeline(), as a multi-line ValueError. (Paths and image
    # that a Dataflow job can use: the tests above refuse the others first.)
    argv = ["--input", "gs://raw-bucket/*", "--output", "gs://prepared-bucket/", "--sdk_container_image", "r/p/i:1"]
    assert refusal(argv + extra) == "Beam refuses these options for DataflowRunner: " + found


def test_dataflow_options_pass_beams_checks():
    options = make_options(["--input", "gs://raw-bucket/*", "--output", "gs://prepared-bucket/", *DATAFLOW_DRY_RUN,
                            "--sdk_container_image", "r/p/i:1"], TODAY)
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    # Beam's checks ran on a copy: defaults are Pipeline()'s to fill in.
    assert options.view_as(GoogleCloudOptions).staging_location is None


def test_beams_own_checks_ask_cloud_storage_nothing_that_pipeline_asks_again(monkeypatch, unrun_pipeline):
    """Pipeline() runs Beam's checks again; the early ones skip their one request that
    refuses nothing (is a bucket's soft-delete policy on: a warning), so it is made once."""
    from apache_beam.io.gcp import gcsio  # noqa: PLC0415

    asked = []

    class Recording:  # GcsIO, as far as the check uses it
        def is_soft_delete_enabled(self, path):
            asked.append(path)
            return False

    monkeypatch.setattr(gcsio, "GcsIO", Recording)
    options = make_options([*GCS, *DATAFLOW, *IMAGE], TODAY)
    assert asked == []
    unrun_pipeline(options=options)
    assert asked == ["gs://dataflow-bucket/tmp"]


@pytest.mark.parametrize(
    "hint, found",
    [
        pytest.param("min_ram=lots", "Resource hint min_ram has invalid value lots", id="invalid_value"),
        pytest.param("gpus=1", "Unknown resource hint: gpus", id="unknown_hint"),
    ],
)
def test_resource_hints_beam_cannot_parse_are_usage_errors(hint, found):
    # Pipeline() parses them only after it made its local temp dir, and raises a ValueError.
    assert refusal([*VALID, "--resource_hints", hint]) == "Beam refuses these options for FnApiRunner: " + found


def test_the_cli_refuses_resource_hints_before_beam_makes_a_temp_dir(tmp_path, capsys, beam_temp_dirs):
    write_input(tmp_path / "raw" / "a.ndjson", [b'{"event": "A", "properties": {"distinct_id": "u", "time": 1}}'])
    out = tmp_path / "out"
    hints = ["--resource_hints", "min_ram=lots"]
    assert run_cli("--input", str(tmp_path / "raw" / "*"), "--output", str(out), *hints) == 2
    assert capsys.readouterr().err == (
        "cloud-import-prep: error: Beam refuses these options for FnApiRunner: "
        "Resource hint min_ram has invalid value lots\n"
    )
    assert beam_temp_dirs() == []
    assert not out.exists()


def test_valid_resource_hints_pass_beams_checks():
    options = make_options([*VALID, "--resource_hints", "min_ram=1GB"], TODAY)
    assert options.view_as(StandardOptions).resource_hints == ["min_ram=1GB"]


def test_all_required_type_checks_are_refused_on_one_line():
    # Beam's own steps in the job (Create, ...) declare no output type: under
    # ALL_REQUIRED Beam refuses the graph while it is wired, with a traceback.
    assert refusal([*VALID, "--type_check_strictness", "ALL_REQUIRED"]) == (
        "--type_check_strictness=ALL_REQUIRED cannot be met: Beam's own steps in this job "
        "(Create among them) declare no output type; leave it at DEFAULT_TO_ANY"
    )


def test_the_cli_refuses_all_required_type_checks_before_any_work(tmp_path, capsys, beam_temp_dirs):
    write_input(tmp_path / "raw" / "a.ndjson", [b'{"event": "A", "properties": {"distinct_id": "u", "time": 1}}'])
    out = tmp_path / "out"
    argv = ["--input", str(tmp_path / "raw" / "*"), "--output", str(out), "--type_check_strictness=ALL_REQUIRED"]
    assert run_cli(*argv) == 2
    assert capsys.readouterr().err == (
        "cloud-import-prep: error: --type_check_strictness=ALL_REQUIRED cannot be met: Beam's own steps "
        "in this job (Create among them) declare no output type; leave it at DEFAULT_TO_ANY\n"
    )
    assert beam_temp_dirs() == []
    assert not out.exists()
