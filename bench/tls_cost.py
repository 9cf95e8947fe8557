"""What TLS costs: puts and linearizable gets over http:// and over https:// with mutual TLS, for
petcd and for real etcd 3.5.1 in the same run on the same machine. Not a test.

For each kind and scheme: a fresh single member (default flags, loopback URLs; https with a
server certificate, --trusted-ca-file and --client-cert-auth, certificates made for the run),
then ``--seconds`` of puts and ``--seconds`` of single-key linearizable gets from this process
(grpc.aio, ``--channels`` connections, ``--concurrency`` requests in flight). Reported: requests
per second and the server's CPU time per request (the member and its front-ends), which is
less sensitive to the Python client and to other load on a shared machine.

    python bench/tls_cost.py [--seconds 10] [--channels 4] [--concurrency 64] [--kinds etcd,petcd]

Servers are stopped by their own PID.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from petcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc  # noqa: E402
from tests.tls.certs import PKI, make_pki  # noqa: E402
from tests.tls.member import LOOPBACK, Member  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its live children (petcd's front-ends)."""
    total = 0.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


async def load(channels: list[grpc.aio.Channel], concurrency: int, seconds: float, kind: str) -> int:
    stubs = [rpc_pb2_grpc.KVStub(ch) for ch in channels]  # type: ignore[no-untyped-call]
    deadline = time.monotonic() + seconds
    done = 0
    value = b"x" * 256

    async def worker(i: int) -> None:
        nonlocal done
        stub = stubs[i % len(stubs)]
        n = 0
        while time.monotonic() < deadline:
            key = b"bench/tls/%d/%d" % (i, n % 1000)
            if kind == "put":
                await stub.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=10)
            else:
                resp = await stub.Range(rpc_pb2.RangeRequest(key=b"bench/tls/0/0"), timeout=10)
                assert resp.kvs and resp.kvs[0].value == value
            n += 1
            done += 1

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return done


async def measure(m: Member, pki: PKI, tls: bool, args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    target = f"{LOOPBACK}:{m.client_port}"
    if tls:
        creds = grpc.ssl_channel_credentials(pki.ca.cert.read_bytes(), pki.client.key.read_bytes(),
                                             pki.client.cert.read_bytes())
        # distinct option values keep gRPC from sharing one connection between the channels
        channels = [grpc.aio.secure_channel(target, creds, options=[("petcd.bench.channel", i)])
                    for i in range(args.channels)]
    else:
        channels = [grpc.aio.insecure_channel(target, options=[("petcd.bench.channel", i)])
                    for i in range(args.channels)]
    out: dict[str, tuple[float, float]] = {}
    assert m.proc is not None
    try:
        await load(channels, args.concurrency, 1.0, "put")  # warm-up; also writes the key gets read
        for kind in ("put", "get"):
            cpu0, t0 = cpu_seconds(m.proc.pid), time.monotonic()
            n = await load(channels, args.concurrency, args.seconds, kind)
            cpu, wall = cpu_seconds(m.proc.pid) - cpu0, time.monotonic() - t0
            out[kind] = (n / wall, cpu / n * 1e6)
    finally:
        for ch in channels:
            await ch.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--channels", type=int, default=4)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--kinds", default="etcd,petcd")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="petcd-tls-bench-"))
    pki = make_pki(root / "pki")
    mtls = (f"--cert-file={pki.server.cert}", f"--key-file={pki.server.key}",
            f"--trusted-ca-file={pki.ca.cert}", "--client-cert-auth")
    ctl_tls = [f"--cacert={pki.ca.cert}", f"--cert={pki.client.cert}", f"--key={pki.client.key}"]
    results: dict[tuple[str, str], dict[str, tuple[float, float]]] = {}
    for kind in args.kinds.split(","):
        for scheme in ("http", "https"):
            m = Member(root / f"{kind}-{scheme}", kind=kind, client_scheme=scheme,
                       args=mtls if scheme == "https" else ())
            m.start(ctl_tls if scheme == "https" else [])
            try:
                results[(kind, scheme)] = asyncio.run(measure(m, pki, scheme == "https", args))
            finally:
                m.stop()
            r = results[(kind, scheme)]
            print(f"{kind:5} {scheme:5}  put {r['put'][0]:8.0f}/s {r['put'][1]:7.0f} us CPU/req   "
                  f"get {r['get'][0]:8.0f}/s {r['get'][1]:7.0f} us CPU/req", flush=True)
    print("\nhttps / http (throughput ratio; server CPU per request ratio)")
    for kind in args.kinds.split(","):
        h, s = results[(kind, "http")], results[(kind, "https")]
        print(f"{kind:5}  put {s['put'][0] / h['put'][0]:.2f} (CPU x{s['put'][1] / h['put'][1]:.2f})   "
              f"get {s['get'][0] / h['get'][0]:.2f} (CPU x{s['get'][1] / h['get'][1]:.2f})")


if __name__ == "__main__":
    main()
