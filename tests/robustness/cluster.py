"""Small helpers over a running cluster of real processes (etcd or petcd): who leads, waits."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import grpc

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.harness import Server

CALL = 5.0


def status(server: Server, timeout: float = CALL) -> pb.StatusResponse:
    with grpc.insecure_channel(server.endpoint) as ch:
        stub = pb_grpc.MaintenanceStub(ch)  # type: ignore[no-untyped-call]
        resp: pb.StatusResponse = stub.Status(pb.StatusRequest(), timeout=timeout)
        return resp


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 30.0, every: float = 0.1) -> None:
    end = time.monotonic() + timeout
    while True:
        try:
            if cond():
                return
        except grpc.RpcError:
            pass
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def leader_of(members: Sequence[Server], timeout: float = 30.0) -> Server:
    """The running member that says it is leader, once every running member agrees on it."""
    found: list[Server] = []

    def agreed() -> bool:
        running = [m for m in members if m.is_running()]
        sts = [status(m, 2.0) for m in running]
        leaders = {st.leader for st in sts}
        if len(leaders) != 1 or 0 in leaders:
            return False
        lead = leaders.pop()
        found[:] = [m for m, st in zip(running, sts, strict=True) if st.header.member_id == lead]
        return bool(found)

    wait_for(agreed, "the running members to agree on a leader", timeout)
    return found[0]


def followers_of(members: Sequence[Server], leader: Server) -> list[Server]:
    return [m for m in members if m is not leader and m.is_running()]


@contextmanager
def paused(members: Sequence[Server]) -> Iterator[None]:
    """The members' processes SIGSTOPped for the block, SIGCONTed after it."""
    pids = [m.pid for m in members]
    for pid in pids:
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            assert pid is not None
            os.kill(pid, signal.SIGCONT)
