"""What a lookup asks for: feature refs or a feature service, resolved against the project's catalogs.

The names are Feast's, generated from the same catalogs (``feature_repo.definitions``):
a feature view per feature group, named as the group's ``entity``; a ref
``"<view>:<feature>"``; one feature service per catalog, ``<source>_all``,
holding every feature of its groups. Resolution happens against the catalogs
the server loaded, not Feast's registry file, so serving needs no registry
read and cannot disagree with the catalog about a budget or a default.

Entity keys are checked here too: a string key part is a non-empty string,
an int64 part an integer in int64's range (never a bool), every key column
the requested views need is given, no other, and every column has one value
per entity. Each refusal is a :mod:`serving.errors` error naming the column
or feature, and the entity's index where it is one value.
"""

from __future__ import annotations

import numbers
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from feast.infra.online_stores.helpers import _mmh3

from feature_repo.definitions import service_name
from serving.errors import BadEntities, BadRequest, NotFound
from transforms import Catalog, FieldType
from transforms.budgets import INT64_MAX, INT64_MIN, Budget


@dataclass(frozen=True)
class Requested:
    """One requested feature: where Feast keeps it and how it is served."""

    view: str  # the Feast feature view = the group's entity
    name: str
    dtype: FieldType
    budget: Budget
    default: Any  # None: no default
    field: bytes  # the hash field: murmur3 of "<view>:<feature>", as Feast names it

    @property
    def ref(self) -> str:
        return f"{self.view}:{self.name}"


@dataclass(frozen=True)
class View:
    """One feature view of a lookup: its key and the requested features, in request order."""

    name: str
    key: tuple[str, ...]  # the group's key columns, in the catalog's order
    key_types: tuple[FieldType, ...]
    features: tuple[Requested, ...]

    @property
    def fields(self) -> tuple[bytes, ...]:
        """What one HMGET asks for: the features' fields, then ``_ts:<view>`` (the row's event time)."""
        return (*(f.field for f in self.features), f"_ts:{self.name}".encode())


@dataclass(frozen=True)
class HashRead:
    """The requested views kept in one entity hash: Feast keys a hash by the entity alone (its sorted join keys),
    so the views over the same key columns (``driver`` and ``driver_day``) share it and one HMGET per entity asks
    for all their fields."""

    view: str  # the first such view: its key columns and hash key serve for all
    key: tuple[str, ...]  # its key columns, in the catalog's order
    members: tuple[int, ...]  # the views (indexes into Plan.views) read from this hash
    offsets: tuple[int, ...]  # where each member's fields start in ``fields``
    fields: tuple[bytes, ...]  # what the HMGET asks for: each member's View.fields, in turn


@dataclass(frozen=True)
class Plan:
    """A resolved request: the features in request order, grouped into views; the key columns they need; and
    what depends on the request's shape alone (the hashes to read, where each view's columns go), worked out
    once per plan: plans are cached, and a one-entity lookup would otherwise spend a third of its Python on it."""

    features: tuple[Requested, ...]
    views: tuple[View, ...]
    key_columns: dict[str, FieldType]  # column -> type, in first-needed order
    hashes: tuple[HashRead, ...] = ()
    positions: tuple[tuple[int, ...], ...] = ()  # per view: where each of its features is in ``features``


class Features:
    """The project's feature views and services, from its catalogs; resolves a request into a :class:`Plan`."""

    def __init__(self, catalogs: Sequence[Catalog]):
        self._groups = {}  # view -> (catalog, group)
        self._services: dict[str, tuple[str, ...]] = {}
        for catalog in catalogs:
            for group in catalog.groups:
                self._groups[group.entity] = (catalog, group)
            self._services[service_name(catalog)] = tuple(f"{g.entity}:{f.name}" for g in catalog.groups
                                                          for f in g.features)
        self._plans: dict[tuple, Plan] = {}

    @property
    def services(self) -> dict[str, tuple[str, ...]]:
        return dict(self._services)

    def plan(self, features: Sequence[str] | None = None, feature_service: str | None = None) -> Plan:
        """The plan of ``features`` (``view:feature`` refs) or ``feature_service`` (exactly one of them)."""
        if (features is None) == (feature_service is None):
            raise BadRequest("give either features (a list of \"view:feature\" refs) or feature_service, not "
                             + ("both" if features is not None else "neither"))
        if feature_service is not None:
            if not isinstance(feature_service, str):
                raise BadRequest(f"feature_service must be a name (got {_show(feature_service)})")
            cache_key: tuple = ("service", feature_service)
        else:
            if type(features) is not list and (isinstance(features, (str, bytes))
                                               or not isinstance(features, Sequence)) or not features:
                raise BadRequest("features must be a non-empty list of \"view:feature\" refs")
            cache_key = ("refs", *features)  # a ref that is not a string never resolves, so is never cached
        try:
            plan = self._plans.get(cache_key)
        except TypeError:  # an unhashable ref: refused below
            plan, cache_key = None, None
        if plan is None:
            plan = self._resolve(features, feature_service)
            if len(self._plans) >= 1_000:  # bounded: requests choose the refs
                self._plans.clear()
            self._plans[cache_key] = plan
        return plan

    def _resolve(self, features, feature_service) -> Plan:
        if feature_service is not None:
            refs = self._services.get(feature_service)
            if refs is None:
                raise NotFound(f"no feature service {feature_service!r} (the services: "
                               f"{', '.join(sorted(self._services)) or 'none'})")
        else:
            refs = features
        requested: list[Requested] = []
        seen: set[str] = set()
        for ref in refs:
            if not isinstance(ref, str) or ref.count(":") != 1 or ref.startswith(":") or ref.endswith(":"):
                raise BadRequest(f"feature {_show(ref)} is not a \"view:feature\" ref, e.g. "
                                 f"{next(iter(self._services.values()), ('driver:trips_1h',))[0]!r}")
            if ref in seen:
                raise BadRequest(f"feature {ref!r} is requested twice")
            seen.add(ref)
            view, name = ref.split(":")
            if view not in self._groups:
                raise NotFound(f"no feature view {view!r} (the views: {', '.join(sorted(self._groups))})")
            catalog, group = self._groups[view]
            feature = next((f for f in group.features if f.name == name), None)
            if feature is None:
                raise NotFound(f"feature view {view!r} has no feature {name!r} (its features: "
                               f"{', '.join(f.name for f in group.features)})")
            requested.append(Requested(view, name, catalog.feature_dtype(feature), group.budget(feature),
                                       feature.default, _mmh3(ref)))
        views, key_columns = [], {}
        for view in dict.fromkeys(r.view for r in requested):
            catalog, group = self._groups[view]
            types = tuple(catalog.schema.get_field(k).type for k in group.key)
            views.append(View(view, group.key, types, tuple(r for r in requested if r.view == view)))
            for column, dtype in zip(group.key, types):
                key_columns.setdefault(column, dtype)
        order = {r.ref: i for i, r in enumerate(requested)}
        positions = tuple(tuple(order[f.ref] for f in v.features) for v in views)
        return Plan(tuple(requested), tuple(views), key_columns, _hash_reads(views), positions)


def _hash_reads(views: list[View]) -> tuple[HashRead, ...]:
    sharing: dict[tuple[str, ...], list[int]] = {}
    for i, view in enumerate(views):
        sharing.setdefault(tuple(sorted(view.key)), []).append(i)
    reads = []
    for members in sharing.values():
        offsets, fields = [], []
        for i in members:
            offsets.append(len(fields))
            fields.extend(views[i].fields)
        first = views[members[0]]
        reads.append(HashRead(first.name, first.key, tuple(members), tuple(offsets), tuple(fields)))
    return tuple(reads)


def entity_columns(plan: Plan, entities: Any) -> tuple[int, dict[str, list]]:
    """Check ``entities`` (column -> one value per entity) against ``plan``; the entity count and the columns."""
    if type(entities) is not dict and not isinstance(entities, Mapping):
        raise BadEntities("entities must map each key column to a list of values, e.g. "
                          f"{{{', '.join(repr(c) + ': [...]' for c in plan.key_columns)}}}")
    needed = plan.key_columns
    if entities.keys() != needed.keys():
        missing = [c for c in needed if c not in entities]
        if missing:
            raise BadEntities(f"entities lack key column {missing[0]!r}, which the requested features need "
                              f"(their keys: {', '.join(needed)})")
        extra = [c for c in entities if c not in needed]
        raise BadEntities(f"entities: {_show(extra[0])} is not a key of the requested features (their keys: "
                          f"{', '.join(needed)})")
    columns: dict[str, list] = {}
    count = None
    for column, dtype in needed.items():
        values = entities[column]
        if type(values) is not list:
            if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__len__") \
                    or not hasattr(values, "__iter__"):
                raise BadEntities(f"entities: {column!r} must be a list of values, one per entity (got "
                                  f"{_show(values)})")
            values = list(values)  # a tuple, numpy array, pandas Series
        if count is None:
            count = len(values)
        elif len(values) != count:
            first = next(iter(needed))
            raise BadEntities(f"entities: {column!r} has {len(values)} values but {first!r} has {count}; "
                              "give every key column one value per entity")
        if dtype is FieldType.STRING and all([type(v) is str and v != "" for v in values]):
            columns[column] = values[:]  # every value plain and right: the common case, checked in one pass
        elif dtype is FieldType.INT64 and all([type(v) is int and INT64_MIN <= v <= INT64_MAX for v in values]):
            columns[column] = values[:]
        else:  # converted where it is allowed (numpy's types), else refused naming the entity
            columns[column] = [_key_value(column, dtype, i, v) for i, v in enumerate(values)]
    return count or 0, columns


def _key_value(column: str, dtype: FieldType, i: int, value: Any):
    if dtype is FieldType.STRING:
        if isinstance(value, str) and value:
            return value if type(value) is str else str(value)  # numpy's str_ too, in the Python function
        raise BadEntities(f"entities: {column}[{i}] is {_show(value)}, but {column!r} is a string key: "
                          "give a non-empty string")
    if type(value) is int and INT64_MIN <= value <= INT64_MAX:
        return value
    if not isinstance(value, bool) and isinstance(value, numbers.Integral) and INT64_MIN <= int(value) <= INT64_MAX:
        return int(value)  # numpy's integers, in the Python function
    raise BadEntities(f"entities: {column}[{i}] is {_show(value)}, but {column!r} is an int64 key: give an "
                      f"integer from {INT64_MIN} to {INT64_MAX}")


def _show(value: Any) -> str:
    """A short display of a request's value for an error line (its type too: 12 and "12" differ here)."""
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{text} ({type(value).__name__})"


# --- Feast's hash keys -------------------------------------------------------------------------------

_STRING, _INT64 = 2, 4  # feast.value_type.ValueType.STRING, .INT64 (tests check them against Feast's enum)


class HashKeys:
    """Feast's Redis hash key of an entity: ``serialize_entity_key(EntityKey(...), 3)`` + the project name.

    Written out (Feast's function builds protobuf messages first, 7 us a key;
    this is 0.3 us) for entity key serialization version 3, the one Tandem's
    ``feature_store.yaml`` pins: the key count; the join keys sorted by name,
    each as (STRING, length, UTF-8); then their values in that order, each as
    (type, length, bytes): UTF-8 for a string, little-endian int64 for an
    int64, all counts little-endian uint32. tests/test_serve_lookup.py checks
    it byte for byte against Feast's ``_redis_key``.
    """

    def __init__(self, project: str, key: tuple[str, ...], key_types: tuple[FieldType, ...]):
        order = sorted(range(len(key)), key=lambda i: key[i])
        self._order = order
        self._types = [key_types[i] for i in order]
        head = [struct.pack("<I", len(key))]
        for i in order:
            name = key[i].encode("utf-8")
            head.append(struct.pack("<II", _STRING, len(name)) + name)
        self._head = b"".join(head)
        self._tail = project.encode("utf-8")

    def __call__(self, values: Sequence) -> bytes:
        """The hash key of the entity whose key columns (in the group's order) hold ``values``."""
        out = [self._head]
        for i, dtype in zip(self._order, self._types):
            v = values[i]
            if dtype is FieldType.STRING:
                b = v.encode("utf-8")
                out.append(struct.pack("<II", _STRING, len(b)))
                out.append(b)
            else:
                out.append(struct.pack("<IIq", _INT64, 8, v))
        out.append(self._tail)
        return b"".join(out)
