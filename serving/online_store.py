"""The online store as serving reads it: Feast's Redis layout, one pipelined round trip per lookup.

What Feast's ``RedisOnlineStore.online_read`` reads (feast 0.67,
``feast/infra/online_stores/redis.py``), read the same way: per entity of a
feature view, the fields ``<view:feature>... _ts:<view>`` of the entity's
hash, by ``HMGET``, all in one non-transactional pipeline (Feast sends one
HMGET per view and entity; views over the same key columns share the entity's
hash, so the lookup asks for all their fields in one). The hash key is Feast's
(``serving.features.HashKeys``), a field's value a serialized
``feast.types.Value`` (an empty message: null), ``_ts:<view>`` a serialized
``google.protobuf.Timestamp`` (absent: the entity has no row in the view). When
the lookup's held degraded marks are due a re-read (``serving.marks``), the
same pipeline also reads them (``runtime.degraded``), so a lookup costs exactly
one round trip. A lookup of one hash with no marks to read is a plain
``HMGET``, not a pipeline: redis-py's pipeline adds about 1 us of Python to a
round trip, the marks' ``HGETALL`` about 3 us more (both measured at load 2 on
2 cores, against a 25 us ``HGETALL``).

:meth:`OnlineStore.round_trip` is the only place that talks to Redis, and the
circuit breaker (``serving.breaker``) wraps it. A connection that fails or
times out is :class:`~serving.errors.Unreachable` (nothing read); an error reply to one
command (a key that holds no hash) is returned in its place, for the caller to
report against that view alone.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence

import redis
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from google.protobuf.timestamp_pb2 import Timestamp

from runtime.degraded import degraded_key, parse_marks
from runtime.errors import UserError, one_line
from serving.errors import Unavailable, Unreachable

log = logging.getLogger(__name__)


class OnlineStore:
    """A Redis client for one project's online rows (``address``: Feast's ``host:port[,db=N,password=...]``
    or ``redis://...``). ``timeout`` bounds a round trip, in seconds: a slow server fails the lookup
    rather than holding it."""

    def __init__(self, address: str, project: str, *, timeout: float = 1.0, connect_timeout: float = 1.0):
        from stream_jobs.online_sink import connect_redis  # Feast's own connection string parser

        self.project = project
        self._degraded_key = degraded_key(project)
        try:
            self._client, self.address = connect_redis(address, timeout, connect_timeout)
        except (UserError, ValueError, redis.exceptions.RedisError):  # never the text: it may hold a password
            raise UserError("the online store address is not a Redis address: expected host:port[,db=N,...] "
                            "or redis://host:port/db") from None

    def ping(self) -> str | None:
        """None when Redis answers; else why not, in one line."""
        try:
            self._client.ping()
            return None
        except redis.exceptions.RedisError as e:
            return f"Redis at {self.address} does not answer: {one_line(e)}"

    def round_trip(self, commands: Sequence[tuple[bytes, Sequence[bytes]]],
                   marks: bool = True) -> tuple[list, dict[str, dict] | None]:
        """One round trip: ``HMGET key *fields`` per command, and the degraded marks when ``marks``.

        Returns each command's reply (a list with one ``bytes`` or None per field, or the error reply) and the
        marks (group -> what failed; None when not asked for). Raises :class:`Unreachable` when Redis cannot be
        reached or times out (the circuit breaker counts it), :class:`Unavailable` when the degraded marks are
        unreadable.
        """
        if not marks and len(commands) <= 1:
            return self._single(commands), None
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for key, fields in commands:
                    pipe.hmget(key, fields)
                if marks:
                    pipe.hgetall(self._degraded_key)
                replies = pipe.execute(raise_on_error=False)
        except redis.exceptions.RedisError as e:
            raise Unreachable(f"the online store (Redis at {self.address}) did not answer: {one_line(e)}") from None
        read = replies.pop() if marks else None
        for reply in replies:  # a lost connection mid-reply is every command's error, not one view's
            if isinstance(reply, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
                raise Unreachable(f"the online store (Redis at {self.address}) did not answer: {one_line(reply)}")
        if isinstance(read, Exception):
            log.warning("cannot read the degraded marks %s: %s", self._degraded_key, one_line(read))
            raise Unavailable(f"the online store's degraded marks ({self._degraded_key}) are unreadable: "
                              f"{one_line(read)}")
        return replies, None if read is None else parse_marks(read)

    def _single(self, commands: Sequence[tuple[bytes, Sequence[bytes]]]) -> list:
        """The replies of at most one HMGET, sent as a plain command; failures as the pipeline reports them."""
        if not commands:
            return []
        key, fields = commands[0]
        try:
            return [self._client.hmget(key, fields)]
        except redis.exceptions.ResponseError as e:  # an error reply (a key that holds no hash): that view's
            return [e]
        except redis.exceptions.RedisError as e:
            raise Unreachable(f"the online store (Redis at {self.address}) did not answer: {one_line(e)}") from None

    def close(self) -> None:
        self._client.close()


def event_ms(stored: bytes | None) -> int | None:
    """A stored ``_ts:<view>`` as UTC epoch milliseconds (None: no row). Feast reads it as seconds + nanos;
    Tandem's writers store whole milliseconds, so nothing is lost."""
    if stored is None:
        return None
    ts = Timestamp.FromString(stored)
    return ts.seconds * 1000 + ts.nanos // 1_000_000


_DOUBLE = struct.Struct("<d").unpack_from


def value_of(stored: bytes | None):
    """A stored ``feast.types.Value`` as the Python value Feast's ``to_dict`` gives (an empty message: None).

    The common one-field messages are read directly, each matched on its tag and exact length so that no other
    message can match: a double (tag 0x29, 8 little-endian bytes), an int64 below 128 or a bool (tag 0x20 or
    0x38, one varint byte), a string shorter than 128 bytes (tag 0x12, a one-byte length, UTF-8). That is a
    third of the protobuf decoder's cost, for most values a lookup serves. Every other message, and text that
    is not UTF-8, goes through the decoder, which returns or refuses it as before.
    """
    if not stored:
        return None
    size, tag = len(stored), stored[0]
    if tag == 0x29 and size == 9:  # double_val (field 5, fixed64)
        return _DOUBLE(stored, 1)[0]
    if size == 2 and stored[1] < 0x80:
        if tag == 0x20:  # int64_val (field 4, varint)
            return stored[1]
        if tag == 0x38 and stored[1] < 2:  # bool_val (field 7, varint)
            return stored[1] == 1
    if tag == 0x12 and size > 1 and stored[1] == size - 2 and size < 0x82:  # string_val (field 2)
        try:
            return stored[2:].decode("utf-8")
        except UnicodeDecodeError:
            pass  # the decoder refuses it below
    message = ValueProto.FromString(stored)
    which = message.WhichOneof("val")
    return None if which is None or which == "null_val" else getattr(message, which)
