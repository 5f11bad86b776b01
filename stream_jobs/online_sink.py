"""The stream job's online sink: the latest feature row per entity, into Redis, in Feast's own layout.

Feast's ``get_online_features`` on ``feature_repo/`` reads what this writes,
because every byte is made by Feast's own functions and messages (one
conversion spelled out, byte-identical), as Feast's Redis online store
(``feast/infra/online_stores/redis.py``, feast 0.67) writes and reads it:

- **hash key** = ``serialize_entity_key(EntityKey(join_keys=list(group.key),
  entity_values=[Value(string_val=...) or Value(int64_val=...) per key column]),
  entity_key_serialization_version)`` followed by the project name in UTF-8:
  ``feast.infra.online_stores.helpers._redis_key``, the function Feast's
  ``online_write_batch`` calls (its reads build the same bytes in
  ``_generate_redis_keys_for_entities``). Feast sorts a composite key's columns
  and writes each value with its length, so ``("NY", "C12")`` and ``("NYC", "12")``
  are two keys; entity key values are non-empty strings or int64 integers;
- **feature field** = ``_mmh3("<view>:<feature>")``, the 4-byte little-endian
  murmur3 of the name; its value a serialized ``feast.types.Value`` (string,
  bool, int64 or double), the bytes ``feast.type_map.python_values_to_proto_values``
  (what materialization uses) gives (:func:`serialized_values`); ``None`` becomes
  an empty ``Value``, which Feast reads as null;
- **``_ts:<view>``** = a serialized ``google.protobuf.Timestamp`` of the row's event time;
- the EXPIRE of ``online_store.key_ttl_seconds``, when the repo sets one.

The view name is the feature group's ``entity``, its join keys the group's
``key`` columns and its features the group's features (``feature_repo/definitions.py``
generates the Feast objects from the same catalog). The project, the entity
key serialization version and the TTL are read from the project's
``feature_store.yaml`` text (``runtime.feast_layout``) through Feast's own
``RepoConfig``; nothing is repeated here.

**The guard, atomic on the server.** Feast's own write path reads ``_ts`` and
then writes, in two round trips: two writers can race, and an older row can
land after a newer one. Here each row is one ``EVALSHA`` of :data:`GUARDED_HSET`,
which decodes the stored ``_ts:<view>`` Timestamp (protobuf varints, in Lua),
compares it with the new one as (seconds, nanos), and writes the fields and
``_ts`` only when the new event time is ``>=`` the stored one -- all inside one
script, which Redis runs without interleaving any other command. Equal times
are written: peers (same entity, same millisecond) carry identical window
features, and a replay after a restart rewrites what is there (idempotent).
Comparing against Feast's ``_ts`` itself (not a side field) means rows that
``feast materialize`` wrote are guarded too, and no second clock can drift
from the one Feast serves. (``feast materialize`` itself stays non-atomic: a
materialization racing the stream can still put an older batch row over a
stream row; run it for backfills, not beside a live stream on the same keys.)

**Round trips and acknowledgement.** :meth:`OnlineWriter.write` keeps the
latest row per (view, entity) of what it is given, sends the scripts pipelined
(``batch_size`` per round trip) and returns only after Redis has answered every
one: nothing is acknowledged that was not written, so a Flink operator may call
it before letting a checkpoint complete. Redis down mid-run: the batch is
re-sent (safe, the script is idempotent) after an exponential backoff, up to
``max_tries`` times, then :class:`OnlineStoreError` is raised. A Redis that
restarted has lost its script cache: ``NOSCRIPT`` replies make the writer load
the script again and re-send those rows.

Plain Python (no Flink import), not to be shared between threads. The Flink
job itself writes through this writer's JVM twin (``stream_jobs/online_table.py``,
``jvm/udf/.../OnlineWriter.java``), which gets the layout and the script from
here and is checked byte for byte against this writer; the job creates one
writer at start to check Redis and the repo config before Flink starts.
"""

from __future__ import annotations

import hashlib
import logging
import numbers
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
import yaml
from feast.infra.online_stores.helpers import _mmh3, _redis_key
from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig, RedisType
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import RepoConfig
from feast.type_map import VALUE_TYPE_TO_PROTO_VALUE_MAP, python_values_to_proto_values
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

from runtime.errors import UserError, one_line
from runtime.feast_layout import feature_store_yaml, value_type as feast_value_type
from runtime.secrets import redact_address
from transforms.catalog import Catalog

log = logging.getLogger(__name__)

# KEYS[1] = the entity's hash; ARGV[1] = TTL seconds (0: none); ARGV[2] = "_ts:<view>";
# ARGV[3] = the new serialized Timestamp; ARGV[4..] = feature field, value, field, value, ...
# Returns 1 (written) or 0 (stale: the stored event time is newer).
GUARDED_HSET = r"""
local byte = string.byte

-- A protobuf varint at s[i..] as a signed 64-bit integer (exact while |v| < 2^53), and the next index.
-- No table per call: this runs twice per write, and allocation was a fifth of the script's time.
local function varint(s, i)
  local start, v, m, n, b = i, 0, 1, 0, 128
  while b >= 128 do
    if n == 10 then return nil, i end
    b = byte(s, i)
    if b == nil then return nil, i end
    n = n + 1
    v = v + (b % 128) * m
    m = m * 128
    i = i + 1
  end
  if n == 10 and b % 2 == 1 then  -- negative: 64-bit two's complement, sign in byte 10
    v, m = 0, 1
    for k = start, start + 8 do v = v + (127 - byte(s, k) % 128) * m; m = m * 128 end
    return -(v + 1), i
  end
  return v, i
end

-- google.protobuf.Timestamp bytes -> seconds (field 1), nanos (field 2); nil if not a Timestamp.
-- Absent fields are 0 (Timestamp(0, 0) serializes to ""); unknown fields are skipped.
local function timestamp(s)
  local secs, nanos, i = 0, 0, 1
  while i <= #s do
    local tag, v
    tag, i = varint(s, i)
    if tag == nil or tag < 0 then return nil end
    local fieldno, wire = math.floor(tag / 8), tag % 8
    if wire == 0 then
      v, i = varint(s, i)
      if v == nil then return nil end
      if fieldno == 1 then secs = v elseif fieldno == 2 then nanos = v end
    elseif wire == 1 then i = i + 8
    elseif wire == 5 then i = i + 4
    elseif wire == 2 then
      v, i = varint(s, i)
      if v == nil or v < 0 then return nil end
      i = i + v
    else return nil end
  end
  if i ~= #s + 1 then return nil end
  return secs, nanos
end

local new_s, new_n = timestamp(ARGV[3])
if new_s == nil then return redis.error_reply('tandem online sink: the new ' .. ARGV[2] .. ' is not a Timestamp') end
local stored = redis.call('HGET', KEYS[1], ARGV[2])
if stored then
  local old_s, old_n = timestamp(stored)
  if old_s == nil then
    return redis.error_reply('tandem online sink: the stored ' .. ARGV[2] .. ' is not a protobuf Timestamp')
  end
  if new_s < old_s or (new_s == old_s and new_n < old_n) then return 0 end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
local ttl = tonumber(ARGV[1])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return 1
"""
SCRIPT_SHA = hashlib.sha1(GUARDED_HSET.encode()).hexdigest()

_RETRYABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError)

try:  # metrics are optional
    from prometheus_client import Counter

    _METRICS = {
        "written": Counter("tandem_online_rows_written_total", "Rows written to the online store", ["view"]),
        "stale": Counter("tandem_online_rows_stale_total",
                         "Rows not written: the online store holds a newer event", ["view"]),
        "superseded": Counter("tandem_online_rows_superseded_total",
                              "Rows dropped before sending: a newer row of the entity was in the same batch",
                              ["view"]),
        "retries": Counter("tandem_online_write_retries_total", "Batches re-sent after a Redis connection error"),
    }
except ImportError:  # pragma: no cover
    _METRICS = {}


class OnlineStoreError(RuntimeError):
    """The online store failed a write (unreachable after every retry, or an error reply)."""


class RedisUnreachable(OnlineStoreError, UserError):
    """Redis did not answer PING when the writer was created: a wrong address or a stopped server."""

    transient = True  # a stopped server may come back: an orchestrator retries (runtime.errors.transient)


class RedisRefused(OnlineStoreError, UserError):
    """Redis answered but refused the credentials: a user's mistake, not worth a retry."""

    transient = False  # though redis-py's AuthenticationError, in its context, is a ConnectionError


@dataclass
class WriteStats:
    """Counts of one writer's life (also exported as Prometheus counters, per view)."""

    written: int = 0  # rows whose fields the script wrote
    stale: int = 0  # rows the script refused: Redis held a newer event of the entity
    superseded: int = 0  # rows dropped in the batch: a newer (or equal, later) row of the entity came with them
    retries: int = 0  # batches re-sent after a connection error
    script_loads: int = 0  # SCRIPT LOADs (once at start, then after each Redis restart)
    per_view: dict[str, dict[str, int]] = field(default_factory=dict)

    def _add(self, what: str, view: str | None, n: int = 1) -> None:
        if not n:
            return
        setattr(self, what, getattr(self, what) + n)
        if view is not None:
            counts = self.per_view.setdefault(view, {})
            counts[what] = counts.get(what, 0) + n
        if what in _METRICS:
            (_METRICS[what].labels(view=view) if view is not None else _METRICS[what]).inc(n)

    def _merge(self, other: "WriteStats") -> None:
        for what in ("written", "stale", "superseded", "retries", "script_loads"):
            setattr(self, what, getattr(self, what) + getattr(other, what))
        for view, counts in other.per_view.items():
            mine = self.per_view.setdefault(view, {})
            for what, n in counts.items():
                mine[what] = mine.get(what, 0) + n


@dataclass(frozen=True)
class _View:
    name: str  # the Feast feature view = the group's entity
    key: tuple[str, ...]  # the join keys = the group's key columns
    key_types: tuple[ValueType, ...]  # their Feast types (STRING or INT64)
    entity: Callable[[Mapping[str, Any]], Any] = field(init=False, repr=False, compare=False)  # _entity_reader
    ts_field: bytes  # b"_ts:<view>"
    features: tuple[tuple[str, bytes, ValueType], ...]  # (column, murmur3 field, Feast value type)

    def __post_init__(self) -> None:
        object.__setattr__(self, "entity", _entity_reader(self.key, self.key_types))


def load_repo_config(project: str) -> RepoConfig:
    """The project's ``feature_store.yaml`` as Feast reads it (``${VARS}`` left as text: only layout facts
    are used)."""
    return RepoConfig(**yaml.safe_load(feature_store_yaml(project)))


def connect_redis(address: str, socket_timeout: float, connect_timeout: float) -> tuple[redis.Redis, str]:
    """A client for ``redis://...`` or Feast's ``host:port[,db=N,password=...,ssl=true]``; and its display name."""
    opts = {"socket_timeout": socket_timeout, "socket_connect_timeout": connect_timeout}
    if "://" in address:
        client = redis.Redis.from_url(address, **opts)
    else:
        nodes, params = RedisOnlineStore._parse_connection_string(address)  # Feast's own parser
        if len(nodes) != 1 or "port" not in nodes[0]:
            raise UserError(f"Redis address {redact_address(address)!r}: expected host:port[,db=N,...] or "
                            "redis://host:port/db")
        client = redis.Redis(host=nodes[0]["host"], port=int(nodes[0]["port"]), **{**opts, **params})
    kw = client.connection_pool.connection_kwargs
    where = kw.get("path") or f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}"
    return client, f"{where}/{kw.get('db', 0)}"


class OnlineWriter:
    """Writes Tandem feature rows into Redis as Feast's online store lays them out, timestamp-guarded.

    ``address``: ``redis://host:port/db`` or Feast's connection string
    ``host:port[,db=N,password=...]``. ``project``: the Tandem project's name
    (its ``feature_store.yaml`` gives the layout), or ``repo_config``: a Feast
    ``RepoConfig`` or the path of a ``feature_store.yaml``. Retries: ``max_tries`` sends of a batch
    in all, sleeping ``backoff`` s, then twice that, ... (at most ``max_backoff``)
    in between: the defaults give up after about 7.5 s of sleeping plus the
    timeouts. ``groups``: write only these feature groups (by entity name; default all), for rows that
    carry only their columns (a feature table's). Raises :class:`RedisUnreachable` when Redis does not
    answer PING, :class:`RedisRefused` when it refuses the password.
    """

    def __init__(self, address: str, *, catalog: Catalog, project: str | None = None,
                 repo_config: RepoConfig | str | Path | None = None, groups: Iterable[str] | None = None,
                 batch_size: int = 500, max_tries: int = 5, backoff: float = 0.5, max_backoff: float = 5.0,
                 socket_timeout: float = 5.0, connect_timeout: float = 2.0):
        if max_tries < 1 or batch_size < 1:
            raise ValueError("max_tries and batch_size must be at least 1")
        if isinstance(repo_config, RepoConfig):
            config = repo_config
        elif repo_config is not None:
            config = RepoConfig(**yaml.safe_load(Path(repo_config).read_text()))
        elif project is not None:
            config = load_repo_config(project)
        else:
            raise ValueError("OnlineWriter needs the project (or its repo_config)")
        store = config.online_store
        if not isinstance(store, RedisOnlineStoreConfig) or store.redis_type != RedisType.redis:
            kind = getattr(store, "redis_type", getattr(store, "type", store))
            raise UserError(f"online store {str(kind)!r}: the Tandem online sink writes one Redis "
                            "(online_store type: redis, redis_type: redis)")
        if getattr(config.registry, "enable_online_feature_view_versioning", False):
            raise UserError("enable_online_feature_view_versioning is on: Feast would read hash fields of "
                            "versioned view names (<view>_vN), which this sink does not write")
        self.project = project or config.project
        self.key_version = config.entity_key_serialization_version
        self.ttl = int(store.key_ttl_seconds or 0)
        self.catalog = catalog
        self.event_time = catalog.schema.event_time
        chosen = set(g.entity for g in catalog.groups) if groups is None else set(groups)
        unknown = chosen - {g.entity for g in catalog.groups}
        if unknown:
            raise ValueError(f"catalog {catalog.schema.name} has no feature group {sorted(unknown)[0]!r}")
        self.views = tuple(
            _View(name=g.entity, key=g.key,
                  key_types=tuple(feast_value_type(catalog.schema.get_field(k).type) for k in g.key),
                  ts_field=f"_ts:{g.entity}".encode(),
                  features=tuple((f.name, _mmh3(f"{g.entity}:{f.name}"), feast_value_type(catalog.feature_dtype(f)))
                                 for f in g.features))
            for g in catalog.groups if g.entity in chosen)
        self.batch_size, self.max_tries = batch_size, max_tries
        self.backoff, self.max_backoff = backoff, max_backoff
        self.stats = WriteStats()
        self._hash_keys: dict[tuple[tuple[str, ...], Any], bytes] = {}
        self._client, self.address = connect_redis(address, socket_timeout, connect_timeout)
        try:
            self._client.ping()
            self._load_script(self.stats)
        except redis.exceptions.AuthenticationError as e:
            self._client.close()
            raise RedisRefused(f"Redis at {self.address} refused the credentials in its address: {one_line(e)}") \
                from None
        except redis.exceptions.RedisError as e:
            self._client.close()
            raise RedisUnreachable(f"Redis at {self.address} is unreachable: {one_line(e)}") from None

    # --- encoding, by Feast's functions and messages --------------------------------------------

    def _hash_key(self, view: _View, entity: Any) -> bytes:
        """Feast's hash key of an entity of ``view`` (as ``view.entity`` reads it: the key value, a tuple of
        values for a composite key); memoised, since hot entities come back in every batch."""
        key = self._hash_keys.get((view.key, entity))
        if key is None:
            if len(self._hash_keys) >= _HASH_KEY_CACHE:
                self._hash_keys.clear()
            values = entity if len(view.key) > 1 else (entity,)
            key = _redis_key(self.project, entity_key_proto(view.key, view.key_types, values),
                             entity_key_serialization_version=self.key_version)
            self._hash_keys[(view.key, entity)] = key
        return key

    def _event_ms(self, row: Mapping[str, Any]) -> int:
        t = row[self.event_time]
        if isinstance(t, datetime):
            if t.tzinfo is None:
                raise ValueError(f"{self.event_time}={t!r} has no time zone: give UTC epoch ms or an aware datetime")
            ts = Timestamp()
            ts.FromDatetime(t)
            return ts.ToMilliseconds()
        if isinstance(t, bool) or not hasattr(t, "__index__"):
            raise ValueError(f"{self.event_time}={t!r}: expected UTC epoch milliseconds (int)")
        return int(t)

    def _commands(self, rows: Iterable[Mapping[str, Any]], stats: WriteStats) -> list[tuple[_View, bytes, list]]:
        """(view, hash key, EVALSHA args) for the latest row of each (view, entity) of ``rows``."""
        latest: list[dict[Any, tuple[int, Mapping[str, Any]]]] = [{} for _ in self.views]
        count = 0
        for row in rows:
            count += 1
            try:
                t = self._event_ms(row)
                for view, seen_by_key in zip(self.views, latest):
                    k = view.entity(row)
                    seen = seen_by_key.get(k)
                    if seen is None or t >= seen[0]:  # equal: a peer or a replay, identical features
                        seen_by_key[k] = (t, row)
            except KeyError as e:
                raise ValueError(f"feature row lacks column {e.args[0]!r}: {dict(row)!r}"[:500]) from None
        out = []
        for view, seen_by_key in zip(self.views, latest):
            picked = list(seen_by_key.items())
            stats._add("superseded", view.name, count - len(picked))
            if not picked:
                continue
            columns = []
            for name, field_key, value_type in view.features:
                try:
                    raw = [row[name] for _, (_, row) in picked]
                except KeyError as e:
                    raise ValueError(f"feature row lacks feature {e.args[0]!r} of view {view.name!r}") from None
                bad = next((v for v in raw if v is not None and v == v and not _FITS[value_type](v)), None)
                if bad is not None:  # Feast's conversion would store 1.5 as 1, 7 as "7", 2 as True, silently
                    raise ValueError(f"feature {name!r} is {value_type.name} but a row has {bad!r}")
                columns.append((field_key, serialized_values(raw, value_type)))
            for j, (key, (t, _)) in enumerate(picked):
                ts = Timestamp()
                ts.FromMilliseconds(t)
                args: list[bytes | int] = [self.ttl, view.ts_field, ts.SerializeToString()]
                for field_key, values in columns:
                    args += (field_key, values[j])
                out.append((view, self._hash_key(view, key), args))
        return out

    # --- sending ---------------------------------------------------------------------------------

    def write(self, rows: Iterable[Mapping[str, Any]]) -> WriteStats:
        """Write the latest row per entity of ``rows``; return once Redis acknowledged every one.

        Returns this call's counts. Raises :class:`OnlineStoreError` when Redis
        stays unreachable through every retry (nothing after the failed batch was
        sent; what was sent before is written, and re-sending it is harmless).
        """
        call = WriteStats()
        try:
            commands = self._commands(rows, call)
            for start in range(0, len(commands), self.batch_size):
                self._send_with_retries(commands[start:start + self.batch_size], call)
        finally:
            self.stats._merge(call)
        return call

    def _send_with_retries(self, batch, stats: WriteStats) -> None:
        """Send until every row is acknowledged: re-send what was not, after a backoff, ``max_tries`` times."""
        pending, delay, began, reloads = batch, self.backoff, time.monotonic(), 0
        for attempt in range(1, self.max_tries + 1):
            try:
                while pending:
                    pending, lost_script = self._send(pending, stats)
                    if lost_script:  # Redis restarted (or SCRIPT FLUSH): load again, re-send those rows
                        reloads += 1
                        if reloads > self.max_tries:
                            raise OnlineStoreError(f"Redis at {self.address} keeps answering NOSCRIPT "
                                                   "after SCRIPT LOAD")
                        log.info("Redis at %s lost the sink's script (restarted?): loading it again",
                                 self.address)
                        self._load_script(stats)
                return
            except _RETRYABLE as e:  # the pipeline's replies are lost: its rows count as not written
                if attempt == self.max_tries:
                    raise OnlineStoreError(
                        f"Redis at {self.address} unreachable: {len(pending)} rows not acknowledged after "
                        f"{self.max_tries} tries over {time.monotonic() - began:.1f}s: {one_line(e)}") from e
                log.warning("Redis at %s: %s; retry %d/%d in %.2fs", self.address, one_line(e),
                            attempt, self.max_tries - 1, delay)
                stats._add("retries", None)
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff)

    def _send(self, batch, stats: WriteStats) -> tuple[list, bool]:
        """One pipelined round trip of EVALSHAs; returns the rows that met an empty script cache."""
        with self._client.pipeline(transaction=False) as pipe:
            for _view, key, args in batch:
                pipe.execute_command("EVALSHA", SCRIPT_SHA, 1, key, *args)
            replies = pipe.execute(raise_on_error=False)
        again = []
        for cmd, reply in zip(batch, replies):
            if isinstance(reply, redis.exceptions.NoScriptError):
                again.append(cmd)
            elif isinstance(reply, _RETRYABLE):  # e.g. LOADING while a restarted Redis reads its data
                raise reply
            elif isinstance(reply, Exception):
                raise OnlineStoreError(f"Redis at {self.address} refused a write to view "
                                       f"{cmd[0].name!r}: {one_line(reply)}")
            else:
                stats._add("written" if reply == 1 else "stale", cmd[0].name)
        return again, bool(again)

    def _load_script(self, stats: WriteStats) -> None:
        sha = self._client.script_load(GUARDED_HSET)
        if sha != SCRIPT_SHA:  # cannot happen with a real Redis; guards the constant
            raise OnlineStoreError(f"Redis at {self.address} returned script SHA {sha}, expected {SCRIPT_SHA}")
        stats._add("script_loads", None)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "OnlineWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def entity_key_proto(key: tuple[str, ...], key_types: tuple[ValueType, ...], values) -> EntityKeyProto:
    """Feast's ``EntityKey`` of the entity whose ``key`` columns (of ``key_types``) hold ``values``."""
    return EntityKeyProto(join_keys=key, entity_values=[
        ValueProto(**{VALUE_TYPE_TO_PROTO_VALUE_MAP[t]: v}) for t, v in zip(key_types, values)])


def serialized_values(values: list[Any], value_type: ValueType) -> list[bytes]:
    """One feature column as serialized Feast ``Value`` messages.

    The bytes Feast's ``python_values_to_proto_values`` gives for the catalog's
    types: a null (``None``, NaN) is an empty ``Value``, anything else
    ``Value(int64_val=int(v))``, ``Value(double_val=v)``, ``Value(string_val=v)``
    or ``Value(bool_val=v)``. Written out here because Feast's generic per-value
    dispatch cost as much as everything else in :meth:`OnlineWriter._commands`;
    tests/test_online_sink.py checks the bytes against Feast's conversion, and
    Feast's own write, value for value.
    """
    if value_type is ValueType.INT64:
        return [_EMPTY if v is None or v != v else ValueProto(int64_val=int(v)).SerializeToString() for v in values]
    if value_type is ValueType.DOUBLE:
        return [_EMPTY if v is None or v != v else ValueProto(double_val=v).SerializeToString() for v in values]
    if value_type is ValueType.STRING:
        return [_EMPTY if v is None or v != v else ValueProto(string_val=v).SerializeToString() for v in values]
    if value_type is ValueType.BOOL:
        return [_EMPTY if v is None or v != v else _TRUE if v else _FALSE for v in values]
    return [v.SerializeToString() for v in python_values_to_proto_values(values, value_type)]


_EMPTY = ValueProto().SerializeToString()
_TRUE, _FALSE = ValueProto(bool_val=True).SerializeToString(), ValueProto(bool_val=False).SerializeToString()
_HASH_KEY_CACHE = 1_000_000  # entities whose hash keys are kept (~100 bytes each)

#: Which non-null Python values a feature of each Feast type may hold (Feast's conversion would coerce others).
_FITS = {
    ValueType.INT64: lambda v: not isinstance(v, bool) and (not isinstance(v, float) or v.is_integer()),
    ValueType.DOUBLE: lambda v: not isinstance(v, bool),
    ValueType.STRING: lambda v: isinstance(v, str),
    ValueType.BOOL: lambda v: isinstance(v, bool),
}


def _entity_reader(key: tuple[str, ...], key_types: tuple[ValueType, ...]) -> Callable[[Mapping[str, Any]], Any]:
    """A row's entity in a view keyed by ``key``: its checked key value, or the tuple of them for a composite
    key (a closure per view: this runs for every row and view)."""
    readers = [_key_reader(column, value_type) for column, value_type in zip(key, key_types)]
    if len(readers) == 1:
        return readers[0]
    return lambda row: tuple([read(row) for read in readers])


def _key_reader(column: str, value_type: ValueType) -> Callable[[Mapping[str, Any]], Any]:
    """A row's value of key ``column``: a non-empty string, or an int64 integer (numpy's too, never a bool)."""
    if value_type is ValueType.STRING:
        def read(row):
            value = row[column]
            if isinstance(value, str) and value:
                return value
            raise ValueError(f"feature row has {column}={value!r}: string entity keys are non-empty strings")
        return read

    def read_int(row):
        value = row[column]
        if type(value) is int and -(2**63) <= value < 2**63:
            return value
        if not isinstance(value, bool) and isinstance(value, numbers.Integral) and -(2**63) <= int(value) < 2**63:
            return int(value)  # numpy's bool is not Integral
        raise ValueError(f"feature row has {column}={value!r}: int64 entity keys are integers in int64's range")
    return read_int
