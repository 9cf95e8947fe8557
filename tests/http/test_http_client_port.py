"""HTTP/1 and gRPC on the same client URL, as etcd serves them (petcd.http.clientport)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from petcd.http.clientport import PREFACE, classify
from tests.harness import LOOPBACK, Etcdctl, Server, ServerGroup, free_ports, server_group
from tests.http.helpers import raw
from tests.http.helpers import request as http_request
from tests.http.test_http_endpoints import CLIENT_CASES


def test_classify() -> None:
    assert classify(PREFACE) == "grpc"
    assert classify(PREFACE + b"\x00\x00") == "grpc"
    assert classify(PREFACE[:5]) == "more"
    assert classify(b"GET /health HTTP/1.1\r\nHost: x\r\n") == "http"
    assert classify(b"POST /v3/kv/put HTTP/1.0\n") == "http"
    assert classify(b"GET /health HT") == "more"
    assert classify(b"GARBAGE\r\n") == "close"
    assert classify(b"PRX") == "more"  # cmux too waits for the end of the first line
    assert classify(b"PRX\r\n") == "close"
    assert classify(b"x" * 9000) == "close"


@pytest.fixture(scope="module", params=["frontends", "member"])
def servers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    # petcd's defaults: HTTP/1 and gRPC share the client URL, as in etcd
    extra = [] if request.param == "frontends" else ["--client-frontends=0"]
    with server_group(tmp_path_factory.mktemp("port")) as group:
        yield group.start("etcd"), group.start_target(extra_args=extra)


@pytest.mark.parametrize(("method", "path"), CLIENT_CASES)
def test_client_url_serves_http_as_etcd(servers: tuple[Server, Server], method: str, path: str) -> None:
    etcd, petcd = servers
    want = http_request(etcd.client_url, method, path)
    got = http_request(petcd.client_url, method, path)
    assert got.shape() == want.shape()
    assert got.header_names() == want.header_names()


def test_grpc_and_gateway_on_the_same_port(servers: tuple[Server, Server]) -> None:
    _, petcd = servers
    ctl = Etcdctl(petcd.endpoint)
    assert ctl.run("put", "port/k", "v1").rc == 0
    a = http_request(petcd.client_url, "POST", "/v3/kv/range", b'{"key":"cG9ydC9r"}')
    assert a.status == 200 and a.json()["kvs"][0]["value"] == "djE="
    out = ctl.run("get", "port/k")
    assert out.rc == 0 and out.stdout.splitlines() == ["port/k", "v1"]


@pytest.mark.parametrize("data", [b"GARBAGE\r\n\r\n", b"\x16\x03\x01\x00\xa5", b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n"])
def test_neither_http1_nor_http2(servers: tuple[Server, Server], data: bytes) -> None:
    # etcd's cmux closes a connection that is neither, without a word; HTTP/1 that goes wrong
    # later gets Go's bare 400
    etcd, petcd = servers
    assert raw(petcd.client_url, data) == raw(etcd.client_url, data)


def test_separate_http_urls_take_http_off_the_client_url(tmp_path_factory: pytest.TempPathFactory) -> None:
    """--listen-client-http-urls moves the HTTP side off the client URLs (etcd 3.6's rule)."""
    http_url = f"http://{LOOPBACK}:{free_ports(1)[0]}"
    group = ServerGroup(tmp_path_factory.mktemp("sep"))
    try:
        petcd = group.start_target(extra_args=["--client-urls-http", f"--listen-client-http-urls={http_url}"])
        assert http_request(http_url, "GET", "/health").status == 200
        assert not raw(petcd.client_url, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 200")
        assert Etcdctl(petcd.endpoint).run("put", "sep/k", "v").rc == 0
    finally:
        group.close()


def test_grpc_server_speaking_first_is_relayed(servers: tuple[Server, Server]) -> None:
    """The gRPC server sends its SETTINGS as soon as the relay connects; bytes that arrive before
    the relay is wired must still reach the client (connections used to hang in CONNECTING)."""
    import asyncio

    import grpc

    _, petcd = servers

    async def rounds() -> list[list[str]]:
        out = []
        for _ in range(4):
            chans = [grpc.aio.insecure_channel(petcd.endpoint, options=[("grpc.use_local_subchannel_pool", 1)])
                     for _ in range(8)]
            await asyncio.gather(*(asyncio.wait_for(c.channel_ready(), 10) for c in chans), return_exceptions=True)
            out.append([c.get_state().name for c in chans])
            for c in chans:
                await c.close()
        return out

    for states in asyncio.run(rounds()):
        assert states == ["READY"] * 8


def test_client_urls_serve_grpc_only_when_asked(tmp_path_factory: pytest.TempPathFactory) -> None:
    """With --client-urls-http=false the client port is gRPC's own (no relay): HTTP/1 gets no
    answer from the HTTP side there."""
    group = ServerGroup(tmp_path_factory.mktemp("grpconly"))
    try:
        petcd = group.start_target(extra_args=["--client-urls-http=false"])
        assert not raw(petcd.client_url, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 200")
        assert Etcdctl(petcd.endpoint).run("put", "default/k", "v").rc == 0
    finally:
        group.close()
