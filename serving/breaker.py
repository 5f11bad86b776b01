"""A circuit breaker around the online store's round trip: stop calling a Redis that keeps failing.

Why: a Redis that is down refuses at once, but one that hangs (a full
network buffer, a stopped process, a partition) makes every lookup wait for
``serving.timeout`` before it can fall back. After ``failures`` consecutive
failures the breaker *opens*: lookups no longer call Redis and are served from
the fallback snapshot at once. After ``reset`` seconds it lets exactly one
lookup through as a probe (*half-open*; the others keep falling back while it
is in flight): a success *closes* it, a failure re-opens it for another
``reset``. Only a failure to reach Redis counts (connection refused or lost, a
timeout: :class:`~serving.errors.Unreachable`); a request's own mistake or an
error reply for one key never does.

Hand-written (about sixty lines) rather than ``pybreaker``: pybreaker's
half-open state lets every concurrent caller through rather than one probe,
and its listeners and storage abstractions are more than this needs. It is
thread-safe (the lookup is a Python function a model server may call from
several threads): state changes happen under one lock, the Redis call itself
outside it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from serving.errors import Unavailable, Unreachable

T = TypeVar("T")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
#: The state as a number, for the Prometheus gauge.
STATE_CODES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


class BreakerOpen(Unavailable):
    """Redis was not called: the breaker is open (a lookup with a fallback serves from it instead)."""


@dataclass(frozen=True)
class BreakerState:
    state: str  # closed, open, half_open
    since_ms: int | None  # wall clock (UTC epoch ms) when it first opened in this outage; None when closed
    why: str | None  # the latest failure, one line (no password: the store's messages never hold one)
    failures: int  # consecutive failures counted


class CircuitBreaker:
    """``failures`` consecutive failures open it; ``reset_s`` later one probe is let through.

    ``monotonic`` and ``wall_ms`` are the clocks (injectable for tests of the cool-down); ``on_open`` is
    called (outside the lock) each time it opens, re-opens after a failed probe included, with the new state;
    ``on_close`` when a probe's success closes it, with the state it leaves.
    """

    def __init__(self, failures: int = 5, reset_s: float = 10.0, *, monotonic: Callable[[], float] = time.monotonic,
                 wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
                 on_open: Callable[[BreakerState], None] | None = None,
                 on_close: Callable[[BreakerState], None] | None = None):
        if failures < 1 or reset_s <= 0:
            raise ValueError("a breaker needs failures >= 1 and reset_s > 0")
        self.failures, self.reset_s = failures, reset_s
        self._monotonic, self._wall_ms, self.on_open, self.on_close = monotonic, wall_ms, on_open, on_close
        self._lock = threading.Lock()
        self._state, self._count, self._why = CLOSED, 0, None
        self._since_ms: int | None = None
        self._opened_at = 0.0
        self._probing = False

    def state(self) -> BreakerState:
        with self._lock:
            return BreakerState(self._state, self._since_ms, self._why, self._count)

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` unless the breaker is open (then :class:`BreakerOpen`, at once). An :class:`Unreachable`
        from ``fn`` counts as a failure and is raised; its success closes the breaker."""
        probe = self._admit()
        try:
            result = fn()
        except Unreachable as e:
            self._failed(str(e))
            raise
        except BaseException:  # not Redis's failure: free the probe, change nothing
            if probe:
                with self._lock:
                    self._probing = False
            raise
        self._succeeded()
        return result

    def _admit(self) -> bool:
        """True when this call is the half-open probe; raises BreakerOpen when it may not call at all."""
        with self._lock:
            if self._state == CLOSED:
                return False
            waited = self._monotonic() - self._opened_at
            if self._state == OPEN and waited >= self.reset_s:
                self._state = HALF_OPEN
            if self._state == HALF_OPEN and not self._probing:
                self._probing = True
                return True
            retry = max(0.0, self.reset_s - waited)
            raise BreakerOpen(f"the online store is not called: its circuit breaker is open after {self._count} "
                              f"failures in a row (last: {self._why}); "
                              + (f"it is retried in {retry:.1f}s" if retry else "a retry is in flight"))

    def _failed(self, why: str) -> None:
        opened = None
        with self._lock:
            self._count += 1
            self._why = why
            if self._state == HALF_OPEN or (self._state == CLOSED and self._count >= self.failures):
                self._state, self._opened_at, self._probing = OPEN, self._monotonic(), False
                if self._since_ms is None:
                    self._since_ms = self._wall_ms()
                opened = BreakerState(self._state, self._since_ms, self._why, self._count)
        if opened is not None and self.on_open is not None:
            self.on_open(opened)

    def _succeeded(self) -> None:
        with self._lock:
            if self._state == CLOSED and self._count == 0:
                return
            left = BreakerState(self._state, self._since_ms, self._why, self._count)
            self._state, self._count, self._why, self._since_ms, self._probing = CLOSED, 0, None, None, False
        if left.state != CLOSED and self.on_close is not None:
            self.on_close(left)
