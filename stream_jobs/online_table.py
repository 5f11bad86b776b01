"""The online sink inside the Flink job: Tandem's JVM sink (``jvm/udf``, ``OnlineWriter.java``).

The rules are ``stream_jobs/online_sink.py``'s (Feast's layout, the guarded
HSET script, latest row per entity, acknowledged before checkpoints, retries
with backoff); the JVM writer applies them without a Python round trip per
row (at 500k events the Python UDF sink cost more than the rest of the job's
Python together: BENCHMARKS.md). Every layout fact it needs -- the hash
key's bytes around each key value and the order of a composite key's parts,
murmur3 field names, the Value field numbers, the script itself -- is computed
here by Feast's own functions and handed over as table options, so it is
defined once; the JVM only applies protobuf's wire rules and writes each key
value as :func:`key_value_bytes` does. tests/test_online_sink.py checks the JVM
writer's bytes against the Python writer's (and those against Feast's own write).
"""

from __future__ import annotations

import ssl
import struct
from pathlib import Path

from feast.infra.online_stores.helpers import _redis_key
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import VALUE_TYPE_TO_PROTO_VALUE_MAP
from feast.value_type import ValueType
from pyflink.table import StreamTableEnvironment
from redis.connection import SSLConnection

from runtime.feast_layout import VALUE_TYPES
from stream_jobs.online_sink import GUARDED_HSET, SCRIPT_SHA, OnlineWriter, entity_key_proto
from stream_jobs.sources import sql_options
from runtime.errors import UserError, one_line
from transforms import Catalog


def key_value_bytes(value_type: ValueType, value: str | int) -> bytes:
    """A key value's bytes as the JVM writes them after their uint32 LE length: UTF-8, or int64 little-endian."""
    return value.encode() if value_type is ValueType.STRING else struct.pack("<q", value)


def key_layout(project: str, key: tuple[str, ...], key_types: tuple[ValueType, ...],
               version: int) -> tuple[list[tuple[str, ValueType, bytes]], bytes]:
    """Feast's hash key of the entities of a view keyed by ``key`` as the bytes around their values:
    ``(parts, tail)``, the key being head + u32le(len(b)) + b for each part ``(column, type, head)`` in
    Feast's order (b = :func:`key_value_bytes`), then the tail.

    Read off Feast's own ``_redis_key`` for one probe entity (where each value sits in the key gives its
    part's place, so Feast's sorting of a composite key is not repeated here) and checked on another, so a
    change in Feast's layout fails here, before the job starts, instead of writing keys Feast would not read.
    """
    segments, probe = _probe_key(project, key, key_types, version, 0)
    heads, end = [], 0
    for at, i in sorted((probe.find(segment), i) for i, segment in enumerate(segments)):
        if at < end:  # not found, or overlapping another value
            raise _layout_error(version)
        heads.append((i, probe[end:at]))
        end = at + len(segments[i])
    tail = probe[end:]
    segments, probe = _probe_key(project, key, key_types, version, 1)
    if b"".join(head + segments[i] for i, head in heads) + tail != probe:
        raise _layout_error(version)
    return [(key[i], key_types[i], head) for i, head in heads], tail


#: Two probe values per key type; each part's gets its index appended (strings) or added (ints).
_PROBES = {ValueType.STRING: ("\x01probe-ÿ-", "東京"), ValueType.INT64: (0x0102030405060708, -3)}


def _probe_key(project: str, key: tuple[str, ...], key_types: tuple[ValueType, ...], version: int,
               which: int) -> tuple[list[bytes], bytes]:
    """Probe entity ``which``: each value's length + bytes as the JVM writes them, and Feast's hash key."""
    values = [_PROBES[t][which] + (str(i) if t is ValueType.STRING else i) for i, t in enumerate(key_types)]
    segments = [struct.pack("<I", len(b)) + b for b in map(key_value_bytes, key_types, values)]
    return segments, _redis_key(project, entity_key_proto(key, key_types, values),
                                entity_key_serialization_version=version)


def _layout_error(version: int) -> UserError:
    return UserError(f"Feast's Redis key layout (entity_key_serialization_version {version}) is not a head, a "
                     "uint32 length and the value per key column: the JVM online sink cannot write it")


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
        "event-time-column": catalog.schema.event_time,
        "value-fields": ",".join(f"{name}:{_value_field(ValueType[name])}" for name in VALUE_TYPES.values()),
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
    if options["ssl"] == "true":
        options |= _tls_options(writer.address, kw)
    for n, view in enumerate(writer.views):
        parts, tail = key_layout(writer.project, view.key, view.key_types, writer.key_version)
        options[f"view.{n}.name"] = view.name
        options[f"view.{n}.key-parts"] = ",".join(f"{column}:{t.name}:{head.hex()}" for column, t, head in parts)
        options[f"view.{n}.key-tail"] = tail.hex()
        options[f"view.{n}.features"] = ",".join(f"{column}:{field.hex()}:{value_type.name}"
                                                 for column, field, value_type in view.features)
    return options


_TLS_SUPPORTED = {"ssl_ca_certs", "ssl_check_hostname", "ssl_cert_reqs"}


def _tls_options(address: str, kw: dict) -> dict[str, str]:
    """The sink's TLS options from redis-py's (the address's ``ssl_ca_certs=``, ``ssl_check_hostname=``): the
    CA file's text (a TaskManager elsewhere has not the file). What the JVM sink cannot do is refused, not
    dropped: client certificates, a server certificate left unverified."""
    unsupported = sorted(k for k, v in kw.items() if k.startswith("ssl_") and v and k not in _TLS_SUPPORTED)
    if unsupported:
        raise UserError(f"Redis at {address}: the stream job's online sink does not take {unsupported[0]}")
    if kw.get("ssl_cert_reqs") not in (None, "required", ssl.CERT_REQUIRED):
        raise UserError(f"Redis at {address}: the stream job's online sink verifies the server's certificate "
                        f"(ssl_cert_reqs={kw['ssl_cert_reqs']} is not supported)")
    options = {"ssl-check-hostname": str(bool(kw.get("ssl_check_hostname"))).lower()}
    if kw.get("ssl_ca_certs"):
        try:
            options["ssl-ca-pem"] = Path(kw["ssl_ca_certs"]).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"Redis at {address}: ssl_ca_certs: cannot read it ({one_line(e)})") from None
    return options


def _value_field(value_type: ValueType) -> int:
    """The field number of ``feast.types.Value`` that holds a value of ``value_type``."""
    return ValueProto.DESCRIPTOR.fields_by_name[VALUE_TYPE_TO_PROTO_VALUE_MAP[value_type]].number


def online_write_sql(t_env: StreamTableEnvironment, features_view: str, options: dict[str, str], catalog: Catalog,
                     table: str = "tandem_online") -> str:
    """Create the ``tandem-online`` sink table with ``options`` (:func:`sink_options`); return the INSERT that
    feeds it."""
    from stream_jobs.compile_catalog import SQL_TYPES

    columns = ", ".join(f"`{name}` {SQL_TYPES[t]}" for name, t in catalog.feature_row_columns())
    t_env.execute_sql(f"CREATE TEMPORARY TABLE {table} ({columns}) WITH ({sql_options(options)})")
    return f"INSERT INTO {table} SELECT * FROM {features_view}"
