"""Shared fixtures of the test suite."""

import shutil
import tempfile

import pytest

from transforms.rules import RuleConfig

# 2024-02-01T00:00:00Z: every event in the fixtures is before it.
REFERENCE_TIME = 1_706_745_600


@pytest.fixture
def rule_config():
    """The rule settings of a run whose reference time is 2024-02-01T00:00:00Z."""
    return RuleConfig(reference_time=REFERENCE_TIME)


@pytest.fixture
def small_read_ranges(monkeypatch):
    """Lets --range-bytes go below its 1 MiB floor in this process, so that small test
    files are still read in many ranges (run_cli_process(small_read_ranges=True) in a child)."""
    monkeypatch.setattr("pipeline.options.MIN_RANGE_BYTES", 1)


@pytest.fixture
def unrun_pipeline():
    """Makes beam.Pipeline(...) for a test that wires a graph and never runs it.

    Pipeline() makes a local temp dir (beam-pipeline-temp*) that only
    Pipeline.run() removes: those of the pipelines made here are removed at
    the test's end, instead of piling up in the system's temp dir.
    """
    import apache_beam as beam  # noqa: PLC0415 (the pure tests never load Beam)

    made = []

    def make(*args, **kwargs):
        made.append(beam.Pipeline(*args, **kwargs))
        return made[-1]

    yield make
    for pipeline in made:
        shutil.rmtree(pipeline.local_tempdir, ignore_errors=True)


@pytest.fixture
def beam_temp_dirs(tmp_path, monkeypatch):
    """Points this process's temp dir (tempfile.tempdir) at a new one of the test's own, and
    returns a function that lists the Beam pipeline temp dirs (beam-pipeline-temp*) in it."""
    private = tmp_path / "tempdir"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    return lambda: sorted(p.name for p in private.glob("beam-pipeline-temp*"))


def pytest_configure(config):
    # Beam's TestPipeline is a class named Test*, not a test class.
    config.addinivalue_line(
        "filterwarnings",
        "ignore:cannot collect test class 'TestPipeline':pytest.PytestCollectionWarning",
    )


# --- object storage emulators (tests/emulators.py) ------------------------------------------
# One of each per session: they take a few seconds to start. Tests keep apart
# by using their own buckets.


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory):
    """gcp-storage-emulator on a free 127.0.0.1 port, stopped at the end of the session."""
    from emulators import gcs_emulator as start  # noqa: PLC0415

    with start(tmp_path_factory.mktemp("gcs-emulator")) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3 server on a free 127.0.0.1 port, stopped at the end of the session."""
    from emulators import s3_server as start  # noqa: PLC0415

    with start(tmp_path_factory.mktemp("s3-server")) as server:
        yield server
