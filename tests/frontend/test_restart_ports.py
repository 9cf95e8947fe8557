"""A member started at once on the ports of one just SIGKILLed comes up (issue 11).

The dead member's front-ends share its client port with SO_REUSEPORT and die with it, but a
multi-threaded process takes a moment to go; the new member waits for the ports (bounded) rather
than failing with "address already in use", and it is ready only once its own front-ends are.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from petcd.clock import LoopClock
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.harness import Server, free_ports
from tests.harness.waiting import wait_until


def _frontends_of(member: int) -> list[int]:
    flag = f"--parent={member}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"petcd.frontend" in argv and flag in argv and state != "Z":
            found.append(int(entry))
    return found


def _put(server: Server, key: bytes) -> None:
    with grpc.insecure_channel(server.endpoint) as ch:
        pb_grpc.KVStub(ch).Put(pb.PutRequest(key=key, value=b"v"), timeout=5)  # type: ignore[no-untyped-call]


def _lingering_frontend(port: int) -> socket.socket:
    """A socket in the client port's SO_REUSEPORT group, listening, as a dying front-end's is."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    client_port, peer_port = free_ports(2)
    # default front-ends (one per CPU up to 4); at least two so the test means something on one CPU
    args = () if len(os.sched_getaffinity(0)) >= 2 else ("--client-frontends=2",)
    s = Server("petcd", tmp_path, client_port=client_port, peer_port=peer_port, extra_args=args)
    try:
        yield s.start()
    finally:
        s.stop()


def test_restart_at_once_after_sigkill_always_comes_up(server: Server) -> None:
    """SIGKILL with clients connected, start again on the same ports with no pause, several times."""
    stop = threading.Event()

    def load() -> None:  # busy front-ends take longer to die
        while not stop.is_set():
            try:
                with grpc.insecure_channel(server.endpoint) as ch:
                    stub = pb_grpc.KVStub(ch)  # type: ignore[no-untyped-call]
                    while not stop.is_set():
                        stub.Put(pb.PutRequest(key=b"load", value=b"x" * 512), timeout=2)
            except grpc.RpcError:
                time.sleep(0.01)

    workers = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for w in workers:
        w.start()
    deadline = time.monotonic() + 60
    try:
        for i in range(4):
            assert server.pid is not None
            old = server.pid
            assert _frontends_of(old), "no front-ends: the test would prove nothing"
            server.kill9()
            server._proc = None  # restart now, whatever is left of the old one
            server.start(timeout=20)
            assert server.pid is not None
            new_frontends = _frontends_of(server.pid)
            assert new_frontends, f"run {i}: the new member reported ready without its front-ends"
            _put(server, f"after/{i}".encode())
            wait_until(lambda o=old: not _frontends_of(o), 5, f"run {i}: the killed member's front-ends exit")
            assert time.monotonic() < deadline, f"only {i + 1} restarts within 60 s"
    finally:
        stop.set()
        for w in workers:
            w.join(5)


def test_start_waits_for_a_port_a_dying_frontend_still_holds(tmp_path: Path) -> None:
    """Until the fix a taken client port failed the start at once with "address already in use"."""
    client_port, peer_port = free_ports(2)
    lingering = _lingering_frontend(client_port)
    server = Server("petcd", tmp_path, client_port=client_port, peer_port=peer_port,
                    extra_args=("--client-frontends=2",))
    try:
        server.spawn()
        wait_until(lambda: not server.is_running() or "retrying for up to" in server.log_tail(200), 20,
                   "petcd finds its client port taken")
        assert server.is_running(), server.log_tail()
        time.sleep(0.5)
        lingering.close()  # the old front-end is gone at last
        server.wait_ready(20)
        _put(server, b"k")
    finally:
        lingering.close()
        server.stop()


def test_start_gives_up_on_a_port_that_stays_taken(tmp_path: Path) -> None:
    client_port, peer_port = free_ports(2)
    squatter = _lingering_frontend(client_port)
    server = Server("petcd", tmp_path, client_port=client_port, peer_port=peer_port,
                    extra_args=("--client-frontends=2",))
    try:
        started = time.monotonic()
        server.spawn()
        wait_until(lambda: not server.is_running(), 20, "petcd gives up on a port that stays taken")
        took = time.monotonic() - started
        assert server.stop() == 1
        log = server.log_tail()
        assert f"listen tcp 127.0.0.1:{client_port}: bind: address already in use (still in use after 5s" in log, log
        assert took >= 5.0
    finally:
        squatter.close()


def test_claim_ports_when_free_names_the_address_after_its_bound() -> None:
    from petcd.frontend.supervisor import PortInUse, claim_ports_when_free

    port = free_ports(1)[0]
    squatter = _lingering_frontend(port)
    with squatter, pytest.raises(PortInUse, match=f"listen tcp 127.0.0.1:{port}: bind: address already in use "
                                                 r"\(still in use after 0.2s of retries\)") as info:
        asyncio.run(claim_ports_when_free([f"127.0.0.1:{port}"], LoopClock(), wait=0.2))
    assert info.value.addr == f"127.0.0.1:{port}"
