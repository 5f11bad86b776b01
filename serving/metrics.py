"""Serving's Prometheus metrics, in a registry of their own (one per server, so two in a process never mix).

* ``tandem_serve_values_total{group, status}``: values served, per feature
  group (Feast's feature view) and status (fresh, stale, defaulted, missing,
  fallback);
* ``tandem_serve_request_seconds{endpoint}``: a histogram of request latency
  (the whole request: parsing, the Redis round trip, the response), and
  ``tandem_serve_requests_total{endpoint, code}``: requests by HTTP status;
* ``tandem_serve_group_degraded{group}``: 1 while a group a lookup read was
  marked degraded, as of the latest lookup that read it;
* ``tandem_serve_online_store_breaker_state``: the circuit breaker around
  Redis, 0 closed, 1 half-open (a probe in flight), 2 open (values come from
  the fallback snapshot), read when scraped; and
  ``tandem_serve_online_store_breaker_openings_total``: how many times it
  opened (a failed probe re-opening it counts too).

The latency buckets start at 0.25 ms: a lookup of one entity is a
sub-millisecond affair, and the issue's targets are in milliseconds.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5)


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.values = Counter("tandem_serve_values_total", "Feature values served, per feature group and status",
                              ["group", "status"], registry=self.registry)
        self.latency = Histogram("tandem_serve_request_seconds", "Request latency, per endpoint", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.requests = Counter("tandem_serve_requests_total", "Requests, per endpoint and HTTP status",
                                ["endpoint", "code"], registry=self.registry)
        self.degraded = Gauge("tandem_serve_group_degraded", "1 while the group is marked degraded by a stream gate",
                              ["group"], registry=self.registry)
        self.breaker_state = Gauge("tandem_serve_online_store_breaker_state",
                                   "The Redis circuit breaker: 0 closed, 1 half-open, 2 open (serving the fallback)",
                                   registry=self.registry)
        self.breaker_openings = Counter("tandem_serve_online_store_breaker_openings",
                                        "Times the Redis circuit breaker opened", registry=self.registry)
        self._children: dict[tuple[str, str], object] = {}

    def watch_breaker(self, breaker) -> None:
        """Expose ``breaker``'s (``serving.breaker.CircuitBreaker``) state; openings come from :meth:`breaker_opened`."""
        from serving.breaker import STATE_CODES

        self.breaker_state.set_function(lambda: STATE_CODES[breaker.state().state])

    def breaker_opened(self) -> None:
        self.breaker_openings.inc()

    def served(self, counts: dict[tuple[str, str], int]) -> None:
        """Add a lookup's counts: (group, status) -> values."""
        for labels, n in counts.items():
            child = self._children.get(labels)
            if child is None:
                child = self._children[labels] = self.values.labels(*labels)
            child.inc(n)

    def groups_read(self, groups, degraded) -> None:
        for group in groups:
            self.degraded.labels(group).set(1 if group in degraded else 0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
