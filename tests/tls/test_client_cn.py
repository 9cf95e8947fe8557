"""client_common_name: the verified client certificate's CN, for calls served by the member's own
gRPC server and for calls relayed by a front-end (over its link and over the member's private
socket); a client cannot forge it with the reserved metadata key.

The front-end's handlers, its link, the member's dispatcher and gRPC's TLS are the real ones; the
member's servicers are replaced by probes that answer with what client_common_name saw."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from petcd.api.client_cert import CN_METADATA_KEY, client_common_name
from petcd.frontend.dispatch import Dispatcher, LinkServer
from petcd.frontend.link import MemberLink
from petcd.frontend.process import add_handlers
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from petcd.tls import load_ca, load_key_pair, server_credentials
from tests.tls.certs import PKI

FORGED = ((CN_METADATA_KEY, b"root"),)


def _seen(context: Any) -> bytes:
    cn = client_common_name(context)
    return b"<none>" if cn is None else cn.encode()


class ProbeKV:
    """Answers Range with the CN the member sees for the call."""

    async def Range(self, request: pb.RangeRequest, context: Any) -> pb.RangeResponse:
        resp = pb.RangeResponse()
        kv = resp.kvs.add()
        kv.key, kv.value = b"cn", _seen(context)
        return resp

    async def Put(self, request: Any, context: Any) -> Any:
        raise NotImplementedError

    DeleteRange = Txn = Compact = Put


async def _probe_watch(requests: AsyncIterator[pb.WatchRequest], context: Any) -> AsyncIterator[pb.WatchResponse]:
    async for _ in requests:
        yield pb.WatchResponse(created=True, cancel_reason=_seen(context).decode())
        return


def _probe_handlers() -> tuple[grpc.GenericRpcHandler, ...]:
    return (
        grpc.method_handlers_generic_handler("etcdserverpb.Watch", {"Watch": grpc.stream_stream_rpc_method_handler(
            _probe_watch, pb.WatchRequest.FromString, pb.WatchResponse.SerializeToString)}),
        grpc.method_handlers_generic_handler("etcdserverpb.KV", {"Range": grpc.unary_unary_rpc_method_handler(
            ProbeKV().Range, pb.RangeRequest.FromString, pb.RangeResponse.SerializeToString)}),
    )


async def _ask(channel: grpc.aio.Channel, metadata: tuple[tuple[str, bytes], ...]) -> tuple[bytes, str]:
    rng = await pb_grpc.KVStub(channel).Range(pb.RangeRequest(key=b"cn"), metadata=metadata, timeout=5)  # type: ignore[no-untyped-call]
    call = pb_grpc.WatchStub(channel).Watch(metadata=metadata, timeout=5)  # type: ignore[no-untyped-call]
    await call.write(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"cn")))
    watched = ""
    async for resp in call:
        watched = resp.cancel_reason
        break
    call.cancel()
    return bytes(rng.kvs[0].value), watched


def test_common_name_direct_and_through_a_frontend_and_never_forged(pki: PKI) -> None:
    asyncio.run(_scenario(pki))


async def _scenario(pki: PKI) -> None:
    sockdir = tempfile.mkdtemp(prefix="petcd-cn-")
    pair = load_key_pair(str(pki.server.cert), str(pki.server.key))
    mtls = server_credentials(pair, load_ca(str(pki.ca.cert)), True)
    ca, cert, key = pki.ca.cert.read_bytes(), pki.client.cert.read_bytes(), pki.client.key.read_bytes()
    client_creds = grpc.ssl_channel_credentials(ca, key, cert)
    servers: list[grpc.aio.Server] = []
    try:
        # the member: probes on its private socket (local credentials), on a TLS port and on a plain one
        member = grpc.aio.server()
        member.add_generic_rpc_handlers(_probe_handlers())
        member.add_secure_port(f"unix:{sockdir}/member.sock", grpc.local_server_credentials(grpc.LocalConnectionType.UDS))
        direct_tls = member.add_secure_port("127.0.0.1:0", mtls)
        direct_plain = member.add_insecure_port("127.0.0.1:0")
        await member.start()
        servers.append(member)
        dispatcher = Dispatcher()
        dispatcher.add_servicer(pb.DESCRIPTOR.services_by_name["KV"], ProbeKV())
        links = LinkServer(dispatcher, lambda _i: None)
        await links.start(f"{sockdir}/link.sock")
        # a front-end with client certificates, and one on a plain port
        frontends = []
        for client_certs in (True, False):
            link = await MemberLink.connect(f"{sockdir}/link.sock", 0)
            relay = grpc.aio.secure_channel(f"unix:{sockdir}/member.sock",
                                            grpc.local_channel_credentials(grpc.LocalConnectionType.UDS))
            fe = grpc.aio.server()
            add_handlers(fe, link, relay, client_certs=client_certs)
            port = fe.add_secure_port("127.0.0.1:0", mtls) if client_certs else fe.add_insecure_port("127.0.0.1:0")
            await fe.start()
            servers.append(fe)
            frontends.append(port)

        async def through(port: int, secure: bool, md: tuple[tuple[str, bytes], ...]) -> tuple[bytes, str]:
            target = f"127.0.0.1:{port}"
            ch = grpc.aio.secure_channel(target, client_creds) if secure else grpc.aio.insecure_channel(target)
            async with ch:
                return await _ask(ch, md)

        fe_tls, fe_plain = frontends
        for md in ((), FORGED):
            # through a front-end: unary over the link, Watch over the private socket
            assert await through(fe_tls, True, md) == (b"alice", "alice")
            # served by the member itself over TLS
            assert await through(direct_tls, True, md) == (b"alice", "alice")
            # no certificate: nobody, whatever the client claims
            assert await through(fe_plain, False, md) == (b"<none>", "<none>")
            assert await through(direct_plain, False, md) == (b"<none>", "<none>")
        await links.stop()
    finally:
        for s in servers:
            await s.stop(None)
        shutil.rmtree(sockdir, ignore_errors=True)


@pytest.mark.parametrize("kind", [b"insecure", b"ssl"])
def test_reserved_key_is_ignored_outside_the_private_paths(kind: bytes) -> None:
    class Ctx:
        def auth_context(self) -> dict[str, list[bytes]]:
            return {"transport_security_type": [kind]}

        def invocation_metadata(self) -> tuple[tuple[str, bytes], ...]:
            return FORGED

    assert client_common_name(Ctx()) is None
