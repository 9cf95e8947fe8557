"""HTTP/1 on the plain-text peer URLs, answered as etcd 3.5.1's peer handler answers.

etcd serves its peer URL with cmux: the HTTP/2 preface goes to its gRPC server, anything else to
an HTTP/1 server (so bytes that are not HTTP get Go's bare 400, not a silent close as on the
client URL). petcd's peer URL is its peer gRPC server; :class:`PeerPort` accepts the peer TCP
connections itself and relays them as the client port does (petcd.http.clientport), HTTP/1 to
the handler here. The handler serves what etcd's does, from the member's own data: /version,
/members, /members/hashkv, /members/promote/<id>, /leases, /leases/internal, /downgrade/enabled
and /raft/probing. etcd's raft transport (/raft, /raft/snapshot, /raft/stream/...) is rafthttp,
which petcd does not speak (its peers talk gRPC, and framed raft streams that open with their own
preface): those paths answer what etcd answers a request that lacks rafthttp's version headers.
``https://`` peer URLs stay gRPC's own (TLS ends there).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from google.protobuf.message import DecodeError
from google.protobuf.wrappers_pb2 import BytesValue

from petcd import ETCD_API_VERSION, errors
from petcd.clock import Clock, wait_for
from petcd.http.app import version_response
from petcd.http.clientport import PREFACE, ClientPort
from petcd.http.health import ErrorText
from petcd.http.responses import json_response, not_found, text_error
from petcd.http.server import HttpServer, Request, Response
from petcd.http.side import HttpError
from petcd.lease import LeaseExpiredError, NotPrimaryError
from petcd.mvcc.errors import CompactedError, FutureRevError
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.server.etcdserver import EtcdServer

__all__ = ["PeerPort", "classify_peer", "peer_handler"]

# (learner id) -> the members after promoting it (the member's leader forwarding)
Promote = Callable[[int], Awaitable[Sequence[pb.Member]]]

# the texts of etcd's peer handlers (its lease, membership and mvcc errors as Go prints them)
_LEASE_NOT_FOUND = "lease not found"
_NOT_PRIMARY = "not a primary lessor"
_APPLY_TIMEOUT = "waiting for node to catch up its applied index has timed out"
_INCOMPATIBLE = "incompatible version"
_PROMOTE_ERRORS: dict[type[Exception], tuple[int, str]] = {
    errors.MemberNotFoundError: (404, "membership: ID not found"),
    errors.MemberNotLearnerError: (412, "membership: can only promote a learner member"),
    errors.LearnerNotReadyError: (412, "etcdserver: can only promote a learner member which is in sync with leader"),
}
_MVCC_TEXTS: dict[type[Exception], str] = {
    CompactedError: "mvcc: required revision has been compacted",
    FutureRevError: "mvcc: required revision is a future revision",
}
# etcd's lease handlers wait this long for the member to apply what is committed
_LEASE_APPLY_WAIT = 1.0
_UINT = re.compile(r"[0-9]+")
_MAX_FIRST_LINE = 1 << 20
_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def classify_peer(data: bytes) -> str:
    """cmux on etcd's peer URL: HTTP/2 preface to gRPC, anything else to HTTP/1 ('more' while
    the bytes could still become the preface)."""
    if data[: len(PREFACE)] == PREFACE[: len(data)]:
        return "grpc" if len(data) >= len(PREFACE) else "more"
    # h11 refuses a first line that starts with a control byte (a TLS hello) before it ends;
    # Go waits for the line (its header limit is 1 MiB) and then answers 400: hand it over then
    if data[0] < 0x21 and b"\n" not in data and len(data) < _MAX_FIRST_LINE:
        return "more"
    return "http"


def _go_json(value: object) -> bytes:
    """JSON as Go's encoding/json writes it (HTML characters escaped, no spaces)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return "".join(_GO_ESCAPES.get(c, c) for c in text).encode()


def _member_json(member_id: int, name: str, peer_urls: Sequence[str], client_urls: Sequence[str],
                 learner: bool) -> dict[str, Any]:
    # etcd's membership.Member: name, clientURLs and isLearner are omitted when empty
    out: dict[str, Any] = {"id": member_id, "peerURLs": list(peer_urls)}
    if learner:
        out["isLearner"] = True
    if name:
        out["name"] = name
    if client_urls:
        out["clientURLs"] = list(client_urls)
    return out


def _rfc3339_nano(wall: float) -> str:
    """Go's time.RFC3339Nano in UTC: fractional seconds without trailing zeros."""
    ns = round(wall * 1e9)
    t = datetime.datetime.fromtimestamp(ns // 1_000_000_000, datetime.UTC)
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


def _not_allowed(allow: str | None) -> Response:
    resp = text_error(405, "Method Not Allowed")
    if allow:
        resp.headers.append(("Allow", allow))
    return resp


def _redirect(req: Request, path: str) -> Response:
    """Go's ServeMux sending a path to its registered subtree (a body for GET only)."""
    query = req.target.partition("?")[2]
    location = f"{path}?{query}" if query else path
    if req.method not in ("GET", "HEAD"):
        return Response(301, [("Location", location)])
    body = f'<a href="{location}">Moved Permanently</a>.\n\n'.encode() if req.method == "GET" else b""
    return Response(301, [("Content-Type", "text/html; charset=utf-8"), ("Location", location)], body)


class _PeerHandler:
    def __init__(self, srv: EtcdServer, clock: Clock, error_text: ErrorText, promote: Promote) -> None:
        self._srv = srv
        self._clock = clock
        self._error_text = error_text
        self._promote = promote

    def _cid(self) -> tuple[str, str]:
        return ("X-Etcd-Cluster-Id", f"{self._srv.cluster_id:x}")

    def _with_cid(self, resp: Response) -> Response:
        resp.headers.append(self._cid())
        return resp

    async def __call__(self, req: Request) -> Response:
        path = req.path
        if path == "/version":
            return version_response(self._srv, req)
        if path == "/members":
            return self._members(req)
        if path == "/members/hashkv":
            return await self._hashkv(req)
        if path.startswith("/members/promote/"):
            return await self._member_promote(req, path.removeprefix("/members/promote/"))
        if path == "/members/promote":
            return _redirect(req, "/members/promote/")
        if path in ("/leases", "/leases/internal"):
            return await self._lease(req)
        if path == "/downgrade/enabled":
            return await self._downgrade_enabled(req)
        if path == "/raft" or path.startswith("/raft/"):
            return self._raft(req, path)
        return not_found()

    def _members(self, req: Request) -> Response:
        if req.method != "GET":
            return _not_allowed("GET")
        ms = [_member_json(m.id, m.name, m.peer_urls, m.client_urls, m.is_learner)
              for m in self._srv.membership.ordered()]
        return json_response(200, _go_json(ms) + b"\n", [self._cid()])

    async def _hashkv(self, req: Request) -> Response:
        if req.method != "GET":
            return _not_allowed("GET")
        body = await req.read()
        rev = _hashkv_revision(body)
        if rev is None:
            return text_error(400, "error unmarshalling request")
        try:
            h, cur, compact = self._srv.store.hash_kv(rev)
        except (CompactedError, FutureRevError) as exc:
            return text_error(400, _MVCC_TEXTS[type(exc)])
        out: dict[str, Any] = {"header": {"revision": cur} if cur else {}}
        if h:
            out["hash"] = h
        if compact:
            out["compact_revision"] = compact
        return json_response(200, _go_json(out), [self._cid()])

    async def _member_promote(self, req: Request, id_text: str) -> Response:
        if req.method != "POST":
            return _not_allowed("POST")
        if not _UINT.fullmatch(id_text) or int(id_text) >= 1 << 64:
            return self._with_cid(text_error(404, f"member {id_text} not found in cluster"))
        try:
            members = await self._promote(int(id_text))
        except errors.PetcdError as exc:
            status, text = _PROMOTE_ERRORS.get(type(exc), (0, ""))
            if status:
                return self._with_cid(text_error(status, text))
            # etcd's WriteError for any other error
            return json_response(500, b'{"message":"Internal Server Error"}', [self._cid()])
        ms = [_member_json(m.ID, m.name, m.peerURLs, m.clientURLs, m.isLearner) for m in members]
        return json_response(200, _go_json(ms) + b"\n", [self._cid()])

    async def _lease(self, req: Request) -> Response:
        """etcd's followers forward keep-alives and TTL questions to the leader here; petcd's do
        it over gRPC, but the HTTP form works too, on the same lessor."""
        if req.method != "POST":
            return _not_allowed(None)  # etcd's lease handler sets no Allow header
        body = await req.read()
        srv = self._srv
        try:
            if req.path == "/leases":
                keepalive = pb.LeaseKeepAliveRequest.FromString(body)
            else:
                # LeaseInternalRequest{LeaseTimeToLiveRequest = 1} has the wire form of a
                # BytesValue holding the inner message
                wrapper = BytesValue.FromString(body)
                ttl_req = pb.LeaseTimeToLiveRequest.FromString(wrapper.value)
        except DecodeError:
            return text_error(400, "error unmarshalling request")
        if req.path == "/leases/internal" and not wrapper.value and not body.startswith(b"\x0a"):
            # etcd dereferences the missing inner request and its HTTP server drops the connection
            raise ConnectionResetError("lease internal request without its TimeToLive request")
        try:
            await wait_for(self._clock, srv.wait_applied(srv.committed_index), _LEASE_APPLY_WAIT)
        except (TimeoutError, errors.PetcdError):
            return text_error(408, _APPLY_TIMEOUT)
        lessor = srv.lessor
        try:
            if req.path == "/leases":
                ttl = lessor.renew(keepalive.ID)
                out = pb.LeaseKeepAliveResponse(ID=keepalive.ID, TTL=ttl).SerializeToString()
            else:
                granted, remaining, keys = lessor.time_to_live(ttl_req.ID, ttl_req.keys)
                inner = pb.LeaseTimeToLiveResponse(ID=ttl_req.ID, TTL=remaining, grantedTTL=granted, keys=keys)
                inner.header.SetInParent()  # etcd sends an empty header
                out = BytesValue(value=inner.SerializeToString()).SerializeToString()
        except (errors.LeaseNotFoundError, LeaseExpiredError):
            # etcd's lessor reports an expired lease as not found once its revoke is applied
            return text_error(404, _LEASE_NOT_FOUND)
        except NotPrimaryError:
            return text_error(400, _NOT_PRIMARY)
        return Response(200, [("Content-Type", "application/protobuf")], out)

    async def _downgrade_enabled(self, req: Request) -> Response:
        if req.method != "GET":
            return _not_allowed("GET")
        srv = self._srv
        try:
            await wait_for(self._clock, srv.linearizable_read(), srv.settings.request_timeout)
        except TimeoutError:
            return self._with_cid(text_error(500, f"failed linearized read: {self._error_text(errors.RequestTimeoutError())}"))
        except errors.PetcdError as exc:
            return self._with_cid(text_error(500, f"failed linearized read: {self._error_text(exc)}"))
        # petcd has no downgrade mode (etcd 3.5's is an experimental operator action), so the
        # answer, read as linearizably as etcd reads it, is always false
        return Response(200, [("Content-Type", "text/plain"), self._cid()], b"false")

    def _raft(self, req: Request, path: str) -> Response:
        """etcd's rafthttp endpoints. petcd's raft runs over gRPC, so nobody here speaks rafthttp:
        these answer what etcd answers a request without rafthttp's version headers."""
        if path in ("/raft", "/raft/snapshot"):
            if req.method != "POST":
                return _not_allowed("POST")
            return self._with_cid(text_error(412, _INCOMPATIBLE))
        if path == "/raft/probing":
            # any method: rafthttp's prober handler checks none
            body = _go_json({"OK": True, "Now": _rfc3339_nano(self._clock.wall())}) + b"\n"
            return Response(200, [], body, sniffed_type="text/plain; charset=utf-8")
        if path == "/raft/stream":
            return _redirect(req, "/raft/stream/")
        if path.startswith("/raft/stream/"):
            if req.method != "GET":
                return _not_allowed("GET")
            resp = self._with_cid(text_error(412, _INCOMPATIBLE))
            resp.headers.append(("X-Server-Version", ETCD_API_VERSION))
            return resp
        return not_found()


def _hashkv_revision(body: bytes) -> int | None:
    """The revision of a HashKVRequest in JSON as Go's json.Unmarshal reads it (keys match
    case-insensitively, the last one wins); None if Go would refuse the body."""
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if value is None:
        return 0
    if not isinstance(value, dict):
        return None
    rev = 0
    for key, v in value.items():
        if key.lower() != "revision":
            continue
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or not -(1 << 63) <= v < 1 << 63:
            return None
        rev = v
    return rev


def peer_handler(srv: EtcdServer, clock: Clock, error_text: ErrorText, promote: Promote) -> _PeerHandler:
    return _PeerHandler(srv, clock, error_text, promote)


class PeerPort:
    """The plain-text peer URLs: TCP accepted here, HTTP/2 relayed to the peer gRPC server on
    ``grpc_path``, a connection that starts with ``raft[0]`` served by a protocol from ``raft[1]``
    (petcd's framed raft streams), everything else to the peer HTTP handler on ``http_path``."""

    def __init__(self, handler: _PeerHandler, clock: Clock, grpc_path: str, http_path: str,
                 raft: tuple[bytes, Callable[[], asyncio.Protocol]]) -> None:
        self._http = HttpServer(handler, clock)
        self._http_path = http_path
        self._relay = ClientPort(grpc_path, http_path, classify_peer, takeover=raft)

    async def listen(self, addrs: Sequence[str]) -> None:
        """Serve ``addrs`` (host:port); HttpError with etcd's message if one cannot be bound."""
        await self._http.listen_unix(self._http_path)
        for addr in addrs:
            host, _, port = addr.rpartition(":")
            try:
                await self._relay.listen(host.strip("[]"), int(port), reuse_port=False)
            except OSError as exc:
                # Go's text for the errno is Python's strerror in lower case ("address already in use")
                reason = exc.strerror or str(exc)
                raise HttpError(f"listen tcp {addr}: bind: {reason[:1].lower()}{reason[1:]}") from None

    async def stop(self) -> None:
        await self._relay.stop()
        await self._http.stop()
