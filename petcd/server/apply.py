"""The apply chain: what a committed InternalRequest does, as etcd's chain of appliers.

Each applier has ``apply(req, index) -> result`` and either answers (a response, or raises a
``petcd.errors`` error that goes back to the proposer) or hands the request to the next one.
The chain is built by :func:`build_chain`: the quota applier (NOSPACE refusals) first, then the
auth applier (permission checks with the credentials the entry's header carries, etcd's
authApplierV3), then any further steps given to it, then the backend dispatch, a dict from
request kind to handler (auth requests go to the auth store). A step is a function that is given the next
applier and returns one that delegates to it.

Every member runs this on the same committed requests in the same order, so it must be
deterministic: no clock, no randomness, nothing but the member state. The appliers never record
the consistent index: the apply loop (``EtcdServer._apply_entry``) records the index and term of
every entry, once, after it is applied (failed or not), in the same backend batch as its changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from petcd import auth, errors
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.serverpb import internal_pb2 as serverpb
from petcd.server.apply_kv import txn_has_put
from petcd.server.state import StateCell

log = logging.getLogger("petcd.server")

ALARM_NONE = pb.NONE
ALARM_NOSPACE = pb.NOSPACE
ALARM_CORRUPT = pb.CORRUPT

Handler = Callable[[serverpb.InternalRequest, int], Any]


class Applier(Protocol):
    def apply(self, req: serverpb.InternalRequest, index: int) -> Any: ...


# given the next applier, an applier that delegates to it
ApplierStep = Callable[[Applier], Applier]


# what etcd's corrupt applier refuses while a CORRUPT alarm is raised (reads do not pass here)
_REFUSED_WHEN_CORRUPT = frozenset(("put", "delete_range", "txn", "compaction", "lease_grant", "lease_revoke"))


class QuotaApplier:
    """Refuses what adds data (puts, txns with a put, lease grants) while NOSPACE is raised, and
    every change of the keyspace or of leases while CORRUPT is raised."""

    def __init__(self, cell: StateCell, next_applier: Applier) -> None:
        self._cell = cell
        self._next = next_applier

    def apply(self, req: serverpb.InternalRequest, index: int) -> Any:
        kind = req.WhichOneof("request")
        if kind in ("put", "txn", "lease_grant") and ALARM_NOSPACE in self._cell.state.alarms.values():
            if kind != "txn" or txn_has_put(req.txn):
                raise errors.NoSpaceError()
        if kind in _REFUSED_WHEN_CORRUPT and ALARM_CORRUPT in self._cell.state.alarms.values():
            raise errors.CorruptError()
        return self._next.apply(req, index)


class AuthApplier:
    """Refuses what the entry's credentials do not allow (``petcd.auth.authorize``): admin-only
    requests, writes outside the user's permissions, revoking a lease with keys the user cannot
    write... Every member checks with the auth state of the same point in the log."""

    def __init__(self, cell: StateCell, next_applier: Applier) -> None:
        self._cell = cell
        self._next = next_applier

    def _lease_keys(self, lease_id: int) -> list[bytes]:
        lease = self._cell.state.lessor.get(lease_id)
        return [] if lease is None else list(lease.keys)

    def apply(self, req: serverpb.InternalRequest, index: int) -> Any:
        store = self._cell.state.auth
        if store.enabled:
            auth.authorize(store, auth.info_from_header(req.header), req, self._lease_keys)
        return self._next.apply(req, index)


class BackendApplier:
    """The end of the chain: the handler of the request's kind, on the current member state."""

    def __init__(self, cell: StateCell) -> None:
        self._cell = cell
        self.handlers: dict[str, Handler] = {
            "put": lambda r, _i: self._cell.state.kv.put(r.put),
            "delete_range": lambda r, _i: self._cell.state.kv.delete_range(r.delete_range),
            "txn": lambda r, _i: self._cell.state.kv.txn(r.txn),
            "compaction": self._compaction,
            "alarm": self._alarm,
            "member_attr_set": self._member_attr_set,
            "cluster_version_set": self._cluster_version_set,
            "lease_grant": self._lease,
            "lease_revoke": self._lease,
            "lease_checkpoint": self._lease,
        }
        for kind in auth.AUTH_REQUEST_KINDS:
            self.handlers[kind] = self._auth

    def apply(self, req: serverpb.InternalRequest, index: int) -> Any:
        kind = req.WhichOneof("request")
        handler = self.handlers.get(kind or "")
        if handler is None:
            raise errors.UnsupportedRequestError(f"unsupported request {kind}")
        return handler(req, index)

    def _compaction(self, req: serverpb.InternalRequest, index: int) -> pb.CompactionResponse:
        st = self._cell.state
        st.kv.check_compaction(req.compaction.revision)
        st.store.compact(req.compaction.revision)
        resp = pb.CompactionResponse()
        resp.header.revision = st.store.rev
        return resp

    def _alarm(self, req: serverpb.InternalRequest, index: int) -> pb.AlarmResponse:
        st = self._cell.state
        a = req.alarm
        resp = pb.AlarmResponse()
        key = (a.memberID, a.alarm)
        if a.action == pb.AlarmRequest.ACTIVATE and a.alarm != ALARM_NONE:
            # raised again (every refused request raises it): answered as raised, nothing saved
            resp.alarms.add(memberID=a.memberID, alarm=a.alarm)
            if key in st.alarms:
                return resp
            st.alarms[key] = a.alarm
            log.warning("alarm %s raised for member %x", pb.AlarmType.Name(a.alarm), a.memberID)
        elif a.action == pb.AlarmRequest.DEACTIVATE and key in st.alarms:
            del st.alarms[key]
            resp.alarms.add(memberID=a.memberID, alarm=a.alarm)
        else:
            return resp
        st.membership.save_alarms(st.alarms)
        return resp

    def _member_attr_set(self, req: serverpb.InternalRequest, index: int) -> None:
        st = self._cell.state
        a = req.member_attr_set
        st.membership.set_attributes(a.member_id, a.name, list(a.client_urls))

    def _cluster_version_set(self, req: serverpb.InternalRequest, index: int) -> None:
        st = self._cell.state
        st.membership.set_cluster_version(req.cluster_version_set.ver)

    def _auth(self, req: serverpb.InternalRequest, index: int) -> object:
        # the index completes a simple token (the same token on every member)
        return auth.apply(self._cell.state.auth, req, index)

    def _lease(self, req: serverpb.InternalRequest, index: int) -> object:
        st = self._cell.state
        return st.lessor.apply(req, st.store)


def build_chain(cell: StateCell, steps: Sequence[ApplierStep] = ()) -> Applier:
    """quota -> auth -> steps, in order -> backend dispatch; a request enters at the returned
    applier."""
    applier: Applier = BackendApplier(cell)
    for step in reversed(steps):
        applier = step(applier)
    return QuotaApplier(cell, AuthApplier(cell, applier))
