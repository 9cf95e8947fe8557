"""A linearizability checker for histories of etcd KV and lease operations (tests only).

A history is a list of :class:`Op`: who called, when it was invoked and when it returned (any
monotonic clock), what was asked and what came back. An op whose outcome is unknown (a timeout,
a connection lost mid-call) has ``output=None``: it may have taken effect at any time after its
call, or never, so it is given an infinite return time and any result.

Two checks, both must pass:

``check_revisions`` looks at revisions alone, across all keys: every acknowledged write has its
own revision, and in real time revisions never go backwards (an op that starts after another
finished sees at least that op's revision, and a write gets a greater one).

``check_linearizable`` searches for a linearization of each projection of the history: one per
key, one per lease (see ``tests.robustness.kvmodel`` for the projections and the model). Without
leases every op touches one key, and a history is linearizable iff each key's sub-history is
(Herlihy & Wing's locality); a revoke touches a lease and its keys, so there the projections are
a necessary condition, made close to sufficient by the revisions. The search is Wing & Gong's,
with Lowe's memoisation as porcupine does it: walk the call/return events in time order; at a
call, try to linearize that op now (the model accepts its output in the current state); at a
return whose op is not yet linearized, undo the last choice; a (set of linearized ops, model
state) pair seen before is not explored again. The model is nondeterministic (an unknown write
leaves its revision open), so the search carries a set of states, as porcupine does for
nondeterministic models.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tests.robustness.kvmodel import (
    GONE,
    INITIAL,
    UNGRANTED,
    Delete,
    DeleteOk,
    Get,
    GetOk,
    GrantOk,
    Input,
    KeyState,
    LeaseGrant,
    LeaseNotFound,
    LeaseRevoke,
    Output,
    Put,
    PutOk,
    Refused,
    RevokeOk,
    SubOp,
    Txn,
    TxnOk,
    lease_step,
    leases_named,
    step,
)

__all__ = [
    "INITIAL", "Delete", "DeleteOk", "Get", "GetOk", "GrantOk", "Input", "KeyState", "LeaseGrant",
    "LeaseNotFound", "LeaseRevoke", "Op", "Output", "Put", "PutOk", "Refused", "RevokeOk", "SearchBudgetExceeded",
    "SubOp", "Txn", "TxnOk", "Verdict", "check", "check_linearizable", "check_revisions",
    "load_history", "normalise", "op_from_json", "op_to_json", "save_history", "step",
]


@dataclass(frozen=True, slots=True)
class Op:
    client: int
    call: float
    ret: float  # math.inf when the outcome is unknown
    input: Input
    output: Output | None  # None: unknown (it may or may not have taken effect)

    @property
    def key(self) -> bytes:
        """The key a KV op acts on (b"" for a lease op)."""
        return b"" if isinstance(self.input, LeaseGrant | LeaseRevoke) else self.input.key

    def is_write(self) -> bool:
        """An acknowledged op that created a new revision (a revoke's answer does not tell)."""
        o = self.output
        if isinstance(o, PutOk):
            return True
        if isinstance(o, DeleteOk):
            return o.deleted > 0
        if isinstance(o, TxnOk) and isinstance(self.input, Txn):
            branch = self.input.then if o.succeeded else self.input.otherwise
            return isinstance(branch, Put) or (isinstance(branch, Delete) and o.deleted > 0)
        return False

    def revision(self) -> int | None:
        o = self.output
        return None if o is None or isinstance(o, LeaseNotFound | Refused) else o.revision

# -- the search ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    key: bytes | None = None
    message: str = ""
    # the ops of the failing projection, and the longest linearized prefix found (indices into them)
    ops: tuple[Op, ...] = ()
    longest: tuple[int, ...] = ()
    lease: int | None = None  # set when the failing projection is a lease's


class SearchBudgetExceeded(Exception):
    """The search took more steps than allowed: no verdict."""


S = TypeVar("S", bound=Hashable)


def _check_key(ops: Sequence[Op], budget: int, initial: S | None = None,
               model: Callable[[S, Input, Output | None], list[S]] | None = None) -> tuple[bool, tuple[int, ...]]:
    """Wing & Gong's search with memoisation over one projection's ops (by default a key's,
    from an empty key with no leases)."""
    n = len(ops)
    # events: (time, kind, op) with calls before returns at equal times (treated as concurrent)
    events = sorted(
        [(op.call, 0, i) for i, op in enumerate(ops)] + [(op.ret, 1, i) for i, op in enumerate(ops)]
    )
    # a doubly linked list over the events; slot 0 is the head sentinel
    size = len(events) + 1
    nxt = list(range(1, size + 1))
    nxt[-1] = -1
    prv = list(range(-1, size - 1))
    is_call = [False] + [kind == 0 for _, kind, _ in events]
    op_of = [-1] + [i for _, _, i in events]
    match = [0] * size  # call slot -> its return slot
    ret_slot = {i: slot for slot, (_, kind, i) in enumerate(events, 1) if kind == 1}
    for slot in range(1, size):
        if is_call[slot]:
            match[slot] = ret_slot[op_of[slot]]

    def unlink(slot: int) -> None:
        p, q = prv[slot], nxt[slot]
        nxt[p] = q
        if q != -1:
            prv[q] = p

    def relink(slot: int) -> None:
        p, q = prv[slot], nxt[slot]
        nxt[p] = slot
        if q != -1:
            prv[q] = slot

    def lift(slot: int) -> None:
        unlink(slot)
        unlink(match[slot])

    def unlift(slot: int) -> None:
        relink(match[slot])
        relink(slot)

    start: S = INITIAL if initial is None else initial  # type: ignore[assignment]
    apply: Callable[[S, Input, Output | None], list[S]] = step if model is None else model  # type: ignore[assignment]
    states: frozenset[S] = frozenset([start])
    linearized = 0
    cache: dict[int, set[frozenset[S]]] = {}
    stack: list[tuple[int, frozenset[S]]] = []
    longest: list[int] = []
    slot = nxt[0]
    steps = 0
    while nxt[0] != -1:
        steps += 1
        if steps > budget:
            raise SearchBudgetExceeded(f"more than {budget} steps over {n} ops")
        if is_call[slot]:
            op = ops[op_of[slot]]
            after = frozenset(t for s in states for t in apply(s, op.input, op.output))
            if after:
                bits = linearized | (1 << op_of[slot])
                seen = cache.setdefault(bits, set())
                if after not in seen:
                    seen.add(after)
                    stack.append((slot, states))
                    states = after
                    linearized = bits
                    lift(slot)
                    if len(stack) > len(longest):
                        longest = [op_of[s] for s, _ in stack]
                    slot = nxt[0]
                    continue
            slot = nxt[slot]
        else:
            # the op returning here is not linearized yet: undo the last choice
            if not stack:
                return False, tuple(longest)
            top, states = stack.pop()
            linearized &= ~(1 << op_of[top])
            unlift(top)
            slot = nxt[top]
    return True, tuple(longest)


def _describe(op: Op) -> str:
    out = "unknown" if op.output is None else repr(op.output)
    ret = "inf" if math.isinf(op.ret) else f"{op.ret:.6f}"
    return f"client {op.client} [{op.call:.6f}, {ret}] {op.input!r} -> {out}"


def normalise(history: Iterable[Op]) -> list[Op]:
    """Unknown outcomes get an infinite return time."""
    return [op if op.output is not None or math.isinf(op.ret) else
            Op(op.client, op.call, math.inf, op.input, None) for op in history]


def _failure(what: str, ops: list[Op], longest: tuple[int, ...], key: bytes | None, lease: int | None) -> Verdict:
    done = set(longest)
    stuck = [op for i, op in enumerate(ops) if i not in done and not math.isinf(op.ret)]
    first = min(stuck, key=lambda o: o.ret) if stuck else None
    msg = f"{what}: not linearizable; {len(longest)} of {len(ops)} ops linearized at best"
    if first is not None:
        msg += f"; cannot place {_describe(first)}"
    return Verdict(False, key, msg, tuple(ops), longest, lease)


def check_linearizable(history: Iterable[Op], budget: int = 2_000_000) -> Verdict:
    ops_all = normalise(history)
    by_key: dict[bytes, list[Op]] = {}
    by_lease: dict[int, list[Op]] = {}
    lease_ops: dict[int, list[Op]] = {}  # each lease's grant and revokes
    granted: set[int] = set()
    for op in ops_all:
        inp, out = op.input, op.output
        if isinstance(inp, LeaseGrant):
            if isinstance(out, GrantOk):  # an unknown grant gave out no ID anyone could use
                granted.add(out.lease)
                by_lease.setdefault(out.lease, []).append(op)
                lease_ops.setdefault(out.lease, []).append(op)
        elif isinstance(inp, LeaseRevoke):
            lease_ops.setdefault(inp.lease, []).append(op)
            by_lease.setdefault(inp.lease, []).append(op)
        else:
            by_key.setdefault(inp.key, []).append(op)
            if isinstance(inp, Put | Get):
                for lease in leases_named(inp, op.output):
                    by_lease.setdefault(lease, []).append(op)
    for key in sorted(by_key):
        ops = by_key[key]
        named = set().union(*(leases_named(op.input, op.output) for op in ops))
        # the grants and revokes of this key's leases belong to its projection
        extra = [r for lease in sorted(named) for r in lease_ops.get(lease, [])]
        if extra:
            ops = sorted(ops + extra, key=lambda o: o.call)
        ok, longest = _check_key(ops, budget)
        if not ok:
            return _failure(f"key {key!r}", ops, longest, key, None)
    for lease in sorted(by_lease):
        ops = by_lease[lease]
        ok, longest = _check_key(ops, budget, UNGRANTED if lease in granted else GONE, lease_step)
        if not ok:
            return _failure(f"lease {lease:x}", ops, longest, None, lease)
    return Verdict(True)


def check_revisions(history: Iterable[Op]) -> Verdict:
    """Revisions alone: distinct for acknowledged writes, never backwards in real time."""
    done = [op for op in normalise(history) if op.revision() is not None]
    writes: dict[int, Op] = {}
    for op in done:
        if op.is_write():
            rev = op.output.revision  # type: ignore[union-attr]
            if rev in writes:
                return Verdict(False, op.key, f"two writes acknowledged at revision {rev}: "
                               f"{_describe(writes[rev])} and {_describe(op)}")
            writes[rev] = op
    by_ret = sorted(done, key=lambda o: o.ret)
    best: Op | None = None  # the op with the highest revision among those that returned
    j = 0
    for op in sorted(done, key=lambda o: o.call):
        while j < len(by_ret) and by_ret[j].ret < op.call:
            cand = by_ret[j]
            if best is None or cand.revision() > best.revision():  # type: ignore[operator]
                best = cand
            j += 1
        if best is None:
            continue
        rev, floor = op.revision(), best.revision()
        assert rev is not None and floor is not None
        if rev < floor or (op.is_write() and rev == floor):
            return Verdict(False, op.key, f"revision went backwards: {_describe(best)} returned before "
                           f"{_describe(op)} was called")
    return Verdict(True)


def check(history: Iterable[Op], budget: int = 2_000_000) -> Verdict:
    ops = list(history)
    v = check_revisions(ops)
    return v if not v.ok else check_linearizable(ops, budget)


# -- history files ---------------------------------------------------------------------------


def _b(x: bytes | None) -> str | None:
    return None if x is None else x.decode("latin-1")


def _unb(x: str | None) -> bytes | None:
    return None if x is None else x.encode("latin-1")


def _sub_json(op: SubOp) -> object:
    if op is None:
        return None
    d: dict[str, object] = {"op": type(op).__name__.lower(), "key": _b(op.key), "value": _b(getattr(op, "value", None))}
    if isinstance(op, Put) and op.lease:
        d["lease"] = op.lease
    return d


def _sub_load(d: object) -> SubOp:
    if d is None:
        return None
    assert isinstance(d, dict)
    key = _unb(d["key"])
    assert key is not None
    if d["op"] == "put":
        value = _unb(d["value"])
        assert value is not None
        return Put(key, value, int(d.get("lease", 0)))
    return Get(key) if d["op"] == "get" else Delete(key)


def op_to_json(op: Op) -> dict[str, object]:
    i = op.input
    d: dict[str, object] = {"client": op.client, "call": op.call, "ret": None if math.isinf(op.ret) else op.ret}
    if isinstance(i, Txn):
        exp = i.expected.decode("latin-1") if isinstance(i.expected, bytes) else i.expected
        d["input"] = {"op": "txn", "key": _b(i.key), "target": i.target, "expected": exp,
                      "then": _sub_json(i.then), "otherwise": _sub_json(i.otherwise)}
    elif isinstance(i, LeaseGrant):
        d["input"] = {"op": "grant", "ttl": i.ttl}
    elif isinstance(i, LeaseRevoke):
        d["input"] = {"op": "revoke", "lease": i.lease}
    else:
        d["input"] = _sub_json(i)
    o = op.output
    if o is None:
        d["output"] = None
    elif isinstance(o, GetOk):
        d["output"] = {"get": [_b(o.value), o.mod_revision, o.revision] + ([o.lease] if o.lease else [])}
    elif isinstance(o, GrantOk):
        d["output"] = {"grant": [o.lease, o.revision]}
    elif isinstance(o, RevokeOk):
        d["output"] = {"revoke": o.revision}
    elif isinstance(o, LeaseNotFound):
        d["output"] = {"error": "lease not found"}
    elif isinstance(o, Refused):
        d["output"] = {"error": "nospace"}
    elif isinstance(o, PutOk):
        d["output"] = {"put": o.revision}
    elif isinstance(o, DeleteOk):
        d["output"] = {"delete": [o.deleted, o.revision]}
    else:
        got = None if o.got is None else [_b(o.got[0]), o.got[1]]
        d["output"] = {"txn": [o.succeeded, o.revision, got, o.deleted]}
    return d


def op_from_json(d: dict[str, object]) -> Op:
    i = d["input"]
    assert isinstance(i, dict)
    inp: Input
    if i["op"] == "txn":
        key = _unb(i["key"])
        assert key is not None
        exp = i["expected"]
        expected: bytes | int = exp.encode("latin-1") if isinstance(exp, str) else int(exp)
        inp = Txn(key, i["target"], expected, _sub_load(i["then"]), _sub_load(i["otherwise"]))
    elif i["op"] == "grant":
        inp = LeaseGrant(int(i["ttl"]))
    elif i["op"] == "revoke":
        inp = LeaseRevoke(int(i["lease"]))
    else:
        sub = _sub_load(i)
        assert sub is not None
        inp = sub
    o = d["output"]
    out: Output | None = None
    if isinstance(o, dict):
        if "get" in o:
            v, m, r, *lease = o["get"]
            out = GetOk(_unb(v), m, r, *lease)
        elif "grant" in o:
            out = GrantOk(*o["grant"])
        elif "revoke" in o:
            out = RevokeOk(o["revoke"])
        elif "error" in o:
            out = Refused() if o["error"] == "nospace" else LeaseNotFound()
        elif "put" in o:
            out = PutOk(o["put"])
        elif "delete" in o:
            out = DeleteOk(*o["delete"])
        else:
            s, r, g, dl = o["txn"]
            out = TxnOk(s, r, None if g is None else (_unb(g[0]), g[1]), dl)
    ret = d["ret"]
    return Op(int(d["client"]), float(d["call"]), math.inf if ret is None else float(ret), inp, out)  # type: ignore[arg-type]


def save_history(path: Path, history: Sequence[Op], meta: dict[str, object] | None = None) -> None:
    path.write_text(json.dumps({"meta": meta or {}, "ops": [op_to_json(op) for op in history]}, indent=0))


def load_history(path: Path) -> list[Op]:
    return [op_from_json(d) for d in json.loads(path.read_text())["ops"]]


def main(argv: Sequence[str]) -> int:
    """``python -m tests.robustness.linearizability HISTORY.json``: check a saved history again."""
    for name in argv:
        v = check(load_history(Path(name)))
        print(f"{name}: {'linearizable' if v.ok else v.message}")
        if not v.ok:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
