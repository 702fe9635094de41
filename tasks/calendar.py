"""systemd calendar expressions (systemd.time(7), "Calendar Events"), checked on the control machine.

`systemd-analyze calendar` is a server's tool: here a grammar of the forms a timer's OnCalendar= takes
refuses garbage before anything connects (`problem`), and the server's own parser decides in the probe
(runtime/probe_schedule.py). The grammar is the documented one:

    [WEEKDAYS] [[YEAR-]MONTH-DAY] [HOUR:MINUTE[:SECOND]] [TIMEZONE]    or a shorthand (daily, hourly, ...)

where each number is `*`, a value, a range `A..B`, a list `A,B`, each maybe with a repetition `/N`, the
day of month may follow `~` (counted from the month's end), and WEEKDAYS are names or ranges (Mon..Fri).
"""

from __future__ import annotations

import re

SHORTHANDS = frozenset((
    "minutely", "hourly", "daily", "weekly", "monthly", "quarterly", "semiannually", "semi-annually",
    "yearly", "annually",
))  # fmt: skip
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
EXAMPLES = "daily, hourly, *:0/15, 'Mon 03:00' or 'Mon..Fri *-*-* 09:00:00'"

_NUMBER = r"\d+(?:\.\d+)?"  # a second may be a fraction
_ITEM = re.compile(rf"(?:\*|(?P<low>{_NUMBER})(?:\.\.(?P<high>{_NUMBER}))?)(?:/(?P<repeat>{_NUMBER}))?")
_TIMEZONE = re.compile(r"UTC|[A-Z][A-Za-z_+-]*(?:/[A-Za-z0-9_+-]+){1,2}")
_WEEKDAY = re.compile(r"[A-Za-z]+(?:\.\.[A-Za-z]+)?")


def _component(text: str, what: str, low: int, high: int) -> str | None:
    """Why one number field (its list of items) is wrong, or None."""
    for item in text.split(","):
        match = _ITEM.fullmatch(item)
        if match is None:
            return f"{what} {item!r} is no number, range (A..B), repetition (/N) or *"
        if item.startswith("*") and len(text.split(",")) > 1:
            return f"{what} {text!r} lists * with other values"
        values = [match["low"], match["high"]]
        if what != "second" and any(v and "." in v for v in values):
            return f"{what} {item!r} is no whole number"
        for value in filter(None, values):
            if not low <= float(value) < high + 1:
                return f"{what} {value} is out of {low}-{high}"
        if match["low"] and match["high"] and float(match["low"]) > float(match["high"]):
            return f"{what} range {item!r} runs backwards"
        if match["repeat"] is not None and float(match["repeat"]) <= 0:
            return f"{what} repetition {item!r} must be above 0"
    return None


def _weekdays(text: str) -> str | None:
    for item in text.split(","):
        if not _WEEKDAY.fullmatch(item):
            return f"{item!r} is no weekday or range of weekdays (like Mon..Fri)"
        for day in item.lower().split(".."):
            if day not in DAYS and day not in DAY_NAMES:
                return f"{day!r} is no weekday (Mon, Tue, ... Sun)"
    return None


def _date(text: str) -> str | None:
    # YEAR-MONTH-DAY or MONTH-DAY; `~` before the day counts it from the month's end.
    head, tilde, day = text.rpartition("~")
    if not tilde:
        head, _, day = text.rpartition("-")
    parts = head.split("-") if head else []
    if not 1 <= len(parts) <= 2 or not day:
        return f"date {text!r} is not MONTH-DAY or YEAR-MONTH-DAY"
    fields = [*([("year", 1970, 2199)] if len(parts) == 2 else []), ("month", 1, 12), ("day", 1, 31)]
    for value, (what, low, high) in zip([*parts, day], fields, strict=True):
        problem = _component(value, what, low, high)
        if problem:
            return problem
    return None


def _time(text: str) -> str | None:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        return f"time {text!r} is not HOUR:MINUTE or HOUR:MINUTE:SECOND"
    fields = (("hour", 0, 23), ("minute", 0, 59), ("second", 0, 59))
    for value, (what, low, high) in zip(parts, fields, strict=False):
        problem = _component(value, what, low, high)
        if problem:
            return problem
    return None


def problem(expression: str) -> str | None:
    """Why `expression` is no calendar expression systemd takes, in a few words; None when it is one."""
    words = expression.split()
    if len(words) == 1 and words[0].lower() in SHORTHANDS:
        return None
    if not words:
        return "it is empty"
    if len(words) > 1 and _TIMEZONE.fullmatch(words[-1]):
        words = words[:-1]
    if words[0][:1].isalpha():
        found = _weekdays(words[0])
        if found:
            return found
        words = words[1:]
    dates = [w for w in words if ":" not in w]
    times = [w for w in words if ":" in w]
    if (
        len(dates) > 1
        or len(times) > 1
        or (dates and times and words.index(dates[0]) > words.index(times[0]))
    ):
        return f"{' '.join(words)!r} is not [WEEKDAYS] [DATE] [TIME]"
    for found in (*(_date(w) for w in dates), *(_time(w) for w in times)):
        if found:
            return found
    return None
