"""systemd's readiness protocol (sd_notify) for a `Type=notify` unit.

systemd passes the path of a Unix datagram socket in NOTIFY_SOCKET (a file system path, or an
abstract socket written with a leading `@`); the service sends newline-separated `KEY=value`
assignments to it, one datagram per message. petcd sends `READY=1` once the member serves
clients and `STOPPING=1` when it begins to shut down, so `systemctl start` returns when the
member is usable and `systemctl status` shows what it is doing.

"Serves clients" is what etcd's readiness means too (etcd notifies after its server is ready,
which needs a leader): the member answers a linearizable read, i.e. it knows a leader and has
applied what was committed. A member of a cluster without quorum therefore stays "activating",
as an etcd member does. Without NOTIFY_SOCKET nothing is sent and nothing waits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

from petcd import errors
from petcd.server.etcdserver import EtcdServer

log = logging.getLogger("petcd.server")

NOTIFY_SOCKET = "NOTIFY_SOCKET"
_RETRY = 0.2  # between readiness probes while the member has no leader


def socket_address(value: str) -> str | None:
    """The address to send to for a NOTIFY_SOCKET value; None for kinds petcd cannot use."""
    if value.startswith("@"):
        return "\0" + value[1:]  # abstract namespace
    if value.startswith("/"):
        return value
    return None


def notify(state: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send one sd_notify message; True if it was sent. Failures are logged, never raised: a
    service manager that went away must not bring the member down."""
    value = environ.get(NOTIFY_SOCKET, "")
    if not value:
        return False
    addr = socket_address(value)
    if addr is None:
        log.warning("NOTIFY_SOCKET=%s: only unix socket paths and @abstract names are supported", value)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall(state.encode())
    except OSError as exc:
        log.warning("sd_notify to %s failed: %s", value, exc)
        return False
    return True


async def _ready_when_serving(srv: EtcdServer, status: str, environ: Mapping[str, str]) -> None:
    while True:
        try:
            await srv.linearizable_read()
            break
        except errors.StoppedError:
            return
        except errors.PetcdError:
            await srv.clock.sleep(_RETRY)
    if notify(f"READY=1\nSTATUS={status}", environ):
        log.info("notified systemd that the member is ready")


def notify_ready(srv: EtcdServer, status: str, environ: Mapping[str, str] = os.environ) -> asyncio.Task[None] | None:
    """When run by systemd (NOTIFY_SOCKET set): a task that sends READY=1 (with status as
    STATUS=) once the member serves a linearizable read; None otherwise."""
    if not environ.get(NOTIFY_SOCKET):
        return None
    return asyncio.get_running_loop().create_task(_ready_when_serving(srv, status, environ), name="sd-notify-ready")


def notify_stopping(ready: asyncio.Task[None] | None, environ: Mapping[str, str] = os.environ) -> None:
    """Tell systemd the member is shutting down (and stop waiting to say it is ready)."""
    if ready is not None:
        ready.cancel()
    notify("STOPPING=1\nSTATUS=shutting down", environ)
