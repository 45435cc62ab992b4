"""Which `callback_url`s the service may POST to: a pure policy, no I/O.

The callback URL is chosen by the caller, so it is an SSRF vector (the Standard
Webhooks specification warns about it). `parse_callback_url` says whether a URL is
acceptable and exactly what to send; `address_blocked` says whether an IP may be
connected to. Host names are only judged here for what needs no DNS; the adapter
(`adapters.callback_sender`) resolves, checks every address and connects to it.
`allow_private=True` (development and tests only) allows `http://` and private
targets, never ambiguous numeric hosts (`2130706433`, `127.1`, `0177.0.0.1`).
Reasons are sentences that never contain the URL: safe to log and to return.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
import urllib.parse
from dataclasses import dataclass
from typing import Final

import idna

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH: Final = 2048
DEFAULT_PORTS: Final = {"https": 443, "http": 80}

# Names that reach the machine itself or the cloud metadata server. Compared
# without a trailing dot; `*.localhost` is blocked as well (RFC 6761).
_BLOCKED_NAMES: Final = frozenset({"localhost", "metadata", "metadata.google.internal"})

_CANONICAL_IPV4 = re.compile(
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
    r"(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}",
    re.ASCII,
)
# A label that WHATWG's URL parser reads as a number ("ends in a number").
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*", re.ASCII)
_HOST_LABEL = re.compile(r"[a-z0-9_-]{1,63}", re.ASCII)
_PORT = re.compile(r"[0-9]{1,5}", re.ASCII)
# Characters percent-encoded in the request target: everything but unreserved,
# reserved and '%' (already-encoded sequences are kept as they are).
_TARGET_SAFE: Final = "!#$%&'()*+,/:;=?@[]~"

_UNSAFE_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})


class CallbackURLRejected(ValueError):
    """A `callback_url` the service refuses; `reason` is a sentence without the URL."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class CallbackTarget:
    """A checked callback URL, split into what the sender needs.

    `host` is lowercase ASCII (IDNA-encoded when needed; an IPv6 literal without
    brackets, in its compressed form), `port` is explicit, `path_and_query` is
    the request target (`/` when empty, no fragment).
    """

    scheme: str
    host: str
    port: int
    path_and_query: str

    @property
    def literal_ip(self) -> IPAddress | None:
        """The address when the host is an IP literal, else None (a name to resolve)."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None

    @property
    def host_header(self) -> str:
        """The `Host` header: the host (IPv6 in brackets), plus `:port` when not default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port != DEFAULT_PORTS[self.scheme]:
            return f"{host}:{self.port}"
        return host

    @property
    def redacted(self) -> str:
        """`scheme://host` for logs: no port, path, query or credentials."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}"


def parse_callback_url(url: str, *, allow_private: bool) -> CallbackTarget:
    """Check `url` against the callback URL rules; raise `CallbackURLRejected`."""
    if len(url) > MAX_URL_LENGTH:
        raise CallbackURLRejected(f"callback_url is longer than {MAX_URL_LENGTH} characters")
    if any(_unsafe_char(c) for c in url):
        raise CallbackURLRejected("callback_url contains whitespace or control characters")
    if "\\" in url:
        # WHATWG parsers read '\' as '/', Python's urlsplit does not: two hosts.
        raise CallbackURLRejected("callback_url contains a backslash")
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        raise CallbackURLRejected("callback_url is not a valid URL") from None

    allowed_schemes = ("https", "http") if allow_private else ("https",)
    if not parts.scheme or not url.lower().startswith(f"{parts.scheme}://"):
        raise CallbackURLRejected("callback_url must be an absolute https:// URL")
    if parts.scheme not in allowed_schemes:
        raise CallbackURLRejected("callback_url must use https://")
    netloc = parts.netloc
    if "@" in netloc:
        raise CallbackURLRejected("callback_url must not contain credentials")

    raw_host, port = _split_host_port(netloc, parts.scheme)
    host = _normalize_host(raw_host)
    ip = _check_host(host, allow_private=allow_private)
    if ip is not None:
        host = str(ip)
    return CallbackTarget(
        scheme=parts.scheme,
        host=host,
        port=port,
        path_and_query=_request_target(parts.path, parts.query),
    )


def address_blocked(ip: IPAddress) -> str | None:
    """Why the service must not connect to `ip`, or None when it is public."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _ipv4_blocked(ip)
    return _ipv6_blocked(ip)


# --- helpers ----------------------------------------------------------------


def _unsafe_char(c: str) -> bool:
    return c.isspace() or unicodedata.category(c) in _UNSAFE_CATEGORIES


def _split_host_port(netloc: str, scheme: str) -> tuple[str, int]:
    """Split the authority into (host, port) without trusting urlsplit's lenience."""
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise CallbackURLRejected("callback_url has an unterminated IPv6 address")
        host, rest = netloc[: end + 1], netloc[end + 1 :]
        if rest and not rest.startswith(":"):
            raise CallbackURLRejected("callback_url has characters after its IPv6 address")
        port_text = rest[1:] if rest else None
    elif ":" in netloc:
        host, port_text = netloc.split(":", 1)
    else:
        host, port_text = netloc, None

    if not host:
        raise CallbackURLRejected("callback_url has no host")
    if port_text is None:
        return host, DEFAULT_PORTS[scheme]
    if not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        raise CallbackURLRejected("callback_url port must be a number from 1 to 65535")
    return host, int(port_text)


def _normalize_host(raw: str) -> str:
    """Lowercase ASCII host; IDNA-encode names; IPv6 literals keep their brackets."""
    if raw.startswith("["):
        return raw.lower()
    if "%" in raw:
        raise CallbackURLRejected("callback_url host must not be percent-encoded")
    if raw.isascii():
        return raw.lower()
    try:
        # UTS #46 mapping, as browsers do (it also folds full-width digits and
        # dots into ASCII, so the checks below see what a resolver would see).
        return idna.encode(raw, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        raise CallbackURLRejected(
            "callback_url host is not a valid internationalised domain name"
        ) from None


def _check_host(host: str, *, allow_private: bool) -> IPAddress | None:
    """Apply the host rules; return the address when the host is an IP literal."""
    if host.startswith("["):
        return _check_ipv6_literal(host, allow_private=allow_private)

    name = host.removesuffix(".")
    labels = name.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        if not _CANONICAL_IPV4.fullmatch(host):
            raise CallbackURLRejected(
                "callback_url host is an ambiguous numeric address; "
                "write IPv4 addresses as four decimal numbers (a.b.c.d)"
            )
        ip4 = ipaddress.IPv4Address(host)
        if not allow_private:
            _raise_if_blocked(ip4)
        return ip4

    if len(name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise CallbackURLRejected("callback_url host is not a valid host name")
    if not allow_private:
        if name in _BLOCKED_NAMES or name.endswith(".localhost"):
            raise CallbackURLRejected(
                "callback_url host names the local machine or the metadata server"
            )
        if "." not in name:
            # Single-label names are completed with the resolver's search
            # domains (on Google Cloud: *.internal), never a public host.
            raise CallbackURLRejected("callback_url host must be a fully qualified domain name")
    return None


def _check_ipv6_literal(host: str, *, allow_private: bool) -> IPAddress:
    inner = host[1:-1]
    if "%" in inner:
        raise CallbackURLRejected("callback_url IPv6 address must not have a zone identifier")
    try:
        ip6 = ipaddress.IPv6Address(inner)
    except ValueError:
        raise CallbackURLRejected("callback_url has an invalid IPv6 address") from None
    if not allow_private:
        _raise_if_blocked(ip6)
    return ip6


def _raise_if_blocked(ip: IPAddress) -> None:
    reason = address_blocked(ip)
    if reason is not None:
        raise CallbackURLRejected(f"callback_url host is {reason}")


def _request_target(path: str, query: str) -> str:
    target = urllib.parse.quote(path or "/", safe=_TARGET_SAFE)
    if query:
        target += "?" + urllib.parse.quote(query, safe=_TARGET_SAFE)
    return target


_V4_RULES: Final[tuple[tuple[ipaddress.IPv4Network, str], ...]] = tuple(
    (ipaddress.IPv4Network(net), reason)
    for net, reason in (
        ("0.0.0.0/32", "the unspecified address"),
        ("0.0.0.0/8", "in 0.0.0.0/8 ('this network')"),
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.169.254/32", "the cloud metadata server (link-local)"),
        ("169.254.0.0/16", "a link-local address"),
        ("10.0.0.0/8", "a private address"),
        ("172.16.0.0/12", "a private address"),
        ("192.168.0.0/16", "a private address"),
        ("100.64.0.0/10", "a carrier-grade NAT address"),
        ("192.0.0.0/24", "an IETF protocol assignment address"),
        ("192.0.2.0/24", "a documentation address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("192.88.99.0/24", "a deprecated 6to4 relay address"),
        ("224.0.0.0/4", "a multicast address"),
        ("255.255.255.255/32", "the broadcast address"),
        ("240.0.0.0/4", "a reserved address"),
    )
)

_V6_RULES: Final[tuple[tuple[ipaddress.IPv6Network, str], ...]] = tuple(
    (ipaddress.IPv6Network(net), reason)
    for net, reason in (
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a (deprecated) site-local address"),
        ("fc00::/7", "a private (unique local) address"),
        ("ff00::/8", "a multicast address"),
        ("2001:db8::/32", "a documentation address"),
        ("3fff::/20", "a documentation address"),
        ("100::/64", "a discard-only address"),
        ("64:ff9b:1::/48", "a local-use NAT64 address"),
        ("2001::/32", "a Teredo tunnelling address"),
    )
)

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _ipv4_blocked(ip: ipaddress.IPv4Address) -> str | None:
    for net, reason in _V4_RULES:
        if ip in net:
            return reason
    if ip.is_reserved or ip.is_multicast:
        return "a reserved address"
    if not ip.is_global:
        return "not a globally routable address"
    return None


def _ipv6_blocked(ip: ipaddress.IPv6Address) -> str | None:  # noqa: PLR0911, PLR0912 (one case per special range)
    # Forms that carry an IPv4 address: judge the IPv4 address they reach.
    if ip.ipv4_mapped is not None:
        # ::ffff:a.b.c.d *is* a.b.c.d on a dual-stack socket.
        inner = _ipv4_blocked(ip.ipv4_mapped)
        return None if inner is None else f"an IPv4-mapped IPv6 form of {inner}"
    # :: and ::1 lie inside ::/96 but are not IPv4 addresses in disguise.
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip in _IPV4_COMPATIBLE:
        embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        inner = _ipv4_blocked(embedded)
        if inner is not None:
            return f"an IPv4-compatible IPv6 form of {inner}"
        return "a deprecated IPv4-compatible IPv6 address"
    if ip in _NAT64:
        # 64:ff9b::a.b.c.d is translated to a.b.c.d by a NAT64 gateway.
        inner = _ipv4_blocked(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        return None if inner is None else f"a NAT64 form of {inner}"
    if ip.sixtofour is not None:
        inner = _ipv4_blocked(ip.sixtofour)
        if inner is not None:
            return f"a 6to4 form of {inner}"
    for net, reason in _V6_RULES:
        if ip in net:
            return reason
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "not a globally routable address"
    return None
