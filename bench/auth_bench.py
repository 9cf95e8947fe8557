"""Auth benchmark: petcd against real etcd 3.5.1, same machine, same run.

Not a test. For each server kind (``--kinds``, default etcd then petcd), on a fresh single member
with default flags (bcrypt cost 10, simple tokens):

1. set-up over gRPC: root, ``--roles`` roles (100) with ``--perms-per-role`` key-range permissions
   each (10: 1,000 in all), one user holding every role, auth on;
2. ``Authenticate`` calls for ``--seconds`` with ``--auth-concurrency`` in flight (bcrypt compare
   on the server each time): authentications per second;
0. (before the set-up) the same puts without auth, for the cost of the checks;
3. puts as that user for ``--seconds`` with ``--put-concurrency`` in flight, each key inside one
   of the permissions (so every put is checked against the merged 1,000 ranges): puts per second.
   Every response is checked (a put must succeed; a token must come back).

    python bench/auth_bench.py [--seconds 10] [--kinds etcd,petcd] [--json out.json]

Servers are stopped by their own PID (SIGTERM, then SIGKILL), never by name.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from petcd.proto.authpb import auth_pb2 as authpb  # noqa: E402
from petcd.proto.etcdserverpb import rpc_pb2 as pb  # noqa: E402
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc  # noqa: E402
from tests.harness.procs import Kind, Server  # noqa: E402

USER, PASSWORD = "bench", "bench-pw"


def perm_key(role: int, perm: int) -> bytes:
    return b"auth/%03d/%02d/" % (role, perm)


async def setup(endpoint: str, roles: int, perms: int) -> None:
    async with grpc.aio.insecure_channel(endpoint) as ch:
        a = pb_grpc.AuthStub(ch)
        await a.UserAdd(pb.AuthUserAddRequest(name="root", password="root-pw"))
        await a.UserGrantRole(pb.AuthUserGrantRoleRequest(user="root", role="root"))
        await a.UserAdd(pb.AuthUserAddRequest(name=USER, password=PASSWORD))
        await asyncio.gather(*(a.RoleAdd(pb.AuthRoleAddRequest(name=f"r{r}")) for r in range(roles)))
        sem = asyncio.Semaphore(32)

        async def grant(r: int, p: int) -> None:
            key = perm_key(r, p)
            perm = authpb.Permission(permType=authpb.Permission.READWRITE, key=key, range_end=key[:-1] + b"0")
            async with sem:
                await a.RoleGrantPermission(pb.AuthRoleGrantPermissionRequest(name=f"r{r}", perm=perm))

        await asyncio.gather(*(grant(r, p) for r in range(roles) for p in range(perms)))
        for r in range(roles):
            await a.UserGrantRole(pb.AuthUserGrantRoleRequest(user=USER, role=f"r{r}"))
        await a.AuthEnable(pb.AuthEnableRequest())


async def run_for(seconds: float, concurrency: int, one: Any) -> tuple[int, float]:
    done = 0
    stop_at = time.monotonic() + seconds
    started = time.monotonic()

    async def worker(w: int) -> None:
        nonlocal done
        i = 0
        while time.monotonic() < stop_at:
            await one(w, i)
            done += 1
            i += 1

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return done, time.monotonic() - started


async def measure(endpoint: str, args: argparse.Namespace) -> dict[str, float]:
    async with grpc.aio.insecure_channel(endpoint) as ch:
        a = pb_grpc.AuthStub(ch)
        kv = pb_grpc.KVStub(ch)

        async def authenticate(_w: int, _i: int) -> None:
            resp = await a.Authenticate(pb.AuthenticateRequest(name=USER, password=PASSWORD), timeout=30)
            assert resp.token

        n_auth, t_auth = await run_for(args.seconds, args.auth_concurrency, authenticate)
        token = (await a.Authenticate(pb.AuthenticateRequest(name=USER, password=PASSWORD))).token
        md = (("token", token),)

        async def put(w: int, i: int) -> None:
            # keys spread over every role's ranges: the last role's as often as the first's
            r, p = (w * 7919 + i) % args.roles, i % args.perms_per_role
            key = perm_key(r, p) + b"%d-%d" % (w, i)
            resp = await kv.Put(pb.PutRequest(key=key, value=b"v" * 64), metadata=md, timeout=30)
            assert resp.header.revision > 0

        n_put, t_put = await run_for(args.seconds, args.put_concurrency, put)
        # a put outside every permission must be refused, or the figure means nothing
        try:
            await kv.Put(pb.PutRequest(key=b"outside", value=b"v"), metadata=md, timeout=10)
            raise AssertionError("a put outside the user's permissions succeeded")
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.PERMISSION_DENIED, err
    return {"authentications_per_s": n_auth / t_auth, "authentications": n_auth,
            "checked_puts_per_s": n_put / t_put, "checked_puts": n_put}


async def plain_puts(endpoint: str, args: argparse.Namespace) -> float:
    """The same puts before auth is on: what the checks cost is the difference."""
    async with grpc.aio.insecure_channel(endpoint) as ch:
        kv = pb_grpc.KVStub(ch)

        async def put(w: int, i: int) -> None:
            resp = await kv.Put(pb.PutRequest(key=b"plain/%d-%d" % (w, i), value=b"v" * 64), timeout=30)
            assert resp.header.revision > 0

        n, t = await run_for(args.seconds, args.put_concurrency, put)
    return n / t


def bench_kind(kind: Kind, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix=f"auth-bench-{kind}-") as tmp:
        server = Server(kind, Path(tmp), label=f"{kind}-bench")
        server.start()
        try:
            plain = asyncio.run(plain_puts(server.endpoint, args))
            t0 = time.monotonic()
            asyncio.run(setup(server.endpoint, args.roles, args.perms_per_role))
            setup_s = time.monotonic() - t0
            result = asyncio.run(measure(server.endpoint, args))
            result["setup_s"] = setup_s
            result["plain_puts_per_s"] = plain
            return result
        finally:
            server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--kinds", default="etcd,petcd")
    p.add_argument("--roles", type=int, default=100)
    p.add_argument("--perms-per-role", type=int, default=10)
    p.add_argument("--auth-concurrency", type=int, default=8)
    p.add_argument("--put-concurrency", type=int, default=64)
    p.add_argument("--json", default="")
    args = p.parse_args()
    results: dict[str, dict[str, float]] = {}
    for kind in args.kinds.split(","):
        results[kind] = bench_kind(kind, args)  # type: ignore[arg-type]
        r = results[kind]
        print(f"{kind:6s} authentications/s {r['authentications_per_s']:8.1f}   "
              f"permission-checked puts/s {r['checked_puts_per_s']:8.1f}   puts/s without auth "
              f"{r['plain_puts_per_s']:8.1f}   (set-up {r['setup_s']:.1f} s)",
              flush=True)
    if "etcd" in results and "petcd" in results:
        e, t = results["etcd"], results["petcd"]
        print(f"petcd/etcd: authentications {t['authentications_per_s'] / e['authentications_per_s']:.2f}, "
              f"checked puts {t['checked_puts_per_s'] / e['checked_puts_per_s']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
