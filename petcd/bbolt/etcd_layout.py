"""etcd 3.5's bucket layout and petcd's: what differs, and the mapping both ways.

Both keep etcd's ten buckets under etcd's names. Most hold the same bytes:

| bucket | etcd 3.5 | petcd | mapping |
|---|---|---|---|
| key | 17-byte revision (+ `t` for a tombstone) -> mvccpb.KeyValue | same | as is (etcd 3.6's empty revision-bump marker dropped) |
| lease | 8-byte big-endian id -> leasepb.Lease | same | as is |
| meta | consistent_index, term (u64 BE), scheduledCompactRev, finishedCompactRev (revision bytes), confState (JSON raftpb.ConfState) | no confState (the raft snapshot holds the conf state) | confState made from the members on export, dropped on import |
| members | hex id without padding -> JSON membership.Member | 16-digit hex id -> serverpb.MemberRecord | re-keyed, JSON <-> protobuf |
| members_removed | hex id -> `removed` | 16-digit hex id -> `removed` | re-keyed |
| alarm | etcdserverpb.AlarmMember (protobuf) -> empty | `<16-digit hex member>/<alarm type>` -> empty | protobuf <-> text key |
| cluster | clusterVersion -> `3.5.0` (and downgrade JSON) | clusterVersion | as is |
| auth, authUsers, authRoles | authEnabled, authRevision; authpb.User; authpb.Role | same names, same encodings | as is |

Buckets outside this table are not part of either layout: they are dropped on import.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, cast

from petcd.backend.buckets import (
    ALARM,
    ALL_BUCKETS,
    KEY,
    MEMBERS,
    MEMBERS_REMOVED,
    META,
)
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.serverpb import internal_pb2 as serverpb

CONF_STATE_KEY = b"confState"

Pairs = Iterable[tuple[bytes, bytes]]


def go_json_string(s: str) -> str:
    """A string as Go's encoding/json writes it (HTML-safe escapes, UTF-8 kept)."""
    out = json.dumps(s, ensure_ascii=False)
    return (
        out.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    )


def _go_json_list(items: Iterable[str]) -> str:
    return "[" + ",".join(go_json_string(s) for s in items) + "]"


def member_to_etcd_json(m: serverpb.MemberRecord) -> bytes:
    """etcd's membership.Member JSON: id, peerURLs, isLearner/name/clientURLs when set."""
    parts = [f'"id":{m.id}', f'"peerURLs":{_go_json_list(m.peer_urls)}']
    if m.is_learner:
        parts.append('"isLearner":true')
    if m.name:
        parts.append(f'"name":{go_json_string(m.name)}')
    if m.client_urls:
        parts.append(f'"clientURLs":{_go_json_list(m.client_urls)}')
    return ("{" + ",".join(parts) + "}").encode()


def member_from_etcd_json(raw: bytes) -> serverpb.MemberRecord:
    d: dict[str, Any] = json.loads(raw)
    return serverpb.MemberRecord(
        id=int(d["id"]),
        name=d.get("name") or "",
        peer_urls=list(d.get("peerURLs") or []),
        client_urls=list(d.get("clientURLs") or []),
        is_learner=bool(d.get("isLearner", False)),
    )


def conf_state_json(members: Iterable[serverpb.MemberRecord]) -> bytes:
    """etcd's meta/confState: Go's JSON of raftpb.ConfState for these members."""
    ms = list(members)
    voters = [m.id for m in ms if not m.is_learner]
    learners = [m.id for m in ms if m.is_learner]
    parts = [f'"voters":[{",".join(str(v) for v in voters)}]']
    if learners:
        parts.append(f'"learners":[{",".join(str(v) for v in learners)}]')
    parts.append('"auto_leave":false')
    return ("{" + ",".join(parts) + "}").encode()


def petcd_member_key(member_id: int) -> bytes:
    return f"{member_id:016x}".encode()


def etcd_member_key(member_id: int) -> bytes:
    return f"{member_id:x}".encode()


def petcd_alarm_key(member_id: int, alarm: int) -> bytes:
    return f"{member_id:016x}/{alarm}".encode()


# -- petcd -> etcd ---------------------------------------------------------------------------


def to_etcd_bucket(name: bytes, pairs: Pairs, members: list[serverpb.MemberRecord]) -> list[tuple[bytes, bytes]] | Pairs:
    """One petcd bucket's pairs in etcd's encoding (sorted as bbolt wants them). members: the
    bucket `members` decoded, for meta's confState."""
    if name == MEMBERS:
        out = [(etcd_member_key(m.id), member_to_etcd_json(m)) for m in members]
        return sorted(out)
    if name == MEMBERS_REMOVED:
        return sorted((etcd_member_key(int(k, 16)), v) for k, v in pairs)
    if name == ALARM:
        alarms = []
        for k, _v in pairs:
            member_hex, alarm_type = k.decode().split("/")
            alarm = cast(pb.AlarmType, int(alarm_type))
            key = pb.AlarmMember(memberID=int(member_hex, 16), alarm=alarm).SerializeToString()
            alarms.append((key, b""))
        return sorted(alarms)
    if name == META:
        meta = dict(pairs)
        meta.setdefault(CONF_STATE_KEY, conf_state_json(members))
        return sorted(meta.items())
    return pairs


# -- etcd -> petcd ---------------------------------------------------------------------------


def from_etcd_bucket(name: bytes, pairs: Pairs) -> Iterator[tuple[bytes, bytes]]:
    """One etcd bucket's pairs in petcd's encoding; nothing for buckets petcd does not keep.
    Order is not kept (the LMDB writer sorts)."""
    if name not in ALL_BUCKETS:
        return
    if name == MEMBERS:
        for _k, v in pairs:
            m = member_from_etcd_json(v)
            yield petcd_member_key(m.id), m.SerializeToString()
    elif name == MEMBERS_REMOVED:
        for k, v in pairs:
            yield petcd_member_key(int(k, 16)), v
    elif name == ALARM:
        for k, _v in pairs:
            a = pb.AlarmMember.FromString(k)
            yield petcd_alarm_key(a.memberID, a.alarm), b""
    elif name == META:
        for k, v in pairs:
            if k != CONF_STATE_KEY:
                yield k, v
    elif name == KEY:
        for k, v in pairs:
            # etcd 3.6's restore --bump-revision leaves an empty record at the bumped revision;
            # its scheduled compaction covers that revision, so the store's revision survives
            if v:
                yield k, v
    else:
        yield from pairs
