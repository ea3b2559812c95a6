"""Durations as operators type them: ``90``, ``30s``, ``5m``, ``3h``, ``7d``.

One syntax for every option and setting that takes a time span. A plain
number is in the option's own unit (seconds, unless the option's name says
``-days``, ``-hours`` or ``-minutes``), so existing scripts keep working.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

from clickrouter.errors import InvalidInput

UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
SYNTAX = "a duration (a number with an optional unit s, m, h or d: 30s, 5m, 3h, 7d)"
# longer than any retention or window the system has a use for; bounds float overflow
MAX_SECONDS = 100 * 365 * 86400.0

_PATTERN = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([smhd]?)\s*")


def parse_duration(
    text: str, *, unit: float = 1.0, allow_zero: bool = False, what: str = "duration"
) -> float:
    """Seconds from ``text``; a bare number counts ``unit`` seconds each.

    Raises :class:`InvalidInput` (naming ``what`` and the value) for anything
    else, a negative or non-finite number, zero unless ``allow_zero``, or a
    span beyond :data:`MAX_SECONDS`.
    """
    match = _PATTERN.fullmatch(text)
    if match is None:
        raise InvalidInput(f"{what}: expected {SYNTAX}, got {text!r}")
    number, suffix = match.groups()
    seconds = float(number) * (UNITS[suffix] if suffix else unit)
    if not math.isfinite(seconds) or seconds > MAX_SECONDS:
        raise InvalidInput(f"{what}: {text!r} is longer than {MAX_SECONDS / 86400:.0f}d")
    if seconds == 0 and not allow_zero:
        raise InvalidInput(f"{what}: expected a duration > 0, got {text!r}")
    return seconds


def duration_type(*, unit: float = 1.0, allow_zero: bool = False) -> Callable[[str], float]:
    """An argparse ``type=`` returning seconds; argparse names the option in its error."""

    def parse(text: str) -> float:
        try:
            return parse_duration(text, unit=unit, allow_zero=allow_zero, what="value")
        except InvalidInput as exc:
            raise argparse.ArgumentTypeError(exc.message.removeprefix("value: ")) from None

    parse.__name__ = "duration"  # argparse's message: "invalid duration value: ..."
    return parse


def format_duration(seconds: float) -> str:
    """A spelling :func:`parse_duration` reads back: 300 -> "5m", 90 -> "90s", 0.5 -> "0.5s"."""
    for suffix in ("d", "h", "m"):
        size = UNITS[suffix]
        if seconds >= size and seconds % size == 0:
            return _plain(seconds / size) + suffix
    return _plain(seconds) + "s"


def _plain(number: float) -> str:
    """No exponent (``:g`` writes 1e+06, which the parser rightly refuses)."""
    return f"{number:.6f}".rstrip("0").rstrip(".")
