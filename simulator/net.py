"""Where a host is: the one loopback test behind every command that refuses remote targets."""

from __future__ import annotations

import ipaddress
import socket


def is_loopback(host: str) -> bool:
    """True for ``localhost``, a loopback address (127.0.0.0/8, ::1), or a name every address of which
    is one; False for anything else, including a name that does not resolve."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    # An IPv6 address may carry its zone ("fe80::1%eth0"): the address is what precedes it.
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)
