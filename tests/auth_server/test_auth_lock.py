"""Lock with auth on (Election is wired the same way): it runs as the caller (etcd's v3lock / v3election pass the
call's context to their client), so root locks, and a user without permission on the lock's
keys is refused with etcd's text."""

from __future__ import annotations

import pytest

from tests.auth_server.common import ROOT, Side, ctl, enable_auth, run_steps
from tests.harness import ServerGroup

pytestmark = pytest.mark.etcd


def test_lock_with_auth_like_etcd(servers: ServerGroup) -> None:
    etcd, petcd = servers.start("etcd"), servers.start_target()
    for s in (etcd, petcd):
        enable_auth(s.endpoint, ("u", "upw"))
    run_steps([
        ctl("lock", "mylock", "echo", "locked", user=ROOT, expect="locked"),
        ctl("lock", "mylock", "echo", "locked", rc=1),
        ctl("lock", "mylock", "echo", "locked", user="u:upw", rc=1, expect="permission denied"),
    ], Side([etcd]), Side([petcd]))
