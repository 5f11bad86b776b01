"""Durations as the catalog and the CLI write them: ``500ms``, ``5s``, ``10m``, ``1h``, ``7d``.

Everything in Tandem measures time in integer milliseconds (event times are UTC
epoch milliseconds), so a duration parses to an ``int`` of milliseconds and never
to a float that could round at a window edge.
"""

from __future__ import annotations

import re

_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d)")


def parse_duration(text: str) -> int:
    """Return the duration in milliseconds; raise ValueError with the accepted forms."""
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"invalid duration {text!r}: use a whole number and a unit, e.g. 500ms, 5s, 2m, 1h, 7d"
        )
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def format_duration(ms: int) -> str:
    """The shortest exact spelling of ``ms`` (``3600000`` -> ``1h``), for names and messages."""
    for unit in ("d", "h", "m", "s"):
        if ms and ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"
