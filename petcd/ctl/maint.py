"""lease, member, endpoint, alarm, defrag, move-leader, snapshot save, version (etcdctl 3.5)."""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from petcd.ctl.base import API_VERSION, VERSION, B, Env, I, S
from petcd.ctl.cli import (
    EXIT_BAD_ARGS,
    EXIT_BAD_CONNECTION,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    Command,
    CtlExit,
    Flag,
    Runner,
    go_duration,
    parse_go_int,
    parse_go_uint,
)
from petcd.ctl.client import Client, RpcFailure
from petcd.ctl.printer import EpHashKV, EpHealth, EpStatus, err, humanize_bytes, out
from petcd.proto.etcdserverpb import rpc_pb2 as pb

ALARM_GET = pb.AlarmRequest.GET
ALARM_DEACTIVATE = pb.AlarmRequest.DEACTIVATE


def lease_arg(arg: str) -> int:
    try:
        return parse_go_int(arg, 16)
    except ValueError as exc:
        raise CtlExit(EXIT_BAD_ARGS, f"bad lease ID arg ({exc}), expecting ID in Hex") from None


def member_arg(arg: str) -> int:
    try:
        return parse_go_uint(arg, 16)
    except ValueError as exc:
        raise CtlExit(EXIT_BAD_ARGS, f"bad member ID arg ({exc}), expecting ID in Hex") from None


# --- lease ---------------------------------------------------------------------------------------
def lease_grant(env: Env) -> int:
    if len(env.args) != 1:
        raise CtlExit(EXIT_BAD_ARGS, "lease grant command needs TTL argument")
    try:
        ttl = parse_go_int(env.args[0])
    except ValueError as exc:
        raise CtlExit(EXIT_BAD_ARGS, f"bad TTL ({exc})") from None
    display = env.display()
    with env.client() as c:
        try:
            resp = c.unary("Lease", "LeaseGrant", pb.LeaseGrantRequest(TTL=ttl))
        except RpcFailure as exc:
            raise CtlExit(EXIT_ERROR, f"failed to grant lease ({exc})") from None
    display.grant(resp)
    return 0


def lease_revoke(env: Env) -> int:
    if len(env.args) != 1:
        raise CtlExit(EXIT_BAD_ARGS, "lease revoke command needs 1 argument")
    lid = lease_arg(env.args[0])
    display = env.display()
    with env.client() as c:
        try:
            resp = c.unary("Lease", "LeaseRevoke", pb.LeaseRevokeRequest(ID=lid))
        except RpcFailure as exc:
            raise CtlExit(EXIT_ERROR, f"failed to revoke lease ({exc})") from None
    display.revoke(lid, resp)
    return 0


def lease_timetolive(env: Env) -> int:
    if len(env.args) != 1:
        raise CtlExit(EXIT_BAD_ARGS, "lease timetolive command needs lease ID as argument")
    lid = lease_arg(env.args[0])
    display = env.display()
    keys = env.inv.bool("keys")
    with env.client() as c:
        try:
            # etcdctl gives this call no deadline
            resp = c.unary("Lease", "LeaseTimeToLive", pb.LeaseTimeToLiveRequest(ID=lid, keys=keys), timeout=None)
        except RpcFailure as exc:
            raise CtlExit(EXIT_BAD_CONNECTION, str(exc)) from None
    display.timetolive(resp, keys)
    return 0


def lease_list(env: Env) -> int:
    display = env.display()
    with env.client() as c:
        try:
            resp = c.unary("Lease", "LeaseLeases", pb.LeaseLeasesRequest())
        except RpcFailure as exc:
            raise CtlExit(EXIT_BAD_CONNECTION, str(exc)) from None
    display.leases(resp)
    return 0


def lease_keepalive(env: Env) -> int:
    if len(env.args) != 1:
        raise CtlExit(EXIT_BAD_ARGS, "lease keep-alive command needs lease ID as argument")
    lid = lease_arg(env.args[0])
    display = env.display()
    client = env.client()
    wake: queue.Queue[bool] = queue.Queue()

    def requests() -> Iterator[pb.LeaseKeepAliveRequest]:
        while True:
            yield pb.LeaseKeepAliveRequest(ID=lid)
            if not wake.get():
                return

    try:
        for resp in client.stream("Lease", "LeaseKeepAlive", requests()):
            if resp.TTL <= 0:
                if env.inv.bool("once"):
                    raise CtlExit(EXIT_BAD_CONNECTION, "etcdserver: requested lease not found")
                break
            display.keepalive(resp)
            sys.stdout.flush()
            if env.inv.bool("once"):
                return 0
            # clientv3 renews a third of the way through the TTL
            threading.Timer(max(resp.TTL / 3.0, 0.5), lambda: wake.put(True)).start()
    except RpcFailure as exc:
        raise CtlExit(EXIT_BAD_CONNECTION, str(exc)) from None
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        wake.put(False)
        client.close()
    if display.fmt == "simple":
        out(f"lease {lid:016x} expired or revoked.\n")
    return 0


# --- member --------------------------------------------------------------------------------------
def member_add(env: Env) -> int:
    args = env.args
    if not args:
        raise CtlExit(EXIT_BAD_ARGS, "member name not provided")
    if len(args) > 1:
        ev = "too many arguments"
        for s in args:
            if s.lower().startswith("http"):
                ev += f", did you mean --peer-urls={s}"
        raise CtlExit(EXIT_BAD_ARGS, ev)
    name = args[0]
    peer_urls = env.inv.text("peer-urls")
    if not peer_urls:
        raise CtlExit(EXIT_BAD_ARGS, "member peer urls not provided")
    display = env.display()
    with env.client() as c:
        resp = c.unary("Cluster", "MemberAdd",
                       pb.MemberAddRequest(peerURLs=peer_urls.split(","), isLearner=env.inv.bool("learner")))
    display.member_add(resp)
    if display.fmt == "simple":
        out("\n" + member_env(name, peer_urls, resp))
    return 0


def initial_cluster(name: str, new_id: int, members: Sequence[pb.Member]) -> str:
    conf = [f"{name if m.ID == new_id else m.name}={u}" for m in members for u in m.peerURLs]
    return ",".join(conf)


def member_env(name: str, peer_urls: str, resp: pb.MemberAddResponse) -> str:
    from petcd.ctl.cli import go_quote

    return (f"ETCD_NAME={go_quote(name)}\n"
            f"ETCD_INITIAL_CLUSTER={go_quote(initial_cluster(name, resp.member.ID, resp.members))}\n"
            f"ETCD_INITIAL_ADVERTISE_PEER_URLS={go_quote(peer_urls)}\n"
            'ETCD_INITIAL_CLUSTER_STATE="existing"\n')


def _one_member(env: Env) -> int:
    if len(env.args) != 1:
        raise CtlExit(EXIT_BAD_ARGS, "member ID is not provided")
    return member_arg(env.args[0])


def member_remove(env: Env) -> int:
    mid = _one_member(env)
    display = env.display()
    with env.client() as c:
        resp = c.unary("Cluster", "MemberRemove", pb.MemberRemoveRequest(ID=mid))
    display.member_changed("removed from", mid, resp)
    return 0


def member_update(env: Env) -> int:
    mid = _one_member(env)
    peer_urls = env.inv.text("peer-urls")
    if not peer_urls:
        raise CtlExit(EXIT_BAD_ARGS, "member peer urls not provided")
    display = env.display()
    with env.client() as c:
        resp = c.unary("Cluster", "MemberUpdate", pb.MemberUpdateRequest(ID=mid, peerURLs=peer_urls.split(",")))
    display.member_changed("updated in", mid, resp)
    return 0


def member_promote(env: Env) -> int:
    mid = _one_member(env)
    display = env.display()
    with env.client() as c:
        resp = c.unary("Cluster", "MemberPromote", pb.MemberPromoteRequest(ID=mid))
    display.member_changed("promoted in", mid, resp)
    return 0


def member_list(env: Env) -> int:
    display = env.display()
    with env.client() as c:
        resp = c.member_list()
    display.member_list(resp)
    return 0


# --- endpoint ------------------------------------------------------------------------------------
def check_health(env: Env, ep: str) -> EpHealth:
    """etcdctl's health check: a linearizable get of "health" (permission denied counts as
    healthy), then no active alarm."""
    try:
        cli = Client(env.config([ep]), logger="client")
    except CtlExit as exc:
        return EpHealth(ep, False, "", exc.message or "")
    start = time.monotonic()
    with cli:
        try:
            cli.unary("KV", "Range", pb.RangeRequest(key=b"health"))
            h = EpHealth(ep, True, go_duration(time.monotonic() - start))
        except RpcFailure as exc:
            h = EpHealth(ep, False, go_duration(time.monotonic() - start), str(exc))
            if str(exc) == "etcdserver: permission denied":
                h = EpHealth(ep, True, h.took)
        if h.health:
            try:
                alarms = cli.unary("Maintenance", "Alarm", pb.AlarmRequest(action=ALARM_GET)).alarms
                if alarms:
                    names = {1: "NOSPACE ", 2: "CORRUPT "}
                    h = EpHealth(ep, False, h.took, "Active Alarm(s): " + "".join(names.get(a.alarm, "UNKNOWN ")
                                                                                  for a in alarms))
            except RpcFailure:
                h = EpHealth(ep, False, h.took, "Unable to fetch the alarm list")
    return h


def endpoint_health(env: Env) -> int:
    display = env.display()
    eps = env.cluster_endpoints()
    results: queue.Queue[EpHealth] = queue.Queue()
    threads = [threading.Thread(target=lambda e=ep: results.put(check_health(env, e))) for ep in eps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    hs = [results.get() for _ in eps]
    display.endpoint_health(hs)
    if any(h.error for h in hs):
        raise CtlExit(EXIT_ERROR, "unhealthy cluster")
    return 0


def endpoint_status(env: Env) -> int:
    eps = env.cluster_endpoints()
    failed = False
    with env.client() as c:
        display = env.display()
        ss = []
        for ep in eps:
            try:
                ss.append(EpStatus(ep, c.status(ep)))
            except RpcFailure as exc:
                failed = True
                err(f"Failed to get the status of endpoint {ep} ({exc})\n")
    display.endpoint_status(ss)
    return EXIT_ERROR if failed else 0


def endpoint_hashkv(env: Env) -> int:
    eps = env.cluster_endpoints()
    last: RpcFailure | None = None
    with env.client() as c:
        display = env.display()
        hs = []
        for ep in eps:
            try:
                hs.append(EpHashKV(ep, c.unary("Maintenance", "HashKV",
                                               pb.HashKVRequest(revision=env.inv.int("rev")), endpoint=ep)))
            except RpcFailure as exc:
                last = exc
                err(f"Failed to get the hash of endpoint {ep} ({exc})\n")
    display.endpoint_hashkv(hs)
    if last is not None:
        raise CtlExit(EXIT_ERROR, str(last))
    return 0


# --- alarm, defrag, move-leader, snapshot, version -----------------------------------------------
def alarm_list(env: Env) -> int:
    if env.args:
        raise CtlExit(EXIT_BAD_ARGS, "alarm list command accepts no arguments")
    display = env.display()
    with env.client() as c:
        resp = c.unary("Maintenance", "Alarm", pb.AlarmRequest(action=ALARM_GET))
    display.alarm(resp)
    return 0


def disarm_all(c: Client) -> pb.AlarmResponse:
    """clientv3's AlarmDisarm of every alarm: list them, deactivate each; no header in the answer."""
    ret = pb.AlarmResponse()
    for a in c.unary("Maintenance", "Alarm", pb.AlarmRequest(action=ALARM_GET)).alarms:
        d = c.unary("Maintenance", "Alarm",
                    pb.AlarmRequest(action=ALARM_DEACTIVATE, memberID=a.memberID, alarm=a.alarm))
        ret.alarms.extend(d.alarms)
    return ret


def alarm_disarm(env: Env) -> int:
    if env.args:
        raise CtlExit(EXIT_BAD_ARGS, "alarm disarm command accepts no arguments")
    display = env.display()
    with env.client() as c:
        resp = disarm_all(c)
    display.alarm(resp)
    return 0


def defrag(env: Env) -> int:
    if env.inv.text("data-dir"):
        raise CtlExit(EXIT_BAD_ARGS, "petcdctl defrag --data-dir is not offered: stop the member and use petcdutl")
    if env.inv.bool("safe"):
        from petcd.ctl.chores import safe_defrag

        return safe_defrag(env)
    failures = 0
    eps = env.cluster_endpoints()
    with env.client() as c:
        for ep in eps:
            try:
                c.unary("Maintenance", "Defragment", pb.DefragmentRequest(), endpoint=ep)
                out(f"Finished defragmenting etcd member[{ep}]\n")
            except RpcFailure as exc:
                failures += 1
                err(f"Failed to defragment etcd member[{ep}] ({exc})\n")
    return EXIT_ERROR if failures else 0


def move_leader(env: Env) -> int:
    if len(env.args) != 1:
        raise CtlExit(EXIT_BAD_ARGS, "move-leader command needs 1 argument")
    try:
        target = parse_go_uint(env.args[0], 16)
    except ValueError as exc:
        raise CtlExit(EXIT_BAD_ARGS, str(exc)) from None
    eps = env.endpoints()
    display = env.display()
    for ep in eps:
        with env.client([ep]) as c:
            st = c.status(ep)
            if st.header.member_id == st.leader:
                resp = c.unary("Maintenance", "MoveLeader", pb.MoveLeaderRequest(targetID=target), endpoint=ep)
                display.move_leader(st.leader, target, resp)
                return 0
    raise CtlExit(EXIT_BAD_ARGS, f"no leader endpoint given at [{' '.join(eps)}]")


def snapshot_save(env: Env) -> int:
    if len(env.args) != 1:
        raise CtlExit(EXIT_BAD_ARGS, "snapshot save expects one argument")
    path = env.args[0]
    eps = env.endpoints()
    if len(eps) != 1:
        raise CtlExit(EXIT_INTERRUPTED, f"snapshot must be requested to one selected node, not multiple [{' '.join(eps)}]")
    timeout = env.inv.seconds("command-timeout") if "command-timeout" in env.inv.changed else None
    part = path + ".part"
    ep = eps[0]
    try:
        f = open(part, "wb")
    except OSError as exc:
        why = (exc.strerror or str(exc)).lower()
        raise CtlExit(EXIT_INTERRUPTED, f"could not open {part} (open {part}: {why})") from None
    info("snapshot/v3_snapshot.go:68", "created temporary db file", path=part)
    start = time.monotonic()
    size = 0
    try:
        with env.client() as c, f:
            stream = c.stream("Maintenance", "Snapshot", pb.SnapshotRequest(), timeout=timeout)
            first = True
            for chunk in stream:
                if first:
                    info("v3/maintenance.go:211", "opened snapshot stream; downloading", logger="client")
                    info("snapshot/v3_snapshot.go:76", "fetching snapshot", endpoint=ep)
                    first = False
                f.write(chunk.blob)
                size += len(chunk.blob)
            info("v3/maintenance.go:219", "completed snapshot read; closing", logger="client")
            f.flush()
            os.fsync(f.fileno())
        took = time.monotonic() - start
        info("snapshot/v3_snapshot.go:91", "fetched snapshot", endpoint=ep, size=humanize_bytes(size),
             took="now" if took < 1 else f"{int(took)} second{'s' if int(took) > 1 else ''} ago")
        os.replace(part, path)
        info("snapshot/v3_snapshot.go:100", "saved", path=path)
    except (RpcFailure, OSError) as exc:
        f.close()
        if os.path.exists(part):
            os.unlink(part)  # never leave a partial snapshot that could pass for a backup
        raise CtlExit(EXIT_INTERRUPTED, str(exc)) from None
    out(f"Snapshot saved at {path}\n")
    return 0


def info(caller: str, msg: str, logger: str = "", **fields: str) -> None:
    """One of etcdctl's zap info lines on stderr (snapshot save logs its steps)."""
    import json

    line: dict[str, object] = {"level": "info", "ts": time.time()}
    if logger:
        line["logger"] = logger
    line.update(caller=caller, msg=msg, **fields)
    err(json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n")


def version(env: Env) -> int:
    out(f"etcdctl version: {VERSION}\nAPI version: {API_VERSION}\n")
    return 0


def _r(fn: Callable[[Env], int]) -> Runner:
    return lambda inv: fn(Env(inv))


def commands() -> list[Command]:
    lease = Command("lease <subcommand>", "Lease related commands").add(
        Command("grant <ttl>", "Creates leases", _r(lease_grant)),
        Command("revoke <leaseID>", "Revokes leases", _r(lease_revoke)),
        Command("timetolive <leaseID> [options]", "Get lease information", _r(lease_timetolive),
                flags=[B("keys", "Get keys attached to this lease")]),
        Command("list", "List all active leases", _r(lease_list)),
        Command("keep-alive [options] <leaseID>", "Keeps leases alive (renew)", _r(lease_keepalive),
                flags=[B("once", "Resets the keep-alive time to its original value and cobrautl.Exits immediately")]),
    )
    from petcd.ctl.chores import member_replace

    member = Command("member <subcommand>", "Membership related commands").add(
        Command("add <memberName> [options]", "Adds a member into the cluster", _r(member_add),
                flags=[S("peer-urls", "", "comma separated peer URLs for the new member."),
                       B("learner", "indicates if the new member is raft learner")]),
        Command("remove <memberID>", "Removes a member from the cluster", _r(member_remove)),
        Command("update <memberID> [options]", "Updates a member in the cluster", _r(member_update),
                flags=[S("peer-urls", "", "comma separated peer URLs for the updated member.")]),
        Command("list", "Lists all members in the cluster", _r(member_list),
                long="When --write-out is set to simple, this command prints out comma-separated member lists "
                     "for each endpoint.\nThe items in the lists are ID, Status, Name, Peer Addrs, Client Addrs, "
                     "Is Learner.\n"),
        Command("promote <memberID>", "Promotes a non-voting member in the cluster", _r(member_promote),
                long="Promotes a non-voting learner member to a voting one in the cluster.\n"),
        Command("replace <memberName> [options]",
                "[petcdctl] Replaces a member: remove, add, print the new member's start command",
                _r(member_replace),
                flags=[S("peer-urls", "", "comma separated peer URLs for the new member."),
                       S("client-urls", "", "the new member's client URLs, for its start command"),
                       S("data-dir", "", "the new member's (empty) data directory, for its start command"),
                       B("force", "replace even a member that is healthy")]),
    )
    endpoint = Command("endpoint <subcommand>", "Endpoint related commands",
                       persistent=[B("cluster", "use all endpoints from the cluster member list")]).add(
        Command("health", "Checks the healthiness of endpoints specified in `--endpoints` flag",
                _r(endpoint_health)),
        Command("status", "Prints out the status of endpoints specified in `--endpoints` flag",
                _r(endpoint_status),
                long="When --write-out is set to simple, this command prints out comma-separated status lists for "
                     "each endpoint.\nThe items in the lists are endpoint, ID, version, db size, is leader, is "
                     "learner, raft term, raft index, raft applied index, errors.\n"),
        Command("hashkv", "Prints the KV history hash for each endpoint in --endpoints", _r(endpoint_hashkv),
                persistent=[I("rev", 0, "maximum revision to hash (default: all revisions)")]),
    )
    alarm = Command("alarm <subcommand>", "Alarm related commands").add(
        Command("disarm", "Disarms all alarms", _r(alarm_disarm)),
        Command("list", "Lists all alarms", _r(alarm_list)),
    )
    defrag_cmd = Command("defrag", "Defragments the storage of the etcd members with given endpoints",
                         _r(defrag),
                         flags=[S("data-dir", "", "Optional. If present, defragments a data directory not in use by etcd."),
                                B("safe", "[petcdctl] one member at a time, leader last, only fragmented members, "
                                          "waiting for each to be healthy"),
                                Flag("min-free", "int", 100 * 1024 * 1024,
                                     "[petcdctl] --safe: defragment a member whose dbSize - dbSizeInUse is at least "
                                     "this many bytes"),
                                Flag("min-free-ratio", "string", "0.5",
                                     "[petcdctl] --safe: ... or whose free share of dbSize is at least this")],
                         persistent=[B("cluster", "use all endpoints from the cluster member list")])
    snapshot = Command("snapshot <subcommand>", "Manages etcd node snapshots").add(
        Command("save <filename>", "Stores an etcd node backend snapshot to a given file", _r(snapshot_save)),
    )
    return [
        lease, member, endpoint, alarm, defrag_cmd,
        Command("move-leader <transferee-member-id>", "Transfers leadership to another etcd cluster member.",
                _r(move_leader)),
        snapshot,
        Command("version", "Prints the version of etcdctl", _r(version)),
    ]
