"""Online serving: ``tandem serve`` and its lookup, every value with its event time, age and status.

Above the registry in Tandem's layers (it reads what ``feature_repo`` registers
and what the engines' online writers store); nothing imports it but the CLI.

| module | what |
|---|---|
| ``serving.statuses`` | the status rule: fresh, stale, defaulted, missing, fallback (stated once) |
| ``serving.features`` | a request resolved against the catalogs: refs, services, entity keys, Feast's hash keys |
| ``serving.online_store`` | the one Redis round trip, Feast's value bytes |
| ``serving.breaker`` | the circuit breaker around that round trip |
| ``serving.snapshot`` | the fallback snapshot served while the breaker is open (``tandem materialize`` writes it) |
| ``serving.lookup`` | ``OnlineLookup``: the Python function, and the response shape |
| ``serving.http`` | the ASGI app: ``POST /features``, ``GET /health``, ``GET /metrics`` |
| ``serving.access`` | loopback by default; the API token |
| ``serving.metrics`` | Prometheus: served statuses per group, latency, the breaker |
| ``serving.errors`` | each refusal and its HTTP status |

The declarations it serves by (``fresh_for``, ``max_staleness``, ``default``)
live in the catalog (``transforms.budgets``).
"""

__all__ = ["LookupResult", "OnlineLookup", "Served", "Status"]


def __getattr__(name: str):
    """Imported on first use: the lookup imports Feast (seconds), which ``tandem serve``'s refusals need not wait for."""
    if name == "Status":
        from serving.statuses import Status

        return Status
    if name in __all__:
        from serving import lookup

        return getattr(lookup, name)
    raise AttributeError(f"module 'serving' has no attribute {name!r}")
