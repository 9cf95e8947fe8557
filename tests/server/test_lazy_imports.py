"""A member with a default configuration does not import what only some flags need (issue 11:
start-up time): PyJWT and cryptography (JWT tokens, TLS), bcrypt (passwords), PyYAML
(--config-file), prometheus_client (the first /metrics scrape). Not importing them took 60-95 ms off
every start. Each check also loads the module through the path that needs it, so a wrong name
in the list cannot make the check pass by itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import grpc

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.harness import ServerGroup

REPO = Path(__file__).resolve().parents[2]
LAZY = ("jwt", "cryptography", "bcrypt", "yaml", "prometheus_client", "petcd.auth.jwt_tokens",
        "petcd.http.collector")


def _run(code: str, tmp_path: Path) -> dict[str, list[str]]:
    """Run ``code`` in a fresh interpreter on this checkout; it prints a JSON object."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    result: dict[str, list[str]] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_member_entry_module_leaves_the_optional_libraries_unimported(tmp_path: Path) -> None:
    (tmp_path / "petcd.yaml").write_text("name: m9\n")
    (tmp_path / "not-a-cert.pem").write_text("no certificate here\n")
    (tmp_path / "hs.key").write_bytes(b"a shared secret")
    got = _run(f"""
        import json, random, sys
        LAZY = {LAZY!r}
        def loaded():
            return [m for m in LAZY if m in sys.modules]
        steps = {{}}
        import petcd.server.main, petcd.frontend.process
        steps["entry"] = loaded()
        from petcd.config.server_config import parse_config
        cfg = parse_config([], {{}})
        from petcd.config import settings_from_config
        settings_from_config(cfg)
        from petcd.auth import new_token_provider
        from petcd.clock import ManualClock
        new_token_provider("simple", ManualClock(), random.Random(1))
        steps["default settings and tokens"] = loaded()
        parse_config(["--config-file=petcd.yaml"], {{}})
        steps["config file"] = loaded()
        from petcd.auth import passwords
        passwords.check_password(passwords.hash_password("pw", 4), "pw")
        steps["password"] = loaded()
        from petcd import tls
        try:
            tls.load_ca("not-a-cert.pem")
        except tls.TLSFileError:
            pass
        steps["ca file"] = loaded()
        new_token_provider("jwt,sign-method=HS256,priv-key=hs.key", ManualClock(), random.Random(1))
        steps["jwt"] = loaded()
        print(json.dumps(steps))
    """, tmp_path)
    assert got["entry"] == []
    assert got["default settings and tokens"] == []
    assert got["config file"] == ["yaml"]
    assert got["password"] == ["bcrypt", "yaml"]
    assert "cryptography" in got["ca file"] and "jwt" not in got["ca file"]
    assert {"jwt", "petcd.auth.jwt_tokens"} <= set(got["jwt"])


def _mapped_libraries(pid: int) -> set[str]:
    with open(f"/proc/{pid}/maps") as f:
        return {line.split()[-1] for line in f if line.rstrip().endswith(".so")}


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out += [int(c) for c in f.read().split()]
    return out


def test_a_default_member_serving_has_not_loaded_them(servers: ServerGroup) -> None:
    """The member process and its front-ends, after a put: no cryptography, bcrypt or yaml
    extension is mapped (the pure-Python ones cannot be seen from outside; the check above
    covers those)."""
    server = servers.start("petcd")
    with grpc.insecure_channel(server.endpoint) as ch:
        pb_grpc.KVStub(ch).Put(pb.PutRequest(key=b"k", value=b"v"), timeout=10)
    assert server.pid is not None
    pids = [server.pid, *_children(server.pid)]
    for pid in pids:
        libs = _mapped_libraries(pid)
        assert any("cygrpc" in lib for lib in libs), (pid, sorted(libs))  # the check sees extensions
        heavy = [lib for lib in libs if any(f"/{name}/" in lib for name in ("cryptography", "bcrypt", "yaml"))]
        assert heavy == [], (pid, heavy)
