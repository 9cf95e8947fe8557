"""``petcd-benchmark``: etcd 3.5's benchmark tool, for any etcd v3 cluster (petcd or etcd).

Exit codes: 0 when every request succeeded, 1 when some failed (they are listed in the summary's
error distribution) or the cluster could not be reached, 2 for bad flags or arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import math
import os
import random
import sys
import time
from collections.abc import Sequence

import grpc

from petcd.benchmark import cli
from petcd.benchmark.conn import (
    ConnSpec,
    DialError,
    TLSFiles,
    authenticate,
    error_text,
    leader_targets,
    parse_endpoint,
    stub,
)
from petcd.benchmark.loads import (
    KeepAliveLoad,
    Load,
    MixedLoad,
    PutLoad,
    RangeLoad,
    TxnPutLoad,
    check_key_space,
)
from petcd.benchmark.report import Formatter, go_duration
from petcd.benchmark.run import plan, run_jobs
from petcd.benchmark.watch import WatchLoad, run_watch
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as rpc

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _user_password(user: str) -> tuple[str, str]:
    name, colon, password = user.partition(":")
    if not colon:
        password = getpass.getpass("Password: ")
    return name, password


def connection(ns: argparse.Namespace) -> ConnSpec:
    tls = TLSFiles(ns.cert, ns.key, ns.cacert)
    try:
        targets = tuple(parse_endpoint(e, tls) for e in ns.endpoints.split(","))
    except ValueError as exc:
        raise cli.UsageError(str(exc), f"{cli.PROG} {ns.command}") from None
    spec = ConnSpec(targets, tls, ns.dial_timeout or cli.DEFAULT_DIAL_WAIT)

    async def prepare(spec: ConnSpec) -> ConnSpec:
        if ns.user:
            name, password = _user_password(ns.user)
            try:
                spec = await authenticate(spec, name, password)
            except grpc.aio.AioRpcError as exc:
                raise DialError(f"bad user information: {ns.user.partition(':')[0]} {error_text(exc)}") from None
        if ns.target_leader:
            spec = ConnSpec(await leader_targets(spec), spec.tls, spec.dial_timeout, spec.token)
        return spec

    return asyncio.run(prepare(spec)) if ns.user or ns.target_leader else spec


def build_load(ns: argparse.Namespace, rng: random.Random) -> Load:
    if ns.command in ("put", "txn-put", "mixed"):
        try:
            check_key_space(ns.key_size, ns.key_space_size)
        except ValueError as exc:
            raise cli.UsageError(str(exc), f"{cli.PROG} {ns.command}") from None
    value = rng.randbytes(ns.val_size) if hasattr(ns, "val_size") else b""
    if ns.command == "put":
        return PutLoad(ns.key_size, value, ns.key_space_size, ns.sequential_keys)
    if ns.command == "range":
        return RangeLoad(ns.range_key.encode(), ns.end_range.encode(), ns.consistency == "s")
    if ns.command == "txn-put":
        return TxnPutLoad(ns.key_size, value, ns.key_space_size, ns.txn_ops)
    if ns.command == "mixed":
        # no key: the whole keyspace, as etcd's txn-mixed reads it
        key, end = (ns.range_key.encode(), ns.end_range.encode()) if ns.range_key else (b"\0", b"\0")
        return MixedLoad(ns.key_size, value, ns.key_space_size, ns.rw_ratio, key, end, ns.limit,
                         ns.consistency == "s")
    return KeepAliveLoad()


def _hashkv(spec: ConnSpec, endpoint: str) -> str:
    async def go() -> str:
        ch = spec.channel(0)
        try:
            st = time.monotonic()
            h = await stub(rpc.MaintenanceStub, ch).HashKV(pb.HashKVRequest(revision=0), metadata=spec.metadata)
            took = time.monotonic() - st
            status = await stub(rpc.MaintenanceStub, ch).Status(pb.StatusRequest(), metadata=spec.metadata)
        finally:
            await ch.close(None)
        return (f"HashKV Summary:\n\tHashKV: {h.hash}\n\tEndpoint: {endpoint}\n"
                f"\tTime taken to get hashkv: {go_duration(took)}\n\tDB size: {humanize_bytes(status.dbSize)}\n")

    return asyncio.run(go())


def humanize_bytes(n: int) -> str:
    """go-humanize's ``Bytes``: SI units, one decimal below 10."""
    if n < 10:
        return f"{n} B"
    sizes = ["B", "kB", "MB", "GB", "TB", "PB", "EB"]
    e = math.floor(math.log(n, 1000))
    val = math.floor(n / 1000**e * 10 + 0.5) / 10
    return f"{val:.1f} {sizes[e]}" if val < 10 else f"{val:.0f} {sizes[e]}"


def run_requests(ns: argparse.Namespace, spec: ConnSpec, rng: random.Random) -> int:
    load = build_load(ns, rng)
    if ns.command in ("range", "mixed"):
        print(f"bench with {'linearizable' if ns.consistency == 'l' else 'serializable'} range", flush=True)
    jobs = plan(spec, load, conns=ns.conns, clients=ns.clients, total=ns.total, rate=ns.rate, procs=ns.procs,
                seed=rng.randrange(2**32), sample=ns.sample,
                compact_interval=ns.compact_interval if ns.command == "put" else 0.0,
                compact_delta=ns.compact_index_delta if ns.command == "put" else 1000)
    outcome = run_jobs(jobs)
    total = outcome.end - outcome.start
    fmt = Formatter(ns.precise)
    reports = outcome.reports
    if ns.command == "mixed":
        read, write = reports["read"], reports["write"]
        print(f"Total Read Ops: {read.count}\nDetails:" + fmt.summary(read, total, sample=ns.sample))
        print(f"Total Write Ops: {write.count}\nDetails:" + fmt.summary(write, total, sample=ns.sample))
    else:
        text = fmt.summary(reports[load.reports[0]], total, sample=ns.sample)
        # etcd's tool ends put and txn-put with Println, range and lease-keepalive with Printf
        print(text, end="\n" if ns.command in ("put", "txn-put") else "")
    if ns.command == "put" and ns.check_hashkv:
        print(_hashkv(spec, ns.endpoints.split(",")[0].strip()))
    failed = any(r.errors for r in reports.values())
    return EXIT_FAILED if failed else EXIT_OK


def run_watch_cmd(ns: argparse.Namespace, spec: ConnSpec, rng: random.Random) -> int:
    conns = min(ns.clients, ns.conns)
    wanted = 1 + ns.streams // 100
    if conns < wanted:
        print(f"warning: grpc limits 100 streams per client connection, have {conns} but need {wanted}",
              file=sys.stderr)
    load = WatchLoad(ns.streams, ns.watch_per_stream, ns.watched_key_total, ns.put_total, ns.put_rate,
                     ns.key_size, ns.key_space_size, ns.sequential_keys, ns.event_timeout)
    try:
        check_key_space(ns.key_size, ns.key_space_size)
    except ValueError as exc:
        raise cli.UsageError(str(exc), f"{cli.PROG} watch") from None
    out = asyncio.run(run_watch(load, spec, conns=ns.conns, clients=ns.clients, seed=rng.randrange(2**32)))
    fmt = Formatter(ns.precise)
    print("Watch creation summary:\n" + fmt.summary(out.create, out.create_total), end="")
    print("Watch events received summary:\n" + fmt.summary(out.events, out.events_total), end="")
    return EXIT_FAILED if out.create.errors or out.events.errors else EXIT_OK


def run(argv: Sequence[str]) -> int:
    try:
        ns = cli.parse(argv)
        spec = connection(ns)
        rng = random.Random(os.urandom(16))
        if ns.command == "watch":
            return run_watch_cmd(ns, spec, rng)
        return run_requests(ns, spec, rng)
    except cli.UsageError as exc:
        sys.stdout.flush()
        where = exc.command or cli.PROG
        print(f"Error: {exc}\nRun '{where} --help' for usage.", file=sys.stderr)
        return EXIT_USAGE
    except DialError as exc:
        sys.stdout.flush()
        print(f"Error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def main() -> None:
    sys.exit(run(sys.argv[1:]))
