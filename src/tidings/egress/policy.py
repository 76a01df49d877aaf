"""Which network addresses the server may call on a user's behalf: public ones, and the
networks the operator allowed (``TIDINGS_EGRESS_ALLOW``; the simulator and tests need
loopback, never by default). Pure: takes addresses, resolves nothing."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

NAT64 = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


@dataclass(frozen=True)
class EgressPolicy:
    """``allow_private``: every non-public address is allowed (an operator's decision, e.g.
    a workspace whose n8n runs on the same host); ``allowed``: the networks allowed besides
    the public internet."""

    allowed: tuple[IPNetwork, ...] = ()
    allow_private: bool = False

    @classmethod
    def of(cls, networks: Iterable[str], *, allow_private: bool = False) -> EgressPolicy:
        """Raises ``ValueError`` for a network that is not CIDR notation."""
        parsed = tuple(ipaddress.ip_network(n.strip(), strict=False) for n in networks if n.strip())
        return cls(parsed, allow_private)

    def widened(self, *, allow_private: bool) -> EgressPolicy:
        return EgressPolicy(self.allowed, self.allow_private or allow_private)

    def refusal(self, address: IPAddress) -> str | None:
        """Why ``address`` may not be called, or None."""
        if self.allow_private or any(address in network for network in self.allowed):
            return None
        return non_public_reason(address)


def non_public_reason(address: IPAddress) -> str | None:
    """What makes ``address`` not a public internet address, or None when it is one.

    IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4, Teredo) are judged by the
    address they carry: ``::ffff:127.0.0.1`` is loopback, whatever its family says.
    """
    if isinstance(address, ipaddress.IPv6Address):
        for carried in _carried_ipv4(address):
            why = non_public_reason(carried)
            if why is not None:
                return f"{why} (carried in IPv6)"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("not globally routable", not address.is_global),
    )
    return next((name for name, applies in checks if applies), None)


def _carried_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    carried = []
    if address.ipv4_mapped is not None:
        carried.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        carried.append(address.sixtofour)
    if address.teredo is not None:
        carried.extend(address.teredo)
    if address in NAT64 or address in NAT64_LOCAL:
        carried.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return carried
