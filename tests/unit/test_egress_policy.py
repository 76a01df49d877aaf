"""The egress guard's address rules: only public addresses, unless the operator allowed a
network; IPv6 forms that carry an IPv4 address are judged by what they carry."""

from __future__ import annotations

import ipaddress

import pytest

from tidings.egress.policy import EgressPolicy


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.0.0.7", "172.16.5.4", "192.168.1.1", "169.254.169.254",
        "100.64.0.1",  # CGNAT
        "224.0.0.1", "239.255.255.250",  # multicast
        "0.0.0.0",  # noqa: S104 - an address to refuse, not to bind
        "::", "::1", "fe80::1", "fc00::1",
        "::ffff:127.0.0.1", "::ffff:169.254.169.254",  # IPv4-mapped
        "64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1",  # NAT64 of 169.254.169.254, 127.0.0.1
        "2002:7f00:0001::1", "2002:a9fe:a9fe::1",  # 6to4 of loopback and link-local
        "240.0.0.1", "255.255.255.255",
    ],
)  # fmt: skip
def test_non_public_addresses_are_refused_by_default(address: str) -> None:
    assert EgressPolicy().refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "157.240.22.35", "2a03:2880:f10c:83:face:b00c::"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert EgressPolicy().refusal(ipaddress.ip_address(address)) is None


def test_the_operator_allows_networks_and_nothing_else() -> None:
    policy = EgressPolicy.of(["127.0.0.0/8", " "])
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("10.0.0.1")) is not None
    assert policy.widened(allow_private=True).refusal(ipaddress.ip_address("10.0.0.1")) is None
    with pytest.raises(ValueError, match="does not appear"):
        EgressPolicy.of(["not a network"])
