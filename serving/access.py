"""Who may reach the server: loopback by default, anything else only behind an API token.

An unauthenticated lookup endpoint on a public interface hands every feature
value to whoever finds the port, so ``tandem serve`` refuses a non-loopback
``--host`` unless a token is configured (``runtime.serving_settings``). With a
token, every request (lookups, health, metrics) must carry
``Authorization: Bearer <token>``, compared in constant time; the token never
appears in a response, a log line or an error.
"""

from __future__ import annotations

import ipaddress

from runtime.errors import UserError
from runtime.secrets import Secret
from runtime.serving_settings import ENV_TOKEN


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP (127.0.0.0/8, ::1). Any other name counts as not: it may resolve anywhere."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: Secret | None) -> None:
    """Refuse to listen on ``host`` when it is not loopback and no token is configured."""
    if token is None and not is_loopback(host):
        raise UserError(f"--host {host} is not a loopback address and no API token is configured: set "
                        f"${ENV_TOKEN} (or serving.token in tandem.yaml); every request must then send "
                        "Authorization: Bearer <token>. Without a token, serve on 127.0.0.1")


def authorized(token: Secret, headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether ASGI ``headers`` carry ``Authorization: Bearer <token>`` (exactly one such header)."""
    values = [v for k, v in headers if k.lower() == b"authorization"]
    if len(values) != 1:
        return False
    scheme, _, given = values[0].partition(b" ")
    return scheme.lower() == b"bearer" and token.matches(given.strip())
