"""Tests of pipeline/options.py: the reference time and the checks on flags."""

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.options import PrepOptions, UsageError, check_options, format_time, parse_reference_time
from pipeline.run import make_options

FEB1 = 1_706_745_600  # 2024-02-01T00:00:00Z


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
    ],
)
def test_check_options_accepts(argv):
    check_options(PipelineOptions(argv).view_as(PrepOptions))


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


def test_check_options_underscore_spellings():
    options = PipelineOptions(["--input", "a", "--output", "b", "--max_file_mb", "0"])
    with pytest.raises(UsageError, match="--max-file-mb"):
        check_options(options.view_as(PrepOptions))


# make_options ----------------------------------------------------------------------------


def refusal(argv) -> str:
    with pytest.raises(UsageError) as raised:
        make_options(argv)
    return str(raised.value)


@pytest.mark.parametrize("value", ["1000", "1048575", "0", "-1"])
def test_range_bytes_below_one_mib_is_refused(value):
    assert refusal(VALID + ["--range-bytes", value]) == (
        f"--range-bytes must be at least 1048576 (1 MiB), got {value}: smaller ranges only add per-range work"
    )
