"""What serving HTTP/1 on the gRPC client port costs gRPC (petcd.http.clientport).

Not a test. For ``--repeat`` rounds, with the two modes interleaved within a round (so both see a
similar share of a machine whose load changes), starts a fresh single-member petcd with default
flags, either with ``--client-urls-http`` (``shared``: the client port sniffs each connection and
relays gRPC to the front-end's gRPC server) or without (``separate``: gRPC owns the client port,
as by default). Then over ``--channels``
gRPC connections: ``--puts`` puts with ``--concurrency`` in flight, then serializable gets for
``--get-seconds``. Prints ops/s and server CPU (member and front-ends) per op for each mode.

    python bench/http_sniff.py [--repeat 2] [--puts 6000] [--get-seconds 6]
    python bench/http_sniff.py --check-perf m      # etcdctl check perf in each mode, CPU per write
    python bench/http_sniff.py --relay-messages 20000   # the relay's own CPU per request/response
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for path in (REPO, REPO / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import grpc  # noqa: E402
from kv_compare import drive, loadavg  # noqa: E402

from petcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc  # noqa: E402
from tests.harness import LOOPBACK, free_ports  # noqa: E402
from tests.harness.procs import Server  # noqa: E402


async def measure(server: Server, args: argparse.Namespace) -> tuple[float, float, float, float]:
    assert server.pid is not None
    value = random.Random(7).randbytes(256)
    # a local subchannel pool each: separate TCP connections, spread over the front-ends
    channels = [grpc.aio.insecure_channel(server.endpoint, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(args.channels)]
    try:
        stubs = [rpc_pb2_grpc.KVStub(ch) for ch in channels]  # type: ignore[no-untyped-call]
        for ch in channels:
            await asyncio.wait_for(ch.channel_ready(), 30)

        async def put(_rng: random.Random, i: int) -> None:
            await stubs[i % len(stubs)].Put(rpc_pb2.PutRequest(key=b"k%08d" % i, value=value), timeout=30)

        async def get(rng: random.Random, _i: int) -> None:
            r = await stubs[rng.randrange(len(stubs))].Range(
                rpc_pb2.RangeRequest(key=b"k%08d" % rng.randrange(args.puts), serializable=True), timeout=30)
            assert len(r.kvs) == 1

        p = await drive(put, concurrency=args.concurrency, total=args.puts, seconds=120, pid=server.pid, rng_seed=1)
        g = await drive(get, concurrency=args.concurrency, total=None, seconds=args.get_seconds, pid=server.pid,
                        rng_seed=2)
    finally:
        for ch in channels:
            await ch.close()
    assert p.errors == 0 and g.errors == 0, (p.first_error, g.first_error)
    return (p.ops / p.seconds, p.server_cpu_s / p.ops * 1e6, g.ops / g.seconds, g.server_cpu_s / g.ops * 1e6)


_RELAY_CHILD = """
import asyncio, sys, uvloop
from petcd.http.clientport import ClientPort
async def main():
    port = ClientPort(sys.argv[1], sys.argv[1])
    await port.listen("127.0.0.1", int(sys.argv[2]), reuse_port=False)
    print("ready", flush=True)
    await asyncio.sleep(3600)
uvloop.run(main())
"""


def relay_cost(messages: int) -> float:
    """CPU microseconds the relay process spends per request/response pair: a client sends the
    HTTP/2 preface, then ``messages`` ping-pongs of 200 bytes through the relay to an echo server
    on a Unix socket. CPU time, not wall time, so other load on the machine matters little."""
    import os
    import socket
    import subprocess
    import threading

    sock_path = tempfile.mktemp(prefix="petcd-echo-", suffix=".sock")
    echo = socket.socket(socket.AF_UNIX)
    echo.bind(sock_path)
    echo.listen()

    def serve_echo() -> None:
        conn, _ = echo.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    threading.Thread(target=serve_echo, daemon=True).start()
    port = free_ports(1)[0]
    child = subprocess.Popen([sys.executable, "-c", _RELAY_CHILD, sock_path, str(port)], stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert child.stdout is not None and child.stdout.readline().startswith(b"ready")
        c = socket.create_connection((LOOPBACK, port))
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        c.sendall(preface)
        got = b""
        while len(got) < len(preface):
            got += c.recv(65536)
        msg = b"x" * 200

        def cpu() -> float:
            fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        before = cpu()
        for _ in range(messages):
            c.sendall(msg)
            n = 0
            while n < len(msg):
                n += len(c.recv(65536))
        used = cpu() - before
        c.close()
        return used / messages * 1e6
    finally:
        child.kill()
        child.wait()
        echo.close()
        os.unlink(sock_path)


def check_perf(load: str) -> None:
    from kv_compare import proc_cpu_seconds, run_check_perf

    root = Path(tempfile.mkdtemp(prefix="petcd-sniff-"))
    try:
        for mode in ("shared", "separate"):
            extra = ["--client-urls-http"] if mode == "shared" else []
            server = Server("petcd", root / mode, extra_args=extra)
            server.start()
            try:
                assert server.pid is not None
                cpu0 = proc_cpu_seconds(server.pid)
                r = run_check_perf(server, load)
                cpu = proc_cpu_seconds(server.pid) - cpu0
            finally:
                server.stop()
            print(f"check perf --load={load} {mode:8s} {r.verdict} writes/s {r.writes_per_s} "
                  f"server CPU {cpu:.1f} s (load {loadavg()})", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--relay-messages", type=int, default=0,
                    help="only measure the relay's CPU per request/response (e.g. 20000)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--puts", type=int, default=6000)
    ap.add_argument("--get-seconds", type=float, default=6.0)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--channels", type=int, default=4)
    ap.add_argument("--check-perf", default="", help="instead: etcdctl check perf --load=<this> in each mode, "
                    "server CPU per write")
    args = ap.parse_args()
    if args.check_perf:
        check_perf(args.check_perf)
        return
    if args.relay_messages:
        print(f"relay CPU per request/response: {relay_cost(args.relay_messages):.1f} us")
        return
    root = Path(tempfile.mkdtemp(prefix="petcd-sniff-"))
    results: dict[str, list[tuple[float, float, float, float]]] = {"shared": [], "separate": []}
    try:
        for r in range(args.repeat):
            for mode in ("shared", "separate") if r % 2 == 0 else ("separate", "shared"):
                extra = ["--client-urls-http"] if mode == "shared" else []
                server = Server("petcd", root / f"{mode}-{r}", extra_args=extra)
                server.start()
                try:
                    row = asyncio.run(measure(server, args))
                finally:
                    server.stop()
                results[mode].append(row)
                print(f"round {r} {mode:8s} puts/s {row[0]:7.0f} cpu/put {row[1]:6.0f} us  "
                      f"gets/s {row[2]:7.0f} cpu/get {row[3]:6.0f} us  (load {loadavg()})", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def mean(mode: str, i: int) -> float:
        return sum(row[i] for row in results[mode]) / len(results[mode])

    for i, name in enumerate(("puts/s", "server CPU us/put", "gets/s", "server CPU us/get")):
        s, d = mean("shared", i), mean("separate", i)
        print(f"{name:20s} shared {s:8.0f}  separate {d:8.0f}  shared/separate {s / d:5.3f}")


if __name__ == "__main__":
    main()
