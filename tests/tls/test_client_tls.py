"""Client TLS: https client URLs served by the front-ends and by the member itself, mutual TLS
with real etcdctl 3.5.1, and the refusals (wrong CA, expired, no client certificate, plain text),
compared with etcd 3.5.1 where the client sees something."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.harness import free_ports
from tests.tls.certs import PKI
from tests.tls.member import LOOPBACK, Member, etcdctl


def mtls_args(pki: PKI) -> tuple[str, ...]:
    return (f"--cert-file={pki.server.cert}", f"--key-file={pki.server.key}",
            f"--trusted-ca-file={pki.ca.cert}", "--client-cert-auth")


def client_flags(pki: PKI, files: object | None = None, ca: Path | None = None) -> list[str]:
    out = [f"--cacert={ca or pki.ca.cert}"]
    if files is not None:
        out += [f"--cert={files.cert}", f"--key={files.key}"]  # type: ignore[attr-defined]
    return out


@pytest.fixture(scope="module", params=["2", "0"], ids=["frontends", "member-direct"])
def mtls_member(request: pytest.FixtureRequest, pki: PKI, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[Member]:
    m = Member(tmp_path_factory.mktemp("mtls"), args=(*mtls_args(pki), f"--client-frontends={request.param}"))
    m.start(client_flags(pki, pki.client))
    yield m
    m.stop()


def test_etcdctl_with_client_certificate_puts_and_gets(mtls_member: Member, pki: PKI) -> None:
    flags = client_flags(pki, pki.client)
    put = etcdctl(mtls_member.client_url, "put", "k", "v", tls=flags)
    assert put.returncode == 0 and put.stdout == "OK\n", put
    get = etcdctl(mtls_member.client_url, "get", "k", tls=flags)
    assert get.stdout == "k\nv\n", get


def test_streams_work_over_mutual_tls(mtls_member: Member, pki: PKI) -> None:
    # Watch is relayed by the front-ends over the member's private socket, unary calls over the link
    async def watch_first_event() -> bytes:
        creds = grpc.ssl_channel_credentials(pki.ca.cert.read_bytes(), pki.client.key.read_bytes(),
                                              pki.client.cert.read_bytes())
        async with grpc.aio.secure_channel(f"{LOOPBACK}:{mtls_member.client_port}", creds) as ch:
            await pb_grpc.KVStub(ch).Put(pb.PutRequest(key=b"w", value=b"1"), timeout=5)  # type: ignore[no-untyped-call]
            call = pb_grpc.WatchStub(ch).Watch(timeout=10)  # type: ignore[no-untyped-call]
            await call.write(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"w", start_revision=1)))
            async for resp in call:
                if resp.events:
                    call.cancel()
                    return bytes(resp.events[0].kv.value)
        return b""

    assert asyncio.run(watch_first_event()) == b"1"


@pytest.mark.parametrize("who", ["stranger", "expired", "none"])
def test_bad_client_certificates_are_refused(mtls_member: Member, pki: PKI, who: str) -> None:
    files = {"stranger": pki.stranger, "expired": pki.expired, "none": None}[who]
    out = etcdctl(mtls_member.client_url, "put", "k", "bad", tls=client_flags(pki, files), dial="1s")
    assert out.returncode != 0
    assert "context deadline exceeded" in out.stderr
    assert etcdctl(mtls_member.client_url, "get", "k", tls=client_flags(pki, pki.client)).stdout != "k\nbad\n"


def test_server_certificate_from_another_ca_is_not_trusted(mtls_member: Member, pki: PKI) -> None:
    out = etcdctl(mtls_member.client_url, "get", "k", tls=client_flags(pki, pki.client, ca=pki.other.cert), dial="1s")
    assert out.returncode != 0 and "certificate signed by unknown authority" in out.stderr


def test_nothing_is_served_in_plain_text(mtls_member: Member, pki: PKI) -> None:
    # a plain-text gRPC client gets nowhere
    async def plain() -> grpc.StatusCode:
        async with grpc.aio.insecure_channel(f"{LOOPBACK}:{mtls_member.client_port}") as ch:
            try:
                await pb_grpc.KVStub(ch).Range(pb.RangeRequest(key=b"k"), timeout=2)  # type: ignore[no-untyped-call]
            except grpc.aio.AioRpcError as exc:
                return exc.code()
        return grpc.StatusCode.OK

    assert asyncio.run(plain()) == grpc.StatusCode.UNAVAILABLE
    # and what the port speaks is TLS 1.2 or 1.3, with the client certificate
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = ssl.create_default_context(cafile=str(pki.ca.cert))
        ctx.load_cert_chain(str(pki.client.cert), str(pki.client.key))
        ctx.minimum_version = ctx.maximum_version = version
        ctx.set_alpn_protocols(["h2"])
        with socket.create_connection((LOOPBACK, mtls_member.client_port), timeout=5) as s, \
                ctx.wrap_socket(s, server_hostname=LOOPBACK) as tls:
            assert tls.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
            assert tls.selected_alpn_protocol() == "h2"


def test_refusals_look_as_etcds(mtls_member: Member, pki: PKI, tmp_path: Path) -> None:
    # the same etcdctl commands against etcd 3.5.1 with the same flags: same exit codes and last lines
    etcd = Member(tmp_path / "etcd", kind="etcd", args=mtls_args(pki))
    etcd.start(client_flags(pki, pki.client))
    try:
        for files in (pki.client, pki.stranger, pki.expired, None):
            seen = []
            for m in (etcd, mtls_member):
                out = etcdctl(m.client_url, "get", "nokey", "--count-only", "-w", "simple",
                              tls=client_flags(pki, files), dial="1s", command="2s")
                seen.append((out.returncode, out.stdout, out.stderr.strip().splitlines()[-1:]))
            assert seen[0] == seen[1], (files, seen)
    finally:
        etcd.stop()


def test_unixs_url_is_served_with_tls_by_the_member(pki: PKI, tmp_path: Path) -> None:
    sock = f"localhost:{free_ports(1)[0]}"
    m = Member(tmp_path, args=(*mtls_args(pki), "--client-frontends=1"), more_client_urls=(f"unixs://{sock}",))
    m.start(client_flags(pki, pki.client))
    try:
        url = f"unixs://{sock}"
        flags = client_flags(pki, pki.client)
        # a unix socket path is relative to the member's directory
        out = etcdctl(url, "put", "u", "1", tls=flags, cwd=tmp_path)
        assert out.returncode == 0, out
        # the socket speaks TLS only: no client certificate, no answer
        assert etcdctl(url, "get", "u", tls=client_flags(pki), dial="1s", cwd=tmp_path).returncode != 0
        assert (tmp_path / sock).exists()
    finally:
        m.stop()


@pytest.mark.parametrize("frontends", ["1", "0"])
def test_client_cert_allowed_hostname(pki: PKI, tmp_path: Path, frontends: str) -> None:
    right = pki.ca.issue(tmp_path, "right", "bob", hosts=("client.example",))
    wrong = pki.ca.issue(tmp_path, "wrong", "eve", hosts=("other.example",))
    m = Member(tmp_path, args=(*mtls_args(pki), "--client-cert-allowed-hostname=client.example",
                               f"--client-frontends={frontends}"))
    m.start(client_flags(pki, right))
    try:
        assert etcdctl(m.client_url, "put", "h", "1", tls=client_flags(pki, right)).returncode == 0
        bad = etcdctl(m.client_url, "put", "h", "2", tls=client_flags(pki, wrong))
        assert bad.returncode != 0 and "--client-cert-allowed-hostname" in bad.stderr, bad
    finally:
        m.stop()
