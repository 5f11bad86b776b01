"""``tandem serve``'s HTTP endpoint: an ASGI app (FastAPI on Starlette, run by uvicorn).

* ``POST /features``: a lookup. The body is Feast's feature server request
  (``/get-online-features``)::

      {"features": ["driver:driver_rides_5m", ...]   or   "feature_service": "rides_all",
       "entities": {"driver": ["d1", "d2"]},          # composite keys: one list per key column
       "full_feature_names": false}                   # optional: view__feature names

  and the answer its response shape, with each value's status, event time and
  age (``serving.lookup.LookupResult.to_json``).
* ``GET /health``: 200 ``{"status": "ok"}`` while Redis answers; 200 ``"degraded"`` while lookups are served
  from the fallback snapshot (the breaker open, or Redis not answering); 503 when neither can serve
  (:func:`health_of`).
* ``GET /metrics``: Prometheus text (``serving.metrics``).

Every refusal is ``{"error": {"kind", "message"}}`` with its HTTP status
(400 malformed, 401 token, 404 unknown feature/view/service/path, 405 method,
413 too many entities or bytes, 422 entity keys, 503 Redis unreachable and no
fallback snapshot configured); an
unexpected failure is a 500 with the same shape, logged here, never a stack
trace in the response; the server keeps serving.

The body is parsed by ``json.loads`` and checked by ``serving.features``
rather than by a pydantic model, which would coerce (``"12"`` into an int64
key, ``1.0`` into 1) what Tandem refuses. The lookup runs on the event loop:
its Redis round trip is bounded by ``serving.timeout`` (a thread hop would add
more than the round trip costs at one entity).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from runtime.secrets import Secret
from serving.access import authorized
from serving.errors import BadRequest, ServeError, TooLarge
from serving.lookup import OnlineLookup, _iso as iso_ms
from serving.metrics import ServeMetrics

log = logging.getLogger(__name__)

ENDPOINTS = ("/features", "/health", "/metrics")
_REQUEST_KEYS = {"features", "feature_service", "entities", "full_feature_names"}


def body_limit(max_entities: int) -> int:
    """The largest request body taken: 1 KiB per entity, at least 1 MiB (keys are short; this stops a flood,
    not a batch)."""
    return max(1 << 20, max_entities * 1024)


def create_app(lookup: OnlineLookup, token: Secret | None = None, metrics: ServeMetrics | None = None) -> "Guard":
    """The ASGI app serving ``lookup`` (FastAPI's routes inside :class:`Guard`); with ``token``, every request must
    carry ``Authorization: Bearer <token>``."""
    metrics = metrics or lookup.metrics or ServeMetrics()
    if lookup.metrics is not metrics:
        lookup.attach_metrics(metrics)
    limit = body_limit(lookup.max_entities)
    app = FastAPI(title="tandem serve", docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/features")
    async def features(request: Request) -> Response:
        body = await _read_body(request, limit)
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError) as e:
            raise BadRequest(f"the request body is not JSON: {_json_error(e)}") from None
        if not isinstance(doc, dict):
            raise BadRequest("the request body must be a JSON object: {\"features\": [...] or \"feature_service\": "
                             "\"...\", \"entities\": {...}}")
        unknown = sorted(set(doc) - _REQUEST_KEYS)
        if unknown:
            raise BadRequest(f"unknown request key {unknown[0]!r}; the keys are {', '.join(sorted(_REQUEST_KEYS))}")
        full = doc.get("full_feature_names", False)
        if not isinstance(full, bool):
            raise BadRequest(f"full_feature_names must be true or false (got {json.dumps(full)[:40]})")
        if "entities" not in doc:
            raise BadRequest("the request has no entities: {\"entities\": {\"<key column>\": [values...]}}")
        try:
            result = lookup.lookup(doc["entities"], features=doc.get("features"),
                                   feature_service=doc.get("feature_service"))
            return _json(200, result.to_json(full_feature_names=full))
        except ServeError:
            raise
        except Exception as e:  # a bug, not the request: logged here, a 500 there, and the server goes on
            log.exception("internal error in a lookup")
            return _error(500, "internal", f"internal error ({type(e).__name__}); the server log has the details")

    @app.get("/health")
    async def health() -> Response:
        return _json(*health_of(lookup))

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(ServeError)
    async def refused(request: Request, e: ServeError) -> Response:
        return _error(e.status, e.kind, str(e))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> Response:
        if e.status_code == 404:
            return _error(404, "not_found", f"no endpoint {request.url.path}; the endpoints are "
                                            "POST /features, GET /health, GET /metrics")
        if e.status_code == 405:
            return _error(405, "method_not_allowed", f"{request.method} {request.url.path} is not served; the "
                                                     "endpoints are POST /features, GET /health, GET /metrics",
                          headers=getattr(e, "headers", None))
        return _error(e.status_code, "http_error", str(e.detail))

    @app.exception_handler(Exception)
    async def failed(request: Request, e: Exception) -> Response:
        log.exception("internal error serving %s %s", request.method, request.url.path)
        return _error(500, "internal", f"internal error ({type(e).__name__}); the server log has the details")

    return Guard(app, token, metrics)


class Guard:
    """The outermost ASGI layer: the token check on every request, and each request's latency and status in
    the metrics (401s and 500s included)."""

    def __init__(self, app: FastAPI, token: Secret | None, metrics: ServeMetrics):
        self.app, self.token, self.metrics = app, token, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        endpoint = scope["path"] if scope["path"] in ENDPOINTS else "other"
        code = [500]

        async def sending(message) -> None:
            if message["type"] == "http.response.start":
                code[0] = message["status"]
            await send(message)

        try:
            if self.token is not None and not authorized(self.token, scope["headers"]):
                response = _error(401, "unauthorized", "missing or wrong API token: send Authorization: Bearer <token>",
                                  headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, sending)
            else:
                await self.app(scope, receive, sending)
        finally:
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - began)
            self.metrics.requests.labels(endpoint, str(code[0])).inc()


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the request body is {int(declared)} bytes; this server takes at most {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the request body is over {limit} bytes, the most this server takes")
        chunks.append(chunk)
    return b"".join(chunks)


def health_of(lookup: OnlineLookup) -> tuple[int, dict]:
    """``GET /health``: (HTTP status, body).

    * 200 ``{"status": "ok", "online_store": {"state": "closed"}}``: Redis answers a PING;
    * 200 ``{"status": "degraded", "online_store": {"state", "since", "why"}, "fallback": {view: written at}}``:
      Redis does not answer (or the breaker is open: then it is not pinged, the breaker's probe is what retries
      it) and lookups are served from the fallback snapshot, which holds at least one view. 200 rather than
      503 on purpose: the replicas of a deployment share one Redis, and a load balancer that took every one
      out of rotation on a Redis outage would turn the fallback into a full outage. Alert on the breaker
      metric, or on this status;
    * 503 ``{"status": "unavailable", ...}``: Redis does not answer and no fallback snapshot can serve.
    """
    state = lookup.breaker.state()
    problem = state.why if state.state != "closed" else lookup.store.ping()
    if problem is None:
        return 200, {"status": "ok", "project": lookup.project, "online_store": {"state": "closed"}}
    store = {"state": state.state, "since": iso_ms(state.since_ms), "why": problem}
    fallback = {}
    if lookup.snapshot is not None:
        for view, snap in lookup.snapshot.warm(lookup.views).items():
            fallback[view] = iso_ms(snap.written_at_ms) if not isinstance(snap, str) else None
    if any(v is not None for v in fallback.values()):
        return 200, {"status": "degraded", "project": lookup.project, "online_store": store, "fallback": fallback}
    return 503, {"status": "unavailable", "project": lookup.project, "online_store": store,
                 "fallback": fallback or None}


def _json_error(e: Exception) -> str:
    if isinstance(e, json.JSONDecodeError):
        return f"{e.msg} at line {e.lineno} column {e.colno}"
    if isinstance(e, UnicodeDecodeError):
        return "it is not UTF-8"
    return "nested too deeply" if isinstance(e, RecursionError) else type(e).__name__


def _json(status: int, body: Any, headers: dict | None = None) -> Response:
    text = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Response(text.encode("utf-8"), status_code=status, media_type="application/json", headers=headers)


def _error(status: int, kind: str, message: str, headers: dict | None = None) -> Response:
    return _json(status, {"error": {"kind": kind, "message": message}}, headers)
