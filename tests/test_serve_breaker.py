"""The circuit breaker (serving/breaker.py) on its own: its states by the rule the README states, with a clock the
test moves (the cool-down), and its one probe under concurrent callers. The rule, written out here:
closed -> N consecutive Unreachable -> open (callers refused at once) -> after the cool-down one caller probes
(half-open; the others still refused) -> success closes, failure re-opens for another cool-down."""

from __future__ import annotations

import threading

import pytest

from serving.breaker import BreakerOpen, CircuitBreaker
from serving.errors import BadEntities, Unreachable


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def failing():
    raise Unreachable("the online store (Redis at 127.0.0.1:1/0) did not answer: Connection refused")


def answering():
    return "rows"


def breaker(**kw):
    clock, opened, closed = Clock(), [], []
    b = CircuitBreaker(3, 10.0, monotonic=clock, wall_ms=lambda: 1_714_600_000_000, on_open=opened.append,
                       on_close=closed.append, **kw)
    return b, clock, opened, closed


def test_it_opens_after_n_consecutive_failures_and_then_refuses_without_calling():
    b, clock, opened, _ = breaker()
    for n in (1, 2):
        with pytest.raises(Unreachable):
            b.call(failing)
        assert b.state().state == "closed" and b.state().failures == n
    with pytest.raises(Unreachable):
        b.call(failing)
    state = b.state()
    assert (state.state, state.since_ms, state.failures) == ("open", 1_714_600_000_000, 3)
    assert "Connection refused" in state.why and len(opened) == 1
    calls = []
    clock.t += 9.9
    with pytest.raises(BreakerOpen) as e:
        b.call(lambda: calls.append(1))
    assert calls == [] and "circuit breaker is open after 3 failures" in str(e.value)
    assert "retried in 0.1s" in str(e.value) and e.value.status == 503


def test_a_success_between_failures_resets_the_count():
    b, *_ = breaker()
    for _ in range(5):
        with pytest.raises(Unreachable):
            b.call(failing)
        with pytest.raises(Unreachable):
            b.call(failing)
        assert b.call(answering) == "rows"
    assert b.state().state == "closed" and b.state().failures == 0


def test_other_errors_never_count():
    b, *_ = breaker()
    for _ in range(10):
        with pytest.raises(BadEntities):
            b.call(lambda: (_ for _ in ()).throw(BadEntities("a request's own mistake")))
    assert b.state().state == "closed" and b.state().failures == 0


def test_after_the_cool_down_one_probe_closes_it_on_success():
    b, clock, opened, closed = breaker()
    for _ in range(3):
        with pytest.raises(Unreachable):
            b.call(failing)
    clock.t += 10.0  # the edge: a probe is let through at exactly the cool-down
    assert b.call(answering) == "rows"
    assert b.state().state == "closed" and b.state().since_ms is None and b.state().why is None
    assert len(opened) == 1 and [s.state for s in closed] == ["half_open"]


def test_a_failed_probe_reopens_it_for_another_cool_down_and_keeps_the_outages_start():
    b, clock, opened, _ = breaker()
    for _ in range(3):
        with pytest.raises(Unreachable):
            b.call(failing)
    since = b.state().since_ms
    clock.t += 10.0
    with pytest.raises(Unreachable):
        b.call(failing)  # the probe
    assert b.state().state == "open" and b.state().since_ms == since and len(opened) == 2
    clock.t += 5.0
    with pytest.raises(BreakerOpen):
        b.call(answering)
    clock.t += 5.0
    assert b.call(answering) == "rows" and b.state().state == "closed"


def test_a_probe_that_fails_for_another_reason_frees_the_probe():
    b, clock, *_ = breaker()
    for _ in range(3):
        with pytest.raises(Unreachable):
            b.call(failing)
    clock.t += 10.0
    with pytest.raises(KeyError):
        b.call(lambda: {}["x"])
    assert b.state().state == "half_open"
    assert b.call(answering) == "rows" and b.state().state == "closed"


def test_half_open_lets_exactly_one_of_many_concurrent_callers_through():
    b, clock, *_ = breaker()
    for _ in range(3):
        with pytest.raises(Unreachable):
            b.call(failing)
    clock.t += 10.0
    entered, release = [], threading.Event()
    refused, results = [], []
    start = threading.Barrier(16)

    def probe():
        entered.append(threading.get_ident())
        release.wait(10)
        return "rows"

    def caller():
        start.wait()
        try:
            results.append(b.call(probe))
        except BreakerOpen:
            refused.append(1)

    threads = [threading.Thread(target=caller) for _ in range(16)]
    for t in threads:
        t.start()
    while len(entered) + len(refused) < 16 and not (len(entered) == 1 and len(refused) == 15):
        threading.Event().wait(0.01)
    release.set()
    for t in threads:
        t.join(10)
    assert len(entered) == 1 and len(refused) == 15 and results == ["rows"]
    assert b.state().state == "closed"


def test_concurrent_failures_open_it_once():
    b, _, opened, _ = breaker()
    start = threading.Barrier(12)

    def caller():
        start.wait()
        for _ in range(20):
            try:
                b.call(failing)
            except (Unreachable, BreakerOpen):
                pass

    threads = [threading.Thread(target=caller) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert b.state().state == "open" and len(opened) == 1


def test_settings_are_checked():
    for kw in ({"failures": 0}, {"reset_s": 0}):
        with pytest.raises(ValueError):
            CircuitBreaker(**kw)
