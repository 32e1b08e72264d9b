"""Which ``Host`` names a ``masra serve`` server answers to. A request whose ``Host`` is another name is
refused, so that another site's page cannot reach the server under the attacker's own name (DNS rebinding),
whatever address the server is bound to."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("0.0.0.0", "::")
ANY = "*"  # --allowed-host '*': the operator turns the check off
_NAME = re.compile(r"[a-z0-9._-]+")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def host_names(bind: str, extra: Sequence[str]) -> list[str] | None:
    """The names a server bound to ``bind`` answers to, None for any (``*`` in ``extra``).

    A loopback server answers to its address and this machine's loopback names; any other server also to
    this machine's host names; ``extra`` (``--allowed-host``) adds names clients use (a DNS name, a LAN address,
    a proxy's name). A wildcard bind (0.0.0.0, ::) answers to no address of its own: name them with ``extra``."""
    if ANY in extra:
        return None
    names = {_plain(bind), *(_plain(name) for name in extra)}
    if is_loopback(bind) or bind in WILDCARDS:
        names.update(LOOPBACK_NAMES)
    if not is_loopback(bind):
        names.update(name.lower() for name in (socket.gethostname(), socket.getfqdn()))
    return sorted(names - {"", *WILDCARDS})


def request_host(header: str | None) -> str | None:
    """The host name of a ``Host`` header without its port (``[::1]:7860`` → ``::1``), None when malformed."""
    header = (header or "").strip().lower()
    if header.startswith("["):
        address, bracket, port = header[1:].partition("]")
        valid = bool(bracket) and (not port or port[0] == ":" and port[1:].isdigit()) and _is_ipv6(address)
        return address if valid else None
    name, colon, port = header.partition(":")
    if colon and not port.isdigit():
        return None
    return name if _NAME.fullmatch(name) else None


def _plain(name: str) -> str:
    return name.strip().lower().removeprefix("[").removesuffix("]")


def _is_ipv6(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).version == 6
    except ValueError:
        return False
