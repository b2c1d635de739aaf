"""Command-line options of the pipeline and their validation."""


import argparse
import difflib
import math
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, NoReturn

from apache_beam.options.pipeline_options import (
    DebugOptions,
    GoogleCloudOptions,
    PipelineOptions,
    _BeamArgumentParser,
)
from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator

from pipeline.inputs import UPLOAD_ORDERS
from transforms.privacy import name_problem
from transforms.rules import MAX_REFERENCE_TIME
from transforms.write import COMPRESSIONS

MIB = 1 << 20
DEFAULT_LOCAL_RUNNER = "FnApiRunner"
DEFAULT_RANGE_BYTES = 64 * MIB
# Every range costs an element, an open and a seek; smaller ones only add that
# overhead. (Tests that read small files in many ranges lower it in-process.)
MIN_RANGE_BYTES = MIB
TIME_UNITS = ("s", "ms")
_UNIX_SECONDS = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_NEGATIVE_NUMBER = re.compile(r"-[0-9]*\.?[0-9]+")  # a value to argparse, not an option
# Beam's rule for Cloud Storage bucket names (what it checks --temp_location against).
_GCS_BUCKET = re.compile(PipelineOptionsValidator.GCS_BUCKET)

# Options that belong to this tool (the rest are Beam's); recorded in the summary.
OWN_OPTIONS = (
    "input",
    "output",
    "run_date",
    "reference_time",
    "time_unit",
    "upload_order",
    "keep_superseded",
    "compression",
    "max_file_mb",
    "max_reject_ratio",
    "overwrite",
    "range_bytes",
    "skip_unreadable_files",
    "previous_schema",
    "fail_on_type_change",
    # Privacy (DESIGN.md §7). The key file's path is recorded, its bytes never.
    "drop_property",
    "hash_property",
    "hash_key_file",
    "exclude_users",
    "redact_examples",
)


class UsageError(ValueError):
    """A flag is missing or has a value the tool cannot use."""


class PrepOptions(PipelineOptions):
    """Options of Cloud Import Prep (beside Beam's own, such as --runner)."""

    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        parser.add_argument(
            "--input",
            action="append",
            default=None,
            help="Glob pattern of raw NDJSON files (plain or .gz); repeat for more. "
            "Local paths, gs:// or s3://, ** allowed. Example: --input 'gs://raw/events/**.json.gz'",
        )
        parser.add_argument(
            "--output",
            default=None,
            help="Folder to write the result to; must be empty or hold a previous run "
            "(with --overwrite). Example: --output gs://prepared/2024-02-01",
        )
        parser.add_argument(
            "--run-date",
            "--run_date",
            dest="run_date",
            default=None,
            help="The date that {date} placeholders in --input and --output stand for, as "
            "YYYY-MM-DD; default: today in UTC at launch. Placeholders: {date}, {date-1} (the day "
            "before), {date-1:%%Y/%%m/%%d} (formatted); a rerun of a date gets the same paths. "
            "Example: --run-date 2024-02-01 --input 'gs://raw/{date-1}/*' --output "
            "'gs://prepared/{date-1}'",
        )
        parser.add_argument(
            "--reference-time",
            "--reference_time",
            dest="reference_time",
            default=None,
            help="Events more than 1 h after this time are rejected (time_out_of_range). "
            "ISO-8601 or UNIX seconds; default: when the pipeline is built. "
            "Example: --reference-time 2024-02-01T00:00:00Z",
        )
        parser.add_argument(
            "--time-unit",
            "--time_unit",
            dest="time_unit",
            default="s",
            choices=TIME_UNITS,
            help="Unit of the `time` written to clean events: integer seconds (s) or "
            "milliseconds (ms). Example: --time-unit ms",
        )
        parser.add_argument(
            "--upload-order",
            "--upload_order",
            dest="upload_order",
            default="mtime",
            choices=UPLOAD_ORDERS,
            help="How duplicates decide which upload is latest: by the files' last-modified "
            "time then path (mtime), or by path alone (name), for copies that lost their "
            "times. Example: --upload-order name",
        )
        parser.add_argument(
            "--keep-superseded",
            "--keep_superseded",
            dest="keep_superseded",
            action="store_true",
            default=False,
            help="Also write the events that lost the dedupe under superseded/. "
            "Example: --keep-superseded",
        )
        parser.add_argument(
            "--compression",
            default="gzip",
            choices=COMPRESSIONS,
            help="Compression of every output file. Example: --compression none",
        )
        parser.add_argument(
            "--max-file-mb",
            "--max_file_mb",
            dest="max_file_mb",
            type=int,
            default=1024,
            help="Largest uncompressed size of one output file, in MiB (Cloud Import takes "
            "up to 2 GB per file). Example: --max-file-mb 512",
        )
        parser.add_argument(
            "--max-reject-ratio",
            "--max_reject_ratio",
            dest="max_reject_ratio",
            type=float,
            default=None,
            help="Fail the run (no _SUCCESS, non-zero exit) when rejected / non-blank lines "
            "exceeds this ratio; default: no limit. Example: --max-reject-ratio 0.01",
        )
        parser.add_argument(
            "--overwrite",
            action="store_true",
            default=False,
            help="Replace a previous run of this tool in --output; removes only the files "
            "that run listed in its _SUMMARY.json. Example: --overwrite",
        )
        parser.add_argument(
            "--range-bytes",
            "--range_bytes",
            dest="range_bytes",
            type=int,
            default=DEFAULT_RANGE_BYTES,
            help="Size of the byte ranges uncompressed files are split into for parallel "
            f"reading (default {DEFAULT_RANGE_BYTES}, at least {MIN_RANGE_BYTES}). "
            "Example: --range-bytes 134217728",
        )
        parser.add_argument(
            "--skip-unreadable-files",
            "--skip_unreadable_files",
            dest="skip_unreadable_files",
            action="store_true",
            default=False,
            help="Go on when an input file cannot be read to its end (truncated or corrupt "
            "compressed data, a file that vanished or is not readable) and list it in the "
            "summary under input.unreadable_files, with the lines read before the error; "
            "default: such a file fails the run, naming the file. "
            "Example: --skip-unreadable-files",
        )
        parser.add_argument(
            "--previous-schema",
            "--previous_schema",
            dest="previous_schema",
            default=None,
            help="An earlier run's _SCHEMA.json (local, gs:// or s3://; {date} placeholders "
            "allowed): _SCHEMA.json then also says what changed since (drift: new and removed "
            "event names and properties, type changes). Read before any work; a missing or "
            "malformed file is refused. Example: --previous-schema "
            "'gs://prepared/{date-2}/_SCHEMA.json'",
        )
        parser.add_argument(
            "--fail-on-type-change",
            "--fail_on_type_change",
            dest="fail_on_type_change",
            action="store_true",
            default=False,
            help="Fail the run (summary written, no _SUCCESS, non-zero exit) when a property's "
            "non-null types differ from those in --previous-schema. Example: --fail-on-type-change",
        )
        parser.add_argument(
            "--drop-property",
            "--drop_property",
            dest="drop_property",
            action="append",
            default=None,
            help="Remove this property at any depth from event properties and from profile "
            "and group operation values (counted in the summary's privacy section); repeat, or "
            "separate names by commas. Example: --drop-property email --drop-property phone",
        )
        parser.add_argument(
            "--hash-property",
            "--hash_property",
            dest="hash_property",
            action="append",
            default=None,
            help="Replace the value of this top-level event property, and of this operation "
            "key in profile and group updates, by the lowercase hex HMAC-SHA256 of its string "
            "form, keyed with --hash-key-file; distinct_id also hashes profiles' $distinct_id, "
            "so users still join. Repeat, or separate names by commas. "
            "Example: --hash-property distinct_id",
        )
        parser.add_argument(
            "--hash-key-file",
            "--hash_key_file",
            dest="hash_key_file",
            default=None,
            help="File holding the secret key of --hash-property (its bytes, one trailing "
            "newline stripped); local, gs:// or s3://, read once at launch. The key is never "
            "shown: only this path is. Example: --hash-key-file gs://secrets/mixpanel-hmac.key",
        )
        parser.add_argument(
            "--exclude-users",
            "--exclude_users",
            dest="exclude_users",
            default=None,
            help="Deletion list: a file (or glob pattern of files) with one distinct_id per "
            "line; every event and profile update of those users is removed and counted as "
            "output.excluded. Local, gs:// or s3://; may hold millions of ids. "
            "Example: --exclude-users gs://privacy/deletion-requests.txt",
        )
        parser.add_argument(
            "--redact-examples",
            "--redact_examples",
            dest="redact_examples",
            action="store_true",
            default=False,
            help="Show example lines in the summary, report and terminal by reason, source "
            "and offset only, never their content (the rejects/ files still keep the raw "
            "lines). Example: --redact-examples",
        )
        # Not in OWN_OPTIONS: it changes what the command does once the job is
        # submitted, not the job, so it has no place in the summary.
        parser.add_argument(
            "--no-wait",
            "--no_wait",
            dest="wait",
            action="store_false",
            default=True,
            help="Return as soon as the job is submitted, without waiting for it or printing "
            "the summary (Flex Templates and fire-and-forget schedulers must not block). "
            "Example: --runner DataflowRunner --no-wait",
        )


def help_text(prog: str) -> str:
    """--help: this tool's options, then a pointer to Beam's."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Turns raw NDJSON (plain or gzip; local, gs:// or s3://) into clean, "
        "deduplicated, day-partitioned NDJSON that Mixpanel Cloud Import loads as is, plus "
        "a rejects file with a reason for every refused line and a run summary.",
        epilog="Beam's own options are accepted too, for example --runner DataflowRunner "
        "--project P --region R --temp_location gs://B/tmp; any other option is refused. "
        f"Local runs default to --runner {DEFAULT_LOCAL_RUNNER}. Exit status: 0 passed, "
        "1 the run failed its checks or a file could not be read or written, 2 refused "
        "before any work (an unknown option included).",
    )
    PrepOptions._add_argparse_args(parser)
    return parser.format_help()


class _RefusingParser(_BeamArgumentParser):
    """Beam's argument parser, raising UsageError where argparse prints its usage and exits."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _parse_every_option(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str], _RefusingParser]:
    # Built as Beam's PipelineOptions.get_all_options builds its parser: every
    # registered PipelineOptions subclass (this tool's, Beam's, Dataflow's, and
    # those of runners whose module is loaded), once per name, and no
    # abbreviations. No -h either: the CLI answers --help before this.
    parser = _RefusingParser(allow_abbrev=False, add_help=False)
    classes: dict[str, type[PipelineOptions]] = {}
    for cls in PipelineOptions.__subclasses__():
        classes.setdefault(str(cls), cls)
    for cls in classes.values():
        cls._add_argparse_args(parser)
    namespace, leftovers = parser.parse_known_args(list(argv))
    return namespace, leftovers, parser


def parse_runner(argv: Sequence[str]) -> str | None:
    """The --runner of a command line, once every value in it has been checked.

    Raises:
      UsageError: an option's value is refused (`--time-unit h`,
        `--direct_num_workers abc`, `--runner` without a value), in argparse's
        words, which name the option.
    """
    namespace, _, _ = _parse_every_option(argv)
    return namespace.runner


def refuse_unknown_arguments(argv: Sequence[str]) -> None:
    """Refuses anything in argv that no registered option takes.

    Beam only logs "Discarding unparseable args" for those (BEAM_NOTES 13), and
    passes `--name=value` of unregistered names on to the runner: a misspelled
    `--max-reject-rate` would silently leave the gate off. Call it once the
    runner is created: a runner's module may register options of its own.

    Raises:
      UsageError: naming the first unknown option, with the closest known one,
        or the first stray word; or as `parse_runner`.
    """
    _, leftovers, parser = _parse_every_option(argv)
    if not leftovers:
        return
    arg = leftovers[0]
    if arg.startswith("-") and arg not in ("-", "--") and not _NEGATIVE_NUMBER.fullmatch(arg):
        name = arg.split("=", 1)[0]
        known = [flag for action in parser._actions for flag in action.option_strings]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UsageError(
            f"unknown option {name}{hint}; --help lists this tool's options, and Beam's "
            "own options are accepted too"
        )
    raise UsageError(
        f"unexpected argument {arg!r}: it is neither an option nor the value of one "
        "(quote --input patterns, or the shell expands them into several words)"
    )


def parse_reference_time(text: str | None, now: float) -> int:
    """The run's reference time in UNIX seconds.

    Args:
      text: ISO-8601 (offset-less means UTC; "Z" accepted) or UNIX seconds;
        None means `now`.
      now: the current time, used when `text` is None.

    Raises:
      UsageError: the text is neither form, or outside 1970..9999.
    """
    if text is None:
        return math.floor(now)
    text = text.strip()
    if _UNIX_SECONDS.fullmatch(text):
        return _in_range(math.floor(Decimal(text)), text)
    try:
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise UsageError(
            f"--reference-time {text!r} is neither ISO-8601 (2024-02-01T00:00:00Z) "
            "nor UNIX seconds"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return _in_range(math.floor(parsed.timestamp()), text)


def _in_range(seconds: int, text: str) -> int:
    # The rules need reference + 1 h to be a representable date.
    if not 0 <= seconds <= MAX_REFERENCE_TIME:
        raise UsageError(
            f"--reference-time {text!r} is outside 1970-01-01 .. 9999-12-31T22:59:59Z "
            "(UNIX seconds expected; milliseconds given by mistake?)"
        )
    return seconds


def format_time(seconds: int) -> str:
    """UNIX seconds as ISO-8601 UTC with a Z."""
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_options(opts: PrepOptions) -> None:
    """Refuses missing or unusable values, naming the flag.

    Raises:
      UsageError: with a message that says which flag and why.
    """
    own = opts.view_as(PrepOptions)
    if not own.input:
        raise UsageError("--input is required: a glob pattern of the raw NDJSON files")
    if not own.output:
        raise UsageError("--output is required: the folder to write the result to")
    if own.max_file_mb <= 0:
        raise UsageError(f"--max-file-mb must be a positive number of MiB, got {own.max_file_mb}")
    if own.max_file_mb > 2000:
        raise UsageError(
            f"--max-file-mb {own.max_file_mb} is over Cloud Import's 2 GB per-file limit"
        )
    ratio = own.max_reject_ratio
    if ratio is not None and not 0 <= ratio <= 1:
        raise UsageError(f"--max-reject-ratio must be between 0 and 1, got {ratio}")
    if own.range_bytes < MIN_RANGE_BYTES:
        raise UsageError(
            f"--range-bytes must be at least {MIN_RANGE_BYTES} (1 MiB), got {own.range_bytes}: "
            "smaller ranges only add per-range work"
        )
    for pattern in own.input:
        _check_gcs_bucket(pattern, "--input")
    _check_gcs_bucket(own.output, "--output")
    cloud = opts.view_as(GoogleCloudOptions)
    for name in ("temp_location", "staging_location"):
        _check_gcs_bucket(getattr(cloud, name) or "", f"--{name}")
    if own.fail_on_type_change and not own.previous_schema:
        raise UsageError("--fail-on-type-change needs --previous-schema: the schema to compare with")
    check_privacy_options(own)
    mode = opts.get_all_options().get("direct_running_mode")
    if mode == "multi_threading":
        raise UsageError(
            "--direct_running_mode=multi_threading is refused: Beam 2.77 loses data in "
            "that mode; use in_memory (default) or multi_processing"
        )
    check_experiments(opts.view_as(DebugOptions).experiments or [])


def check_experiments(experiments: Sequence[str]) -> None:
    """Refuses the Beam experiment that turns on a data-plane flush which loses data.

    data_buffer_time_limit_ms=N makes Beam's SDK workers (local ones and
    Dataflow's alike) also flush their output on a timer, from a thread that
    clears what the worker writes while it sends (runner_guards.untime_data_plane).

    Raises:
      UsageError: naming the experiment.
    """
    prefix = "data_buffer_time_limit_ms="  # matched as Beam's workers match it
    for experiment in experiments:
        if not experiment.startswith(prefix):
            continue
        value = experiment.removeprefix(prefix)
        if not re.fullmatch(r"-?\d+", value.strip()):
            # Beam's workers would fail to start on it, and a local run then hangs.
            raise UsageError(f"--experiments {experiment}: {value!r} is not a whole number of milliseconds")
        if int(value) > 0:
            raise UsageError(
                f"--experiments {experiment} is refused: Beam 2.77's timed data-plane flush "
                "drops data written while it flushes; leave it out (size-only flushing is the default)"
            )


def property_names(values: Sequence[str] | None) -> list[str]:
    """The names of a repeatable --drop-property or --hash-property: comma-separated, trimmed, once each."""
    names: list[str] = []
    for value in values or ():
        for name in value.split(","):
            if name.strip() not in names:
                names.append(name.strip())
    return names


def check_privacy_options(own: PrepOptions) -> None:
    """Splits the property lists into names and refuses what privacy cannot do (DESIGN.md §7).

    Raises:
      UsageError: a name that would make records invalid, a name both dropped
        and hashed, --hash-property without --hash-key-file or the reverse.
    """
    own.drop_property = property_names(own.drop_property)
    own.hash_property = property_names(own.hash_property)
    for flag, names in (("--drop-property", own.drop_property), ("--hash-property", own.hash_property)):
        for name in names:
            problem = name_problem(flag, name)
            if problem:
                raise UsageError(problem)
    both = [name for name in own.drop_property if name in own.hash_property]
    if both:
        raise UsageError(f"--drop-property and --hash-property both name {both[0]!r}: choose one")
    if own.hash_property and not own.hash_key_file:
        raise UsageError("--hash-property needs --hash-key-file: the file holding the secret key")
    if own.hash_key_file and not own.hash_property:
        raise UsageError("--hash-key-file is given but no --hash-property: nothing would be hashed")
    for flag, path in (("--hash-key-file", own.hash_key_file), ("--exclude-users", own.exclude_users)):
        if path is not None:
            if not path.strip():
                raise UsageError(f"{flag} needs a path")
            _check_gcs_bucket(path, flag)


def _check_gcs_bucket(url: str, flag: str) -> None:
    # Refused here, before any request: Google's client raises a bare
    # ValueError for some bad names, and sends others to the service.
    if not url.startswith("gs://"):
        return
    bucket = url[len("gs://") :].split("/", 1)[0]
    if not _GCS_BUCKET.fullmatch(bucket):
        raise UsageError(
            f"{flag} {url!r}: {bucket!r} is not a valid Cloud Storage bucket name (3 or more "
            "lowercase letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"
        )


def own_options(opts: PrepOptions) -> dict[str, Any]:
    """This tool's options with their values, for the summary."""
    own = opts.view_as(PrepOptions)
    return {name: getattr(own, name) for name in OWN_OPTIONS}
