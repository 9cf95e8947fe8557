"""Cluster membership as the apply loop sees it, persisted in the backend.

Members change only by applying committed ConfChange entries, so every member holds
the same list. The list and the alarms live in the backend's ``members`` and ``alarm``
buckets, written in the same backend batch as the consistent index, so a restart
finds exactly the membership of the last applied entry.
"""

from __future__ import annotations

import logging

from petcd.backend import Backend
from petcd.backend.buckets import ALARM, CLUSTER, MEMBERS, MEMBERS_REMOVED
from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.proto.serverpb import internal_pb2 as serverpb
from petcd.server.bootstrap import Member

log = logging.getLogger("petcd.server")


_CLUSTER_VERSION_KEY = b"clusterVersion"


def _id_key(member_id: int) -> bytes:
    return f"{member_id:016x}".encode()


class Membership:
    def __init__(self, backend: Backend, cluster_id: int) -> None:
        self.backend = backend
        self.cluster_id = cluster_id
        self.members: dict[int, Member] = {}
        self.removed: set[int] = set()
        for _key, value in backend.range(MEMBERS):
            m = Member.from_record(serverpb.MemberRecord.FromString(value))
            self.members[m.id] = m
        for key, _value in backend.range(MEMBERS_REMOVED):
            self.removed.add(int(key, 16))
        version = backend.get(CLUSTER, _CLUSTER_VERSION_KEY)
        self.cluster_version = version.decode() if version else ""

    def size(self) -> int:
        return len(self.members)

    def is_learner(self, member_id: int) -> bool:
        m = self.members.get(member_id)
        return m is not None and m.is_learner

    def ordered(self) -> list[Member]:
        return sorted(self.members.values(), key=lambda m: m.id)

    def apply_conf_change(self, cc: raftpb.ConfChange) -> None:
        """Apply a committed conf change to the member list (raft's own view is separate)."""
        if cc.type in (raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode):
            existing = self.members.get(cc.node_id)
            if existing is not None and cc.type == raftpb.ConfChangeAddNode and existing.is_learner:
                existing.is_learner = False  # promotion
                self._save(existing)
            elif existing is None:
                ctx = serverpb.ConfChangeContext.FromString(cc.context)
                m = Member.from_record(ctx.member)
                m.is_learner = cc.type == raftpb.ConfChangeAddLearnerNode
                self.members[m.id] = m
                self._save(m)
                log.info("added member %x %s %s", m.id, m.name, m.peer_urls)
        elif cc.type == raftpb.ConfChangeRemoveNode:
            if self.members.pop(cc.node_id, None) is not None:
                self.backend.delete(MEMBERS, _id_key(cc.node_id))
            self.removed.add(cc.node_id)
            self.backend.put(MEMBERS_REMOVED, _id_key(cc.node_id), b"removed")
            log.info("removed member %x", cc.node_id)
        elif cc.type == raftpb.ConfChangeUpdateNode:
            ctx = serverpb.ConfChangeContext.FromString(cc.context)
            known = self.members.get(cc.node_id)
            if known is not None:
                known.peer_urls = list(ctx.member.peer_urls)
                self._save(known)

    def set_attributes(self, member_id: int, name: str, client_urls: list[str]) -> None:
        m = self.members.get(member_id)
        if m is not None:
            m.name = name
            m.client_urls = list(client_urls)
            self._save(m)

    def set_cluster_version(self, version: str) -> None:
        self.cluster_version = version
        self.backend.put(CLUSTER, _CLUSTER_VERSION_KEY, version.encode())

    def _save(self, m: Member) -> None:
        self.backend.put(MEMBERS, _id_key(m.id), m.to_record().SerializeToString())

    def snapshot_data(self) -> serverpb.SnapshotData:
        return serverpb.SnapshotData(
            cluster_id=self.cluster_id,
            members=[m.to_record() for m in self.ordered()],
            removed=sorted(self.removed),
        )

    def load_alarms(self) -> dict[tuple[int, int], int]:
        alarms: dict[tuple[int, int], int] = {}
        for key, _value in self.backend.range(ALARM):
            member_hex, alarm_type = key.decode().split("/")
            alarms[(int(member_hex, 16), int(alarm_type))] = int(alarm_type)
        return alarms

    def save_alarms(self, alarms: dict[tuple[int, int], int]) -> None:
        for key, _value in list(self.backend.range(ALARM)):
            self.backend.delete(ALARM, key)
        for member_id, alarm_type in alarms:
            self.backend.put(ALARM, f"{member_id:016x}/{alarm_type}".encode(), b"")
