"""scheduling/airflow_dag.py checked by Airflow 3 itself: import, providers, rendered runs.

Runs in the Airflow virtualenv (`make test-airflow`: .venv-airflow, pinned by
scheduling/requirements-airflow.txt), not in the pipeline's, which has no
Airflow; hence not named test_*. No scheduler, webserver or database: the DAG
file is parsed by Airflow's DagBag, runs are laid out by Airflow's own
timetable (scheduled) and trigger code (manual), and templates are rendered by
the Task SDK's RuntimeTaskInstance, the path an Airflow 3 worker takes before
it executes a task. The rendered paths are checked against the pipeline's own
resolver (pipeline/placeholders.py, which imports nothing but the standard
library).
"""

import copy
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
import warnings
from datetime import date
from pathlib import Path

# Airflow reads its home when first imported: a fresh one per session, never
# the user's ~/airflow.
_HOME = tempfile.mkdtemp(prefix="airflow-home-")
os.environ["AIRFLOW_HOME"] = _HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

import pendulum  # noqa: E402
import pytest  # noqa: E402
from airflow.dag_processing.dagbag import DagBag  # noqa: E402
from airflow.sdk.api.datamodels._generated import (  # noqa: E402
    DagRun,
    DagRunState,
    DagRunType,
    TIRunContext,
)
from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance  # noqa: E402
from airflow.serialization.serialized_objects import DagSerialization  # noqa: E402
from airflow.timetables.base import TimeRestriction  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from pipeline.placeholders import resolve  # noqa: E402

DAG_FILE = REPO / "scheduling" / "airflow_dag.py"
DAG_ID = "cloud_import_prep_daily"
OUTPUT_LINE = re.compile(r'^OUTPUT = "[^"\n]*"$', re.M)


@pytest.fixture(scope="session", autouse=True)
def airflow_home():  # type: ignore[no-untyped-def]
    yield _HOME
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(autouse=True)
def offline(monkeypatch):  # type: ignore[no-untyped-def]
    """Nothing here may reach the network: a connection beyond loopback fails at once."""
    real_connect = socket.socket.connect

    def connect(sock: socket.socket, address):  # type: ignore[no-untyped-def]
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise ConnectionRefusedError(f"offline test: blocked connection to {address}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


def _dag_file(tmp_path: Path, output: str | None) -> Path:
    """The DAG file, or a copy of it with the OUTPUT setting edited as a user would."""
    if output is None:
        return DAG_FILE
    source, count = OUTPUT_LINE.subn(f'OUTPUT = "{output}"', DAG_FILE.read_text(encoding="utf-8"))
    assert count == 1, "the DAG file must have one OUTPUT = \"...\" setting line"
    path = tmp_path / "airflow_dag.py"
    path.write_text(source, encoding="utf-8")
    return path


def _load(path: Path):  # type: ignore[no-untyped-def]
    """The DAG as Airflow's DAG processor parses it."""
    bag = DagBag(dag_folder=str(path))
    assert bag.import_errors == {}
    assert list(bag.dags) == [DAG_ID]
    return bag.dags[DAG_ID]


def _scheduled_run(dag, due: pendulum.DateTime) -> DagRun:  # type: ignore[no-untyped-def]
    """The run the scheduler creates to start at `due`, laid out by the DAG's own timetable."""
    timetable = DagSerialization.from_dict(DagSerialization.to_dict(dag)).timetable
    restriction = TimeRestriction(earliest=due.subtract(days=3), latest=None, catchup=True)
    info = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    while info.run_after < due:  # the runs before it, one after the other, as the scheduler goes
        info = timetable.next_dagrun_info(last_automated_data_interval=info.data_interval, restriction=restriction)
    assert info.run_after == due
    return DagRun(
        dag_id=DAG_ID, run_id=f"scheduled__{due.isoformat()}", logical_date=info.logical_date,
        data_interval_start=info.data_interval.start, data_interval_end=info.data_interval.end,
        run_after=info.run_after, start_date=due, end_date=None, run_type=DagRunType.SCHEDULED,
        state=DagRunState.RUNNING, consumed_asset_events=[], partition_key=None,
    )


def _manual_run(dag, triggered: pendulum.DateTime) -> DagRun:  # type: ignore[no-untyped-def]
    """What "Trigger DAG" without a logical date creates (Airflow 3's API server code)."""
    from airflow.api_fastapi.core_api.datamodels.dag_run import TriggerDAGRunPostBody  # noqa: PLC0415

    serialized = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    fields = TriggerDAGRunPostBody(logical_date=None, run_after=triggered).validate_context(serialized)
    assert fields["logical_date"] is None and fields["data_interval"] is None
    return DagRun(
        dag_id=DAG_ID, run_id=fields["run_id"], logical_date=None, data_interval_start=None,
        data_interval_end=None, run_after=fields["run_after"], start_date=triggered, end_date=None,
        run_type=DagRunType.MANUAL, state=DagRunState.RUNNING, consumed_asset_events=[], partition_key=None,
    )


def _render(dag, task_id: str, run: DagRun):  # type: ignore[no-untyped-def]
    """The task with its templated fields rendered, as the worker renders them before executing it."""
    task = copy.deepcopy(dag.get_task(task_id))  # rendering replaces the templates in place
    ti = RuntimeTaskInstance.model_construct(
        id=uuid.uuid4(), task_id=task_id, dag_id=DAG_ID, run_id=run.run_id, try_number=1, map_index=-1,
        task=task, max_tries=0, start_date=pendulum.now("UTC"), dag_version_id=uuid.uuid4(),
    )
    ti._ti_context_from_server = TIRunContext(dag_run=run, max_tries=0)
    ti.render_templates()
    return ti.task


def _launch_and_sensor(dag, run: DagRun) -> tuple[dict, str]:  # type: ignore[no-untyped-def]
    """(the Flex Template parameters, gs://bucket/object of the sensor) of one run."""
    launch = _render(dag, "prepare", run).body["launchParameter"]
    sensor = _render(dag, "passed_checks", run)
    return launch, f"gs://{sensor.bucket}/{sensor.object}"


# --- the DAG file ---------------------------------------------------------------------------


def test_the_dag_imports_without_errors_or_warnings(recwarn):
    warnings.simplefilter("always")
    dag = _load(DAG_FILE)
    ours = [w for w in recwarn if Path(w.filename) == DAG_FILE]
    assert ours == [], [str(w.message) for w in ours]
    assert [task.task_id for task in dag.topological_sort()] == ["prepare", "passed_checks"]


def _providers_the_import_uses() -> set[str]:
    """Provider distributions whose code importing the DAG file loads, in a fresh interpreter."""
    code = (
        "import runpy, sys, json\n"
        f"runpy.run_path({str(DAG_FILE)!r})\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('airflow.providers.'))))\n"
    )
    env = {**os.environ, "AIRFLOW_HOME": _HOME}
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert child.returncode == 0, child.stderr
    import importlib  # noqa: PLC0415
    import json  # noqa: PLC0415

    used = set()
    for module in json.loads(child.stdout.splitlines()[-1]):
        if module.endswith(".get_provider_info"):
            continue  # read by the providers manager for every installed provider
        parts = module.split(".")
        for end in range(len(parts), 2, -1):  # the provider package: airflow.providers.<a>[.<b>]
            try:
                info = importlib.import_module(".".join(parts[:end]) + ".get_provider_info")
            except ImportError:
                continue
            used.add(info.get_provider_info()["package-name"])
            break
    return used


def _installed_with(names: set[str]) -> set[str]:
    """`names` and every distribution they, or Airflow itself, require without extras."""
    from importlib.metadata import requires  # noqa: PLC0415

    from packaging.requirements import Requirement  # noqa: PLC0415
    from packaging.utils import canonicalize_name  # noqa: PLC0415

    todo, seen = [canonicalize_name(n) for n in (*names, "apache-airflow")], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in requires(name) or ():
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(requirement.name))
    return seen


def test_the_docstring_names_every_provider_the_dag_needs():
    doc = DAG_FILE.read_text(encoding="utf-8").split('"""')[1]
    named = set(re.findall(r"apache-airflow-providers-[a-z0-9-]*[a-z0-9]", doc))
    used = _providers_the_import_uses()
    assert {"apache-airflow-providers-google", "apache-airflow-providers-apache-beam"} <= used
    # Each provider the import loads is named, or comes with one that is (or with Airflow).
    assert used - _installed_with(named) == set()
    assert named <= used


# --- rendered runs --------------------------------------------------------------------------

RAW = "gs://my-raw-bucket/events/{date-1}/**"
OUTPUT = "gs://my-prepared-bucket/mixpanel/{date-1}"


@pytest.mark.parametrize("cron_data_intervals", ["False", "True"], ids=["airflow3_default", "data_intervals"])
def test_a_scheduled_run_launches_the_day_before_it_is_due(monkeypatch, cron_data_intervals):
    # Airflow 3 lays cron schedules out as triggers by default; with
    # create_cron_data_intervals the run covers the day before. Both are due at 03:00.
    monkeypatch.setenv("AIRFLOW__SCHEDULER__CREATE_CRON_DATA_INTERVALS", cron_data_intervals)
    dag = _load(DAG_FILE)
    launch, success = _launch_and_sensor(dag, _scheduled_run(dag, pendulum.datetime(2024, 3, 1, 3, tz="UTC")))
    parameters = launch["parameters"]
    assert (parameters["input"], parameters["output"], parameters["run_date"]) == (RAW, OUTPUT, "2024-03-01")
    assert launch["jobName"] == "cloud-import-prep-20240301"
    # What the pipeline makes of them, and the object the sensor waits for.
    run_date = date.fromisoformat(parameters["run_date"])
    assert resolve(parameters["input"], run_date) == "gs://my-raw-bucket/events/2024-02-29/**"
    assert resolve(parameters["output"], run_date) == "gs://my-prepared-bucket/mixpanel/2024-02-29"
    # The schema the run of the day before wrote: drift is against it.
    assert resolve(parameters["previous_schema"], run_date) == "gs://my-prepared-bucket/mixpanel/2024-02-28/_SCHEMA.json"
    assert success == "gs://my-prepared-bucket/mixpanel/2024-02-29/_SUCCESS"


def test_a_manual_run_without_a_logical_date_launches_the_day_before_the_trigger():
    dag = _load(DAG_FILE)
    launch, success = _launch_and_sensor(dag, _manual_run(dag, pendulum.datetime(2024, 3, 5, 10, 30, tz="UTC")))
    parameters = launch["parameters"]
    assert (parameters["input"], parameters["output"], parameters["run_date"]) == (RAW, OUTPUT, "2024-03-05")
    assert launch["jobName"] == "cloud-import-prep-20240305"
    assert success == "gs://my-prepared-bucket/mixpanel/2024-03-04/_SUCCESS"


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("gs://my-prepared-bucket/mixpanel/{date-1}", "gs://my-prepared-bucket/mixpanel/2024-02-29"),
        ("gs://other-bucket/exports/{date-1:%Y/%m/%d}/", "gs://other-bucket/exports/2024/02/29/"),
        ("gs://other-bucket/{date}/days-{date-7:%j}", "gs://other-bucket/2024-03-01/days-054"),
        ("gs://other-bucket/{date+1:%y%m%d}", "gs://other-bucket/240302"),
    ],
)
def test_the_sensor_waits_where_the_job_writes_whatever_the_output_setting(tmp_path, output, expected):
    dag = _load(_dag_file(tmp_path, output))
    launch, success = _launch_and_sensor(dag, _scheduled_run(dag, pendulum.datetime(2024, 3, 1, 3, tz="UTC")))
    parameters = launch["parameters"]
    assert parameters["output"] == output
    written = resolve(parameters["output"], date.fromisoformat(parameters["run_date"]), "--output")
    assert written == expected
    assert success == written.rstrip("/") + "/_SUCCESS"
