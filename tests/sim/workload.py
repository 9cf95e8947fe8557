"""Clients of the simulated cluster: puts, gets, txns and deletes through random live members,
recorded as a history for the linearizability checker (tests/robustness/linearizability.py).

A call goes straight to the member's EtcdServer methods (what the gRPC servicers call after
validating), with the client's own deadline on the virtual clock. A write that fails or times out
has an unknown outcome (it may have been committed before the member died); a read that fails
tells nothing and is left out.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

from petcd.clock import ManualClock, wait_for
from petcd.errors import PetcdError
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.server.etcdserver import EtcdServer
from tests.robustness.kvmodel import Delete, DeleteOk, Get, GetOk, Input, Output, Put, PutOk, Txn
from tests.robustness.linearizability import Op
from tests.robustness.workload import _txn_output, _txn_request

CALL_TIMEOUT = 8.0  # virtual seconds; more than the member's own request timeout at 1 s elections


async def execute(srv: EtcdServer, inp: Input) -> Output:
    if isinstance(inp, Put):
        resp = await srv.put(pb.PutRequest(key=inp.key, value=inp.value))
        return PutOk(int(resp.header.revision))
    if isinstance(inp, Get):
        rr = await srv.range(pb.RangeRequest(key=inp.key))
        kv = rr.kvs[0] if rr.kvs else None
        return GetOk(kv.value if kv else None, int(kv.mod_revision) if kv else 0, int(rr.header.revision))
    if isinstance(inp, Delete):
        dr = await srv.delete_range(pb.DeleteRangeRequest(key=inp.key))
        return DeleteOk(int(dr.deleted), int(dr.header.revision))
    assert isinstance(inp, Txn)
    return _txn_output(inp, await srv.txn(_txn_request(inp)))


def is_read(inp: Input) -> bool:
    return isinstance(inp, Get)


class Clients:
    def __init__(self, clock: ManualClock, rng: random.Random, keys: Sequence[bytes], think_max: float,
                 live: Callable[[], list[EtcdServer]], trace: Callable[[str], None]) -> None:
        self.clock = clock
        self.rng = rng
        self.keys = list(keys)
        self.think_max = think_max
        self.live = live
        self.trace = trace
        self.ops: list[Op] = []
        self.stopping = False
        self.outcomes: dict[str, int] = {}
        self._seen: dict[bytes, tuple[bytes | None, int]] = {}  # what this client set last saw

    def _next_input(self, cid: int, n: int) -> Input:
        rng = self.rng
        key = rng.choice(self.keys)
        value = f"c{cid}-{n}".encode()
        r = rng.random()
        if r < 0.35:
            return Put(key, value)
        if r < 0.70:
            return Get(key)
        if r < 0.78:
            return Delete(key)
        last_value, last_mod = self._seen.get(key, (None, 0))
        if r < 0.89 and last_value is not None:
            return Txn(key, "value", last_value, Put(key, value), Get(key))
        return Txn(key, "mod", last_mod, Put(key, value), Get(key))

    async def call(self, cid: int, srv: EtcdServer, inp: Input) -> Output | None:
        """One call, recorded; its output or None when it failed."""
        call = self.clock.now()
        try:
            out = await wait_for(self.clock, execute(srv, inp), CALL_TIMEOUT)
        except (PetcdError, TimeoutError) as exc:
            kind = type(exc).__name__
            self.outcomes[kind] = self.outcomes.get(kind, 0) + 1
            if not is_read(inp):
                self.ops.append(Op(cid, call, math.inf, inp, None))
            return None
        self.outcomes["ok"] = self.outcomes.get("ok", 0) + 1
        self.ops.append(Op(cid, call, self.clock.now(), inp, out))
        if isinstance(out, GetOk):
            self._seen[inp.key] = (out.value, out.mod_revision)
        return out

    async def client(self, cid: int) -> None:
        n = 0
        while not self.stopping:
            live = self.live()
            if not live:
                await self.clock.sleep(0.1)
                continue
            srv = self.rng.choice(live)
            n += 1
            out = await self.call(cid, srv, self._next_input(cid, n))
            # virtual time always passes between two calls: a member that refuses at once must
            # not keep the loop from settling
            pause = 0.05 if out is None else self.rng.uniform(0.001, max(0.001, self.think_max))
            await self.clock.sleep(pause)
