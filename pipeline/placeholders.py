"""Date placeholders in --input and --output, resolved once when a run is launched.

A scheduled job has static parameters, yet each run must read and write a new day. So
paths may hold `{date}` tokens that stand for the run date (`--run-date`, default today in
UTC at launch) shifted by whole days and formatted:

    {date}                the run date as YYYY-MM-DD            2024-03-01
    {date-1}              one day before it                     2024-02-29
    {date+7}              seven days after it                   2024-03-08
    {date-1:%Y/%m/%d}     with a strftime-style format          2024/02/29
    {{ and }}             a literal { or }

Formats accept only the numeric directives %Y %m %d %y %j and %% (no locale, no time), and
must use at least one date directive: a format without any is what a scheduler leaves after
substituting the %-directives with its own date (Dataflow Data Pipelines does that in template
parameters), so `{date-1:%Y/%m/%d}` arriving as `{date-1:2024/03/01}` is refused instead of
silently naming that other day. Any other use of a brace is an error rather than a literal, so
that a typo such as `{dat-1}` cannot silently become a folder name. Resolution is a pure function of the pattern and
the run date: rerunning a run date gives the same paths, so the rerun (with --overwrite)
replaces that day's output instead of adding a second copy.
"""

import re
from collections.abc import Sequence
from datetime import date, timedelta

# The strftime directives a format may use: numeric, so the same in every locale.
FORMAT_DIRECTIVES = ("Y", "m", "d", "y", "j", "%")
DEFAULT_FORMAT = "%Y-%m-%d"
MAX_OFFSET_DAYS = 36_600  # a century: larger offsets are typos
_RUN_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TOKEN = re.compile(r"date(?:(?P<offset>[+-][0-9]+))?(?::(?P<format>[^{}]+))?")
_SYNTAX = "write {date}, {date-1} or {date-1:%Y/%m/%d}, and {{ or }} for a literal brace"


class PlaceholderError(ValueError):
    """A --run-date or a path placeholder that cannot be resolved."""


def parse_run_date(text: str | None, today: date) -> date:
    """The run date: `text` as YYYY-MM-DD, or `today` when it is None or empty.

    Raises:
      PlaceholderError: the text is not a real calendar date in that form.
    """
    if text is None or not text.strip():
        return today
    text = text.strip()
    if _RUN_DATE.fullmatch(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass  # the right shape, but no such day (2023-02-29)
    raise PlaceholderError(
        f"--run-date {text!r} is not a calendar date in the form YYYY-MM-DD (e.g. 2024-02-01)"
    )


def resolve(pattern: str, run_date: date, flag: str = "--input") -> str:
    """`pattern` with every `{date…}` token replaced; `{{`/`}}` become braces.

    Args:
      pattern: a path or glob pattern, possibly with tokens.
      run_date: the date `{date}` stands for.
      flag: the flag the pattern came from, named in errors.

    Raises:
      PlaceholderError: an unknown token, an unbalanced brace, a bad format
        directive, or an offset beyond MAX_OFFSET_DAYS or the calendar.
    """
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith(("{{", "}}"), i):
            out.append(char)
            i += 2
        elif char == "}":
            raise PlaceholderError(f"{flag} {pattern!r}: unmatched '}}' at position {i}; {_SYNTAX}")
        elif char == "{":
            end = pattern.find("}", i)
            if end < 0:
                raise PlaceholderError(f"{flag} {pattern!r}: unclosed '{{' at position {i}; {_SYNTAX}")
            out.append(_expand(pattern[i + 1 : end], run_date, flag, pattern))
            i = end + 1
        else:
            out.append(char)
            i += 1
    return "".join(out)


def resolve_all(
    inputs: Sequence[str] | None,
    output: str | None,
    run_date_text: str | None,
    today: date,
) -> tuple[list[str] | None, str | None, str]:
    """Resolves the --input patterns and --output of one run.

    Missing values stay None, so that the caller's own checks report them.

    Args:
      inputs: the --input patterns, or None.
      output: the --output folder, or None.
      run_date_text: --run-date as given, or None for `today`.
      today: the current UTC date, read once by the caller at launch.

    Returns:
      The resolved inputs, the resolved output and the run date as YYYY-MM-DD.

    Raises:
      PlaceholderError: naming the flag and the problem.
    """
    run_date = parse_run_date(run_date_text, today)
    resolved_inputs = None if inputs is None else [resolve(p, run_date, "--input") for p in inputs]
    resolved_output = None if output is None else resolve(output, run_date, "--output")
    return resolved_inputs, resolved_output, run_date.isoformat()


def _expand(token: str, run_date: date, flag: str, pattern: str) -> str:
    match = _TOKEN.fullmatch(token)
    if match is None:
        raise PlaceholderError(f"{flag} {pattern!r}: unknown placeholder {{{token}}}; {_SYNTAX}")
    offset = int(match["offset"] or 0)
    if abs(offset) > MAX_OFFSET_DAYS:
        raise PlaceholderError(
            f"{flag} {pattern!r}: offset {offset:+d} days in {{{token}}} is over {MAX_OFFSET_DAYS}"
        )
    fmt = match["format"] or DEFAULT_FORMAT
    try:
        day = run_date + timedelta(days=offset)
    except OverflowError:
        raise PlaceholderError(
            f"{flag} {pattern!r}: {{{token}}} falls outside the calendar for run date {run_date}"
        ) from None
    try:
        formatted = format_date(day, fmt)
    except ValueError as err:
        raise PlaceholderError(f"{flag} {pattern!r}: {{{token}}}: {err}") from None
    if not _formats_the_date(fmt):
        raise PlaceholderError(
            f"{flag} {pattern!r}: {{{token}}} has a format without a date directive (%Y %m %d %y "
            "%j): were its %-directives substituted before the launch? Dataflow Data Pipelines "
            "replaces them in template parameters with its own schedule's date, which is not the "
            "run date; write {date-1} without a format there (docs/scheduling.md)"
        )
    return formatted


def _formats_the_date(fmt: str) -> bool:
    """Whether a format uses a date directive; "%%" and text alone do not."""
    i = 0
    while i < len(fmt) - 1:
        if fmt[i] == "%":
            if fmt[i + 1] in FORMAT_DIRECTIVES and fmt[i + 1] != "%":
                return True
            i += 2
        else:
            i += 1
    return False


def format_date(day: date, fmt: str) -> str:
    """`day` formatted with the directives of FORMAT_DIRECTIVES.

    Done by hand rather than with strftime, whose output depends on the
    platform for years before 1000 and on the locale for other directives.

    Raises:
      ValueError: the format uses another directive or ends with a lone '%'.
    """
    fields = {
        "Y": f"{day.year:04d}",
        "m": f"{day.month:02d}",
        "d": f"{day.day:02d}",
        "y": f"{day.year % 100:02d}",
        "j": f"{day.timetuple().tm_yday:03d}",
        "%": "%",
    }
    out = []
    i = 0
    while i < len(fmt):
        if fmt[i] != "%":
            out.append(fmt[i])
            i += 1
            continue
        directive = fmt[i + 1 : i + 2]
        if directive not in fields:
            allowed = " ".join("%" + d for d in FORMAT_DIRECTIVES)
            shown = "a lone '%' at the end" if not directive else f"%{directive}"
            raise ValueError(f"format {fmt!r} uses {shown}; allowed: {allowed}")
        out.append(fields[directive])
        i += 2
    return "".join(out)
