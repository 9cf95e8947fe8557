"""etcdctl 3.5's output formats: simple, json, fields, table (and protobuf for plain responses).

One ``Display`` per command run. A format that etcdctl does not offer for a response ends the
command with ``Error: <format> not supported as output format`` and exit code 4, after the request
was made (as etcdctl does).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from petcd.ctl.cli import EXIT_BAD_FEATURE, CtlExit, bytes_text, go_quote
from petcd.ctl.gojson import encode, message_value
from petcd.proto.authpb import auth_pb2
from petcd.proto.mvccpb import kv_pb2

FORMATS = ("simple", "json", "fields", "table", "protobuf")
ALARMS = {0: "NONE", 1: "NOSPACE", 2: "CORRUPT"}
PERMS = {0: "READ", 1: "WRITE", 2: "READWRITE"}


@dataclass
class EpHealth:
    ep: str
    health: bool
    took: str
    error: str = ""


@dataclass
class EpStatus:
    ep: str
    resp: Any  # pb.StatusResponse


@dataclass
class EpHashKV:
    ep: str
    resp: Any  # pb.HashKVResponse


def out(text: str) -> None:
    sys.stdout.buffer.write(text.encode("utf-8", "surrogateescape"))


def err(text: str) -> None:
    sys.stdout.flush()
    sys.stderr.buffer.write(text.encode("utf-8", "surrogateescape"))
    sys.stderr.flush()


def humanize_bytes(n: int) -> str:
    """go-humanize's Bytes: SI units, one decimal below 10."""
    if n < 10:
        return f"{n} B"
    e = math.floor(math.log(n) / math.log(1000))
    suffix = ["B", "kB", "MB", "GB", "TB", "PB", "EB"][e]
    val = math.floor(n / 1000**e * 10 + 0.5) / 10
    return f"{val:.1f} {suffix}" if val < 10 else f"{val:.0f} {suffix}"


def render_table(hdr: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """olekukonko/tablewriter as etcdctl sets it up: centred upper-case header, right-aligned cells."""
    titles = [h.upper() for h in hdr]
    widths = [max([len(t), *(len(r[i]) for r in rows)]) for i, t in enumerate(titles)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+\n"

    def centre(text: str, w: int) -> str:
        gap = w - len(text)
        return " " * (gap // 2) + text + " " * (gap - gap // 2)

    text = line + "| " + " | ".join(centre(t, w) for t, w in zip(titles, widths, strict=True)) + " |\n" + line
    for r in rows:
        text += "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |\n"
    return text + line


def member_rows(resp: Any) -> tuple[list[str], list[list[str]]]:
    hdr = ["ID", "Status", "Name", "Peer Addrs", "Client Addrs", "Is Learner"]
    rows = [[f"{m.ID:x}", "started" if m.name else "unstarted", m.name, ",".join(m.peerURLs),
             ",".join(m.clientURLs), "true" if m.isLearner else "false"] for m in resp.members]
    return hdr, rows


def health_rows(hs: Sequence[EpHealth]) -> tuple[list[str], list[list[str]]]:
    return ["endpoint", "health", "took", "error"], [[h.ep, _b(h.health), h.took, h.error] for h in hs]


def status_rows(ss: Sequence[EpStatus]) -> tuple[list[str], list[list[str]]]:
    hdr = ["endpoint", "ID", "version", "db size", "is leader", "is learner", "raft term", "raft index",
           "raft applied index", "errors"]
    rows = [[s.ep, f"{s.resp.header.member_id:x}", s.resp.version, humanize_bytes(s.resp.dbSize),
             _b(s.resp.leader == s.resp.header.member_id), _b(s.resp.isLearner), str(s.resp.raftTerm),
             str(s.resp.raftIndex), str(s.resp.raftAppliedIndex), ", ".join(s.resp.errors)] for s in ss]
    return hdr, rows


def hash_rows(hs: Sequence[EpHashKV]) -> tuple[list[str], list[list[str]]]:
    return ["endpoint", "hash"], [[h.ep, str(h.resp.hash)] for h in hs]


def _b(v: bool) -> str:
    return "true" if v else "false"


def hex_bytes(data: bytes) -> str:
    return "".join(f"\\x{b:02x}" for b in data)


def _header_fields(h: Any) -> dict[str, Any]:
    """A *pb.ResponseHeader embedded in a clientv3 wrapper: its fields are promoted."""
    return message_value(h)


def header_json(h: Any) -> dict[str, Any]:
    return message_value(h)


class Display:
    def __init__(self, fmt: str, is_hex: bool = False, value_only: bool = False) -> None:
        if fmt not in FORMATS:
            raise CtlExit(EXIT_BAD_FEATURE, "unsupported output format")
        self.fmt = fmt
        self.hex = is_hex
        self.value_only = value_only

    # --- shared pieces -----------------------------------------------------------------------------
    def unsupported(self) -> CtlExit:
        return CtlExit(EXIT_BAD_FEATURE, f"{self.fmt} not supported as output format")

    def _rpc(self, msg: Message) -> bool:
        """json / protobuf of a plain response; False when the format is another one."""
        if self.fmt == "json":
            out(encode(msg) + "\n")
            return True
        if self.fmt == "protobuf":
            sys.stdout.buffer.write(msg.SerializeToString())
            return True
        if self.fmt == "table":
            raise self.unsupported()
        return False

    def _json(self, value: Any) -> bool:
        if self.fmt == "json":
            out(encode(value) + "\n")
            return True
        if self.fmt in ("table", "protobuf"):
            raise self.unsupported()
        return False

    def kv(self, kv: Any) -> None:
        k, v = bytes_text(kv.key), bytes_text(kv.value)
        if self.hex:
            k, v = hex_bytes(kv.key), hex_bytes(kv.value)
        if not self.value_only:
            out(k + "\n")
        out(v + "\n")

    def fkv(self, pfx: str, kv: Any) -> None:
        out(f'"{pfx}Key" : {go_quote(bytes_text(kv.key))}\n"{pfx}CreateRevision" : {kv.create_revision}\n'
            f'"{pfx}ModRevision" : {kv.mod_revision}\n"{pfx}Version" : {kv.version}\n'
            f'"{pfx}Value" : {go_quote(bytes_text(kv.value))}\n"{pfx}Lease" : {kv.lease}\n')

    def hdr(self, h: Any) -> None:
        out(f'"ClusterID" : {h.cluster_id}\n"MemberID" : {h.member_id}\n"Revision" : {h.revision}\n'
            f'"RaftTerm" : {h.raft_term}\n')

    # --- KV ----------------------------------------------------------------------------------------
    def delete(self, r: Any) -> None:
        if self._rpc(r):
            return
        if self.fmt == "fields":
            self.hdr(r.header)
            out(f'"Deleted" : {r.deleted}\n')
            for kv in r.prev_kvs:
                self.fkv("Prev", kv)
            return
        out(f"{r.deleted}\n")
        for kv in r.prev_kvs:
            self.kv(kv)

    def get(self, r: Any) -> None:
        if self._rpc(r):
            return
        if self.fmt == "fields":
            self.hdr(r.header)
            for kv in r.kvs:
                self.fkv("", kv)
            out(f'"More" : {_b(r.more)}\n"Count" : {r.count}\n')
            return
        for kv in r.kvs:
            self.kv(kv)

    def put(self, r: Any) -> None:
        if self._rpc(r):
            return
        if self.fmt == "fields":
            self.hdr(r.header)
            if r.HasField("prev_kv"):
                self.fkv("Prev", r.prev_kv)
            return
        out("OK\n")
        if r.HasField("prev_kv"):
            self.kv(r.prev_kv)

    def txn(self, r: Any) -> None:
        if self._rpc(r):
            return
        if self.fmt == "fields":
            self.hdr(r.header)
            out(f'"Succeeded" : {_b(r.succeeded)}\n')
        else:
            out("SUCCESS\n" if r.succeeded else "FAILURE\n")
        for op in r.responses:
            if self.fmt != "fields":
                out("\n")
            which = op.WhichOneof("response")
            if which == "response_delete_range":
                self.delete(op.response_delete_range)
            elif which == "response_put":
                self.put(op.response_put)
            elif which == "response_range":
                self.get(op.response_range)
            else:  # a nested txn: etcdctl has no way to show it
                out(f"unexpected response {op}\n")

    def watch(self, r: Any) -> None:
        """r is a pb.WatchResponse; etcdctl prints clientv3's WatchResponse (header by value)."""
        if self.fmt == "json":
            events = [message_value(e) for e in r.events]
            out(encode({"Header": message_value(r.header), "Events": events or None,
                        "CompactRevision": r.compact_revision, "Canceled": r.canceled,
                        "Created": r.created}) + "\n")
            return
        if self.fmt == "protobuf":
            sys.stdout.buffer.write(r.SerializeToString())
            return
        if self.fmt == "table":
            raise self.unsupported()
        if self.fmt == "fields":
            self.hdr(r.header)
        for e in r.events:
            name = kv_pb2.Event.EventType.Name(e.type)
            if self.fmt == "fields":
                out(f'"Type" : {name}\n')
                if e.HasField("prev_kv"):
                    self.fkv("Prev", e.prev_kv)
                self.fkv("", e.kv)
                continue
            out(name + "\n")
            if e.HasField("prev_kv"):
                self.kv(e.prev_kv)
            self.kv(e.kv)

    # --- leases ------------------------------------------------------------------------------------
    def grant(self, r: Any) -> None:
        if self._json({**_header_fields(r.header), "ID": r.ID, "TTL": r.TTL, "Error": r.error}):
            return
        if self.fmt == "fields":
            self.hdr(r.header)
            out(f'"ID" : {r.ID}\n"TTL" : {r.TTL}\n')
            return
        out(f"lease {r.ID:016x} granted with TTL({r.TTL}s)\n")

    def revoke(self, lease_id: int, r: Any) -> None:
        if self._json(r):
            return
        if self.fmt == "fields":
            self.hdr(r.header)
            return
        out(f"lease {lease_id:016x} revoked\n")

    def keepalive(self, r: Any) -> None:
        if self._json({**_header_fields(r.header), "ID": r.ID, "TTL": r.TTL}):
            return
        if self.fmt == "fields":
            self.hdr(r.header)
            out(f'"ID" : {r.ID}\n"TTL" : {r.TTL}\n')
            return
        out(f"lease {r.ID:016x} keepalived with TTL({r.TTL})\n")

    def timetolive(self, r: Any, keys: bool) -> None:
        ks = [bytes(k) for k in r.keys]
        if self._json({**_header_fields(r.header), "id": r.ID, "ttl": r.TTL, "granted-ttl": r.grantedTTL,
                       "keys": ks or None}):
            return
        if self.fmt == "fields":
            self.hdr(r.header)
            out(f'"ID" : {r.ID}\n"TTL" : {r.TTL}\n"GrantedTTL" : {r.grantedTTL}\n')
            for k in ks:
                out(f'"Key" : {go_quote(bytes_text(k))}\n')
            return
        if r.grantedTTL == 0 and r.TTL == -1:
            out(f"lease {r.ID:016x} already expired\n")
            return
        text = f"lease {r.ID:016x} granted with TTL({r.grantedTTL}s), remaining({r.TTL}s)"
        if keys:
            text += ", attached keys([" + " ".join(bytes_text(k) for k in ks) + "])"
        out(text + "\n")

    def leases(self, r: Any) -> None:
        if self._json({**_header_fields(r.header), "leases": [{"id": item.ID} for item in r.leases]}):
            return
        if self.fmt == "fields":
            self.hdr(r.header)
            for item in r.leases:
                out(f'"ID" : {item.ID}\n')
            return
        out(f"found {len(r.leases)} leases\n")
        for item in r.leases:
            out(f"{item.ID:016x}\n")

    # --- members -----------------------------------------------------------------------------------
    def member_add(self, r: Any) -> None:
        if self._rpc(r):
            return
        if self.fmt == "fields":
            raise self.unsupported()
        out(f"Member {r.member.ID:16x} added to cluster {r.header.cluster_id:16x}\n")

    def member_changed(self, verb: str, member_id: int, r: Any) -> None:
        if self._rpc(r):
            return
        if self.fmt == "fields":
            raise self.unsupported()
        out(f"Member {member_id:16x} {verb} cluster {r.header.cluster_id:16x}\n")

    def member_list(self, r: Any) -> None:
        if self.fmt == "json" and self.hex:
            out(_member_list_hex_json(r) + "\n")
            return
        if self.fmt == "table":
            out(render_table(*member_rows(r)))
            return
        if self._rpc(r):
            return
        if self.fmt == "fields":
            self.hdr(r.header)
            for m in r.members:
                out(f'"ID" : {m.ID}\n"Name" : {go_quote(m.name)}\n')
                for u in m.peerURLs:
                    out(f'"PeerURL" : {go_quote(u)}\n')
                for u in m.clientURLs:
                    out(f'"ClientURL" : {go_quote(u)}\n')
                out(f'"IsLearner" : {_b(m.isLearner)}\n\n')
            return
        for row in member_rows(r)[1]:
            out(", ".join(row) + "\n")

    # --- endpoints ---------------------------------------------------------------------------------
    def endpoint_health(self, hs: Sequence[EpHealth]) -> None:
        if self.fmt == "json":
            items = [{"endpoint": h.ep, "health": h.health, "took": h.took, **({"error": h.error} if h.error else {})}
                     for h in hs]
            out(encode(items) + "\n")
        elif self.fmt == "table":
            out(render_table(*health_rows(hs)))
        elif self.fmt == "fields":
            for h in hs:
                out(f'"Endpoint" : {go_quote(h.ep)}\n"Health" : {_b(h.health)}\n"Took" : {h.took}\n'
                    f'"Error" : {h.error}\n\n')
        elif self.fmt == "protobuf":
            raise self.unsupported()
        else:
            for h in hs:
                if not h.error:
                    out(f"{h.ep} is healthy: successfully committed proposal: took = {h.took}\n")
                else:
                    err(f"{h.ep} is unhealthy: failed to commit proposal: {h.error}\n")

    def endpoint_status(self, ss: Sequence[EpStatus]) -> None:
        if self.fmt == "json":
            out(encode([{"Endpoint": s.ep, "Status": message_value(s.resp)} for s in ss]) + "\n")
        elif self.fmt == "table":
            out(render_table(*status_rows(ss)))
        elif self.fmt == "fields":
            for s in ss:
                r = s.resp
                self.hdr(r.header)
                out(f'"Version" : {go_quote(r.version)}\n"DBSize" : {r.dbSize}\n"Leader" : {r.leader}\n'
                    f'"IsLearner" : {_b(r.isLearner)}\n"RaftIndex" : {r.raftIndex}\n"RaftTerm" : {r.raftTerm}\n'
                    f'"RaftAppliedIndex" : {r.raftAppliedIndex}\n"Errors" : [{" ".join(r.errors)}]\n'
                    f'"Endpoint" : {go_quote(s.ep)}\n\n')
        elif self.fmt == "protobuf":
            raise self.unsupported()
        else:
            for row in status_rows(ss)[1]:
                out(", ".join(row) + "\n")

    def endpoint_hashkv(self, hs: Sequence[EpHashKV]) -> None:
        if self.fmt == "json":
            out(encode([{"Endpoint": h.ep, "HashKV": message_value(h.resp)} for h in hs]) + "\n")
        elif self.fmt == "table":
            out(render_table(*hash_rows(hs)))
        elif self.fmt == "fields":
            for h in hs:
                self.hdr(h.resp.header)
                out(f'"Endpoint" : {go_quote(h.ep)}\n"Hash" : {h.resp.hash}\n\n')
        elif self.fmt == "protobuf":
            raise self.unsupported()
        else:
            for row in hash_rows(hs)[1]:
                out(", ".join(row) + "\n")

    def move_leader(self, leader: int, target: int, r: Any) -> None:
        if self.fmt in ("table", "fields"):
            raise self.unsupported()
        if self._rpc(r):
            return
        out(f"Leadership transferred from {leader:x} to {target:x}\n")

    def alarm(self, r: Any) -> None:
        if self._rpc(r):
            return
        if self.fmt == "fields":
            self.hdr(r.header)
            for a in r.alarms:
                out(f'"MemberID" : {a.memberID}\n"AlarmType" : {ALARMS.get(a.alarm, str(a.alarm))}\n\n')
            return
        for a in r.alarms:
            out(alarm_text(a) + "\n")

    # --- auth --------------------------------------------------------------------------------------
    def auth_simple(self, r: Any, text: str) -> None:
        """The responses that print one line in simple form and only the header in fields form."""
        if self._rpc(r):
            return
        if self.fmt == "fields":
            self.hdr(r.header)
            return
        out(text)

    def role_get(self, role: str, r: Any) -> None:
        if self._rpc(r):
            return
        if self.fmt == "fields":
            self.hdr(r.header)
            for p in r.perm:
                out(f'"PermType" :  {PERMS.get(p.permType, str(p.permType))}\n'
                    f'"Key" : {go_quote(bytes_text(p.key))}\n"RangeEnd" : {go_quote(bytes_text(p.range_end))}\n')
            return
        out(f"Role {role}\nKV Read:\n")
        for p in r.perm:
            if p.permType in (auth_pb2.Permission.READ, auth_pb2.Permission.READWRITE):
                out(_perm_text(p))
        out("KV Write:\n")
        for p in r.perm:
            if p.permType in (auth_pb2.Permission.WRITE, auth_pb2.Permission.READWRITE):
                out(_perm_text(p))

    def role_list(self, r: Any) -> None:
        if self._rpc(r):
            return
        if self.fmt == "fields":
            self.hdr(r.header)
            out('"Roles" :' + "".join(" " + go_quote(x) for x in r.roles) + "\n")
            return
        for role in r.roles:
            out(role + "\n")

    def user_get(self, name: str, r: Any) -> None:
        if self._rpc(r):
            return
        if self.fmt == "fields":  # etcdctl has no fields form of this one
            raise self.unsupported()
        out(f"User: {name}\nRoles:" + "".join(" " + x for x in r.roles) + "\n")

    def user_list(self, r: Any) -> None:
        if self._rpc(r):
            return
        if self.fmt == "fields":  # etcdctl has no fields form of this one
            raise self.unsupported()
        for u in r.users:
            out(u + "\n")

    def auth_status(self, r: Any) -> None:
        if self._rpc(r):
            return
        if self.fmt == "fields":  # etcdctl has no fields form of this one
            raise self.unsupported()
        out(f"Authentication Status: {_b(r.enabled)}\nAuthRevision: {r.authRevision}\n")


def alarm_text(a: Any) -> str:
    """gogo-proto's compact text of an AlarmMember, which etcdctl prints with %+v."""
    parts = []
    if a.memberID:
        parts.append(f"memberID:{a.memberID}")
    if a.alarm:
        parts.append(f"alarm:{ALARMS.get(a.alarm, str(a.alarm))}")
    return " ".join(parts) + " "


def _prefix_end(key: bytes) -> bytes:
    k = bytearray(key)
    for i in range(len(k) - 1, -1, -1):
        if k[i] < 0xFF:
            k[i] += 1
            return bytes(k[: i + 1])
    return b"\x00"


def _perm_text(p: Any) -> str:
    key, end = bytes(p.key), bytes(p.range_end)
    if not end:
        return f"\t{bytes_text(key)}\n"
    text = f"\t[{bytes_text(key)}, {bytes_text(end)})" if end != b"\x00" else f"\t[{bytes_text(key)}, <open ended>"
    if _prefix_end(key) == end:
        text += f" (prefix {bytes_text(key)})"
    return text + "\n"


def _member_list_hex_json(r: Any) -> str:
    h = r.header
    parts = [f'{{"header":{{"cluster_id":"{h.cluster_id:x}","member_id":"{h.member_id:x}","raft_term":{h.raft_term:x}}}']
    for i, m in enumerate(r.members):
        parts.append((',"members":[' if i == 0 else ",") + f'{{"ID":"{m.ID:x}","name":"{m.name}","peerURLs":'
                     + encode(list(m.peerURLs) or None) + ',"clientURLS":' + encode(list(m.clientURLs) or None) + "}"
                     + ("]" if i == len(r.members) - 1 else ""))
    return "".join(parts) + "}"



