"""The status of a served value: the one rule, stated once.

A value's age is the serving time minus its event time (both UTC epoch
milliseconds; an event time ahead of the server's clock gives a negative age,
shown as it is). With the feature's budget (``transforms.budgets``: its
``fresh_for`` and ``max_staleness``, each None for no bound):

* ``fresh``: present, its group not degraded, and ``age <= fresh_for``;
* ``stale``: present, its group not degraded, and ``fresh_for < age <= max_staleness``;
* ``defaulted``: the value cannot be served (absent from the online store, older
  than ``max_staleness``, or its group marked degraded by a stream gate) and a
  default is declared: the default is served;
* ``missing``: the same, with no default declared: null is served;
* ``fallback``: the online store could not be read (its circuit breaker is
  open, or Redis did not answer this lookup) and the value comes from the
  fallback snapshot (the latest row of the offline feature table, written by
  ``tandem materialize``), its group not degraded as last read, and ``age <=
  max_staleness``: the snapshot's value is served, with the snapshot row's
  event time and age. ``fresh_for`` does not split it: a fallback value is
  never called fresh, whatever its age (the age is in the response).
  An entity absent from the snapshot, a value older than ``max_staleness``, a
  view without a snapshot, or a group marked degraded (the marks as last
  read from Redis) is ``defaulted``/``missing`` exactly as above: the fallback
  never serves what the online path would refuse.

Both edges belong to the younger status (``age == fresh_for`` is fresh,
``age == max_staleness`` is stale), as a window's ``[t - W, t]`` holds both ends.
A value the store holds as null (a sum over a window of nulls) is present: it
is served as null with its age's status, since null *is* that feature's value.
Feast's ``get_online_features`` serves every one of these as its stored value
(or null), marked ``PRESENT``: it enforces no age (its issues #6821, #1802).
"""

from __future__ import annotations

import enum

from transforms.budgets import Budget


class Status(str, enum.Enum):
    FRESH = "fresh"
    STALE = "stale"
    DEFAULTED = "defaulted"
    MISSING = "missing"
    FALLBACK = "fallback"


def status(age_ms: int | None, budget: Budget, degraded: bool, has_default: bool) -> Status:
    """The status of a value of ``age_ms`` (None: absent from the online store) under ``budget``."""
    if age_ms is None or degraded or (budget.max_ms is not None and age_ms > budget.max_ms):
        return Status.DEFAULTED if has_default else Status.MISSING
    if budget.fresh_ms is None or age_ms <= budget.fresh_ms:
        return Status.FRESH
    return Status.STALE


def fallback_status(age_ms: int | None, budget: Budget, degraded: bool, has_default: bool) -> Status:
    """The status of a snapshot value of ``age_ms`` (None: not in the snapshot) while the online store is
    not read: ``fallback``, or ``defaulted``/``missing`` by the same cut as :func:`status`."""
    if age_ms is None or degraded or (budget.max_ms is not None and age_ms > budget.max_ms):
        return Status.DEFAULTED if has_default else Status.MISSING
    return Status.FALLBACK
