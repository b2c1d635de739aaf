"""Airflow DAG: every day, Cloud Import Prep on Dataflow for the previous UTC day.

Copy this file into the DAGs folder of an Airflow 2.4+ (or Composer) environment with
`apache-airflow-providers-google`, and edit the settings below. The DAG launches the Flex
Template (see docs/dataflow.md), waits for the job, then checks `_SUCCESS`: the job itself
succeeds even when the run fails its checks (too many rejects), and only `_SUCCESS` says the
output may be loaded into Mixpanel.

Every run gets the same static paths with {date-1} placeholders; the pipeline resolves them
against `run_date`, which Airflow sets to the day the run is scheduled for. So a clear/rerun
of a past run processes that run's day again and, with overwrite=true, replaces its output.
"""

import pendulum
from airflow import DAG
from airflow.providers.google.cloud.operators.dataflow import (
    DataflowStartFlexTemplateOperator,
)
from airflow.providers.google.cloud.sensors.gcs import GCSObjectExistenceSensor

# --- settings: edit these ---------------------------------------------------------------------
PROJECT = "my-project"
REGION = "us-central1"
TEMPLATE = "gs://my-dataflow-bucket/templates/cloud-import-prep.json"
IMAGE = "us-central1-docker.pkg.dev/my-project/pipelines/cloud-import-prep:1.0.0"
SERVICE_ACCOUNT = "cloud-import-prep@my-project.iam.gserviceaccount.com"
TEMP_LOCATION = "gs://my-dataflow-bucket/tmp"
RAW = "gs://my-raw-bucket/events/{date-1}/**"
OUTPUT_BUCKET = "my-prepared-bucket"
OUTPUT_PREFIX = "mixpanel/{date-1}"

# The Flex Template parameters (names from metadata.json). `run_date` is the only value that
# changes between runs; Airflow fills it in: the end of the run's data interval is the day the
# run is due, so {date-1} is the day that has just ended.
PARAMETERS = {
    "input": RAW,
    "output": f"gs://{OUTPUT_BUCKET}/{OUTPUT_PREFIX}",
    "run_date": "{{ data_interval_end | ds }}",
    "overwrite": "true",
    "max_reject_ratio": "0.01",
    "sdk_container_image": IMAGE,
}

with DAG(
    dag_id="cloud_import_prep_daily",
    description="Raw NDJSON of the previous UTC day -> clean, deduplicated NDJSON for Mixpanel",
    schedule="0 3 * * *",  # 03:00 UTC: late uploads of the previous day have landed
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": pendulum.duration(minutes=15)},
    tags=["dataflow", "mixpanel"],
) as dag:
    prepare = DataflowStartFlexTemplateOperator(
        task_id="prepare",
        project_id=PROJECT,
        location=REGION,
        body={
            "launchParameter": {
                # Dataflow job names: lowercase letters, digits and hyphens.
                "jobName": "cloud-import-prep-{{ data_interval_end | ds_nodash }}",
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

    # {date-1} again, computed by Airflow, to find the folder the job wrote.
    passed = GCSObjectExistenceSensor(
        task_id="passed_checks",
        bucket=OUTPUT_BUCKET,
        object="mixpanel/{{ macros.ds_add(data_interval_end | ds, -1) }}/_SUCCESS",
        mode="reschedule",
        poke_interval=60,
        timeout=600,
    )

    prepare >> passed
