"""HTTP clients whose every connection goes through :class:`EgressPolicy`.

A name is resolved once, each address it gives is judged, and the connection is made to the
address that was judged — never to a second resolution, which a hostile DNS server could
point elsewhere between the check and the connection (DNS rebinding). TLS still checks the
certificate against the name. Redirects are not followed by these clients.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from tidings.egress.policy import EgressPolicy, IPAddress


class EgressRefusedError(httpx.ConnectError):
    """The address may not be called; raised before any connection is made."""


def permitted_addresses(host: str, port: int, policy: EgressPolicy) -> list[IPAddress]:
    """Every address ``host`` resolves to, when all of them are permitted.

    Raises:
        EgressRefusedError: the host does not resolve, or one of its addresses is refused
            (one refused address is enough: a resolver may hand out either).
    """
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            raise EgressRefusedError(f"cannot resolve {host}: {error}") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    for address in addresses:
        why = policy.refusal(address)
        if why is not None:
            raise EgressRefusedError(f"{host} resolves to the non-public address {address} ({why})")
    return addresses


def check_url(url: str, policy: EgressPolicy) -> None:
    """Check an address when it is saved: http(s), a host, and permitted addresses.

    Raises:
        EgressRefusedError: with the reason.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EgressRefusedError(f"{url!r} is not an http(s) address with a host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise EgressRefusedError(f"{url!r} has an invalid port") from None
    permitted_addresses(parts.hostname, port, policy)


class _GuardedBackend(httpcore.SyncBackend):
    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = permitted_addresses(host, port, self.policy)
        last_error: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last_error = error
        assert last_error is not None
        raise last_error


class GuardedTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` whose connections are made only to permitted addresses."""

    def __init__(self, policy: EgressPolicy, **options: Any) -> None:
        super().__init__(**options)
        # httpx builds its connection pool itself; it is rebuilt with the same settings and
        # the guarded network backend (httpcore's documented extension point).
        pool = self._pool
        self._pool = httpcore.ConnectionPool(
            ssl_context=pool._ssl_context,
            max_connections=pool._max_connections,
            max_keepalive_connections=pool._max_keepalive_connections,
            keepalive_expiry=pool._keepalive_expiry,
            http1=pool._http1,
            http2=pool._http2,
            retries=pool._retries,
            network_backend=_GuardedBackend(policy),
        )
