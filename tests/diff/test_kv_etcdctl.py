"""Differential tests of the KV commands: the same etcdctl script against real etcd and petcd.

Each scenario is data (see tests/harness/README.md). Real etcd runs every step first and must give
the declared exit code, so a scenario that passes etcd-vs-etcd (PETCD_DIFF_AGAINST=etcd) is a
correct expectation for petcd.

Not expressible with etcdctl 3.4, so covered over gRPC in test_kv_grpc.py instead: count_only and
the min/max mod/create revision filters (no such flags in 3.4), lease compares in `txn` (etcdctl 3.4
panics parsing them), compares over a key range, and nested txns.
"""

from __future__ import annotations

import pytest

from tests.harness import Scenario, ServerGroup, Step, assert_same, ctl, scenario, txn

MAX_REQUEST_BYTES = 8192
MAX_TXN_OPS = 8
SERVER_ARGS = (f"--max-request-bytes={MAX_REQUEST_BYTES}", f"--max-txn-ops={MAX_TXN_OPS}")

NOT_FOUND_KEY = "etcdserver: key not found"
FUTURE = "etcdserver: mvcc: required revision is a future revision"
COMPACTED = "etcdserver: mvcc: required revision has been compacted"
W = ("simple", "json", "fields")


def each_format(*args: str, rc: int = 0, expect: str = "") -> list[Step]:
    """The same command in simple, json and fields output."""
    return [ctl(*args, "-w", fmt, rc=rc, expect=expect) for fmt in W]


def puts(*pairs: tuple[str, str]) -> list[Step]:
    return [ctl("put", "{p}" + k, v) for k, v in pairs]


SCENARIOS: list[Scenario] = [
    scenario(
        "put-basic",
        ctl("put", "{p}a", "1", expect="OK"),
        *each_format("put", "{p}a", "2", "--prev-kv"),
        *each_format("put", "{p}new", "x", "--prev-kv"),
        *each_format("put", "{p}a", "3"),
        *each_format("get", "{p}a"),
        ctl("put", "{p}sp", "value with spaces"),
        ctl("put", "{p}nl", "line1\nline2"),
        ctl("put", "{p}empty", ""),
        *each_format("get", "{p}", "--prefix"),
        ctl("put", "{p}bin", "caf\u00e9\u2603"),
        ctl("get", "{p}bin", "--hex"),
        ctl("get", "{p}bin", "-w", "json"),
        ctl("put", "{p}stdin", stdin="from stdin"),
        ctl("get", "{p}stdin", "--print-value-only"),
        ctl("put", "{p}lead", "--", "-dash"),
        ctl("get", "{p}lead", "--print-value-only"),
    ),
    scenario(
        "put-ignore",
        ctl("put", "{p}k", "v1"),
        *each_format("put", "{p}k", "--ignore-value"),
        ctl("get", "{p}k", "-w", "json"),
        *each_format("put", "{p}k", "--ignore-value", "--prev-kv"),
        ctl("put", "{p}k", "v2", "--ignore-value", rc=128),
        ctl("put", "{p}missing", "--ignore-value", rc=1, expect=NOT_FOUND_KEY),
        ctl("put", "{p}missing", "--ignore-value", "-w", "json", rc=1, expect=NOT_FOUND_KEY),
        *each_format("put", "{p}k", "v3", "--ignore-lease"),
        ctl("put", "{p}missing", "v", "--ignore-lease", rc=1, expect=NOT_FOUND_KEY),
        ctl("put", "{p}k", "--ignore-value", "--ignore-lease"),
        ctl("put", "{p}missing", "--ignore-value", "--ignore-lease", rc=1, expect=NOT_FOUND_KEY),
        ctl("put", "{p}k", "v4", "--ignore-lease", "--lease=1234", rc=1),
        ctl("get", "{p}", "--prefix", "-w", "fields"),
    ),
    scenario(
        "put-lease",
        ctl("put", "{p}k", "v", "--lease=1234", rc=1, expect="etcdserver: requested lease not found"),
        ctl("put", "{p}k", "v", "--lease=1234", "-w", "json", rc=1, expect="lease not found"),
        ctl("put", "{p}k", "v", "--lease=zz", rc=128),
        ctl("lease", "grant", "600", capture=("L", r"lease ([0-9a-f]+) granted")),
        *each_format("put", "{p}k", "v", "--lease={L}"),
        *each_format("get", "{p}k"),
        *each_format("put", "{p}k", "v2", "--ignore-lease", "--prev-kv"),
        ctl("put", "{p}k", "v3", "--prev-kv", "-w", "json"),
        ctl("get", "{p}k", "-w", "fields"),
        ctl("put", "{p}k2", "--ignore-value", "--lease={L}", rc=1, expect=NOT_FOUND_KEY),
        ctl("put", "{p}k4", "v", "--lease={L}"),
        ctl("lease", "revoke", "{L}"),
        ctl("get", "{p}", "--prefix", "-w", "json"),
        ctl("put", "{p}k5", "v", "--lease={L}", rc=1, expect="lease not found"),
    ),
    scenario(
        "get-range",
        *puts(("a", "1"), ("ab", "2"), ("b", "3"), ("c", "4"), ("d", "5"), ("e/x", "6")),
        *each_format("get", "{p}a"),
        *each_format("get", "{p}", "--prefix"),
        *each_format("get", "{p}a", "{p}c"),
        ctl("get", "{p}c", "{p}a"),
        ctl("get", "{p}c", "{p}a", "-w", "json"),
        *each_format("get", "{p}nope"),
        *each_format("get", "{p}", "--prefix", "--limit=2"),
        ctl("get", "{p}", "--prefix", "--limit=6", "-w", "json"),
        ctl("get", "{p}", "--prefix", "--limit=7", "-w", "json"),
        *each_format("get", "{p}", "--prefix", "--keys-only"),
        ctl("get", "{p}", "--prefix", "--print-value-only"),
        ctl("get", "{p}", "--prefix", "--keys-only", "--print-value-only"),
        ctl("get", "{p}a", "--print-value-only", "-w", "json", rc=128),
        *each_format("get", "{p}", "--prefix", "--consistency=s"),
        ctl("get", "{p}a", "--consistency=l"),
        ctl("get", "{p}a", "--consistency=x", rc=4),
        ctl("get", "{p}e", "--prefix", "--keys-only", "--limit=1"),
        ctl("get", "{p}a", "{p}e", "--hex"),
        ctl("get", "{p}", "--prefix", "--from-key", rc=128, expect="cannot be set at the same time"),
        ctl("get", rc=128),
    ),
    scenario(
        "get-sort",
        # create order b, c, a; then modify a and b so that version/mod/value orders all differ
        *puts(("b", "x"), ("c", "z"), ("a", "y"), ("b", "w"), ("a", "v"), ("a", "u")),
        *[
            ctl("get", "{p}", "--prefix", f"--sort-by={target}", f"--order={order}")
            for target in ("KEY", "CREATE", "MODIFY", "VERSION", "VALUE")
            for order in ("ASCEND", "DESCEND")
        ],
        ctl("get", "{p}", "--prefix", "--sort-by=VERSION", "-w", "json"),
        ctl("get", "{p}", "--prefix", "--sort-by=MODIFY", "--order=DESCEND", "-w", "fields"),
        ctl("get", "{p}", "--prefix", "--order=DESCEND"),
        ctl("get", "{p}", "--prefix", "--order=DESCEND", "--limit=2", "-w", "json"),
        ctl("get", "{p}", "--prefix", "--sort-by=VALUE", "--limit=1", "--keys-only"),
        ctl("get", "{p}", "--prefix", "--sort-by=CREATE", "--order=DESCEND", "--limit=2"),
        ctl("get", "{p}", "--prefix", "--sort-by=FOO", rc=4, expect="bad sort target"),
        ctl("get", "{p}", "--prefix", "--order=UP", rc=4, expect="bad sort order"),
    ),
    scenario(
        "get-rev",
        ctl("put", "{p}k", "v1"),  # rev+1
        ctl("put", "{p}j", "w1"),  # rev+2
        ctl("put", "{p}k", "v2"),  # rev+3
        ctl("del", "{p}k"),  # rev+4
        ctl("put", "{p}k", "v3"),  # rev+5
        *[ctl("get", "{p}k", f"--rev={{rev+{n}}}") for n in range(0, 6)],
        *each_format("get", "{p}", "--prefix", "--rev={rev+3}"),
        ctl("get", "{p}", "--prefix", "--rev={rev+4}", "-w", "json"),
        ctl("get", "{p}k", "--rev={rev+5}", "-w", "fields"),
        *each_format("get", "{p}k", "--rev={rev+6}", rc=1, expect=FUTURE),
        ctl("get", "{p}k", "--rev={rev+1000}", rc=1, expect=FUTURE),
        ctl("get", "{p}k", "--rev=-1"),
        ctl("get", "{p}", "--prefix", "--rev={rev+3}", "--sort-by=MODIFY", "--order=DESCEND",
            "--keys-only"),
    ),
    scenario(
        "delete",
        *puts(("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5"), ("f/1", "6"), ("f/2", "7")),
        ctl("del", "{p}a"),
        ctl("del", "{p}a"),
        ctl("del", "{p}nope", "-w", "json"),
        ctl("del", "{p}nope", "-w", "fields"),
        *[s for fmt in W for s in (ctl("put", "{p}b", fmt), ctl("del", "{p}b", "--prev-kv", "-w", fmt))],
        *[s for fmt in W for s in (ctl("put", "{p}b", fmt), ctl("del", "{p}b", "-w", fmt))],
        ctl("del", "{p}c", "{p}e"),
        ctl("get", "{p}", "--prefix"),
        *[
            s
            for fmt in W
            for s in (*puts(("f/1", "6"), ("f/2", fmt)), ctl("del", "{p}f/", "--prefix", "--prev-kv", "-w", fmt))
        ],
        ctl("del", "{p}e", "-w", "json"),
        ctl("get", "{p}", "--prefix", "-w", "json"),
        ctl("del", "{p}", "--prefix", "--from-key", rc=128),
        ctl("del", rc=128),
    ),
    scenario(
        "from-key",
        *puts(("a", "1"), ("b", "2"), ("c", "3")),
        *each_format("get", "{p}b", "--from-key"),
        ctl("get", "", "--from-key", "--keys-only"),
        ctl("get", "", "--from-key", "--limit=2", "-w", "json"),
        ctl("get", "{p}b", "--from-key", "--rev={rev+2}"),
        ctl("get", "{p}b", "--from-key", "--sort-by=VALUE", "--order=DESCEND"),
        *[
            s
            for fmt in W
            for s in (*puts(("b", fmt), ("c", "3")), ctl("del", "{p}b", "--from-key", "--prev-kv", "-w", fmt))
        ],
        ctl("get", "", "--from-key", "-w", "json"),
        ctl("del", "", "--from-key"),
        ctl("get", "", "--from-key", "-w", "json"),
        fresh=True,
    ),
    scenario(
        "fresh-start",
        *each_format("get", "{p}k"),
        ctl("endpoint", "status", "-w", "json"),
        ctl("put", "{p}k", "v", "-w", "json"),
        ctl("get", "{p}k", "-w", "json"),
        fresh=True,
    ),
    scenario(
        "txn",
        *puts(("a", "1"), ("b", "2")),  # rev+1, rev+2
        ctl("put", "{p}a", "10"),  # rev+3: a version 2
        *[
            txn([cmp], ["get {p}a"], ["get {p}b"])
            for cmp in (
                'value("{p}a") = "10"', 'value("{p}a") = "1"', 'value("{p}a") > "0"',
                'value("{p}a") < "2"', 'value("{p}a") != "10"', 'value("{p}missing") = ""',
                'version("{p}a") = "2"', 'version("{p}a") > "1"', 'version("{p}a") < "2"',
                'version("{p}missing") = "0"', 'version("{p}b") != "1"',
                'create("{p}a") = "{rev+1}"', 'create("{p}b") > "{rev+1}"', 'create("{p}b") < "{rev+1}"',
                'create("{p}missing") = "0"',
                'mod("{p}a") = "{rev+3}"', 'mod("{p}a") > "{rev+2}"', 'mod("{p}b") < "{rev+2}"',
                'mod("{p}b") != "{rev+2}"',
            )
        ],
        txn(['value("{p}a") = "10"', 'version("{p}b") = "1"'], ["put {p}c 3", "del {p}b", "get {p}a"],
            ["put {p}fail 1"]),
        ctl("get", "{p}", "--prefix", "-w", "json"),
        txn(['value("{p}a") = "nope"'], ["put {p}x 1"], ["put {p}y 2", "get {p}", "del {p}c"]),
        ctl("get", "{p}", "--prefix"),
        *[
            txn(['mod("{p}a") > "0"'], ["put {p}a 11 --prev-kv", "get {p}a --rev={rev+1}",
                                         "del {p}y --prev-kv", "get {p} --prefix --keys-only"], [],
                flags=("-w", fmt))
            for fmt in ("json", "fields", "simple")
        ],
        *[
            txn(['value("{p}a") = "nope"'], [], ["get {p} --prefix --limit=1", "put {p}z 1"],
                flags=("-w", fmt))
            for fmt in W
        ],
        txn([], ["put {p}nocmp 1"], []),
        txn([], [], []),
        txn(['value("{p}a") = "11"'], [], []),
        ctl("get", "{p}", "--prefix", "-w", "json"),
    ),
    scenario(
        "txn-errors",
        ctl("put", "{p}a", "1"),
        txn([], [f"put {{p}}k{i} v" for i in range(MAX_TXN_OPS)], []),
        txn([], [f"put {{p}}k{i} v" for i in range(MAX_TXN_OPS + 1)], [], rc=1,
            expect="etcdserver: too many operations in txn request"),
        txn([], ["get {p}a"], [f"put {{p}}k{i} v" for i in range(MAX_TXN_OPS + 1)], rc=1,
            expect="too many operations"),
        txn([], ["put {p}a 1", "put {p}a 2"], [], rc=1, expect="etcdserver: duplicate key given in txn request"),
        txn([], [], ["put {p}a 1", "put {p}a 2"], rc=1, expect="duplicate key"),
        txn([], ["put {p}a 1", "del {p}a"], [], rc=1, expect="duplicate key"),
        txn([], ["del {p} --prefix", "put {p}a 2"], [], rc=1, expect="duplicate key"),
        txn([], ["put {p}a 2", "get {p}a", "get {p}a"], []),
        txn([], ["del {p}a", "del {p}a"], []),
        txn([], ["put {p}a 1", "put {p}a 2"], [], flags=("-w", "json"), rc=1, expect="duplicate key"),
        txn(['bogus("{p}a") = "1"'], [], [], rc=3, expect="malformed comparison"),
        txn([], ["frob {p}a"], [], rc=3, expect="invalid txn request"),
        ctl("get", "{p}", "--prefix", "--keys-only"),
    ),
    scenario(
        "compact",
        *puts(("k", "v1"), ("k", "v2"), ("j", "w1"), ("k", "v3"), ("j", "w2")),  # rev+1 .. rev+5
        ctl("compact", "{rev+2}"),
        ctl("get", "{p}k", "--rev={rev+1}", rc=1, expect=COMPACTED),
        *each_format("get", "{p}", "--prefix", "--rev={rev+1}", rc=1, expect=COMPACTED),
        *each_format("get", "{p}k", "--rev={rev+2}"),
        ctl("get", "{p}", "--prefix", "--rev={rev+3}", "-w", "json"),
        ctl("compact", "{rev+2}", rc=1, expect=COMPACTED),
        ctl("compact", "{rev+1}", rc=1, expect=COMPACTED),
        ctl("compact", "{rev+4}", "--physical"),
        ctl("get", "{p}", "--prefix", "--rev={rev+3}", rc=1, expect=COMPACTED),
        ctl("get", "{p}", "--prefix", "--rev={rev+4}", "-w", "json"),
        ctl("compact", "{rev+100}", rc=1, expect=FUTURE),
        ctl("compact", "{rev+5}", "-w", "json"),
        ctl("get", "{p}", "--prefix", "-w", "json"),
        txn([], ["get {p}k --rev={rev+1}"], [], rc=1, expect=COMPACTED),
        ctl("compact", "0", rc=1),
        ctl("compact", "abc", rc=1),
        ctl("compact", rc=128),
    ),
    scenario(
        "errors",
        ctl("put", "", "x", rc=1, expect="etcdserver: key is not provided"),
        ctl("put", "", "x", "-w", "json", rc=1, expect="key is not provided"),
        ctl("get", "", rc=1, expect="key is not provided"),
        ctl("del", "", rc=1, expect="key is not provided"),
        txn([], ['put "" x'], [], rc=1),
        ctl("put", "{p}big", "x" * (MAX_REQUEST_BYTES + 100), rc=1, expect="etcdserver: request is too large"),
        ctl("put", "{p}big", "x" * (MAX_REQUEST_BYTES - 200)),
        ctl("get", "{p}big", "--keys-only"),
        txn([], [f"put {{p}}t{i} {'y' * 2000}" for i in range(5)], [], rc=1, expect="request is too large"),
        ctl("put", "{p}k", rc=128),
        ctl("put", rc=128),
        ctl("get", "{p}k", "--rev=abc", rc=1),
        ctl("get", "{p}k", "--limit=-1"),
        ctl("get", "{p}", "--prefix", "-w", "json"),
    ),
    scenario(
        "endpoint",
        *each_format("endpoint", "status"),
        *each_format("endpoint", "health"),
        ctl("put", "{p}k", "v"),
        ctl("endpoint", "status", "-w", "json"),
    ),
    # Cluster service answers carry no revision in their header (etcd 3.4 and 3.5 alike).
    scenario("member", *each_format("member", "list")),
    scenario(
        "member-change",
        # a learner never counts for the quorum, so the member keeps serving after adding one
        ctl("member", "add", "x", "--learner", "--peer-urls=http://127.0.0.1:1", "-w", "json"),
        ctl("put", "{p}k", "v", "-w", "json"),  # a membership change burns no revision
        ctl("member", "list", capture=("L", r"([0-9a-f]+), unstarted")),
        ctl("member", "list", "-w", "json"),
        ctl("member", "promote", "{L}", rc=1, expect="can only promote a learner member which is in sync"),
        ctl("member", "add", "z", "--learner", "--peer-urls=http://127.0.0.1:3", rc=1,
            expect="too many learner members in cluster"),
        # another URL set, so another id (the same set in the same second repeats the id: "member ID
        # already exist")
        ctl("member", "add", "z", "--peer-urls=http://127.0.0.1:1,http://127.0.0.1:9", rc=1,
            expect="Peer URLs already exists"),
        ctl("member", "update", "{L}", "--peer-urls=http://127.0.0.1:2"),
        ctl("member", "update", "1234", "--peer-urls=http://127.0.0.1:4", rc=1, expect="member not found"),
        ctl("member", "remove", "{L}", "-w", "json"),
        ctl("member", "remove", "{L}", rc=1, expect="member not found"),
        ctl("member", "list", "-w", "json"),
        # a voter that never starts: 1 of 2 started, so etcd refuses any further removal (code Unknown)
        ctl("member", "add", "y", "--peer-urls=http://127.0.0.1:5"),
        ctl("member", "remove", "1234", rc=1, expect="not enough started members"),
        fresh=True,
    ),
]


@pytest.fixture(scope="module")
def server_args() -> tuple[str, ...]:
    return SERVER_ARGS


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_kv_etcdctl(sc: Scenario, request: pytest.FixtureRequest, servers: ServerGroup) -> None:
    if sc.fresh:
        args = sc.server_args or SERVER_ARGS
        etcd = servers.start("etcd", extra_args=args)
        target = servers.start_target(extra_args=args)
    else:
        etcd, target = request.getfixturevalue("both")
    assert_same(sc, etcd, target)

