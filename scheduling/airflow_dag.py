"""Airflow DAG: every day, Cloud Import Prep on Dataflow for the previous UTC day.

Runs on Apache Airflow 3 (tested with the versions in scheduling/requirements-airflow.txt) with
two providers, both needed to import this file: `apache-airflow-providers-google` (the Dataflow
operator and the Cloud Storage sensor) and `apache-airflow-providers-apache-beam`, which the Google
provider's Dataflow module imports but lists only as an extra:

    pip install apache-airflow-providers-google apache-airflow-providers-apache-beam

Copy this file into the DAGs folder and edit the settings below. The DAG launches the Flex
Template (docs/dataflow.md), waits for the job, then checks `_SUCCESS`: the job itself
succeeds even when the run fails its checks (too many rejects), and only `_SUCCESS` says the
output may be loaded into Mixpanel.

Every run passes the same static paths with {date-1} placeholders; the pipeline resolves them
against `run_date`, the day the run is due (a manual run without a logical date: the day it was
triggered). So clearing a past run processes that run's day again and, with overwrite=true,
replaces its output. The sensor resolves the same OUTPUT setting against the same run date.

Each run compares its schema with the previous day's (PREVIOUS_SCHEMA: the _SCHEMA.json the run
of the day before wrote into its OUTPUT), and its _SCHEMA.json says what changed. That file must
exist, or the launch is refused: for the very first run, set PREVIOUS_SCHEMA = "" (or run the day
before first). Add "fail_on_type_change": "true" to PARAMETERS to withhold _SUCCESS when a
property's types changed.
"""

import re
from datetime import date, timedelta

import pendulum
from airflow.providers.google.cloud.operators.dataflow import (
    DataflowStartFlexTemplateOperator,
)
from airflow.providers.google.cloud.sensors.gcs import GCSObjectExistenceSensor
from airflow.sdk import DAG

# --- settings: edit these ---------------------------------------------------------------------
PROJECT = "my-project"
REGION = "us-central1"
TEMPLATE = "gs://my-dataflow-bucket/templates/cloud-import-prep.json"
IMAGE = "us-central1-docker.pkg.dev/my-project/pipelines/cloud-import-prep:1.0.0"
SERVICE_ACCOUNT = "cloud-import-prep@my-project.iam.gserviceaccount.com"
TEMP_LOCATION = "gs://my-dataflow-bucket/tmp"
INPUT = "gs://my-raw-bucket/events/{date-1}/**"
OUTPUT = "gs://my-prepared-bucket/mixpanel/{date-1}"
# The previous day's run wrote its _SCHEMA.json into OUTPUT one day earlier: {date-2}.
PREVIOUS_SCHEMA = "gs://my-prepared-bucket/mixpanel/{date-2}/_SCHEMA.json"
# ----------------------------------------------------------------------------------------------

# The run date, YYYY-MM-DD. A scheduled (or backfilled, or cleared) run is due at the end of its
# data interval; a run triggered by hand without a logical date has no data interval (Airflow 3):
# it takes the time it was triggered.
_RUN_DAY = "(data_interval_end if data_interval_end is defined else dag_run.run_after)"
RUN_DATE = "{{ " + _RUN_DAY + " | ds }}"

# The Flex Template parameters (names from metadata.json); only run_date changes between runs.
PARAMETERS = {
    "input": INPUT,
    "output": OUTPUT,
    "run_date": RUN_DATE,
    "overwrite": "true",
    "max_reject_ratio": "0.01",
    "sdk_container_image": IMAGE,
    **({"previous_schema": PREVIOUS_SCHEMA} if PREVIOUS_SCHEMA else {}),
}

# The pipeline's placeholders, as it resolves them (pipeline/placeholders.py, which Airflow
# workers do not have): {date}, {date-1}, {date+7}, {date-1:%Y/%m/%d}; {{ and }} for braces.
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{date(?P<offset>[+-][0-9]+)?(?::(?P<format>[^{}]+))?\}")


def resolve_dates(path: str, run_date: str) -> str:
    """`path` with the date placeholders resolved for `run_date` (YYYY-MM-DD)."""
    day = date.fromisoformat(run_date)

    def expand(match: re.Match) -> str:
        if match[0] in ("{{", "}}"):
            return match[0][0]
        shifted = day + timedelta(days=int(match["offset"] or 0))
        return shifted.strftime(match["format"] or "%Y-%m-%d")

    return _PLACEHOLDER.sub(expand, path)


OUTPUT_BUCKET, _, OUTPUT_PREFIX = OUTPUT.removeprefix("gs://").partition("/")

with DAG(
    dag_id="cloud_import_prep_daily",
    description="Raw NDJSON of the previous UTC day -> clean, deduplicated NDJSON for Mixpanel",
    schedule="0 3 * * *",  # 03:00 UTC: late uploads of the previous day have landed
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": pendulum.duration(minutes=15)},
    user_defined_macros={"resolve_dates": resolve_dates, "output_prefix": OUTPUT_PREFIX},
    tags=["dataflow", "mixpanel"],
) as dag:
    prepare = DataflowStartFlexTemplateOperator(
        task_id="prepare",
        project_id=PROJECT,
        location=REGION,
        body={
            "launchParameter": {
                # Dataflow job names: lowercase letters, digits and hyphens.
                "jobName": "cloud-import-prep-{{ " + _RUN_DAY + " | ds_nodash }}",
                "containerSpecGcsPath": TEMPLATE,
                "parameters": PARAMETERS,
                "environment": {
                    "serviceAccountEmail": SERVICE_ACCOUNT,
                    "tempLocation": TEMP_LOCATION,
                    "machineType": "n2-standard-4",
                    "maxWorkers": 20,
                },
            }
        },
        wait_until_finished=True,
    )

    # The folder the job wrote: OUTPUT resolved as the pipeline resolves it, for the same run date.
    passed = GCSObjectExistenceSensor(
        task_id="passed_checks",
        bucket=OUTPUT_BUCKET,
        object="{{ resolve_dates(output_prefix, " + _RUN_DAY + " | ds).rstrip('/') }}/_SUCCESS",
        mode="reschedule",
        poke_interval=60,
        timeout=600,
    )

    prepare >> passed
