"""tasks.netguard's pure checks: which addresses and URLs callbacks may reach."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.errors import DestinationRefused, InvalidInput
from tasks.netguard import check_address, check_callback_url, refusal

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.0.1", "private"),
        ("fd00:ec2::254", "private"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("2002:7f00:1::", "loopback"),  # 6to4 around 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 around 169.254.169.254
    ],
)
def test_non_public_addresses_are_refused_with_their_kind(address: str, kind: str) -> None:
    assert refusal(ipaddress.ip_address(address), ()) == f"{ipaddress.ip_address(address)} ({kind})"
    with pytest.raises(DestinationRefused):
        check_address(address, ())


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), ()) is None
    check_address(address, ())


def test_the_allow_list_admits_its_networks_only() -> None:
    check_address("127.0.0.1", LOOPBACK)
    with pytest.raises(DestinationRefused, match="STT_CALLBACK_ALLOW_NETWORKS"):
        check_address("::1", LOOPBACK)  # another family, another network


@given(st.ip_addresses())
def test_every_address_is_either_public_or_refused_with_a_reason(address: object) -> None:
    ip = ipaddress.ip_address(str(address))
    why = refusal(ip, ())
    assert why is None or why.startswith(str(ip))
    if why is None:
        assert ip.is_global and not ip.is_multicast


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",
        "http://0/",
        "http://0x7f.1/",
        "http://127.1/",
        "http://017700000001/",
        "http://LOCALHOST./",
        "http://api.localhost/",
        "http://metadata.google.internal/",
        "http://printer.local/",
        "http://router.home.arpa/",
        "http://web/",
        "http://a.example/x y",
        "http://a.example/\x00",
        "http://a.example/\x85",
        "http://[fe80::1%25eth0]/",
    ],
)
def test_refused_callback_urls_name_the_field(url: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_callback_url("callback_url", url, ())
    assert info.value.field == "callback_url"


def test_internal_names_pass_enqueue_once_a_network_is_allowed() -> None:
    # The send-time check still decides; the deployment said it calls back inside.
    assert check_callback_url("callback_url", "http://web:8000/cb", LOOPBACK)
    with pytest.raises(InvalidInput):
        check_callback_url("callback_url", "http://10.0.0.1/cb", LOOPBACK)
