"""The checker's lease model: hand-made histories it must accept and reject, and histories made by
a sequential etcd KV with leases (linearization points inside each op's interval) that it must
always accept."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.robustness.linearizability import (
    Delete,
    DeleteOk,
    Get,
    GetOk,
    GrantOk,
    Input,
    LeaseGrant,
    LeaseNotFound,
    LeaseRevoke,
    Op,
    Output,
    Put,
    PutOk,
    RevokeOk,
    Txn,
    TxnOk,
    check,
    check_revisions,
    load_history,
    save_history,
)

K = b"k"
J = b"j"
L = 0x1234


def op(client: int, call: float, ret: float | None, inp: Input, out: Output | None) -> Op:
    return Op(client, call, math.inf if ret is None else ret, inp, out)


def granted(rev: int = 1) -> Op:
    return op(9, -2, -1, LeaseGrant(60), GrantOk(L, rev))


def leased(value: bytes = b"a", rev: int = 2) -> list[Op]:
    """L granted, then K put on it at ``rev``."""
    return [granted(rev - 1), op(1, 0, 1, Put(K, value, L), PutOk(rev))]


# -- accepted ------------------------------------------------------------------------------


def test_put_on_a_lease_then_revoke_deletes_the_key() -> None:
    h = [
        *leased(),
        op(2, 2, 3, Get(K), GetOk(b"a", 2, 2, L)),
        op(1, 4, 5, LeaseRevoke(L), RevokeOk(3)),  # the key's deletion: one new revision
        op(2, 6, 7, Get(K), GetOk(None, 0, 3)),
        op(1, 8, 9, Put(K, b"b"), PutOk(4)),
    ]
    v = check(h)
    assert v.ok, v.message


def test_revoke_of_a_lease_without_keys_does_not_bump_the_revision() -> None:
    h = [
        granted(1),
        op(1, 0, 1, Put(K, b"a"), PutOk(2)),
        op(1, 2, 3, LeaseRevoke(L), RevokeOk(2)),  # nothing attached: still revision 2
        op(1, 4, 5, Put(K, b"b"), PutOk(3)),
    ]
    v = check(h)
    assert v.ok, v.message


def test_a_put_with_a_revoked_lease_fails_and_changes_nothing() -> None:
    h = [
        *leased(),
        op(1, 2, 3, LeaseRevoke(L), RevokeOk(3)),
        op(1, 4, 5, Put(K, b"b", L), LeaseNotFound()),
        op(2, 6, 7, Get(K), GetOk(None, 0, 3)),
        op(1, 8, 9, LeaseRevoke(L), LeaseNotFound()),
    ]
    v = check(h)
    assert v.ok, v.message


def test_concurrent_revoke_and_read_may_go_either_way() -> None:
    for seen in (GetOk(b"a", 2, 2, L), GetOk(None, 0, 3)):
        h = [*leased(), op(1, 2, 10, LeaseRevoke(L), RevokeOk(3)), op(2, 3, 4, Get(K), seen)]
        v = check(h)
        assert v.ok, (seen, v.message)


def test_a_put_without_lease_detaches_the_key() -> None:
    h = [
        *leased(),
        op(1, 2, 3, Put(K, b"b"), PutOk(3)),
        op(1, 4, 5, LeaseRevoke(L), RevokeOk(3)),
        op(2, 6, 7, Get(K), GetOk(b"b", 3, 3)),
    ]
    v = check(h)
    assert v.ok, v.message
    gone = [*h[:-1], op(2, 6, 7, Get(K), GetOk(None, 0, 4))]
    assert not check(gone).ok


def test_an_unknown_revoke_may_or_may_not_have_happened() -> None:
    unknown = op(1, 2, None, LeaseRevoke(L), None)
    for seen in (GetOk(b"a", 2, 2, L), GetOk(None, 0, 3)):
        v = check([*leased(), unknown, op(2, 5, 6, Get(K), seen)])
        assert v.ok, (seen, v.message)
    # once the key is seen gone it stays gone
    h = [*leased(), unknown, op(2, 5, 6, Get(K), GetOk(None, 0, 3)), op(2, 7, 8, Get(K), GetOk(b"a", 2, 3, L))]
    assert not check(h).ok


def test_an_unknown_put_with_a_revoked_lease_never_shows() -> None:
    h = [
        *leased(),
        op(1, 2, 3, LeaseRevoke(L), RevokeOk(3)),
        op(1, 4, None, Put(K, b"b", L), None),
        op(2, 6, 7, Get(K), GetOk(None, 0, 3)),
    ]
    assert check(h).ok
    assert not check([*h[:-1], op(2, 6, 7, Get(K), GetOk(b"b", 4, 4, L))]).ok


def test_revoke_deletes_every_key_of_the_lease_in_one_revision() -> None:
    h = [
        granted(1),
        op(1, 0, 1, Put(K, b"a", L), PutOk(2)),
        op(1, 0, 1.5, Put(J, b"b", L), PutOk(3)),
        op(1, 2, 3, LeaseRevoke(L), RevokeOk(4)),
        op(2, 4, 5, Get(K), GetOk(None, 0, 4)),
        op(2, 4, 5, Get(J), GetOk(None, 0, 4)),
    ]
    v = check(h)
    assert v.ok, v.message


def test_txn_with_a_put_on_a_revoked_lease_fails_as_a_whole() -> None:
    cas = Txn(K, "mod", 0, Put(K, b"b", L), Get(K))
    start = [granted(1), op(1, 0, 1, LeaseRevoke(L), RevokeOk(1))]
    assert check([*start, op(1, 2, 3, cas, LeaseNotFound())]).ok
    assert not check([*start, op(1, 2, 3, cas, TxnOk(True, 2))]).ok
    # the branch taken has no lease: the txn goes through
    other = Txn(K, "mod", 5, Put(K, b"b", L), Get(K))
    assert check([*start, op(1, 2, 3, other, TxnOk(False, 1, (None, 0)))]).ok
    assert not check([*start, op(1, 2, 3, other, LeaseNotFound())]).ok


def test_history_file_round_trip_with_leases(tmp_path: Path) -> None:
    h = [
        *leased(),
        op(2, 1.5, None, LeaseGrant(60), None),
        op(2, 2, 3, Get(K), GetOk(b"a", 2, 2, L)),
        op(3, 2, 3, Txn(K, "value", b"a", Put(K, b"c", L), None), TxnOk(True, 3)),
        op(1, 4, 5, LeaseRevoke(L), RevokeOk(4)),
        op(1, 6, 7, Put(K, b"b", L), LeaseNotFound()),
        op(1, 8, None, LeaseRevoke(L), None),
    ]
    path = tmp_path / "h.json"
    save_history(path, h)
    assert load_history(path) == h
    v = check(h)
    assert v.ok, v.message


# -- rejected ------------------------------------------------------------------------------


def test_a_read_seeing_the_key_after_its_lease_was_revoked_is_rejected() -> None:
    h = [*leased(), op(1, 2, 3, LeaseRevoke(L), RevokeOk(3)), op(2, 4, 5, Get(K), GetOk(b"a", 2, 3, L))]
    v = check(h)
    assert not v.ok and "not linearizable" in v.message


def test_a_put_with_a_revoked_lease_succeeding_is_rejected() -> None:
    h = [granted(1), op(1, 0, 1, LeaseRevoke(L), RevokeOk(1)), op(1, 2, 3, Put(K, b"a", L), PutOk(2))]
    v = check(h)
    assert not v.ok and v.key == K


def test_a_put_with_a_lease_never_granted_succeeding_is_rejected() -> None:
    assert not check([op(1, 0, 1, Put(K, b"a", 77), PutOk(2))]).ok
    assert check([op(1, 0, 1, Put(K, b"a", 77), LeaseNotFound())]).ok


def test_lease_not_found_while_the_lease_is_alive_is_rejected() -> None:
    h = [*leased(), op(1, 2, 3, Put(K, b"b", L), LeaseNotFound()), op(1, 4, 5, LeaseRevoke(L), RevokeOk(3))]
    assert not check(h).ok
    revoke = [granted(1), op(1, 0, 1, LeaseRevoke(L), LeaseNotFound())]
    v = check(revoke)
    assert not v.ok and v.lease == L


def test_two_successful_revokes_of_one_lease_are_rejected() -> None:
    h = [granted(1), op(1, 0, 1, LeaseRevoke(L), RevokeOk(1)), op(2, 2, 3, LeaseRevoke(L), RevokeOk(1))]
    v = check(h)
    assert not v.ok and v.lease == L


def test_a_revoke_deleting_a_key_without_a_new_revision_is_rejected() -> None:
    h = [*leased(), op(1, 2, 3, LeaseRevoke(L), RevokeOk(2))]
    assert not check(h).ok


def test_a_read_reporting_the_wrong_lease_is_rejected() -> None:
    assert not check([*leased(), op(2, 2, 3, Get(K), GetOk(b"a", 2, 2))]).ok
    assert not check([granted(1), op(1, 0, 1, Put(K, b"a"), PutOk(2)), op(2, 2, 3, Get(K), GetOk(b"a", 2, 2, L))]).ok


def test_a_revoke_not_atomic_across_keys_is_rejected_by_revisions() -> None:
    # during the revoke, K is seen gone (at its revision 4) and then J still there (before it)
    h = [
        granted(1),
        op(1, 0, 1, Put(K, b"a", L), PutOk(2)),
        op(1, 0, 1.5, Put(J, b"b", L), PutOk(3)),
        op(1, 2, 10, LeaseRevoke(L), RevokeOk(4)),
        op(2, 3, 4, Get(K), GetOk(None, 0, 4)),
        op(2, 5, 6, Get(J), GetOk(b"b", 3, 3, L)),
    ]
    assert not check_revisions(h).ok
    assert not check(h).ok


def test_a_read_after_a_revoke_behind_its_revision_is_rejected() -> None:
    h = [*leased(), op(1, 2, 3, LeaseRevoke(L), RevokeOk(3)), op(2, 4, 5, Get(J), GetOk(None, 0, 2))]
    assert not check_revisions(h).ok


# -- histories made by a sequential store ------------------------------------------------


@dataclass
class LeaseStore:
    """A sequential etcd KV with leases: one global revision, leases numbered from 1."""

    rev: int = 1
    data: dict[bytes, tuple[bytes, int, int]] = field(default_factory=dict)  # value, mod, lease
    alive: set[int] = field(default_factory=set)
    next_id: int = 1

    def _put_ok(self, p: Put) -> bool:
        return not p.lease or p.lease in self.alive

    def _sub(self, s: Put | Get | Delete | None) -> tuple[tuple[bytes | None, int] | None, int]:
        if isinstance(s, Put):
            self.rev += 1
            self.data[s.key] = (s.value, self.rev, s.lease)
            return None, 0
        if isinstance(s, Delete):
            if s.key in self.data:
                self.rev += 1
                del self.data[s.key]
                return None, 1
            return None, 0
        if isinstance(s, Get):
            v = self.data.get(s.key)
            return ((v[0], v[1]) if v else (None, 0)), 0
        return None, 0

    def apply(self, inp: Input) -> Output:
        if isinstance(inp, LeaseGrant):
            self.alive.add(self.next_id)
            self.next_id += 1
            return GrantOk(self.next_id - 1, self.rev)
        if isinstance(inp, LeaseRevoke):
            if inp.lease not in self.alive:
                return LeaseNotFound()
            self.alive.discard(inp.lease)
            mine = [k for k, (_, _, lease) in self.data.items() if lease == inp.lease]
            if mine:
                self.rev += 1
                for k in mine:
                    del self.data[k]
            return RevokeOk(self.rev)
        if isinstance(inp, Put):
            if not self._put_ok(inp):
                return LeaseNotFound()
            self._sub(inp)
            return PutOk(self.rev)
        if isinstance(inp, Get):
            v = self.data.get(inp.key)
            return GetOk(v[0], v[1], self.rev, v[2]) if v else GetOk(None, 0, self.rev)
        if isinstance(inp, Delete):
            _, n = self._sub(inp)
            return DeleteOk(n, self.rev)
        cur = self.data.get(inp.key)
        ok = (cur is not None and cur[0] == inp.expected) if inp.target == "value" else (cur[1] if cur else 0) == inp.expected
        branch = inp.then if ok else inp.otherwise
        if isinstance(branch, Put) and not self._put_ok(branch):
            return LeaseNotFound()
        got, n = self._sub(branch)
        return TxnOk(ok, self.rev, got, n)


KEYS = st.sampled_from([b"a", b"b"])
LEASES = st.sampled_from([0, 0, 1, 2, 3])


@st.composite
def inputs(draw: st.DrawFn) -> Input:
    kind = draw(st.sampled_from(["put", "put", "get", "get", "delete", "txn", "grant", "revoke"]))
    key = draw(KEYS)
    value = draw(st.binary(min_size=1, max_size=1))
    if kind == "put":
        return Put(key, value, draw(LEASES))
    if kind == "get":
        return Get(key)
    if kind == "delete":
        return Delete(key)
    if kind == "grant":
        return LeaseGrant(60)
    if kind == "revoke":
        return LeaseRevoke(draw(st.sampled_from([1, 2, 3])))
    expected: bytes | int = value if draw(st.booleans()) else draw(st.integers(0, 6))
    target = "value" if isinstance(expected, bytes) else "mod"
    return Txn(key, target, expected, Put(key, value + b"!", draw(LEASES)), Get(key))  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(st.lists(inputs(), min_size=1, max_size=25))
def test_sequential_histories_with_leases_pass(ins: list[Input]) -> None:
    store = LeaseStore()
    h = [Op(i % 3, 2.0 * i, 2.0 * i + 1, inp, store.apply(inp)) for i, inp in enumerate(ins)]
    v = check(h)
    assert v.ok, v.message


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(inputs(), st.floats(0, 10), st.floats(0, 3), st.floats(0, 1),
                          st.sampled_from(["ok", "ok", "ok", "unknown", "lost"])), min_size=1, max_size=14))
def test_concurrent_histories_with_leases_pass(spec: list[tuple[Input, float, float, float, str]]) -> None:
    timed = []
    for i, (inp, call, length, where, fate) in enumerate(spec):
        if isinstance(inp, LeaseGrant) and fate != "ok":
            fate = "ok"  # an unknown grant's ID is never used; the workload drops it
        point = call + where * length if fate != "unknown" else call + where * 20
        timed.append((point, i, inp, call, call + length, fate))
    store = LeaseStore()
    h: list[Op] = []
    for _, i, inp, call, ret, fate in sorted(timed):
        if fate == "lost":
            h.append(Op(i, call, math.inf, inp, None))
            continue
        out = store.apply(inp)
        h.append(Op(i, call, math.inf, inp, None) if fate == "unknown" else Op(i, call, ret, inp, out))
    v = check(h)
    assert v.ok, v.message


@settings(max_examples=100, deadline=None)
@given(st.lists(inputs(), min_size=2, max_size=20), st.data())
def test_a_changed_lease_answer_in_a_sequential_history_is_caught(ins: list[Input], data: st.DataObject) -> None:
    store = LeaseStore()
    h = [Op(0, 2.0 * i, 2.0 * i + 1, inp, store.apply(inp)) for i, inp in enumerate(ins)]
    # a lease-not-found answer turned into a success, or a revoke's success into not found
    flippable = [i for i, o in enumerate(h) if isinstance(o.input, Put | LeaseRevoke)
                 and isinstance(o.output, LeaseNotFound | RevokeOk)]
    if not flippable:
        return
    i = data.draw(st.sampled_from(flippable))
    o = h[i]
    top = max(x.revision() or 0 for x in h)
    if isinstance(o.output, RevokeOk):
        changed: Output = LeaseNotFound()
    else:
        changed = PutOk(top + 1) if isinstance(o.input, Put) else RevokeOk(top)
    h[i] = Op(0, o.call, o.ret, o.input, changed)
    assert not check(h).ok


def test_patch_keeps_an_unknown_revoke_unknown() -> None:
    from tests.robustness.suite import patch_history
    from tests.robustness.workload import Event

    truth = [Event(2, K, "put", b"a"), Event(3, K, "delete", b"")]
    ops = [*leased(), op(1, 2, None, LeaseRevoke(L), None), op(2, 5, 6, Get(K), GetOk(None, 0, 3))]
    patched = patch_history(ops, truth)
    assert patched == ops
    assert check(patched).ok
    # without the revoke the read has no explanation
    assert not check([o for o in patched if not isinstance(o.input, LeaseRevoke)]).ok
