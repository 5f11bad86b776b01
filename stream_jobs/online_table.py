"""The online sink inside the Flink job: Tandem's JVM sink (``jvm/udf``, ``OnlineWriter.java``).

The rules are ``stream_jobs/online_sink.py``'s (Feast's layout, the guarded
HSET script, latest row per entity, acknowledged before checkpoints, retries
with backoff); the JVM writer applies them without a Python round trip per
row (at 500k events the Python UDF sink cost more than the rest of the job's
Python together: BENCHMARKS.md). Every layout fact it needs -- hash-key
bytes, murmur3 field names, the Value field numbers, the script itself -- is
computed here by Feast's own functions and handed over as table options, so
it is defined once; tests/test_online_sink.py checks the JVM writer's bytes
against the Python writer's (and those against Feast's own write).
"""

from __future__ import annotations

import struct

from feast.infra.online_stores.helpers import _redis_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType
from pyflink.table import StreamTableEnvironment
from redis.connection import SSLConnection

from stream_jobs.online_sink import GUARDED_HSET, SCRIPT_SHA, OnlineWriter
from stream_jobs.sources import sql_options
from runtime.errors import UserError
from transforms import Catalog

_TYPES = {ValueType.INT64: "INT64", ValueType.DOUBLE: "DOUBLE"}


def key_prefix(project: str, join_key: str, version: int) -> bytes:
    """The prefix of Feast's hash key of a one-string-key entity: key = prefix + u32le(len) + value + project.

    Read off Feast's own ``_redis_key`` for two probe values, so a change in
    Feast's layout fails here, before the job starts, instead of writing keys
    Feast would not read.
    """
    suffix, prefix = project.encode(), None
    for probe in ("a", "ÿbc"):
        raw = probe.encode()
        key = _redis_key(project, EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(string_val=probe)]),
                         entity_key_serialization_version=version)
        tail = struct.pack("<I", len(raw)) + raw + suffix
        if not key.endswith(tail) or (prefix is not None and key[:-len(tail)] != prefix):
            raise UserError(f"Feast's Redis key layout (entity_key_serialization_version {version}) is not "
                            "prefix + length + value + project: the JVM online sink cannot write it")
        prefix = key[:-len(tail)]
    return prefix


def sink_options(writer: OnlineWriter, catalog: Catalog) -> dict[str, str]:
    """The ``tandem-online`` table options: ``writer``'s Redis address, settings and layout."""
    pool = writer._client.connection_pool
    kw = pool.connection_kwargs
    if "path" in kw:
        raise UserError(f"Redis at {writer.address}: the stream job's online sink needs host:port, not a socket")
    options = {
        "connector": "tandem-online", "host": str(kw.get("host", "localhost")), "port": str(kw.get("port", 6379)),
        "db": str(kw.get("db", 0)), "ssl": str(issubclass(pool.connection_class, SSLConnection)).lower(),
        "script": GUARDED_HSET, "script-sha": SCRIPT_SHA, "ttl-seconds": str(writer.ttl),
        "event-time-column": catalog.schema.event_time, "key-suffix": writer.project.encode().hex(),
        "int64-field": str(ValueProto.DESCRIPTOR.fields_by_name["int64_val"].number),
        "double-field": str(ValueProto.DESCRIPTOR.fields_by_name["double_val"].number),
        "batch-size": str(writer.batch_size), "max-tries": str(writer.max_tries),
        "backoff-ms": str(round(writer.backoff * 1000)), "max-backoff-ms": str(round(writer.max_backoff * 1000)),
        "views": str(len(writer.views)),
        # the writer's own timeouts (seconds; None waits forever, which Jedis spells 0)
        "socket-timeout-ms": str(round((kw.get("socket_timeout") or 0) * 1000)),
        "connect-timeout-ms": str(round((kw.get("socket_connect_timeout") or 0) * 1000)),
    }
    for name in ("username", "password"):
        if kw.get(name):
            options["user" if name == "username" else name] = str(kw[name])
    for n, view in enumerate(writer.views):
        prefix = key_prefix(writer.project, view.key, writer.key_version)
        options[f"view.{n}.name"] = view.name
        options[f"view.{n}.key-column"] = view.key
        options[f"view.{n}.key-prefix"] = prefix.hex()
        options[f"view.{n}.features"] = ",".join(f"{column}:{field.hex()}:{_TYPES[value_type]}"
                                                 for column, field, value_type in view.features)
    return options


def online_write_sql(t_env: StreamTableEnvironment, features_view: str, writer: OnlineWriter, catalog: Catalog,
                     table: str = "tandem_online") -> str:
    """Create the ``tandem-online`` sink table for ``writer``'s Redis; return the INSERT that feeds it."""
    from stream_jobs.compile_catalog import SQL_TYPES

    columns = ", ".join(f"`{name}` {SQL_TYPES[t]}" for name, t in catalog.feature_row_columns())
    t_env.execute_sql(f"CREATE TEMPORARY TABLE {table} ({columns}) WITH ({sql_options(sink_options(writer, catalog))})")
    return f"INSERT INTO {table} SELECT * FROM {features_view}"
