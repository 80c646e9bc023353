"""Durations written the way fraud teams speak of windows: ``90s``, ``15m``, ``1h``, ``7d``, ``2w``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(text: str | int | float | timedelta, *, field: str = "duration") -> timedelta:
    """Parse ``'7d'``-style text (or seconds as a number) into a timedelta.

    Examples
    --------
    >>> parse_duration("36h")
    datetime.timedelta(days=1, seconds=43200)
    >>> parse_duration(90)
    datetime.timedelta(seconds=90)
    """
    if isinstance(text, timedelta):
        return text
    if isinstance(text, bool):
        raise ValueError(f"{field} = {text!r}: not a duration; write it like '30m', '1h' or '7d'")
    if isinstance(text, int | float):
        return timedelta(seconds=float(text))
    match = _PATTERN.match(str(text))
    if match is None:
        raise ValueError(f"{field} = {text!r}: not a duration; write it like '30m', '1h' or '7d'")
    value, unit = float(match.group(1)), match.group(2)
    return timedelta(**{_UNITS[unit]: value})


def format_duration(delta: timedelta) -> str:
    """The shortest exact ``'7d'``-style text for a timedelta.

    Examples
    --------
    >>> format_duration(timedelta(hours=48))
    '2d'
    >>> format_duration(timedelta(minutes=90))
    '90m'
    """
    seconds = delta.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
