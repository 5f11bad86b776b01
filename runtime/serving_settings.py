"""What a project says about serving (``tandem serve``), from ``tandem.yaml``::

    serving:
      token: ...            # the API token ($TANDEM_SERVE_TOKEN overrides; keep it out of git: prefer the variable)
      max_entities: 1000    # entities in one lookup, at most (a larger batch is refused: HTTP 413)
      timeout: 1s           # a lookup's Redis round trip, at most (then it fails: the fallback, or HTTP 503)
      breaker_failures: 5   # Redis failures in a row (refused, lost, timed out) that open the circuit breaker
      breaker_reset: 10s    # how long it stays open before one lookup probes Redis again
      degraded_refresh: 250ms  # a stream gate's degraded mark is honoured at most this long after it is written

Every key is optional. Without a token the server binds loopback only; with
one it may bind any address, and every request must carry
``Authorization: Bearer <token>``. A token is at least 16 characters (e.g.
``python -c "import secrets; print(secrets.token_urlsafe(32))"``) and is held
as a :class:`~runtime.secrets.Secret`: no message or setting prints it.

While the breaker is open, lookups are served from the fallback snapshot
``tandem materialize`` writes (``serving.breaker``, ``serving.snapshot``).
Five failures keep one slow blip (a failover, a restart) from opening it,
and ten seconds of cool-down bound a recovered Redis's wait to one probe
while sending it one lookup per ten seconds, not every lookup, while it is
down.

The degraded marks (``runtime.degraded``) are re-read at most every
``degraded_refresh`` (``serving.marks``), in the round trip of a lookup, so a
one-entity lookup is one Redis command, not two. A quarter of a second is
nothing against a stream interval (a mark follows a checkpoint, seconds to
minutes apart) and keeps each server at four reads of the marks a second at
most; ``0s`` reads them on every lookup.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import UserError
from runtime.operations import duration_setting
from runtime.secrets import Secret
from transforms.durations import parse_duration

ENV_TOKEN = "TANDEM_SERVE_TOKEN"
MIN_TOKEN_LENGTH = 16
_KEYS = {"token", "max_entities", "timeout", "breaker_failures", "breaker_reset", "degraded_refresh"}
MAX_DEGRADED_REFRESH_MS = 60_000


@dataclass(frozen=True)
class ServingSettings:
    token: Secret | None = None
    max_entities: int = 1_000
    timeout_ms: int = 1_000
    breaker_failures: int = 5
    breaker_reset_ms: int = 10_000
    degraded_refresh_ms: int = 250


def serving_token(where: str, value: object) -> Secret | None:
    """A configured token as a Secret (None: none), refused when not a string of at least 16 characters; the
    message names where it came from, never the value."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise UserError(f"{where} must be a string (a YAML number or list is not a token)")
    if len(value) < MIN_TOKEN_LENGTH or value != value.strip():
        raise UserError(f"{where} is too short or has spaces around it: use at least {MIN_TOKEN_LENGTH} characters, "
                        "e.g. python -c \"import secrets; print(secrets.token_urlsafe(32))\"")
    return Secret(value)


def parse_serving(path: Path, doc: dict) -> ServingSettings:
    """The ``serving`` section of ``tandem.yaml`` at ``path`` (``$TANDEM_SERVE_TOKEN`` overrides its token)."""
    section = doc.get("serving") or {}
    if not isinstance(section, dict):
        raise UserError(f"{path}: 'serving' must be a mapping of {', '.join(sorted(_KEYS))}")
    unknown = sorted(set(section) - _KEYS)
    if unknown:
        raise UserError(f"{path}: serving: unknown key {unknown[0]!r}; the keys are {', '.join(sorted(_KEYS))}")
    if os.environ.get(ENV_TOKEN):
        token = serving_token(f"${ENV_TOKEN}", os.environ[ENV_TOKEN])
    else:
        token = serving_token(f"{path}: serving.token", section.get("token"))
    most = section.get("max_entities", ServingSettings.max_entities)
    if isinstance(most, bool) or not isinstance(most, int) or not 1 <= most <= 1_000_000:
        raise UserError(f"{path}: serving.max_entities must be a whole number from 1 to 1000000 (got {most!r})")
    timeout_ms = duration_setting(path, section, "timeout", "1s", "serving")
    failures = section.get("breaker_failures", ServingSettings.breaker_failures)
    if isinstance(failures, bool) or not isinstance(failures, int) or not 1 <= failures <= 1_000:
        raise UserError(f"{path}: serving.breaker_failures must be a whole number from 1 to 1000 (got {failures!r})")
    reset_ms = duration_setting(path, section, "breaker_reset", "10s", "serving")
    try:
        refresh_ms = parse_duration(str(section.get("degraded_refresh", "250ms")))
    except ValueError as e:
        raise UserError(f"{path}: serving.degraded_refresh: {e}") from None
    if refresh_ms > MAX_DEGRADED_REFRESH_MS:  # a mark honoured minutes late is a mark ignored
        raise UserError(f"{path}: serving.degraded_refresh must be at most 1m (got {section['degraded_refresh']!r})")
    return ServingSettings(token=token, max_entities=most, timeout_ms=timeout_ms, breaker_failures=failures,
                           breaker_reset_ms=reset_ms, degraded_refresh_ms=refresh_ms)
