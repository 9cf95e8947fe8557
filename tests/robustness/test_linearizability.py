"""The linearizability checker: hand-made histories it must accept and reject, and histories
produced by a sequential etcd KV (with linearization points inside each op's interval) that it
must always accept."""

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
    Input,
    Op,
    Output,
    Put,
    PutOk,
    Txn,
    TxnOk,
    check,
    check_linearizable,
    check_revisions,
    load_history,
    save_history,
)

K = b"k"


def op(client: int, call: float, ret: float | None, inp: Input, out: Output | None) -> Op:
    return Op(client, call, math.inf if ret is None else ret, inp, out)


# -- hand-made histories ------------------------------------------------------------------


def test_sequential_put_then_get() -> None:
    h = [op(1, 0, 1, Put(K, b"a"), PutOk(2)), op(2, 2, 3, Get(K), GetOk(b"a", 2, 2))]
    assert check(h).ok


def test_concurrent_read_may_see_either_value() -> None:
    for seen in ((b"a", 2, 2), (None, 0, 1)):
        h = [op(1, 0, 10, Put(K, b"a"), PutOk(2)), op(2, 1, 5, Get(K), GetOk(*seen))]
        assert check(h).ok, seen


def test_stale_read_is_rejected() -> None:
    h = [
        op(1, 0, 1, Put(K, b"a"), PutOk(2)),
        op(1, 2, 3, Put(K, b"b"), PutOk(3)),
        # starts after b was acknowledged, still sees a (with a header that is not stale)
        op(2, 4, 5, Get(K), GetOk(b"a", 2, 3)),
    ]
    v = check(h)
    assert not v.ok and v.key == K and "not linearizable" in v.message


def test_stale_read_with_old_header_is_rejected_by_revisions() -> None:
    h = [op(1, 0, 1, Put(K, b"a"), PutOk(2)), op(2, 2, 3, Get(K), GetOk(None, 0, 1))]
    assert not check_revisions(h).ok
    assert not check_linearizable(h).ok


def test_lost_write_is_rejected() -> None:
    # b was acknowledged, yet every later read sees a and then c is written on top of a
    h = [
        op(1, 0, 1, Put(K, b"a"), PutOk(2)),
        op(1, 2, 3, Put(K, b"b"), PutOk(3)),
        op(2, 4, 5, Put(K, b"c"), PutOk(4)),
        op(3, 6, 7, Txn(K, "value", b"b", None, Get(K)), TxnOk(False, 4, (b"c", 4))),
        op(3, 8, 9, Get(K), GetOk(b"a", 2, 4)),
    ]
    assert not check(h).ok


def test_revision_going_backwards_is_rejected() -> None:
    h = [
        op(1, 0, 1, Put(b"x", b"1"), PutOk(5)),
        op(2, 2, 3, Get(b"y"), GetOk(None, 0, 4)),  # another key, but after revision 5 was handed out
    ]
    v = check_revisions(h)
    assert not v.ok and "backwards" in v.message
    # per key it is fine: only the revision check sees it
    assert check_linearizable(h).ok


def test_two_writes_at_one_revision_are_rejected() -> None:
    h = [op(1, 0, 2, Put(b"x", b"1"), PutOk(5)), op(2, 0, 2, Put(b"y", b"1"), PutOk(5))]
    v = check_revisions(h)
    assert not v.ok and "two writes" in v.message


def test_write_revision_not_above_an_earlier_read_is_rejected() -> None:
    h = [op(1, 0, 1, Get(K), GetOk(None, 0, 7)), op(2, 2, 3, Put(K, b"a"), PutOk(7))]
    assert not check_revisions(h).ok
    assert not check_linearizable(h).ok


def test_read_must_match_the_mod_revision() -> None:
    h = [op(1, 0, 1, Put(K, b"a"), PutOk(2)), op(2, 2, 3, Get(K), GetOk(b"a", 3, 3))]
    assert not check(h).ok


def test_compare_and_swap_only_one_winner() -> None:
    cas = Txn(K, "value", b"a", Put(K, b"b"), None)
    start = [op(1, 0, 1, Put(K, b"a"), PutOk(2))]
    both = [*start, op(2, 2, 5, cas, TxnOk(True, 3)), op(3, 2, 5, Txn(K, "value", b"a", Put(K, b"c"), None), TxnOk(True, 4))]
    assert not check(both).ok
    one = [*start, op(2, 2, 5, cas, TxnOk(True, 3)), op(3, 2, 5, Txn(K, "value", b"a", Put(K, b"c"), None), TxnOk(False, 3))]
    assert check(one).ok


def test_compare_on_mod_revision() -> None:
    h = [
        op(1, 0, 1, Put(K, b"a"), PutOk(2)),
        op(1, 2, 3, Txn(K, "mod", 2, Put(K, b"b"), Get(K)), TxnOk(True, 3)),
        op(1, 4, 5, Txn(K, "mod", 2, Put(K, b"c"), Get(K)), TxnOk(False, 3, (b"b", 3))),
    ]
    assert check(h).ok
    wrong = [*h[:2], op(1, 4, 5, Txn(K, "mod", 2, Put(K, b"c"), Get(K)), TxnOk(True, 4))]
    assert not check(wrong).ok


def test_compare_on_missing_key() -> None:
    create = Txn(K, "mod", 0, Put(K, b"a"), Get(K))
    h = [op(1, 0, 1, create, TxnOk(True, 2)), op(2, 2, 3, create, TxnOk(False, 2, (b"a", 2)))]
    assert check(h).ok
    assert not check([op(1, 0, 1, create, TxnOk(False, 1, (None, 0)))]).ok


def test_delete() -> None:
    h = [
        op(1, 0, 1, Put(K, b"a"), PutOk(2)),
        op(1, 2, 3, Delete(K), DeleteOk(1, 3)),
        op(2, 4, 5, Delete(K), DeleteOk(0, 3)),
        op(2, 6, 7, Get(K), GetOk(None, 0, 3)),
    ]
    assert check(h).ok
    resurrected = [*h, op(2, 8, 9, Get(K), GetOk(b"a", 2, 3))]
    assert not check(resurrected).ok


def test_unknown_write_may_or_may_not_have_happened() -> None:
    unknown = op(1, 0, None, Put(K, b"a"), None)
    seen = [unknown, op(2, 5, 6, Get(K), GetOk(b"a", 2, 2))]
    not_seen = [unknown, op(2, 5, 6, Get(K), GetOk(None, 0, 1))]
    assert check(seen).ok and check(not_seen).ok
    # but once seen it cannot disappear
    assert not check([*seen, op(2, 7, 8, Get(K), GetOk(None, 0, 2))]).ok


def test_unknown_write_cannot_act_before_it_was_called() -> None:
    h = [op(2, 0, 1, Get(K), GetOk(b"a", 2, 2)), op(1, 5, None, Put(K, b"a"), None)]
    assert not check(h).ok


def test_history_file_round_trip(tmp_path: Path) -> None:
    h = [
        op(1, 0, 1, Put(K, b"a"), PutOk(2)),
        op(2, 0.5, None, Txn(K, "mod", 2, Put(K, b"b"), Get(K)), None),
        op(3, 2, 3, Txn(K, "value", b"a", Delete(K), Get(K)), TxnOk(False, 3, (b"b", 3))),
        op(3, 4, 5, Delete(K), DeleteOk(1, 4)),
        op(3, 6, 7, Get(K), GetOk(None, 0, 4)),
    ]
    path = tmp_path / "h.json"
    save_history(path, h, {"seed": 1})
    assert load_history(path) == h
    assert check(h).ok


# -- histories made by a sequential store --------------------------------------------------


@dataclass
class Store:
    """A sequential etcd KV: one global revision, mod revisions per key."""

    rev: int = 1
    data: dict[bytes, tuple[bytes, int]] = field(default_factory=dict)

    def _sub(self, s: Put | Get | Delete | None) -> tuple[tuple[bytes | None, int] | None, int]:
        if isinstance(s, Put):
            self.rev += 1
            self.data[s.key] = (s.value, self.rev)
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
        if isinstance(inp, Put):
            self._sub(inp)
            return PutOk(self.rev)
        if isinstance(inp, Get):
            v = self.data.get(inp.key)
            return GetOk(v[0], v[1], self.rev) if v else GetOk(None, 0, self.rev)
        if isinstance(inp, Delete):
            _, n = self._sub(inp)
            return DeleteOk(n, self.rev)
        cur = self.data.get(inp.key)
        if inp.target == "value":
            ok = cur is not None and cur[0] == inp.expected
        else:
            ok = (cur[1] if cur else 0) == inp.expected
        got, n = self._sub(inp.then if ok else inp.otherwise)
        return TxnOk(ok, self.rev, got, n)


KEYS = st.sampled_from([b"a", b"b", b"c"])
VALUES = st.sampled_from([b"1", b"2", b"3", b"4"])
SUB = st.one_of(st.none(), st.builds(Put, KEYS, VALUES), st.builds(Get, KEYS), st.builds(Delete, KEYS))


@st.composite
def inputs(draw: st.DrawFn) -> Input:
    kind = draw(st.sampled_from(["put", "get", "delete", "txn"]))
    key = draw(KEYS)
    if kind == "put":
        return Put(key, draw(VALUES))
    if kind == "get":
        return Get(key)
    if kind == "delete":
        return Delete(key)
    target = draw(st.sampled_from(["value", "mod"]))
    expected: bytes | int = draw(VALUES) if target == "value" else draw(st.integers(0, 8))

    def on_key(s: Put | Get | Delete | None) -> Put | Get | Delete | None:
        if isinstance(s, Put):
            return Put(key, s.value)
        return None if s is None else type(s)(key)

    return Txn(key, target, expected, on_key(draw(SUB)), on_key(draw(SUB)))  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.lists(inputs(), min_size=1, max_size=25))
def test_sequential_histories_pass(ins: list[Input]) -> None:
    store = Store()
    h = [Op(i % 3, 2.0 * i, 2.0 * i + 1, inp, store.apply(inp)) for i, inp in enumerate(ins)]
    v = check(h)
    assert v.ok, v.message


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(inputs(), st.floats(0, 10), st.floats(0, 3), st.floats(0, 1),
                          st.sampled_from(["ok", "ok", "ok", "unknown", "lost"])), min_size=1, max_size=14))
def test_concurrent_histories_with_points_inside_intervals_pass(
    spec: list[tuple[Input, float, float, float, str]],
) -> None:
    # each op takes effect at a point inside its interval (an unknown one maybe after it, or never)
    timed = []
    for i, (inp, call, length, where, fate) in enumerate(spec):
        ret = call + length
        point = call + where * length if fate != "unknown" else call + where * 20
        timed.append((point, i, inp, call, ret, fate))
    store = Store()
    h: list[Op] = []
    for _, i, inp, call, ret, fate in sorted(timed):
        if fate == "lost":
            h.append(Op(i, call, math.inf, inp, None))  # never took effect, outcome unknown
            continue
        out = store.apply(inp)
        h.append(Op(i, call, math.inf, inp, None) if fate == "unknown" else Op(i, call, ret, inp, out))
    v = check(h)
    assert v.ok, v.message


@settings(max_examples=100, deadline=None)
@given(st.lists(inputs(), min_size=2, max_size=20), st.data())
def test_a_changed_read_in_a_sequential_history_is_caught(ins: list[Input], data: st.DataObject) -> None:
    store = Store()
    h = [Op(0, 2.0 * i, 2.0 * i + 1, inp, store.apply(inp)) for i, inp in enumerate(ins)]
    reads = [i for i, o in enumerate(h) if isinstance(o.output, GetOk)]
    if not reads:
        return
    i = data.draw(st.sampled_from(reads))
    o = h[i].output
    assert isinstance(o, GetOk)
    other = b"x" if o.value is None else None
    h[i] = Op(0, h[i].call, h[i].ret, h[i].input, GetOk(other, 0 if other is None else o.revision, o.revision))
    assert not check(h).ok
