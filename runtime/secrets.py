"""A secret (an API token, a password) that cannot be printed by accident.

``str()``, ``repr()`` and f-strings of a :class:`Secret` give ``***``: a
settings object holding one can be logged, shown in an error or put in a
report without leaking it. Only :meth:`Secret.reveal` gives the value, at the
one place that needs it (a constant-time comparison, a connection).
"""

from __future__ import annotations

import hmac
import re
from urllib.parse import urlsplit, urlunsplit


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str):
        if not isinstance(value, str) or not value:
            raise ValueError("a secret is a non-empty string")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def matches(self, given: str | bytes) -> bool:
        """Whether ``given`` is this secret, in time independent of where they differ (``hmac.compare_digest``)."""
        given_bytes = given.encode("utf-8", "surrogateescape") if isinstance(given, str) else given
        return hmac.compare_digest(given_bytes, self._value.encode("utf-8", "surrogateescape"))

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and self.matches(other._value)

    def __hash__(self) -> int:
        return hash(Secret)


_PASSWORD_PARAM = re.compile(r"(?i)(^|,)(\s*password\s*=)[^,]*")


def redact_address(address: str) -> str:
    """A Redis address fit to show: the password of Feast's ``host:port,password=...`` or of a
    ``redis://user:password@host`` URL becomes ``***``; the rest (host, port, db, ssl) stays."""
    if "://" in address:
        parts = urlsplit(address)
        if parts.password is None:
            return address
        host = parts.netloc.rpartition("@")[2]
        user = f"{parts.username}:" if parts.username else ":"
        return urlunsplit(parts._replace(netloc=f"{user}***@{host}"))
    return _PASSWORD_PARAM.sub(lambda m: f"{m.group(1)}{m.group(2)}***", address)
