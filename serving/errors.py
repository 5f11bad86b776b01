"""What a lookup refuses, and the HTTP status each refusal is.

Every error is one line that says what to fix; the HTTP endpoint sends it as
``{"error": {"kind": ..., "message": ...}}`` with :attr:`ServeError.status`,
and the CLI prints it as one line (they are :class:`~runtime.errors.UserError`).
No message ever holds a token or a password: they are built from the request's
names and the catalog's, never from headers or connection strings.
"""

from __future__ import annotations

from runtime.errors import UserError


class ServeError(UserError):
    """A refused request; ``status`` is its HTTP status, ``kind`` a stable word for clients."""

    status = 400
    kind = "bad_request"


class BadRequest(ServeError):
    """The request is not a lookup: not JSON, not an object, no features, a feature ref of the wrong shape."""


class Unauthorized(ServeError):
    status, kind = 401, "unauthorized"


class NotFound(ServeError):
    """An unknown feature view, feature or feature service."""

    status, kind = 404, "not_found"


class TooLarge(ServeError):
    """More entities (or bytes) than the server takes in one request."""

    status, kind = 413, "too_large"


class BadEntities(ServeError):
    """Entity keys missing, of the wrong type, of unequal lengths, or not keys of the requested features."""

    status, kind = 422, "bad_entities"


class Unavailable(ServeError):
    """The online store could not be read, and no fallback snapshot serves instead."""

    status, kind = 503, "online_store_unavailable"


class Unreachable(Unavailable):
    """Redis did not answer (refused, lost, timed out): what the circuit breaker counts (``serving.breaker``)."""
