"""The callback URL policy: plain values in, values out, no network.

Every address named here is only parsed. An autouse guard makes name
resolution and socket connections fail the test, so that even a bug in the
(pure) policy could not send a packet anywhere.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.urlpolicy import (
    MAX_URL_LENGTH,
    CallbackTarget,
    CallbackURLRejected,
    address_blocked,
    parse_callback_url,
)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Record (and refuse) any attempt to resolve a name or open a connection."""
    attempts: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(repr(args[:2]))
        raise OSError("network access is not allowed in core tests")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "gethostbyname", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield attempts
    assert attempts == [], "the pure URL policy touched the network"


def rejection(url: str, *, allow_private: bool = False) -> str:
    with pytest.raises(CallbackURLRejected) as info:
        parse_callback_url(url, allow_private=allow_private)
    return info.value.reason


# --- addresses that must never be reached ----------------------------------

BLOCKED_HOSTS = [
    # IPv4
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "metadata"),
    ("169.254.0.1", "link-local"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "0.0.0.0/8"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("192.0.0.8", "IETF protocol"),
    # IPv6
    ("[::1]", "loopback"),
    ("[::]", "unspecified"),
    ("[fe80::1]", "link-local"),
    ("[FE80::abcd]", "link-local"),
    ("[fc00::1]", "unique local"),
    ("[fd12:3456:789a::1]", "unique local"),
    ("[fec0::1]", "site-local"),
    ("[ff02::1]", "multicast"),
    ("[2001:db8::1]", "documentation"),
    ("[3fff::1]", "documentation"),
    ("[100::1]", "discard"),
    ("[2001::1]", "Teredo"),
    ("[64:ff9b:1::1]", "local-use NAT64"),
    # IPv4 addresses in IPv6 clothing
    ("[::ffff:127.0.0.1]", "IPv4-mapped IPv6 form of a loopback"),
    ("[::ffff:7f00:1]", "IPv4-mapped IPv6 form of a loopback"),
    ("[0:0:0:0:0:ffff:127.0.0.1]", "IPv4-mapped IPv6 form of a loopback"),
    ("[::ffff:169.254.169.254]", "IPv4-mapped IPv6 form of the cloud metadata server"),
    ("[::ffff:10.0.0.1]", "IPv4-mapped IPv6 form of a private"),
    ("[::ffff:100.64.0.1]", "IPv4-mapped IPv6 form of a carrier-grade NAT"),
    ("[::ffff:0.0.0.0]", "IPv4-mapped IPv6 form of the unspecified"),
    ("[::7f00:1]", "IPv4-compatible IPv6 form of a loopback"),
    ("[::127.0.0.1]", "IPv4-compatible IPv6 form of a loopback"),
    ("[::a9fe:a9fe]", "IPv4-compatible IPv6 form of the cloud metadata server"),
    ("[::8.8.8.8]", "deprecated IPv4-compatible"),
    ("[64:ff9b::7f00:1]", "NAT64 form of a loopback"),
    ("[64:ff9b::169.254.169.254]", "NAT64 form of the cloud metadata server"),
    ("[2002:7f00:1::]", "6to4 form of a loopback"),
    ("[2002:a9fe:a9fe::1]", "6to4 form of the cloud metadata server"),
    ("[2002:0a00:0001::1]", "6to4 form of a private"),
]


@pytest.mark.parametrize(("host", "reason"), BLOCKED_HOSTS)
def test_literal_ip_host_in_a_blocked_range_is_rejected(host: str, reason: str) -> None:
    assert reason in rejection(f"https://{host}/hook")


@pytest.mark.parametrize(("host", "reason"), BLOCKED_HOSTS)
def test_address_blocked_names_the_range(host: str, reason: str) -> None:
    ip = ipaddress.ip_address(host.strip("[]"))

    answer = address_blocked(ip)

    assert answer is not None
    assert reason in answer


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.215.14",
        "2001:4860:4860::8888",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",  # the mapped form of a public address is that address
        "64:ff9b::808:808",  # NAT64 translation of a public address
        "2002:808:808::1",  # 6to4 of a public address
    ],
)
def test_address_blocked_lets_public_addresses_through(address: str) -> None:
    assert address_blocked(ipaddress.ip_address(address)) is None


@given(st.ip_addresses(v=4))
def test_ipv6_wrappers_of_an_ipv4_address_are_judged_like_the_address(
    ip: ipaddress.IPv4Address,
) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{ip}")
    nat64 = ipaddress.IPv6Address(f"64:ff9b::{ip}")
    compatible = ipaddress.IPv6Address(int(ip))

    blocked = address_blocked(ip) is not None

    assert (address_blocked(mapped) is not None) == blocked
    assert (address_blocked(nat64) is not None) == blocked
    if blocked and int(ip) > 1:  # :: and ::1 are not IPv4-compatible forms
        assert address_blocked(compatible) is not None


@given(st.ip_addresses(v=4))
def test_a_literal_ipv4_url_is_accepted_exactly_when_its_address_is_not_blocked(
    ip: ipaddress.IPv4Address,
) -> None:
    url = f"https://{ip}/hook"
    if address_blocked(ip) is None:
        assert parse_callback_url(url, allow_private=False).host == str(ip)
    else:
        with pytest.raises(CallbackURLRejected):
            parse_callback_url(url, allow_private=False)


# --- names ------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "LOCALHOST",
        "localhost.",
        "LOCALHOST.",
        "api.localhost",
        "a.b.localhost.",
        "metadata",
        "metadata.",
        "metadata.google.internal",
        "METADATA.GOOGLE.INTERNAL.",
    ],
)
def test_local_machine_and_metadata_server_names_are_rejected(host: str) -> None:
    assert "local machine or the metadata server" in rejection(f"https://{host}/hook")


@pytest.mark.parametrize("host", ["intranet", "db", "ip6-localhost"])
def test_single_label_host_names_are_rejected(host: str) -> None:
    assert "fully qualified" in rejection(f"https://{host}/hook")


@pytest.mark.parametrize(
    "host",
    [
        "2130706433",
        "0x7f000001",
        "0X7F000001",
        "127.1",
        "127.0.1",
        "0177.0.0.1",
        "127.000.0.1",
        "127.0.0.01",
        "0x7f.0.0.1",
        "127.0.0.0x1",
        "127.0.0.1.",
        "1.2.3.4.5",
        "256.0.0.1",
        "0",
        "0x",
        "017700000001",
        "example.123",
        "169.254.43518",
        "8.8.8.010",
    ],
)
@pytest.mark.parametrize("allow_private", [False, True])
def test_ambiguous_numeric_hosts_are_rejected_even_on_private_networks(
    host: str, allow_private: bool
) -> None:
    reason = rejection(f"https://{host}/hook", allow_private=allow_private)

    assert "ambiguous numeric address" in reason


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("\uff11\uff12\uff17.0.0.1", "loopback"),  # full-width digits fold to 127.0.0.1
        ("127\u30020\u30020\u30021", "loopback"),  # ideographic full stops fold to dots
        ("\u2460\u2461\u2466.0.0.1", "loopback"),  # circled digits fold to 127
        ("\uff10\uff58\uff17\uff46\uff10\uff10\uff10\uff10\uff10\uff11", "ambiguous numeric"),
        ("l\uff4fcalhost", "local machine"),  # full-width letter folds to localhost
    ],
)
def test_unicode_hosts_are_checked_after_idna_folding(host: str, reason: str) -> None:
    assert reason in rejection(f"https://{host}/hook")


# --- URL shape --------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://hooks.example.com/hook", "https://"),
        ("HTTP://hooks.example.com/hook", "https://"),
        ("ftp://hooks.example.com/hook", "https://"),
        ("javascript:alert(1)", "absolute https:// URL"),
        ("hooks.example.com/hook", "absolute https:// URL"),
        ("//hooks.example.com/hook", "absolute https:// URL"),
        ("https:hooks.example.com/hook", "absolute https:// URL"),
        ("/hook", "absolute https:// URL"),
        ("", "absolute https:// URL"),
        ("https://", "no host"),
        ("https:///hook", "no host"),
        ("https://:443/hook", "no host"),
        ("https://user:pass@hooks.example.com/", "credentials"),
        ("https://user@hooks.example.com/", "credentials"),
        ("https://:@hooks.example.com/", "credentials"),
        ("https://hooks.example.com@127.0.0.1/", "credentials"),
        ("https://hooks.example.com%40127.0.0.1/", "percent-encoded"),
        ("https://%31%32%37.0.0.1/", "percent-encoded"),
        ("https://hooks.example.com\\@127.0.0.1/", "backslash"),
        ("https://127.0.0.1\\@hooks.example.com/", "backslash"),
        ("https://127.0.0.1\\hooks.example.com/", "backslash"),
        ("https:\\\\127.0.0.1/hook", "backslash"),
        ("https://hooks.example.com/a\\b", "backslash"),
        ("https://hooks.example.com:0/", "port"),
        ("https://hooks.example.com:65536/", "port"),
        ("https://hooks.example.com:123456/", "port"),
        ("https://hooks.example.com:-1/", "port"),
        ("https://hooks.example.com:/", "port"),
        ("https://hooks.example.com:https/", "port"),
        ("https://hooks.example.com:\uff14\uff14\uff13/", "port"),  # full-width digits
        ("https://hooks.example.com:443:443/", "port"),
        ("https://[::1/", "not a valid URL"),
        ("https://[::1]x/", "after its IPv6 address"),
        ("https://[fe80::1%25eth0]/", "zone identifier"),
        ("https://[hooks.example.com]/", "not a valid URL"),
        ("https://exa mple.com/", "whitespace"),
        (" https://hooks.example.com/", "whitespace"),
        ("https://hooks.example.com/\n", "whitespace"),
        ("https://hooks.example.com/\r\nX-Injected: 1", "whitespace"),
        ("https://hooks.example.com/\thook", "whitespace"),
        ("https://hooks.example.com/\x00", "control"),
        ("https://hooks.example.com/\x7f", "control"),
        ("https://hooks.example.com\u200b/", "control"),  # zero-width space
        ("https://exam\u00adple.com/", "control"),  # soft hyphen would vanish in IDNA
        ("https://hooks.example.com\u3000/", "whitespace"),  # ideographic space
        ("https://hooks..example.com/", "not a valid host name"),
        ("https://.hooks.example.com/", "not a valid host name"),
        ("https://hooks.exa$mple.com/", "not a valid host name"),
        ("https://hooks.example.com*/", "not a valid host name"),
        ("https://" + "a" * 64 + ".example.com/", "not a valid host name"),
        ("https://" + "abcdefgh." * 28 + "com/", "not a valid host name"),
        ("https://b\u00fc_cher.de/", "internationalised"),
    ],
)
def test_malformed_or_unsafe_urls_are_rejected_with_a_reason(url: str, reason: str) -> None:
    assert reason in rejection(url)


def test_url_longer_than_the_limit_is_rejected() -> None:
    prefix = "https://hooks.example.com/"
    url = prefix + "a" * (MAX_URL_LENGTH - len(prefix) + 1)

    assert len(url) == MAX_URL_LENGTH + 1
    assert "longer than 2048" in rejection(url)


def test_url_at_the_length_limit_is_accepted() -> None:
    prefix = "https://hooks.example.com/"
    url = prefix + "a" * (MAX_URL_LENGTH - len(prefix))

    assert parse_callback_url(url, allow_private=False).path_and_query == url[len(prefix) - 1 :]


@pytest.mark.parametrize(
    "url",
    [
        "https://user:s3cret-password@hooks.example.com/s3cret-path?token=s3cret",
        "http://hooks.example.com/s3cret-path?token=s3cret",
        "https://127.0.0.1/s3cret-path?token=s3cret",
        "https://localhost/s3cret-path?token=s3cret",
        "https://2130706433/s3cret-path?token=s3cret",
        "https://hooks.example.com:99999/s3cret-path?token=s3cret",
        "https://hooks.example.com/s3cret-path?token=s3cret\n",
    ],
)
def test_rejection_reason_never_contains_the_url_or_its_secrets(url: str) -> None:
    reason = rejection(url)

    assert "s3cret" not in reason
    assert url.strip() not in reason
    assert str(CallbackURLRejected(reason)) == reason


def test_rejection_is_a_value_error() -> None:
    assert issubclass(CallbackURLRejected, ValueError)


# --- accepted URLs and what they become -------------------------------------


@pytest.mark.parametrize(
    ("url", "expected", "host_header", "redacted"),
    [
        (
            "https://hooks.example.com",
            CallbackTarget("https", "hooks.example.com", 443, "/"),
            "hooks.example.com",
            "https://hooks.example.com",
        ),
        (
            "https://Hooks.Example.COM:8443/track-deleted?x=1&y=2#fragment",
            CallbackTarget("https", "hooks.example.com", 8443, "/track-deleted?x=1&y=2"),
            "hooks.example.com:8443",
            "https://hooks.example.com",
        ),
        (
            "HTTPS://hooks.example.com:443/a",
            CallbackTarget("https", "hooks.example.com", 443, "/a"),
            "hooks.example.com",
            "https://hooks.example.com",
        ),
        (
            "https://hooks.example.com:00443/a",
            CallbackTarget("https", "hooks.example.com", 443, "/a"),
            "hooks.example.com",
            "https://hooks.example.com",
        ),
        (
            "https://hooks.example.com./hook",
            CallbackTarget("https", "hooks.example.com.", 443, "/hook"),
            "hooks.example.com.",
            "https://hooks.example.com.",
        ),
        (
            "https://hooks.example.com?x=1",
            CallbackTarget("https", "hooks.example.com", 443, "/?x=1"),
            "hooks.example.com",
            "https://hooks.example.com",
        ),
        (
            "https://hooks.example.com/path?",
            CallbackTarget("https", "hooks.example.com", 443, "/path"),
            "hooks.example.com",
            "https://hooks.example.com",
        ),
        (
            "https://hooks.example.com/a%20b;p=1?q=%2F",
            CallbackTarget("https", "hooks.example.com", 443, "/a%20b;p=1?q=%2F"),
            "hooks.example.com",
            "https://hooks.example.com",
        ),
        (
            "https://b\u00fccher.de/\u00e4?q=\u00fc",
            CallbackTarget("https", "xn--bcher-kva.de", 443, "/%C3%A4?q=%C3%BC"),
            "xn--bcher-kva.de",
            "https://xn--bcher-kva.de",
        ),
        (
            "https://fa\u00df.de/",
            CallbackTarget("https", "xn--fa-hia.de", 443, "/"),
            "xn--fa-hia.de",
            "https://xn--fa-hia.de",
        ),
        (
            "https://8.8.8.8/hook",
            CallbackTarget("https", "8.8.8.8", 443, "/hook"),
            "8.8.8.8",
            "https://8.8.8.8",
        ),
        (
            "https://1.1.1.1:8443",
            CallbackTarget("https", "1.1.1.1", 8443, "/"),
            "1.1.1.1:8443",
            "https://1.1.1.1",
        ),
        (
            "https://[2001:4860:4860::8888]/hook",
            CallbackTarget("https", "2001:4860:4860::8888", 443, "/hook"),
            "[2001:4860:4860::8888]",
            "https://[2001:4860:4860::8888]",
        ),
        (
            "https://[2001:4860:4860:0:0:0:0:8888]:8443/",
            CallbackTarget("https", "2001:4860:4860::8888", 8443, "/"),
            "[2001:4860:4860::8888]:8443",
            "https://[2001:4860:4860::8888]",
        ),
        (
            "https://[::ffff:8.8.8.8]/",
            CallbackTarget("https", "::ffff:808:808", 443, "/"),
            "[::ffff:808:808]",
            "https://[::ffff:808:808]",
        ),
        (
            "https://0x7f.example.com/",  # a hex-looking label that is not the last one
            CallbackTarget("https", "0x7f.example.com", 443, "/"),
            "0x7f.example.com",
            "https://0x7f.example.com",
        ),
        (
            "https://127.0.0.1.nip.io/",  # a name: its addresses are checked at send time
            CallbackTarget("https", "127.0.0.1.nip.io", 443, "/"),
            "127.0.0.1.nip.io",
            "https://127.0.0.1.nip.io",
        ),
        (
            "https://my_host.example.com/",
            CallbackTarget("https", "my_host.example.com", 443, "/"),
            "my_host.example.com",
            "https://my_host.example.com",
        ),
        (
            "https://localhost.example.com/",
            CallbackTarget("https", "localhost.example.com", 443, "/"),
            "localhost.example.com",
            "https://localhost.example.com",
        ),
    ],
)
def test_public_urls_are_accepted_and_split_for_sending(
    url: str, expected: CallbackTarget, host_header: str, redacted: str
) -> None:
    target = parse_callback_url(url, allow_private=False)

    assert target == expected
    assert target.host_header == host_header
    assert target.redacted == redacted


def test_literal_ip_is_exposed_only_for_ip_hosts() -> None:
    by_ip = parse_callback_url("https://[2001:4860:4860::8888]/", allow_private=False)
    by_name = parse_callback_url("https://hooks.example.com/", allow_private=False)

    assert by_ip.literal_ip == ipaddress.IPv6Address("2001:4860:4860::8888")
    assert by_name.literal_ip is None


def test_callback_target_is_frozen() -> None:
    target = parse_callback_url("https://hooks.example.com/", allow_private=False)

    with pytest.raises(AttributeError):
        target.host = "127.0.0.1"  # type: ignore[misc]


# --- CALLBACK_ALLOW_PRIVATE_NETWORKS=true -----------------------------------


@pytest.mark.parametrize(
    ("url", "expected", "host_header"),
    [
        (
            "http://127.0.0.1:8080/hook",
            CallbackTarget("http", "127.0.0.1", 8080, "/hook"),
            "127.0.0.1:8080",
        ),
        (
            "http://localhost:8000/",
            CallbackTarget("http", "localhost", 8000, "/"),
            "localhost:8000",
        ),
        (
            "http://hooks.example.com:80/",
            CallbackTarget("http", "hooks.example.com", 80, "/"),
            "hooks.example.com",
        ),
        ("https://[::1]:8443/x", CallbackTarget("https", "::1", 8443, "/x"), "[::1]:8443"),
        ("http://10.0.0.1/", CallbackTarget("http", "10.0.0.1", 80, "/"), "10.0.0.1"),
        ("http://receiver/", CallbackTarget("http", "receiver", 80, "/"), "receiver"),
        (
            "https://metadata.google.internal/",
            CallbackTarget("https", "metadata.google.internal", 443, "/"),
            "metadata.google.internal",
        ),
        (
            "http://[::ffff:127.0.0.1]:81/",
            CallbackTarget("http", "::ffff:7f00:1", 81, "/"),
            "[::ffff:7f00:1]:81",
        ),
    ],
)
def test_allow_private_lets_private_targets_and_http_through(
    url: str, expected: CallbackTarget, host_header: str
) -> None:
    target = parse_callback_url(url, allow_private=True)

    assert target == expected
    assert target.host_header == host_header


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://127.0.0.1/", "https://"),
        ("https://user:pass@127.0.0.1/", "credentials"),
        ("http://localhost\\@127.0.0.1/", "backslash"),
        ("http://127.1/", "ambiguous numeric"),
        ("http://0x7f000001/", "ambiguous numeric"),
        ("http://127.0.0.1:0/", "port"),
        ("http://127.0.0.1/" + "a" * MAX_URL_LENGTH, "longer than"),
    ],
)
def test_allow_private_still_rejects_malformed_urls(url: str, reason: str) -> None:
    assert reason in rejection(url, allow_private=True)
