"""Interval permissions against a brute-force model.

The model works on a finite universe U of keys (all strings over a small alphabet up to a length
bound). Every permission and request endpoint is drawn so that it lies in U (point permissions
end at key + b"\\0", which is in U too). The uncovered part of a request range is then a union of
half-open intervals whose left ends are in U, so "every key of U inside the range is granted" is
exactly "the range is granted": the model enumerates, the implementation binary-searches.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from petcd.auth.permissions import READ, READWRITE, WRITE, IntervalSet, MergedPermissions, permission_interval
from petcd.proto.authpb import auth_pb2 as authpb

ALPHABET = b"\x00ab"
MAX_KEY = 3  # generated keys; the universe goes one longer for point ends
UNIVERSE = sorted(
    bytes(t) for n in range(1, MAX_KEY + 2) for t in itertools.product(ALPHABET, repeat=n)
)

keys = st.binary(max_size=MAX_KEY).map(lambda b: bytes(ALPHABET[x % 3] for x in b))
# a request or permission end: none, from-key, or another key
ends = st.one_of(st.just(b""), st.just(b"\x00"), keys)
perms = st.lists(st.tuples(st.sampled_from([READ, WRITE, READWRITE]), keys, ends), max_size=6)


def model_granted(ivs: list[tuple[bytes, bytes | None]], key: bytes) -> bool:
    return any(s <= key and (e is None or key < e) for s, e in ivs)


def model_allows(ivs: list[tuple[bytes, bytes | None]], key: bytes, range_end: bytes) -> bool:
    if not key:
        return False
    if not range_end or (range_end != b"\x00" and range_end <= key):
        return model_granted(ivs, key)
    upper = None if range_end == b"\x00" else range_end
    inside = [u for u in UNIVERSE if key <= u and (upper is None or u < upper)]
    if upper is None and not model_granted(ivs, UNIVERSE[-1] + b"\xff"):
        # a from-key request also asks for every key past the universe
        return False
    return all(model_granted(ivs, u) for u in inside)


def _intervals(ps: list[tuple[authpb.Permission.Type, bytes, bytes]], want: int) -> list[tuple[bytes, bytes | None]]:
    out = []
    for t, k, end in ps:
        if t == READWRITE or t == want:
            iv = permission_interval(k, end)
            if iv is not None:
                out.append(iv)
    return out


@settings(max_examples=400, deadline=None)
@given(perms, keys, ends)
def test_merged_permissions_match_model(ps: list[tuple[authpb.Permission.Type, bytes, bytes]], key: bytes, range_end: bytes) -> None:
    role = authpb.Role(name=b"r", keyPermission=[
        authpb.Permission(permType=t, key=k, range_end=end) for t, k, end in ps])
    merged = MergedPermissions.from_roles([role])
    for want in (READ, WRITE):
        expected = model_allows(_intervals(ps, want), key, range_end)
        assert merged.allows(want, key, range_end) == expected, (want, ps, key, range_end)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(keys, ends), max_size=8))
def test_interval_set_is_sorted_disjoint_and_same_union(raw: list[tuple[bytes, bytes]]) -> None:
    ivs = [iv for iv in (permission_interval(k, e) for k, e in raw) if iv is not None]
    merged = IntervalSet(ivs).intervals()
    for (s1, e1), (s2, _) in itertools.pairwise(merged):
        assert e1 is not None and e1 < s2  # disjoint and not touching
        assert s1 < s2
    for u in UNIVERSE:
        assert model_granted(merged, u) == model_granted(ivs, u)


def test_interval_rules() -> None:
    assert permission_interval(b"", b"") is None  # an empty key grants nothing
    assert permission_interval(b"a", b"") == (b"a", b"a\x00")
    assert permission_interval(b"a", b"\x00") == (b"a", None)
    assert permission_interval(b"b", b"a") is None
    s = IntervalSet([(b"a", b"b"), (b"b", b"c")])  # touching intervals join
    assert s.intervals() == [(b"a", b"c")]
    assert s.covers(b"a", b"c") and not s.covers(b"a", b"c\x00")
    assert s.covers(b"b", b"a")  # an end not past the key asks for the key alone
    assert not s.covers(b"", b"c")
    assert not s.covers(b"a", b"\x00")
    assert IntervalSet([(b"a", None)]).covers(b"x", b"\x00")


@pytest.mark.parametrize(("perm", "req", "ok"), [
    ((b"foo", b""), (b"foo", b""), True),
    ((b"foo", b""), (b"foo", b"foo\x00"), True),
    ((b"foo", b""), (b"foo", b"fop"), False),
    ((b"foo", b"fop"), (b"foo/bar", b""), True),  # prefix permission (etcdctl --prefix)
    ((b"foo", b"fop"), (b"foo", b"fop"), True),
    ((b"foo", b"fop"), (b"fo", b"fop"), False),
    ((b"\x00", b"\x00"), (b"\x00", b"\x00"), True),  # every key (etcdctl's empty key with --prefix)
    ((b"k", b"\x00"), (b"z", b"\x00"), True),
    ((b"k", b"\x00"), (b"a", b"\x00"), False),
])
def test_etcd_examples(perm: tuple[bytes, bytes], req: tuple[bytes, bytes], ok: bool) -> None:
    role = authpb.Role(keyPermission=[authpb.Permission(permType=READ, key=perm[0], range_end=perm[1])])
    assert MergedPermissions.from_roles([role]).allows(READ, *req) == ok
