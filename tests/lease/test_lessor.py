"""The lessor on a real backend and KVStore, with a fake clock: grants, attachments, expiry,
keep-alive, revocation, leadership changes, checkpoints, persistence and recovery."""

from __future__ import annotations

import math

import pytest

from petcd import errors
from petcd.backend import LEASE
from petcd.lease import (
    FOREVER_SECONDS,
    MAX_LEASE_TTL,
    REVOKE_RATE,
    LeaseExpiredError,
    NotPrimaryError,
    lease_key,
    min_lease_ttl,
)
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.leasepb import lease_pb2 as leasepb
from petcd.proto.mvccpb import kv_pb2 as mvccpb
from petcd.proto.serverpb import internal_pb2 as serverpb
from tests.lease.conftest import Env


def stored(env: Env, lease_id: int) -> leasepb.Lease | None:
    raw = env.backend.get(LEASE, lease_key(lease_id))
    return None if raw is None else leasepb.Lease.FromString(raw)


# -- minimum TTL ---------------------------------------------------------------------------------


def test_min_lease_ttl_follows_etcd_rule() -> None:
    assert min_lease_ttl(10, 100) == 2  # etcd defaults: 1.5 s rounded up
    assert min_lease_ttl(5, 1000) == 7  # the notebook's heartbeat 1 s, election 5 s: 7.0 s
    assert min_lease_ttl(10, 1000) == 15
    assert min_lease_ttl(3, 100) == 1  # (9 // 2) * 100 ms = 0.4 s -> 1


# -- grant ---------------------------------------------------------------------------------------


def test_grant_raises_short_ttls_to_the_minimum_and_persists(env: Env) -> None:
    lease = env.lessor.grant(7, -3)
    assert lease.ttl == 2
    assert env.lessor.grant(8, 0).ttl == 2
    assert env.lessor.grant(9, 60).ttl == 60
    rec = stored(env, 9)
    assert rec is not None and (rec.id, rec.ttl, rec.remaining_ttl) == (9, 60, 0)
    assert env.lessor.exists(7) and not env.lessor.exists(10)


def test_grant_errors(env: Env) -> None:
    env.lessor.grant(5, 10)
    with pytest.raises(errors.PetcdError) as e:
        env.lessor.grant(5, 20)
    assert isinstance(e.value, errors.LeaseExistsError)
    with pytest.raises(errors.PetcdError) as e:
        env.lessor.grant(0, 10)
    assert isinstance(e.value, errors.LeaseNotFoundError)
    with pytest.raises(errors.PetcdError) as e:
        env.lessor.grant(6, MAX_LEASE_TTL + 1)
    assert isinstance(e.value, errors.LeaseTTLTooLargeError)
    assert env.lessor.grant(6, MAX_LEASE_TTL).ttl == MAX_LEASE_TTL
    assert stored(env, 5) is not None and stored(env, 6) is not None


def test_negative_ids_are_leases_too(env: Env) -> None:
    env.lessor.grant(-5, 10)
    rec = stored(env, -5)
    assert rec is not None and rec.id == -5
    assert lease_key(-5) == b"\xff" * 7 + b"\xfb"


# -- not primary: no clock -----------------------------------------------------------------------


def test_a_lessor_that_is_not_primary_never_expires_anything(env: Env) -> None:
    env.lessor.grant(1, 5)
    env.clock.advance(10_000)
    assert env.lessor.expired_leases() == []
    assert env.lessor.time_to_live(1) == (5, FOREVER_SECONDS, [])
    with pytest.raises(NotPrimaryError):
        env.lessor.renew(1)
    assert env.lessor.checkpoints_due() == []


# -- expiry --------------------------------------------------------------------------------------


def test_expiry_on_the_primary(env: Env) -> None:
    env.lessor.promote(0.0)
    env.lessor.grant(1, 5)
    env.lessor.grant(2, 8)
    env.clock.advance(4.9)
    assert env.lessor.expired_leases() == []
    env.clock.advance(0.2)
    assert env.lessor.expired_leases() == [1]
    # handed out once; offered again only after the retry interval if still not revoked
    assert env.lessor.expired_leases() == []
    env.clock.advance(3.0)
    assert sorted(env.lessor.expired_leases()) == [1, 2]


def test_expired_leases_respects_the_limit(env: Env) -> None:
    env.lessor.promote(0.0)
    for i in range(1, 11):
        env.lessor.grant(i, 5)
    env.clock.advance(6)
    first = env.lessor.expired_leases(limit=4)
    rest = env.lessor.expired_leases(limit=100)
    assert len(first) == 4 and len(rest) == 6
    assert sorted(first + rest) == list(range(1, 11))


def test_time_to_live_truncates_like_etcd(env: Env) -> None:
    env.lessor.promote(0.0)
    env.lessor.grant(1, 10)
    env.clock.advance(2.5)
    assert env.lessor.time_to_live(1) == (10, 7, [])
    env.clock.advance(8.2)  # expired 0.7 s ago, revocation pending
    assert env.lessor.time_to_live(1)[1] == 0
    with pytest.raises(errors.PetcdError) as e:
        env.lessor.time_to_live(99)
    assert isinstance(e.value, errors.LeaseNotFoundError)


def test_leases_lists_soonest_expiry_first(env: Env) -> None:
    env.lessor.promote(0.0)
    env.lessor.grant(3, 30)
    env.lessor.grant(1, 50)
    env.lessor.grant(2, 10)
    assert env.lessor.leases() == [2, 3, 1]
    env.lessor.demote()
    assert env.lessor.leases() == [1, 2, 3]


# -- renew ---------------------------------------------------------------------------------------


def test_renew_restarts_the_full_ttl(env: Env) -> None:
    env.lessor.promote(0.0)
    env.lessor.grant(1, 5)
    env.clock.advance(4)
    assert env.lessor.renew(1) == 5
    env.clock.advance(4)
    assert env.lessor.expired_leases() == []
    assert env.lessor.time_to_live(1)[1] == 1
    env.clock.advance(1.5)
    assert env.lessor.expired_leases() == [1]
    with pytest.raises(LeaseExpiredError):
        env.lessor.renew(1)
    with pytest.raises(errors.PetcdError) as e:
        env.lessor.renew(42)
    assert isinstance(e.value, errors.LeaseNotFoundError)


def test_many_keepalives_keep_the_expiry_heap_bounded(env: Env) -> None:
    env.lessor.promote(0.0)
    env.lessor.grant(1, 5)
    for _ in range(20_000):
        env.clock.advance(0.001)
        env.lessor.renew(1)
    assert len(env.lessor._expiry_heap) < 2000
    env.clock.advance(4.9)
    assert env.lessor.expired_leases() == []
    env.clock.advance(0.2)
    assert env.lessor.expired_leases() == [1]


# -- attach / detach -----------------------------------------------------------------------------


def test_attachments_follow_puts_and_deletes(env: Env) -> None:
    env.lessor.grant(1, 10)
    env.lessor.grant(2, 10)
    env.put(b"b", 1)
    env.put(b"a", 1)
    env.put(b"c", 2)
    assert env.lessor.time_to_live(1, keys=True)[2] == [b"a", b"b"]
    env.put(b"a", 2)  # moves to lease 2
    env.put(b"b", 0)  # loses its lease
    env.delete(b"c")
    assert env.lessor.time_to_live(1, keys=True)[2] == []
    assert env.lessor.time_to_live(2, keys=True)[2] == [b"a"]
    assert env.lessor.lease_of(b"a") == 2 and env.lessor.lease_of(b"b") == 0
    assert env.lessor.time_to_live(2, keys=False)[2] == []


def test_attach_and_detach_directly(env: Env) -> None:
    env.lessor.grant(1, 10)
    env.lessor.grant(2, 10)
    env.lessor.attach(1, b"k")
    env.lessor.attach(2, b"k")  # moving it detaches it from lease 1
    assert env.lessor.time_to_live(1, keys=True)[2] == []
    assert env.lessor.time_to_live(2, keys=True)[2] == [b"k"]
    env.lessor.detach(1, b"k")  # not attached there: nothing happens
    assert env.lessor.lease_of(b"k") == 2
    env.lessor.detach(2, b"k")
    assert env.lessor.lease_of(b"k") == 0
    with pytest.raises(errors.PetcdError) as e:
        env.lessor.attach(3, b"k")
    assert isinstance(e.value, errors.LeaseNotFoundError)


# -- revoke --------------------------------------------------------------------------------------


def test_revoke_deletes_attached_keys_in_one_revision(env: Env) -> None:
    env.lessor.grant(1, 10)
    env.lessor.grant(2, 10)
    env.put(b"x", 1)
    env.put(b"y", 1)
    env.put(b"z", 1)
    env.put(b"other", 2)
    env.put(b"plain")
    rev = env.store.rev
    gone: list[bool] = []
    env.lessor.add_revoke_waiter(1, gone.append)
    env.lessor.revoke(1)
    assert env.store.rev == rev + 1
    assert env.live_keys() == [b"other", b"plain"]
    deletes = env.store.events(rev + 1)
    assert [(ev.type, ev.kv.key, ev.kv.mod_revision) for ev in deletes] == [
        (mvccpb.Event.DELETE, k, rev + 1) for k in (b"x", b"y", b"z")
    ]
    assert not env.lessor.exists(1) and stored(env, 1) is None
    assert env.lessor.lease_of(b"x") == 0
    assert gone == [True]
    with pytest.raises(errors.PetcdError) as e:
        env.lessor.revoke(1)
    assert isinstance(e.value, errors.LeaseNotFoundError)


def test_revoke_of_a_lease_without_keys_makes_no_revision(env: Env) -> None:
    env.put(b"a")
    env.lessor.grant(1, 10)
    rev = env.store.rev
    env.lessor.revoke(1)
    assert env.store.rev == rev and env.live_keys() == [b"a"]


def test_revoke_leaves_a_key_whose_lease_changed_without_a_detach(env: Env) -> None:
    env.lessor.grant(1, 10)
    env.put(b"a", 1)
    with env.store.write() as txn:  # an applier that forgot to tell the lessor
        txn.put(b"a", b"new", 0)
    env.lessor.revoke(1)
    assert env.live_keys() == [b"a"]


# -- apply ---------------------------------------------------------------------------------------


def test_apply_grant_revoke_checkpoint(env: Env) -> None:
    env.put(b"seed")
    resp = env.lessor.apply(
        serverpb.InternalRequest(lease_grant=pb.LeaseGrantRequest(ID=9, TTL=1)), env.store
    )
    assert isinstance(resp, pb.LeaseGrantResponse)
    assert (resp.ID, resp.TTL, resp.header.revision) == (9, 2, env.store.rev)
    env.put(b"k", 9)
    cp = pb.LeaseCheckpointRequest(
        checkpoints=[pb.LeaseCheckpoint(ID=9, remaining_TTL=1), pb.LeaseCheckpoint(ID=77)]
    )
    resp = env.lessor.apply(serverpb.InternalRequest(lease_checkpoint=cp), env.store)
    assert isinstance(resp, pb.LeaseCheckpointResponse)
    rec = stored(env, 9)
    assert rec is not None and rec.remaining_ttl == 1
    rev = env.store.rev
    resp = env.lessor.apply(serverpb.InternalRequest(lease_revoke=pb.LeaseRevokeRequest(ID=9)), env.store)
    assert isinstance(resp, pb.LeaseRevokeResponse) and resp.header.revision == rev + 1
    assert env.live_keys() == [b"seed"]
    # (the consistent index is the server's apply loop's: tests/server/test_apply_chain.py)
    with pytest.raises(errors.LeaseNotFoundError):
        env.lessor.apply(serverpb.InternalRequest(lease_revoke=pb.LeaseRevokeRequest(ID=9)), env.store)
    with pytest.raises(errors.LeaseNotFoundError):
        env.lessor.apply(
            serverpb.InternalRequest(lease_grant=pb.LeaseGrantRequest(ID=0, TTL=5)), env.store
        )


# -- leadership ----------------------------------------------------------------------------------


def test_promote_extends_and_demote_stops_the_clock(env: Env) -> None:
    env.lessor.grant(1, 10)
    env.clock.advance(100)
    env.lessor.promote(3.0)
    assert env.lessor.is_primary
    assert env.lessor.remaining(1) == pytest.approx(13.0)
    env.clock.advance(12.9)
    assert env.lessor.expired_leases() == []
    waits: list[bool] = []
    env.clock.advance(0.2)
    with pytest.raises(LeaseExpiredError):
        env.lessor.renew(1)
    env.lessor.add_revoke_waiter(1, waits.append)
    env.lessor.demote()
    assert waits == [False]  # the revoke may never come from this member now
    assert not env.lessor.is_primary
    assert env.lessor.remaining(1) == math.inf
    assert env.lessor.expired_leases() == []
    env.lessor.promote(0.0)
    assert env.lessor.remaining(1) == pytest.approx(10.0)


def test_promote_spreads_out_a_pile_of_simultaneous_expiries(env: Env) -> None:
    n = 2 * REVOKE_RATE
    for i in range(1, n + 1):
        env.lessor.grant(i, 10)
    env.lessor.promote(0.0)
    offsets = sorted(env.lessor.remaining(i) for i in range(1, n + 1))
    assert offsets[0] == pytest.approx(10.0)
    # no one-second window holds more than 3/4 of the revoke rate (plus rounding)
    target = 3 * REVOKE_RATE // 4
    j = 0
    for i, t in enumerate(offsets):
        while offsets[j] < t - 1.0 + 1e-9:
            j += 1
        assert i - j + 1 <= target + 1
    assert offsets[-1] < 10.0 + n / target + 1


# -- checkpoints ---------------------------------------------------------------------------------


def test_checkpoints_carry_the_remaining_ttl_over_a_leader_change(env: Env) -> None:
    lessor = env.lessor
    lessor.promote(0.0)
    lessor.grant(1, 30)
    lessor.grant(2, 5)  # shorter than the checkpoint interval: never checkpointed
    env.clock.advance(9.9)
    assert lessor.checkpoints_due() == []
    env.clock.advance(0.2)
    cps = lessor.checkpoints_due()
    assert [(c.ID, c.remaining_TTL) for c in cps] == [(1, 20)]  # 19.9 s rounded up
    lessor.apply(
        serverpb.InternalRequest(lease_checkpoint=pb.LeaseCheckpointRequest(checkpoints=cps)), env.store
    )
    assert lessor.needs_checkpoint_clear(1) and not lessor.needs_checkpoint_clear(2)
    # the primary schedules the next one
    env.clock.advance(10)
    assert [(c.ID, c.remaining_TTL) for c in lessor.checkpoints_due()] == [(1, 10)]
    # leadership moves away and comes back: the lease resumes from its checkpoint, not 30 s
    lessor.demote()
    env.clock.advance(500)
    lessor.promote(1.0)
    assert lessor.remaining(1) == pytest.approx(21.0)


def test_a_renewed_lease_needs_its_checkpoint_cleared(env: Env) -> None:
    lessor = env.lessor
    lessor.promote(0.0)
    lessor.grant(1, 30)
    lessor.checkpoint(1, 12)
    assert lessor.needs_checkpoint_clear(1)
    assert lessor.renew(1) == 30
    assert lessor.remaining(1) == pytest.approx(30.0)  # renew always gives the full TTL
    lessor.checkpoint(1, 0)  # the clear the keep-alive proposes
    assert not lessor.needs_checkpoint_clear(1)
    rec = stored(env, 1)
    assert rec is not None and rec.remaining_ttl == 0


def test_checkpointing_can_be_disabled(env: Env) -> None:
    env.reopen(checkpointing=False)
    env.lessor.promote(0.0)
    env.lessor.grant(1, 100)
    env.clock.advance(50)
    assert env.lessor.checkpoints_due() == []
    env.lessor.checkpoint(1, 5)
    assert not env.lessor.needs_checkpoint_clear(1)


# -- persistence and recovery --------------------------------------------------------------------


def test_leases_and_attachments_survive_a_restart(env: Env) -> None:
    env.lessor.apply(serverpb.InternalRequest(lease_grant=pb.LeaseGrantRequest(ID=1, TTL=30)), env.store)
    env.lessor.apply(serverpb.InternalRequest(lease_grant=pb.LeaseGrantRequest(ID=2, TTL=60)), env.store)
    env.lessor.apply(serverpb.InternalRequest(lease_grant=pb.LeaseGrantRequest(ID=3, TTL=10)), env.store)
    env.put(b"a", 1)
    env.put(b"b", 1)
    env.put(b"c", 2)
    env.put(b"d", 2)
    env.delete(b"d")
    env.put(b"e")
    cp = pb.LeaseCheckpointRequest(checkpoints=[pb.LeaseCheckpoint(ID=2, remaining_TTL=25)])
    env.lessor.apply(serverpb.InternalRequest(lease_checkpoint=cp), env.store)
    env.lessor.apply(serverpb.InternalRequest(lease_revoke=pb.LeaseRevokeRequest(ID=3)), env.store)
    env.reopen()
    lessor = env.lessor
    assert sorted(lessor.leases()) == [1, 2]
    assert lessor.time_to_live(1, keys=True) == (30, FOREVER_SECONDS, [b"a", b"b"])
    assert lessor.time_to_live(2, keys=True)[2] == [b"c"]
    lessor.promote(2.0)
    # the full TTL again, or the checkpointed remainder
    assert lessor.remaining(1) == pytest.approx(32.0)
    assert lessor.remaining(2) == pytest.approx(27.0)
    # and revoking after the restart deletes the rebuilt attachments
    lessor.revoke(1)
    assert env.live_keys() == [b"c", b"e"]


def test_recover_on_a_primary_restarts_the_clocks(env: Env) -> None:
    env.lessor.grant(1, 30)
    env.lessor.promote(0.0)
    env.clock.advance(20)
    env.lessor.recover(env.store)
    assert env.lessor.remaining(1) == pytest.approx(30.0)


def test_a_skipped_checkpoint_is_looked_at_again(env: Env) -> None:
    lessor = env.lessor
    lessor.promote(0.0)
    lessor.grant(1, 30)
    env.clock.advance(9.5)
    lessor.renew(1)
    env.clock.advance(0.6)  # due, but only 0.6 s since the renew: nothing to save yet
    assert lessor.checkpoints_due() == []
    env.clock.advance(10)
    assert [(c.ID, c.remaining_TTL) for c in lessor.checkpoints_due()] == [(1, 20)]


def test_checkpoints_due_respects_the_limit(env: Env) -> None:
    env.lessor.promote(0.0)
    for i in range(1, 6):
        env.lessor.grant(i, 100)
    env.clock.advance(11)
    first = env.lessor.checkpoints_due(limit=3)
    rest = env.lessor.checkpoints_due(limit=3)
    assert len(first) == 3 and len(rest) == 2
    assert sorted(c.ID for c in first + rest) == [1, 2, 3, 4, 5]


def test_wired_as_a_store_listener_like_the_server_does(env: Env) -> None:
    lessor = env.lessor
    env.store.add_listener(lambda events, _rev: lessor.apply_changes(events))
    lessor.grant(1, 10)
    with env.store.write() as txn:
        txn.put(b"a", b"v", 1)
        txn.put(b"b", b"v", 1)
    with env.store.write() as txn:
        txn.delete_range(b"b")
    assert lessor.time_to_live(1, keys=True)[2] == [b"a"]
    rev = env.store.rev
    lessor.revoke(1)  # the listener sees the revoke's own deletes too
    assert env.store.rev == rev + 1 and env.live_keys() == []
    assert lessor.lease_of(b"a") == 0 and not lessor.exists(1)
