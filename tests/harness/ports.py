"""Free loopback ports, found by binding port 0 and letting the kernel choose."""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct ports that were free a moment ago.

    All sockets are held open until every port is chosen so the kernel cannot hand out the same port
    twice; another process may still take one before the server binds it, which is why
    ``Server.start`` retries with fresh ports when the log says the address is in use.
    """
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
