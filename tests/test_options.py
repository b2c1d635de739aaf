"""Tests of pipeline/options.py: the reference time and the checks on flags, known and unknown."""

from datetime import date

import pytest
from apache_beam.options.pipeline_options import (
    DebugOptions,
    DirectOptions,
    GoogleCloudOptions,
    PipelineOptions,
    PortableOptions,
    SetupOptions,
    StandardOptions,
    WorkerOptions,
)

from pipeline.options import PrepOptions, UsageError, check_options, format_time, parse_reference_time
from pipeline.plan import make_options

FEB1 = 1_706_745_600  # 2024-02-01T00:00:00Z
TODAY = date(2024, 2, 1)  # what {date} stands for without --run-date


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param("2024-02-01T00:00:00Z", FEB1, id="iso_z"),
        pytest.param("2024-02-01T00:00:00z", FEB1, id="iso_lowercase_z"),
        pytest.param("2024-02-01T00:00:00+00:00", FEB1, id="iso_utc_offset"),
        pytest.param("2024-02-01T01:00:00+01:00", FEB1, id="iso_positive_offset"),
        pytest.param("2024-01-31T19:00:00-05:00", FEB1, id="iso_negative_offset"),
        pytest.param("2024-02-01T00:00:00", FEB1, id="iso_without_offset_is_utc"),
        pytest.param("2024-02-01 00:00:00", FEB1, id="iso_space_separator"),
        pytest.param("2024-02-01T00:00:00.999Z", FEB1, id="fraction_floored"),
        pytest.param("2024-02-01", FEB1, id="date_only_is_utc_midnight"),
        pytest.param("1706745600", FEB1, id="unix_seconds"),
        pytest.param("1706745600.9", FEB1, id="unix_seconds_floored"),
        pytest.param("  1706745600 ", FEB1, id="surrounding_spaces"),
        pytest.param("0", 0, id="epoch"),
    ],
)
def test_parse_reference_time(text, expected):
    assert parse_reference_time(text, now=123.0) == expected


def test_parse_reference_time_defaults_to_now():
    assert parse_reference_time(None, now=1_706_745_600.75) == FEB1


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("yesterday", id="word"),
        pytest.param("2024-13-01", id="no_such_month"),
        pytest.param("2024-02-01T25:00:00Z", id="no_such_hour"),
        pytest.param("1e9", id="exponent"),
        pytest.param("0x10", id="hex"),
        pytest.param("nan", id="nan"),
        pytest.param("2024-02-01T00:00:00ZZ", id="double_z"),
    ],
)
def test_parse_reference_time_garbage(text):
    with pytest.raises(UsageError, match="--reference-time"):
        parse_reference_time(text, now=0.0)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("1706745600000", id="milliseconds_by_mistake"),
        pytest.param("253402300800", id="year_10000"),
    ],
)
def test_parse_reference_time_beyond_year_9999_is_a_usage_error(text):
    """A time past 9999-12-31 cannot be a day of the output (or be formatted in
    the summary); it must be refused as a usage error naming the flag, not crash
    the launch with a ValueError traceback."""
    with pytest.raises(UsageError, match="--reference-time"):
        parse_reference_time(text, now=0.0)


@pytest.mark.parametrize(
    "seconds, expected",
    [(FEB1, "2024-02-01T00:00:00Z"), (0, "1970-01-01T00:00:00Z"), (FEB1 + 3661, "2024-02-01T01:01:01Z")],
)
def test_format_time(seconds, expected):
    assert format_time(seconds) == expected


# check_options ---------------------------------------------------------------------

VALID = ["--input", "/raw/*.json", "--output", "/out"]


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(VALID, id="minimal"),
        pytest.param(VALID + ["--max-file-mb", "1", "--max-reject-ratio", "0"], id="smallest_limits"),
        pytest.param(VALID + ["--max-file-mb", "2000", "--max-reject-ratio", "1"], id="largest_limits"),
        pytest.param(VALID + ["--direct_running_mode=multi_processing"], id="multi_processing"),
        pytest.param(VALID + ["--direct_running_mode=in_memory"], id="in_memory"),
        pytest.param(VALID + ["--experiments", "data_buffer_time_limit_ms=0"], id="untimed_data_plane"),
        pytest.param(VALID + ["--experiments", "use_runner_v2", "--experiments", "beam_fn_api"],
                     id="other_experiments"),
    ],
)
def test_check_options_accepts(argv):
    check_options(PipelineOptions(argv).view_as(PrepOptions))


@pytest.mark.parametrize(
    "experiment, message",
    [
        pytest.param("data_buffer_time_limit_ms=1000",
                     "--experiments data_buffer_time_limit_ms=1000 is refused: Beam 2.77's timed data-plane "
                     "flush drops data written while it flushes; leave it out (size-only flushing is the default)",
                     id="timed"),
        pytest.param("data_buffer_time_limit_ms=1s",
                     "--experiments data_buffer_time_limit_ms=1s: '1s' is not a whole number of milliseconds",
                     id="not_a_number"),
    ],
)
def test_the_experiment_that_times_the_data_plane_is_refused(experiment, message):
    # Beam's workers would flush on a timer that drops data (runner_guards.untime_data_plane).
    with pytest.raises(UsageError) as raised:
        check_options(PipelineOptions(VALID + ["--experiments", experiment]).view_as(PrepOptions))
    assert str(raised.value) == message


@pytest.mark.parametrize(
    "argv, flag",
    [
        pytest.param(["--output", "/out"], "--input", id="missing_input"),
        pytest.param(["--input", "/raw/*"], "--output", id="missing_output"),
        pytest.param(VALID + ["--max-file-mb", "0"], "--max-file-mb", id="max_file_mb_zero"),
        pytest.param(VALID + ["--max-file-mb", "-5"], "--max-file-mb", id="max_file_mb_negative"),
        pytest.param(VALID + ["--max-file-mb", "2049"], "--max-file-mb", id="max_file_mb_over_2gb"),
        pytest.param(VALID + ["--max-reject-ratio", "2"], "--max-reject-ratio", id="ratio_over_one"),
        pytest.param(VALID + ["--max-reject-ratio", "-0.1"], "--max-reject-ratio", id="ratio_negative"),
        pytest.param(VALID + ["--range-bytes", "0"], "--range-bytes", id="range_bytes_zero"),
        pytest.param(
            VALID + ["--direct_running_mode=multi_threading"],
            "--direct_running_mode=multi_threading",
            id="multi_threading_refused",
        ),
    ],
)
def test_check_options_refuses_naming_the_flag(argv, flag):
    with pytest.raises(UsageError) as raised:
        check_options(PipelineOptions(argv).view_as(PrepOptions))
    assert flag in str(raised.value)


# privacy options ---------------------------------------------------------------------


def _privacy(*argv: str) -> PrepOptions:
    own = PipelineOptions([*VALID, *argv]).view_as(PrepOptions)
    check_options(own)
    return own


def test_property_names_may_be_repeated_or_comma_separated():
    own = _privacy("--drop-property", "email, phone", "--drop_property", "email", "--drop-property", "é",
                   "--hash-property", "distinct_id,$user_id", "--hash-key-file", "gs://keys-bucket/k")
    assert own.drop_property == ["email", "phone", "é"]
    assert own.hash_property == ["distinct_id", "$user_id"]
    assert _privacy().drop_property == [] and _privacy().hash_property == []


def test_exclusion_and_redaction_need_nothing_else():
    own = _privacy("--exclude-users", "s3://privacy/deleted.txt", "--redact-examples")
    assert own.exclude_users == "s3://privacy/deleted.txt" and own.redact_examples is True


@pytest.mark.parametrize(
    "argv, message",
    [
        pytest.param(["--hash-property", "email"],
                     "--hash-property needs --hash-key-file: the file holding the secret key", id="hash_without_key"),
        pytest.param(["--hash-key-file", "/k"],
                     "--hash-key-file is given but no --hash-property: nothing would be hashed", id="key_without_hash"),
        pytest.param(["--drop-property", "email", "--hash-property", "phone,email", "--hash-key-file", "/k"],
                     "--drop-property and --hash-property both name 'email': choose one", id="dropped_and_hashed"),
        pytest.param(["--drop-property", "email,"], "--drop-property needs a property name, got an empty one",
                     id="empty_name"),
        pytest.param(["--drop-property", "time"], "--drop-property time is refused: every event needs its time",
                     id="drop_time"),
        pytest.param(["--hash-property", "$insert_id", "--hash-key-file", "/k"],
                     "--hash-property $insert_id is refused: it is the key Mixpanel deduplicates events by (a hash "
                     "would also be 64 characters, over its 36-byte limit)", id="hash_insert_id"),
        pytest.param(["--drop-property", "distinct_id"],
                     "--drop-property distinct_id is refused: it identifies the event's user; --hash-property "
                     "distinct_id pseudonymises it instead", id="drop_distinct_id"),
        pytest.param(["--hash-property", "$group_id", "--hash-key-file", "/k"],
                     "--hash-property $group_id is refused: every group update needs its $group_key and $group_id "
                     "as they are", id="hash_group_id"),
        pytest.param(["--hash-property", "email", "--hash-key-file", " "], "--hash-key-file needs a path",
                     id="blank_key_path"),
        pytest.param(["--exclude-users", "gs://Bad_Bucket/x"], "--exclude-users 'gs://Bad_Bucket/x': 'Bad_Bucket' "
                     "is not a valid Cloud Storage bucket name", id="bad_list_bucket"),
    ],
)
def test_privacy_options_that_cannot_work_are_refused(argv, message):
    with pytest.raises(UsageError) as raised:
        _privacy(*argv)
    assert str(raised.value).startswith(message)


def test_check_options_underscore_spellings():
    options = PipelineOptions(["--input", "a", "--output", "b", "--max_file_mb", "0"])
    with pytest.raises(UsageError, match="--max-file-mb"):
        check_options(options.view_as(PrepOptions))


# make_options: unknown options, bad values (runners and Beam's checks: test_runner_guards.py) ---

KNOWN_HINT = "; --help lists this tool's options, and Beam's own options are accepted too"
STRAY_HINT = (
    ": it is neither an option nor the value of one "
    "(quote --input patterns, or the shell expands them into several words)"
)
BUCKET_RULE = (
    "is not a valid Cloud Storage bucket name (3 or more lowercase letters, digits, '-', '_' or '.', "
    "starting and ending with a letter or digit)"
)


def refusal(argv) -> str:
    with pytest.raises(UsageError) as raised:
        make_options(argv, TODAY)
    return str(raised.value)


@pytest.mark.parametrize(
    "extra, message",
    [
        pytest.param(["--max-reject-rate", "0.01"],
                     "unknown option --max-reject-rate (did you mean --max-reject-ratio?)", id="misspelled_gate"),
        pytest.param(["--max-reject-rate=0.01"], "unknown option --max-reject-rate (did you mean --max-reject-ratio?)",
                     id="misspelled_gate_with_equals"),
        pytest.param(["--keep-supersede"], "unknown option --keep-supersede (did you mean --keep-superseded?)",
                     id="misspelled_flag"),
        pytest.param(["--inptu", "x"], "unknown option --inptu (did you mean --input?)", id="misspelled_input"),
        # argparse would take these as --max-reject-ratio and --runner, were abbreviations allowed.
        pytest.param(["--max-reject", "0.5"], "unknown option --max-reject (did you mean --max-reject-ratio?)",
                     id="abbreviation_of_ours"),
        pytest.param(["--runn", "FnApiRunner"], "unknown option --runn (did you mean --runner?)",
                     id="abbreviation_of_beams"),
        pytest.param(["-input", "/raw/b.json"], "unknown option -input (did you mean --input?)", id="single_dash"),
        # Beam would pass an unregistered --name=value on to the runner.
        pytest.param(["--zzz=1"], "unknown option --zzz", id="unregistered_with_value"),
    ],
)
def test_unknown_options_are_refused_naming_the_closest_known_one(extra, message):
    assert refusal(VALID + extra) == message + KNOWN_HINT


@pytest.mark.parametrize(
    "argv, word",
    [
        pytest.param(VALID + ["stray"], "stray", id="stray_word"),
        pytest.param(["--input", "/raw/a.json", "/raw/b.json", "--output", "/out"], "/raw/b.json",
                     id="glob_expanded_by_the_shell"),
        pytest.param(VALID + ["--overwrite", "true"], "true", id="value_after_a_flag"),
        pytest.param(VALID + ["--", "--inptu"], "--", id="double_dash"),
    ],
)
def test_stray_words_are_refused(argv, word):
    assert refusal(argv) == f"unexpected argument {word!r}" + STRAY_HINT


@pytest.mark.parametrize(
    "extra, message",
    [
        pytest.param(["--time-unit", "h"],
                     "argument --time-unit/--time_unit: invalid choice: 'h' (choose from 's', 'ms')", id="our_choice"),
        pytest.param(["--max-file-mb", "x"], "argument --max-file-mb/--max_file_mb: invalid int value: 'x'",
                     id="our_int"),
        pytest.param(["--direct_num_workers", "abc"], "argument --direct_num_workers: invalid int value: 'abc'",
                     id="beams_int"),
        pytest.param(["--direct_running_mode", "fast"],
                     "argument --direct_running_mode: invalid choice: 'fast' "
                     "(choose from 'in_memory', 'multi_threading', 'multi_processing')",
                     id="beams_choice"),
        pytest.param(["--runner"], "argument --runner: expected one argument", id="missing_value"),
    ],
)
def test_values_argparse_refuses_are_usage_errors_not_a_usage_dump_and_exit(extra, message):
    # Without the check, argparse prints its usage and raises SystemExit.
    assert refusal(VALID + extra) == message


@pytest.mark.parametrize(
    "argv, message",
    [
        pytest.param(VALID + ["--temp_location", "gs://Bad_Bucket!/x"], f"--temp_location 'gs://Bad_Bucket!/x': "
                     f"'Bad_Bucket!' {BUCKET_RULE}", id="temp_location"),
        pytest.param(VALID + ["--staging_location=gs://ab/staging"], f"--staging_location 'gs://ab/staging': 'ab' "
                     f"{BUCKET_RULE}", id="staging_location_too_short"),
        pytest.param(["--input", "/raw/*", "--output", "gs://x/"], f"--output 'gs://x/': 'x' {BUCKET_RULE}",
                     id="output"),
        pytest.param(["--input", "gs://raw-bucket/a/*", "--input", "gs://-raw/b/*", "--output", "/out"],
                     f"--input 'gs://-raw/b/*': '-raw' {BUCKET_RULE}", id="second_input"),
        pytest.param(["--input", "/raw/*", "--output", "gs://Prepared/{date}", "--run-date", "2024-02-01"],
                     f"--output 'gs://Prepared/2024-02-01': 'Prepared' {BUCKET_RULE}", id="after_placeholders"),
    ],
)
def test_invalid_bucket_names_are_refused_before_any_request(argv, message):
    assert refusal(argv) == message


@pytest.mark.parametrize("value", ["1000", "1048575", "0", "-1"])
def test_range_bytes_below_one_mib_is_refused(value):
    assert refusal(VALID + ["--range-bytes", value]) == (
        f"--range-bytes must be at least 1048576 (1 MiB), got {value}: smaller ranges only add per-range work"
    )


def test_options_of_a_registered_options_class_are_known():
    """The known options are every registered PipelineOptions subclass's, not a list of ours."""
    argv = VALID + ["--cloud_import_prep_test_flavour", "x"]
    assert refusal(argv) == "unknown option --cloud_import_prep_test_flavour" + KNOWN_HINT

    class FlavourOptions(PipelineOptions):
        @classmethod
        def _add_argparse_args(cls, parser):
            parser.add_argument("--cloud_import_prep_test_flavour")

    assert make_options(argv, TODAY).view_as(FlavourOptions).cloud_import_prep_test_flavour == "x"


@pytest.mark.parametrize(
    "extra, view, name, expected",
    [
        pytest.param(["--runner", "DirectRunner"], StandardOptions, "runner", "FnApiRunner", id="direct_runner"),
        pytest.param(["--runner=DirectRunner"], StandardOptions, "runner", "FnApiRunner", id="direct_runner_equals"),
        pytest.param(["--runner", "FnApiRunner"], StandardOptions, "runner", "FnApiRunner", id="fn_api_runner"),
        pytest.param(["--runner", "PortableRunner", "--job_endpoint", "embed", "--environment_type", "LOOPBACK"],
                     PortableOptions, "environment_type", "LOOPBACK", id="portable_runner"),
        pytest.param(["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"], DirectOptions,
                     "direct_num_workers", 2, id="direct_num_workers"),
        pytest.param(["--direct_num_workers=2", "--direct_running_mode=multi_processing"], DirectOptions,
                     "direct_running_mode", "multi_processing", id="direct_running_mode_equals"),
        pytest.param(["--experiments", "x"], DebugOptions, "experiments", ["x"], id="experiments"),
        pytest.param(["--experiments", "a", "--experiments=b,c", "--experiment", "d"], DebugOptions, "experiments",
                     ["a", "b", "c", "d"], id="experiments_repeated_and_comma_separated"),
        pytest.param(["--temp_location", "/tmp/x"], GoogleCloudOptions, "temp_location", "/tmp/x",
                     id="local_temp_location"),
        pytest.param(["--temp_location=gs://my-bucket/tmp"], GoogleCloudOptions, "temp_location",
                     "gs://my-bucket/tmp", id="gcs_temp_location"),
        pytest.param(["--save_main_session"], SetupOptions, "save_main_session", True, id="save_main_session"),
        pytest.param(["--dataflow_service_options=enable_hot_key_logging", "--dataflow_service_options", "x=1"],
                     GoogleCloudOptions, "dataflow_service_options", ["enable_hot_key_logging", "x=1"],
                     id="dataflow_service_options"),
        pytest.param(["--sdk_container_image", "r/p/i:1"], WorkerOptions, "sdk_container_image", "r/p/i:1",
                     id="sdk_container_image"),
        pytest.param(["--no_use_public_ips"], WorkerOptions, "use_public_ips", False, id="negative_flag"),
        pytest.param(["--machine_type=n2-standard-4"], WorkerOptions, "machine_type", "n2-standard-4",
                     id="alias_spelling"),
        pytest.param(["--max-reject-ratio=0.01"], PrepOptions, "max_reject_ratio", 0.01, id="ours_with_equals"),
        pytest.param(["--keep_superseded"], PrepOptions, "keep_superseded", True, id="ours_underscored"),
        pytest.param(["--range-bytes", "1048576"], PrepOptions, "range_bytes", 1 << 20, id="smallest_range_bytes"),
        pytest.param(["--reference-time", "-1"], PrepOptions, "reference_time", "-1", id="negative_number_value"),
    ],
)
def test_beams_and_our_options_are_accepted_in_every_spelling(extra, view, name, expected):
    assert getattr(make_options(VALID + extra, TODAY).view_as(view), name) == expected
