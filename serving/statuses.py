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
* ``missing``: the same, with no default declared: null is served.

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


def status(age_ms: int | None, budget: Budget, degraded: bool, has_default: bool) -> Status:
    """The status of a value of ``age_ms`` (None: absent from the online store) under ``budget``."""
    if age_ms is None or degraded or (budget.max_ms is not None and age_ms > budget.max_ms):
        return Status.DEFAULTED if has_default else Status.MISSING
    if budget.fresh_ms is None or age_ms <= budget.fresh_ms:
        return Status.FRESH
    return Status.STALE
