"""The degraded marks as a lookup last read them, re-read at most every ``refresh`` seconds.

Why: a stream gate marks a group degraded a few times a day at most, but
reading the marks costs every lookup a second Redis command (``HGETALL
tandem:degraded:<project>``), about a fifth of a one-entity lookup's round
trip (BENCHMARKS.md, "Serving"). So a lookup reads them only when the marks it
holds were read ``refresh`` seconds ago or more, in the same round trip as its
features (no thread, no extra round trip); every other lookup judges by the
marks held. ``refresh`` 0 reads them on every lookup.

The bound: a read is stamped with the monotonic time *before* its round trip
was sent, so marks held at time *t* were read by a command sent after
*t* - ``refresh``. A mark written (or cleared) in Redis at time *T* is
therefore honoured by every lookup that starts at *T* + ``refresh`` or later
(and by some sooner). A read that fails changes nothing: the next lookup reads
again. Thread-safe without a lock: the state is one tuple, replaced whole, and
an older read never replaces a newer one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: The default bound on how late a mark is honoured, in seconds (``serving.degraded_refresh``).
DEFAULT_REFRESH_S = 0.25


class DegradedMarks:
    """Holds the marks (group -> what failed) and when they were read. ``monotonic`` is the clock (injectable
    for tests of the interval, as the breaker's is)."""

    def __init__(self, refresh_s: float = DEFAULT_REFRESH_S, *, monotonic: Callable[[], float] = time.monotonic):
        if refresh_s < 0:
            raise ValueError("the degraded marks' refresh interval cannot be negative")
        self.refresh_s = refresh_s
        self._monotonic = monotonic
        self._held: tuple[dict[str, dict], float | None] = ({}, None)  # (marks, read at); None: never read

    @property
    def marks(self) -> dict[str, dict]:
        """The marks as last read ({} before any read)."""
        return self._held[0]

    def due(self) -> float | None:
        """The time to stamp a read with when the marks must be read by this lookup; None when those held do."""
        now = self._monotonic()
        read_at = self._held[1]
        return now if read_at is None or now - read_at >= self.refresh_s else None

    def update(self, marks: dict[str, dict], read_at: float) -> None:
        """Hold ``marks``, read by a round trip sent at ``read_at`` (the value :meth:`due` gave)."""
        held = self._held
        if held[1] is None or read_at >= held[1]:
            self._held = (marks, read_at)
