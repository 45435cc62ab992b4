"""The loopback-only network guard shared by the tests that name hostile addresses.

While active, any name resolution or connection that is not to a loopback
address is refused before a packet leaves, and recorded, so that even a bug in
the code under test cannot send traffic to a private or metadata address.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(host: object) -> bool:
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


@contextmanager
def loopback_guard() -> Iterator[list[str]]:
    """Refuse, and record, any name resolution or connection not to a loopback address."""
    refused: list[str] = []

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_loopback(host):
            refused.append(f"getaddrinfo({host!r})")
            raise socket.gaierror(socket.EAI_NONAME, "blocked by the test guard")
        return _real_getaddrinfo(host, *args, **kwargs)

    def by_name(host: Any, *args: Any, **kwargs: Any) -> Any:
        refused.append(f"gethostbyname({host!r})")
        raise socket.gaierror(socket.EAI_NONAME, "blocked by the test guard")

    def checked(sock: socket.socket, address: Any) -> None:
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or not _is_loopback(address[0]):
            refused.append(f"connect({address!r})")
            raise OSError("blocked by the test guard")

    def connect(sock: socket.socket, address: Any) -> None:
        checked(sock, address)
        _real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        checked(sock, address)
        return _real_connect_ex(sock, address)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        patch.setattr(socket, "gethostbyname", by_name)
        patch.setattr(socket, "gethostbyname_ex", by_name)
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr(socket.socket, "connect_ex", connect_ex)
        yield refused
