"""The auth flags at startup: a --auth-token whose key cannot be used stops the member as it stops
etcd 3.5.1, and --bcrypt-cost decides the stored hashes (which never hold the password)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from petcd.auth import passwords
from petcd.backend import AUTH_USERS, Backend
from petcd.proto.authpb import auth_pb2 as authpb
from tests.harness import Etcdctl, HarnessError, Kind, Server, ServerGroup

pytestmark = pytest.mark.etcd


@pytest.mark.parametrize(("option", "error"), [
    ("jwt,sign-method=RS256,pub-key=/nonexistent/key.pub", "auth: invalid auth options"),
    ("jwt,sign-method=HS256", "auth: missing key data"),
    ("jwt,sign-method=RS256", "auth: missing key data"),
    ("foo", "auth: invalid auth options"),
])
def test_unusable_auth_token_stops_the_start_like_etcd(tmp_path: Path, option: str, error: str) -> None:
    for kind in ("etcd", "petcd"):
        k: Kind = kind  # type: ignore[assignment]
        server = Server(k, tmp_path / kind, extra_args=(f"--auth-token={option}",))
        with pytest.raises(HarnessError, match="rc=1"):
            server.start(timeout=30)
        assert error in server.log_tail(40), server.log_tail(40)


def test_bcrypt_cost_and_no_password_in_the_backend(servers: ServerGroup) -> None:
    server = servers.start("petcd", extra_args=("--bcrypt-cost=5",))
    res = Etcdctl(server.endpoint).run("user", "add", "u:a-secret-password")
    assert res.rc == 0, res
    # the backend commits its batch within --backend-batch-interval; a SIGTERM under load may end
    # in a SIGKILL, so give the commit time rather than rely on the shutdown's
    time.sleep(1.5)
    server.stop()
    db = server.data_dir / "member" / "snap" / "db"
    assert b"a-secret-password" not in db.read_bytes()
    be = Backend(str(db))
    try:
        user = authpb.User.FromString(be.get(AUTH_USERS, b"u") or b"")
    finally:
        be.close()
    assert user.password.startswith(b"$2a$05$")
    assert passwords.check_password(user.password, "a-secret-password")

