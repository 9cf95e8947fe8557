"""etcdctl 3.5.1's user / role / permission / auth commands, and every request kind's permission
errors, against real etcd 3.5.1 and petcd (front-ends on, so forwarded calls are covered): the
same script on both, outputs compared after normalising ids and revisions. Then both restart
and auth must have survived."""

from __future__ import annotations

import pytest

from tests.auth_server.common import ROOT, Side, Step, ctl, run_steps
from tests.harness import ServerGroup

pytestmark = pytest.mark.etcd

A = "alice:apw"
B = "bob:bpw"
DENIED = "etcdserver: permission denied"

SETUP: list[Step] = [
    ctl("auth", "status"),
    ctl("auth", "enable", rc=1, expect="etcdserver: root user does not exist"),
    ctl("user", "add", "root", "--new-user-password=123456", expect="User root created"),
    ctl("user", "add", "root:other", rc=1, expect="etcdserver: user name already exists"),
    # (etcdctl's `auth enable` grants root the root role itself when it lacks it: gRPC tests that)
    ctl("user", "add", A),
    ctl("user", "add", B),
    ctl("user", "add", "nopw", "--no-password"),
    ctl("user", "list"),
    ctl("user", "list", "-w", "json"),
    ctl("user", "get", "root"),
    ctl("user", "get", "nobody", rc=1, expect="etcdserver: user name not found"),
    ctl("role", "add", "r1"),
    ctl("role", "add", "r1", rc=1, expect="etcdserver: role name already exists"),
    ctl("role", "add", "r2", "-w", "json"),
    ctl("role", "list"),
    ctl("role", "get", "r1"),
    ctl("role", "get", "nosuch", rc=1, expect="etcdserver: role name not found"),
    ctl("role", "grant-permission", "r1", "read", "k1"),
    ctl("role", "grant-permission", "r1", "write", "p/", "--prefix"),
    ctl("role", "grant-permission", "r1", "readwrite", "rw/", "--prefix"),
    ctl("role", "grant-permission", "r1", "readwrite", "z", "--from-key"),
    ctl("role", "grant-permission", "r1", "read", "a", "c"),
    ctl("role", "grant-permission", "r1", "readwrite", "tmp"),
    ctl("role", "grant-permission", "r1", "write", "tmp"),  # an update of the same key
    ctl("role", "grant-permission", "nosuch", "read", "k", rc=1, expect="etcdserver: role name not found"),
    ctl("role", "get", "r1"),
    ctl("role", "get", "r1", "-w", "json"),
    ctl("role", "revoke-permission", "r1", "tmp"),
    ctl("role", "revoke-permission", "r1", "tmp", rc=1, expect="etcdserver: permission is not granted to the role"),
    ctl("role", "revoke-permission", "nosuch", "k", rc=1, expect="etcdserver: role name not found"),
    ctl("user", "grant-role", "alice", "r1"),
    ctl("user", "grant-role", "alice", "r1"),  # granted twice: accepted
    ctl("user", "grant-role", "alice", "nosuch", rc=1, expect="etcdserver: role name not found"),
    ctl("user", "grant-role", "nobody", "r1", rc=1, expect="etcdserver: user name not found"),
    ctl("user", "grant-role", "bob", "r2"),
    ctl("user", "revoke-role", "bob", "r2"),
    ctl("user", "revoke-role", "bob", "r2", rc=1, expect="etcdserver: role is not granted to the user"),
    ctl("user", "get", "alice", "--detail"),
    ctl("user", "get", "alice", "-w", "json"),
    ctl("user", "passwd", "bob", "--interactive=false", stdin="bpw2\n"),
    ctl("user", "passwd", "bob", "--interactive=false", stdin="bpw\n"),
    ctl("user", "delete", "nopw"),
    ctl("user", "delete", "nopw", rc=1, expect="etcdserver: user name not found"),
    ctl("role", "delete", "r2"),
    ctl("role", "delete", "r2", rc=1, expect="etcdserver: role name not found"),
    ctl("user", "grant-role", "root", "root"),
    ctl("auth", "enable", expect="Authentication Enabled"),
    ctl("auth", "enable", user=ROOT),
]

ENABLED: list[Step] = [
    ctl("auth", "status", rc=1),
    ctl("auth", "status", user=ROOT),
    ctl("auth", "status", user=A, rc=1, expect=DENIED),
    ctl("put", "k1", "v", rc=1, expect="etcdserver: user name is empty"),
    ctl("get", "k1", rc=1, expect="etcdserver: user name is empty"),
    ctl("put", "k1", "v", user="root:wrong", rc=2, expect="authentication failed, invalid user ID or password"),
    ctl("put", "k1", "v", user="nobody:x", rc=2, expect="authentication failed, invalid user ID or password"),
    ctl("put", "k1", "v1", user=ROOT),
    ctl("put", "b", "v", user=ROOT),
    ctl("put", "p/x", "v", user=ROOT),
    # read on k1 only
    ctl("get", "k1", user=A),
    ctl("get", "k1", "-w", "json", user=A),
    ctl("put", "k1", "v2", user=A, rc=1, expect=DENIED),
    ctl("get", "k2", user=A, rc=1, expect=DENIED),
    ctl("get", "a", "c", user=A),
    ctl("get", "a", "d", user=A, rc=1, expect=DENIED),
    ctl("get", "k1", "--consistency=s", user=A),
    # write on p/
    ctl("put", "p/y", "v", user=A),
    ctl("put", "p/y", "v", "--prev-kv", user=A, rc=1, expect=DENIED),
    ctl("get", "p/y", user=A, rc=1, expect=DENIED),
    ctl("del", "p/y", user=A),
    ctl("del", "p/x", "--prev-kv", user=A, rc=1, expect=DENIED),
    ctl("del", "p/", "--prefix", user=A),
    ctl("put", "rw/a", "1", user=A),
    ctl("get", "rw/", "--prefix", user=A),
    ctl("put", "zz", "1", user=A),
    ctl("get", "zz", "--from-key", user=A),
    ctl("put", "y", "1", user=A, rc=1, expect=DENIED),
    # txns: every compare and the ops of both branches are checked
    ctl("txn", user=A, stdin='value("rw/a") = "1"\n\nput rw/b 2\n\nput rw/c 3\n\n'),
    ctl("txn", user=A, stdin='value("rw/a") = "1"\n\nput rw/b 2\n\nput secret 3\n\n', rc=1, expect=DENIED),
    ctl("txn", user=A, stdin='value("rw/a") = "1"\n\nput secret 2\n\nput rw/c 3\n\n', rc=1, expect=DENIED),
    ctl("txn", user=A, stdin='value("secret") = "1"\n\nput rw/b 2\n\n\n', rc=1, expect=DENIED),
    ctl("txn", user=A, stdin='value("rw/a") = "1"\n\nget k1\n\nget k2\n\n', rc=1, expect=DENIED),
    ctl("txn", user=A, stdin='value("rw/a") = "1"\n\nget k1\n\n\n'),
    ctl("txn", user=A, stdin='\ndel p/ --prefix\n\n\n'),
    # bob has no roles
    ctl("get", "k1", user=B, rc=1, expect=DENIED),
    # leases: revoke needs write on every attached key
    ctl("lease", "grant", "600", user=B),
    ctl("lease", "list", user=B),
    # management: admin only, but oneself and one's roles may be read
    ctl("user", "get", "alice", user=A),
    ctl("user", "get", "bob", user=A, rc=1, expect=DENIED),
    ctl("role", "get", "r1", user=A),
    ctl("role", "get", "root", user=A, rc=1, expect=DENIED),
    ctl("user", "list", user=A, rc=1, expect=DENIED),
    ctl("role", "list", user=A, rc=1, expect=DENIED),
    ctl("user", "add", "eve:x", user=A, rc=1, expect=DENIED),
    ctl("role", "add", "r9", user=A, rc=1, expect=DENIED),
    ctl("auth", "disable", user=A, rc=1, expect=DENIED),
    ctl("user", "list", user=ROOT),
    ctl("user", "delete", "root", user=ROOT, rc=1, expect="etcdserver: invalid auth management"),
    ctl("user", "revoke-role", "root", "root", user=ROOT, rc=1, expect="etcdserver: invalid auth management"),
    ctl("role", "delete", "root", user=ROOT, rc=1, expect="etcdserver: invalid auth management"),
    # maintenance and cluster: defrag, hashkv, snapshot and member changes are admin only
    ctl("defrag", user=A, rc=1, expect="auth: permission denied"),
    ctl("defrag", rc=1, expect="auth: user name is empty"),
    ctl("defrag", user=ROOT),
    ctl("endpoint", "hashkv", user=A, rc=1, expect="permission denied"),
    ctl("snapshot", "save", "/tmp/petcd-auth-test-snapshot.db", user=A, rc=5, expect="auth: permission denied"),
    ctl("member", "list", user=A),
    ctl("alarm", "list", user=A),
    ctl("member", "remove", "1234", user=A, rc=1, expect="permission denied"),
    ctl("member", "add", "x", "--peer-urls=http://127.0.0.1:1", user=A, rc=1, expect="permission denied"),
    ctl("compaction", "1", user=A),
    ctl("put", "k1", "v3", user=ROOT),
    ctl("get", "", "--prefix", "--keys-only", user=ROOT),
]

AFTER_RESTART: list[Step] = [
    ctl("auth", "status", user=ROOT),
    ctl("user", "list", user=ROOT),
    ctl("role", "get", "r1", user=ROOT),
    ctl("get", "k1", user=A),
    ctl("put", "k1", "v2", user=A, rc=1, expect=DENIED),
    ctl("get", "k1", rc=1, expect="etcdserver: user name is empty"),
    ctl("auth", "disable", user=ROOT, expect="Authentication Disabled"),
    ctl("auth", "status"),
    ctl("get", "k1"),
    ctl("auth", "disable"),
]


def test_auth_commands_and_permissions_like_etcd(servers: ServerGroup) -> None:
    etcd = servers.start("etcd")
    petcd = servers.start_target()
    ref, tgt = Side([etcd]), Side([petcd])
    run_steps(SETUP, ref, tgt)
    run_steps(ENABLED, ref, tgt)
    for s in (etcd, petcd):
        s.stop()
        s.spawn()
    # endpoint health cannot pass with auth on and no user: wait for an authenticated read
    for side in (ref, tgt):
        side.wait_ready(ROOT)
    run_steps(AFTER_RESTART, ref, tgt)
