"""Degraded feature groups: the online store's metadata that says a group's served values are suspect.

The stream cannot un-emit what it wrote to Redis, so when a blocking quality gate fails on an interval of
its output, the monitor (``stream_jobs.monitor``) marks each feature group the gate guards as degraded
here, and clears the mark when a later interval passes that group's gates again. Serving reads the marks
to tell a model which values to distrust.

Layout: one Redis hash per project, ``tandem:degraded:<project>``, field = the group's entity (Feast's
feature view name), value = JSON ``{"since", "pipeline", "run_id", "gates": [...], "why"}``. Feast's own
keys are serialized entity keys followed by the project's name, so none begins with ``tandem:``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import redis


def degraded_key(project: str) -> str:
    return f"tandem:degraded:{project}"


def mark_degraded(client: redis.Redis, project: str, groups: dict[str, dict[str, Any]]) -> None:
    """Mark ``groups`` (entity -> what failed) degraded; a group already marked keeps its first ``since``."""
    if not groups:
        return
    key = degraded_key(project)
    current = degraded_groups(client, project)
    values = {g: json.dumps({**info, "since": current.get(g, {}).get("since", info["since"])}, default=str)
              for g, info in groups.items()}
    client.hset(key, mapping=values)


def clear_degraded(client: redis.Redis, project: str, groups: list[str]) -> list[str]:
    """Clear the marks of ``groups``; returns those that were marked."""
    if not groups:
        return []
    key = degraded_key(project)
    marked = [g for g, present in zip(groups, client.hmget(key, groups)) if present is not None]
    if marked:
        client.hdel(key, *marked)
    return marked


def degraded_groups(client: redis.Redis, project: str) -> dict[str, dict[str, Any]]:
    """The project's degraded groups: entity -> what failed (a value that is not JSON is shown as text)."""
    return parse_marks(client.hgetall(degraded_key(project)))


def parse_marks(hash_value: dict) -> dict[str, dict[str, Any]]:
    """The marks of an ``HGETALL`` of :func:`degraded_key` (serving reads it in its own pipelined round trip)."""
    out = {}
    for field, value in hash_value.items():
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        try:
            info = json.loads(text)
        except ValueError:
            info = {"why": text}
        out[field.decode() if isinstance(field, bytes) else field] = info if isinstance(info, dict) else {"why": text}
    return out


def mark(pipeline: str, run_id: str, since: datetime, failed: list) -> dict[str, Any]:
    """The metadata of one group's mark: the failing gates (``GateResult``) of the interval."""
    return {"since": since.isoformat(), "pipeline": pipeline, "run_id": run_id,
            "gates": [g.gate for g in failed], "why": "; ".join(g.why for g in failed)}
