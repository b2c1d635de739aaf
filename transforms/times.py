"""Event times: the time a record gives read as exact UNIX milliseconds, and UTC days (pure; no Beam)."""

import datetime
import re

from transforms.reasons import type_name

# Numbers at or above this magnitude are milliseconds (1e11 s is the year 5138).
MS_THRESHOLD = 100_000_000_000
# A numeric string with more integer digits than this is far out of range; capping
# keeps int() away from its 4300-digit limit and from needless big-number work.
_MAX_TIME_DIGITS = 20
_FAR_AWAY_MS: int = 10**_MAX_TIME_DIGITS * 1000

# DESIGN.md's exact grammars. fullmatch() is used: `$` would accept a trailing "\n".
_NUMERIC_TIME = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")
_ISO_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]+))?)?)?"
    r"(?:(Z)|([+-])([0-9]{2})(?::([0-9]{2}))?)?"
)

_UNIX_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
_DAY_CACHE: dict[int, str] = {}
_DAY_CACHE_LIMIT = 100_000  # about 270 years of distinct days


def day_of(seconds: int) -> str:
    """The UTC day "YYYY-MM-DD" of a UNIX time in seconds (years 1 to 9999)."""
    days = seconds // 86400
    day = _DAY_CACHE.get(days)
    if day is None:
        if len(_DAY_CACHE) >= _DAY_CACHE_LIMIT:
            _DAY_CACHE.clear()
        day = datetime.date.fromordinal(days + _UNIX_EPOCH_ORDINAL).isoformat()
        _DAY_CACHE[days] = day
    return day


def read_time(value: object) -> int | str:
    """An event time as exact, floored UNIX milliseconds, or why it is invalid.

    Floors are taken on the exact decimal value (integer arithmetic, never
    float division), so "1704067200.999" is 1704067200999 ms and floors to
    second 1704067200. Magnitudes of 1e11 and more are milliseconds.
    """
    if type(value) is int:
        if -MS_THRESHOLD < value < MS_THRESHOLD:
            return value * 1000
        return value
    if type(value) is float:
        return _float_milliseconds(value)
    if type(value) is str:
        return _read_time_string(value)
    if type(value) is bool:
        return "properties.time is a boolean"
    return f"properties.time is {type_name(value)}, not a number or a string"


def _float_milliseconds(value: float) -> int:
    """Floored milliseconds of a float time, read as the decimal it was written as.

    The float's shortest repr is the JSON number as written (up to 17
    significant digits), so 1704067200.999 gives 1704067200999 ms, where the
    binary value (1704067200.99899...) would give ...998. Integer arithmetic
    on that decimal keeps the floor exact at any magnitude.
    """
    mantissa, _, exponent = repr(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    scale = int(exponent or 0) - len(fraction)
    if abs(value) < MS_THRESHOLD:
        scale += 3  # seconds to milliseconds
    digits = int(whole + fraction)  # the sign rides on `whole`
    factor: int = 10 ** abs(scale)
    return digits * factor if scale >= 0 else digits // factor


def _read_time_string(text: str) -> int | str:
    if not text:
        return "properties.time is an empty string"
    # An ISO date has "-" at index 4; a numeric string can only have it at 0.
    if len(text) >= 10 and text[4] == "-":
        return _read_iso_time(text)
    match = _NUMERIC_TIME.fullmatch(text)
    if match is None:
        return "properties.time is a string that is neither a number nor an ISO-8601 date-time"
    negative: bool = match[1] == "-"
    whole: str = match[2].lstrip("0")
    fraction: str = match[3] or ""
    if len(whole) > _MAX_TIME_DIGITS:
        return -_FAR_AWAY_MS if negative else _FAR_AWAY_MS
    magnitude = int(whole or "0")
    if magnitude >= MS_THRESHOLD:
        milliseconds, rest = magnitude, fraction
    else:
        milliseconds = magnitude * 1000 + int((fraction[:3] + "00")[:3])
        rest = fraction[3:]
    if negative:
        # floor(-x) is -x, less one when x has a fractional part left.
        return -milliseconds - (1 if rest.strip("0") else 0)
    return milliseconds


def _read_iso_time(text: str) -> int | str:
    match = _ISO_TIME.fullmatch(text)
    if match is None:
        return "properties.time is a string that is neither a number nor an ISO-8601 date-time"
    year, month, day, hour, minute, second, fraction, _, sign, off_hour, off_minute = match.groups()
    try:
        ordinal = datetime.date(int(year), int(month), int(day)).toordinal()
    except ValueError:
        return "properties.time is not a valid calendar date"
    hour_i = int(hour or 0)
    minute_i = int(minute or 0)
    second_i = int(second or 0)
    if hour_i > 23 or minute_i > 59 or second_i > 59:
        return "properties.time is not a valid time of day"
    seconds = (ordinal - _UNIX_EPOCH_ORDINAL) * 86400 + hour_i * 3600 + minute_i * 60 + second_i
    if sign:
        off_hour_i = int(off_hour)
        off_minute_i = int(off_minute or 0)
        if off_hour_i > 23 or off_minute_i > 59:
            return "properties.time has an invalid UTC offset"
        offset = off_hour_i * 3600 + off_minute_i * 60
        # Local time = UTC + offset, so UTC = local - offset.
        seconds += -offset if sign == "+" else offset
    milliseconds = seconds * 1000
    if fraction:
        milliseconds += int((fraction[:3] + "00")[:3])
    return milliseconds
