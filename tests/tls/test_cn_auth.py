"""With --client-cert-auth and auth on, the verified client certificate's common name is the user
of a request that carries no token, as in etcd 3.5.1: the same etcdctl steps (no --user at all,
only certificates) against etcd and against petcd, with and without front-ends, give the same
answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tls.certs import PKI, Files
from tests.tls.member import Member, etcdctl
from tests.tls.test_client_tls import client_flags, mtls_args


def _steps(root: Files, alice: Files, nobody: Files) -> list[tuple[Files, tuple[str, ...]]]:
    return [
        (root, ("user", "add", "root", "--new-user-password=rootpw")),
        (root, ("user", "grant-role", "root", "root")),
        (root, ("user", "add", "alice", "--new-user-password=alicepw")),
        (root, ("role", "add", "kv")),
        (root, ("role", "grant-permission", "kv", "readwrite", "alice/", "--prefix=true")),
        (root, ("user", "grant-role", "alice", "kv")),
        (root, ("auth", "enable")),
        # the certificate's name decides from here on
        (alice, ("put", "alice/a", "1")),
        (alice, ("get", "alice/a")),
        (alice, ("put", "other", "1")),
        (alice, ("get", "other")),
        (alice, ("user", "list")),
        (nobody, ("put", "alice/b", "1")),
        (nobody, ("get", "alice/a")),
        (root, ("put", "other", "2")),
        (root, ("get", "other", "--print-value-only")),
        (root, ("user", "list")),
        # a token wins over the certificate: alice's certificate with root's password
        (alice, ("--user=root:rootpw", "put", "other", "3")),
        (root, ("--user=alice:alicepw", "put", "other", "4")),
        (root, ("auth", "disable")),
        (nobody, ("put", "free", "1")),
    ]


def _run(member: Member, pki: PKI, root: Files, alice: Files, nobody: Files) -> list[tuple[int, str, str]]:
    out = []
    for cert, args in _steps(root, alice, nobody):
        r = etcdctl(member.client_url, *args, tls=client_flags(pki, cert))
        last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
        out.append((r.returncode, r.stdout, last))
    return out


@pytest.mark.parametrize("frontends", ["2", "0"], ids=["frontends", "member-direct"])
def test_certificate_common_name_is_the_user_as_in_etcd(pki: PKI, tmp_path: Path, frontends: str) -> None:
    root = pki.ca.issue(tmp_path, "root-client", "root")
    nobody = pki.ca.issue(tmp_path, "nobody-client", "nobody")
    results = {}
    for kind in ("etcd", "petcd"):
        extra = () if kind == "etcd" else (f"--client-frontends={frontends}",)
        m = Member(tmp_path / kind, kind=kind, args=(*mtls_args(pki), *extra))
        m.start(client_flags(pki, root))
        try:
            results[kind] = _run(m, pki, root, pki.client, nobody)
        finally:
            m.stop()
    steps = _steps(root, pki.client, nobody)
    for (cert, args), want, got in zip(steps, results["etcd"], results["petcd"], strict=True):
        assert got == want, f"{cert.cert.name} {' '.join(args)}: etcd {want!r}, petcd {got!r}"
    # the comparison means something only if the names really decided
    denied = dict(zip([a for _, a in steps], results["petcd"], strict=True))
    assert denied[("put", "other", "1")][0] != 0
    assert denied[("put", "alice/a", "1")][0] == 0
