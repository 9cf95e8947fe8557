"""The operations of a history and the sequential model of etcd's KV with leases that the
linearizability checker (``tests.robustness.linearizability``) searches with.

The checker splits a history into projections and checks each alone: one per key (that key's
ops, plus the grants and revokes of every lease any of its ops names) and one per lease (its grant, revokes,
and the plain puts and gets that name it). Each projection's state evolves only through the ops
in it, so a linearizable history has linearizable projections: a rejected projection is a real
violation. A cross-projection violation a projection cannot see (a revoke not atomic across keys)
still shows as revisions going backwards in ``check_revisions`` when the ops carry revisions.

A key's state is ``(value, mod_revision, floor, lease, alive)``: the value (None if absent), its
mod revision (None while an unknown-outcome write left it open), the highest revision any
linearized op of the projection has seen (the next write must exceed it, the next read reach it),
the lease the value is attached to (0 for none), and which of the projection's leases are alive.
A lease's state is 0 (not granted yet), 1 (alive) or 2 (revoked).

etcd's lease semantics as modelled: a put naming a lease that is not alive fails with
``etcdserver: requested lease not found`` and changes nothing (in a txn: if the branch taken
holds such a put, the whole txn fails); a put without a lease detaches the key from its lease; a
revoke deletes the lease's keys in one revision, and one with no keys attached does not bump the
revision; revoking a lease that is gone fails with "lease not found". Expiry by time is not
modelled: the workload grants TTLs far longer than a run. A put or txn refused for space
(NOSPACE, ``Refused``) changed nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# -- operations ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Put:
    key: bytes
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Get:
    key: bytes


@dataclass(frozen=True, slots=True)
class Delete:
    key: bytes


SubOp = Put | Get | Delete | None


@dataclass(frozen=True, slots=True)
class Txn:
    """If the key's ``target`` (value or mod revision) equals ``expected``, ``then``, else
    ``otherwise``; both act on ``key`` (a missing key's value compares false, its mod revision
    is 0, as in etcd)."""

    key: bytes
    target: Literal["value", "mod"]
    expected: bytes | int
    then: SubOp
    otherwise: SubOp


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    ttl: int  # the server picks the ID


@dataclass(frozen=True, slots=True)
class LeaseRevoke:
    lease: int


KVInput = Put | Get | Delete | Txn
Input = KVInput | LeaseGrant | LeaseRevoke


@dataclass(frozen=True, slots=True)
class PutOk:
    revision: int


@dataclass(frozen=True, slots=True)
class GetOk:
    value: bytes | None
    mod_revision: int  # 0 when absent
    revision: int  # the header's
    lease: int = 0  # the key's lease, 0 when none or absent


@dataclass(frozen=True, slots=True)
class DeleteOk:
    deleted: int
    revision: int


@dataclass(frozen=True, slots=True)
class TxnOk:
    succeeded: bool
    revision: int
    # the branch's result: a Get's (value, mod revision), a Delete's count
    got: tuple[bytes | None, int] | None = None
    deleted: int = 0


@dataclass(frozen=True, slots=True)
class GrantOk:
    lease: int
    revision: int


@dataclass(frozen=True, slots=True)
class RevokeOk:
    revision: int


@dataclass(frozen=True, slots=True)
class LeaseNotFound:
    """A definite failure (applied, changed nothing): a put or txn naming a lease that is gone,
    or a revoke of one. It carries no revision."""


@dataclass(frozen=True, slots=True)
class Refused:
    """A definite failure that changed nothing: a put or txn refused with etcd's NOSPACE
    (``etcdserver: mvcc: database space exceeded``) while the quota is full. It carries no
    revision."""


Output = PutOk | GetOk | DeleteOk | TxnOk | GrantOk | RevokeOk | LeaseNotFound | Refused


def leases_named(inp: Input, out: Output | None) -> set[int]:
    """The leases an op on a key depends on or reveals."""
    found = {s.lease for s in _subs(inp) if isinstance(s, Put) and s.lease}
    if isinstance(out, GetOk) and out.lease:
        found.add(out.lease)
    return found


def _subs(inp: Input) -> tuple[SubOp, ...]:
    if isinstance(inp, Txn):
        return inp.then, inp.otherwise
    if isinstance(inp, Put | Get | Delete):
        return (inp,)
    return ()


# -- the key model -----------------------------------------------------------------------------

KeyState = tuple[bytes | None, int | None, int, int, frozenset[int]]
INITIAL: KeyState = (None, 0, 0, 0, frozenset())



def _put(s: KeyState, p: Put, rev: int | None) -> list[KeyState]:
    _, _, floor, _, alive = s
    if p.lease and p.lease not in alive:
        # only an unknown outcome fits: the put failed and changed nothing
        return [s] if rev is None else []
    if rev is None:
        return [(p.value, None, floor, p.lease, alive)]
    return [(p.value, rev, rev, p.lease, alive)] if rev > floor else []


def _delete(s: KeyState, out: tuple[int, int] | None) -> list[KeyState]:
    value, mod, floor, _, alive = s
    if out is None:
        return [(None, None, floor, 0, alive)] if value is not None else [s]
    deleted, rev = out
    if value is not None:
        return [(None, rev, rev, 0, alive)] if deleted == 1 and rev > floor else []
    return [(None, mod, max(floor, rev), 0, alive)] if deleted == 0 and rev >= floor else []


def _get(s: KeyState, out: tuple[bytes | None, int, int] | None, lease: int | None = None) -> list[KeyState]:
    """``lease``: the lease the read reported (None: not reported, as in a txn's range)."""
    value, mod, floor, attached, alive = s
    if out is None:
        return [s]
    got_value, got_mod, rev = out
    if got_value != value or rev < floor or got_mod > rev:
        return []
    if lease is not None and lease != attached:
        return []
    if value is None:
        # an absent key reads as mod revision 0; its deletion's revision (if known) is in floor
        return [(None, mod, rev, 0, alive)] if got_mod == 0 else []
    if mod is None:
        # the open revision of an unknown write is bound now
        return [(value, got_mod, rev, attached, alive)] if got_mod > floor else []
    return [(value, mod, rev, attached, alive)] if got_mod == mod else []


def _compare(s: KeyState, t: Txn) -> list[bool]:
    value, mod, floor, _, _ = s
    if t.target == "value":
        return [value is not None and value == t.expected]
    if value is None:
        return [t.expected == 0]  # a missing key's mod revision is 0
    if mod is None:
        # open: equal is possible only above the floor
        exp = t.expected
        return [False, True] if isinstance(exp, int) and exp > floor else [False]
    return [mod == t.expected]


def _sub(s: KeyState, op: SubOp, o: TxnOk | None) -> list[KeyState]:
    if op is None:
        return [s] if o is None or o.revision >= s[2] else []
    if isinstance(op, Put):
        return _put(s, op, None if o is None else o.revision)
    if isinstance(op, Delete):
        return _delete(s, None if o is None else (o.deleted, o.revision))
    if o is None:
        return [s]
    got = o.got if o.got is not None else (None, 0)
    return _get(s, (got[0], got[1], o.revision))


def _revoke(s: KeyState, lease: int, out: Output | None) -> list[KeyState]:
    value, mod, floor, attached, alive = s
    if isinstance(out, LeaseNotFound):
        return [s] if lease not in alive else []
    if out is not None and not isinstance(out, RevokeOk):
        return []
    if lease not in alive:
        return [s] if out is None else []
    rest = alive - {lease}
    ours = value is not None and attached == lease
    if out is None:
        return [(None, None, floor, 0, rest) if ours else (value, mod, floor, attached, rest)]
    rev = out.revision
    if ours:
        # the key goes in the revoke's one revision
        return [(None, rev, rev, 0, rest)] if rev > floor else []
    if rev < floor:
        return []
    # an open mod revision keeps the floor where it was (the open write may be below rev)
    return [(value, mod, floor if mod is None else rev, attached, rest)]


def _txn(s: KeyState, inp: Txn, out: Output | None) -> list[KeyState]:
    if out is not None and not isinstance(out, TxnOk | LeaseNotFound):
        return []
    result: list[KeyState] = []
    for outcome in _compare(s, inp):
        branch = inp.then if outcome else inp.otherwise
        if isinstance(out, LeaseNotFound):
            # the branch taken named a lease that is gone: nothing changed
            if isinstance(branch, Put) and branch.lease and branch.lease not in s[4]:
                result.append(s)
            continue
        if out is not None and out.succeeded != outcome:
            continue
        base = s
        if inp.target == "mod" and outcome and s[0] is not None and s[1] is None:
            base = (s[0], int(inp.expected), s[2], s[3], s[4])  # the compare bound the open revision
        result.extend(_sub(base, branch, out))
    return result


def step(s: KeyState, inp: Input, out: Output | None) -> list[KeyState]:
    """The states of a key after ``inp`` answered ``out`` in state ``s`` (empty: it cannot have)."""
    if isinstance(out, Refused):
        # only what adds data is refused for space; it changed nothing
        return [s] if isinstance(inp, Put | Txn) else []
    if isinstance(inp, LeaseRevoke):
        return _revoke(s, inp.lease, out)
    if isinstance(inp, LeaseGrant):
        if isinstance(out, GrantOk):
            return [(s[0], s[1], s[2], s[3], s[4] | {out.lease})]
        return [s]
    if isinstance(inp, Txn):
        return _txn(s, inp, out)
    if isinstance(inp, Put):
        if isinstance(out, LeaseNotFound):
            return [s] if inp.lease and inp.lease not in s[4] else []
        if out is not None and not isinstance(out, PutOk):
            return []
        return _put(s, inp, None if out is None else out.revision)
    if isinstance(inp, Get):
        if out is None:
            return [s]
        if not isinstance(out, GetOk):
            return []
        return _get(s, (out.value, out.mod_revision, out.revision), out.lease)
    if out is not None and not isinstance(out, DeleteOk):
        return []
    return _delete(s, None if out is None else (out.deleted, out.revision))


# -- the lease model -----------------------------------------------------------------------------

UNGRANTED, ALIVE, GONE = 0, 1, 2


def lease_step(s: int, inp: Input, out: Output | None) -> list[int]:
    """A lease's states after ``inp`` (a grant or revoke of it, or a put or get naming it)."""
    if isinstance(out, Refused):
        # refused before the lease was looked at (etcd checks space first): nothing learnt
        return [s] if isinstance(inp, Put | Txn) else []
    if isinstance(inp, LeaseGrant):
        return [ALIVE] if s == UNGRANTED and isinstance(out, GrantOk) else []
    if isinstance(inp, LeaseRevoke):
        if out is None:
            return [GONE] if s == ALIVE else [s]
        if isinstance(out, RevokeOk):
            return [GONE] if s == ALIVE else []
        return [s] if isinstance(out, LeaseNotFound) and s != ALIVE else []
    if out is None:
        return [s]
    if isinstance(out, LeaseNotFound):
        return [s] if s != ALIVE else []
    # an acknowledged put with the lease, or a read that found a key attached to it
    return [s] if s == ALIVE else []
