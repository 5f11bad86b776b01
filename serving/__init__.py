"""Online serving: ``tandem serve`` and its lookup, every value with its event time, age and status.

Above the registry in Tandem's layers (it reads what ``feature_repo`` registers
and what the engines' online writers store); nothing imports it but the CLI.

| module | what |
|---|---|
| ``serving.statuses`` | the status rule: fresh, stale, defaulted, missing (stated once) |
| ``serving.features`` | a request resolved against the catalogs: refs, services, entity keys, Feast's hash keys |
| ``serving.online_store`` | the one Redis round trip (the place a circuit breaker wraps), Feast's value bytes |
| ``serving.lookup`` | ``OnlineLookup``: the Python function, and the response shape |
| ``serving.http`` | the ASGI app: ``POST /features``, ``GET /health``, ``GET /metrics`` |
| ``serving.access`` | loopback by default; the API token |
| ``serving.metrics`` | Prometheus: served statuses per group, latency |
| ``serving.errors`` | each refusal and its HTTP status |

The declarations it serves by (``fresh_for``, ``max_staleness``, ``default``)
live in the catalog (``transforms.budgets``).
"""

from serving.lookup import LookupResult, OnlineLookup, Served
from serving.statuses import Status

__all__ = ["LookupResult", "OnlineLookup", "Served", "Status"]
