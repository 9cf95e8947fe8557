"""Peer TLS: members over https peer URLs with --peer-client-cert-auth, joining such a cluster
(member add, then --initial-cluster-state=existing), refusals for peers without a good
certificate, --peer-cert-allowed-cn, --peer-auto-tls."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import free_ports
from tests.tls.certs import PKI
from tests.tls.member import LOOPBACK, Member, etcdctl


def peer_args(pki: PKI, cert: object | None = None) -> tuple[str, ...]:
    files = cert or pki.peer
    return (f"--peer-cert-file={files.cert}", f"--peer-key-file={files.key}",  # type: ignore[attr-defined]
            f"--peer-trusted-ca-file={pki.ca.cert}", "--peer-client-cert-auth", "--client-frontends=0")


def cluster(root: Path, names: list[str], args: tuple[str, ...]) -> list[Member]:
    ports = free_ports(2 * len(names))
    initial = ",".join(f"{n}=https://{LOOPBACK}:{ports[2 * i + 1]}" for i, n in enumerate(names))
    return [Member(root / n, name=n, client_scheme="http", peer_scheme="https", args=args, initial_cluster=initial,
                   client_port=ports[2 * i], peer_port=ports[2 * i + 1]) for i, n in enumerate(names)]


@pytest.fixture(scope="module")
def tls_cluster(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Member]]:
    members = cluster(tmp_path_factory.mktemp("peers"), ["m1", "m2", "m3"], peer_args(pki))
    try:
        for m in members:
            m.spawn()
        for m in members:
            m.wait_ready(())
        yield members
    finally:
        for m in members:
            m.stop()


def test_three_members_replicate_over_mutual_tls(tls_cluster: list[Member]) -> None:
    m1, _, m3 = tls_cluster
    assert etcdctl(m1.client_url, "put", "k", "over-tls").returncode == 0
    assert etcdctl(m3.client_url, "get", "k", "--print-value-only").stdout == "over-tls\n"
    listed = etcdctl(m1.client_url, "member", "list").stdout
    assert listed.count("https://127.0.0.1:") == 3, listed


def test_peer_url_refuses_plain_text_and_foreign_certificates(tls_cluster: list[Member], pki: PKI) -> None:
    peer = f"https://{LOOPBACK}:{tls_cluster[0].peer_port}"
    ok = etcdctl(peer, "get", "k", "--print-value-only",
                 tls=[f"--cacert={pki.ca.cert}", f"--cert={pki.peer.cert}", f"--key={pki.peer.key}"])
    assert ok.stdout == "over-tls\n", ok  # the peer URL serves the client API too, as etcd's does
    for flags in ([f"--cacert={pki.ca.cert}"],
                  [f"--cacert={pki.ca.cert}", f"--cert={pki.stranger.cert}", f"--key={pki.stranger.key}"]):
        out = etcdctl(peer, "get", "k", tls=flags, dial="1s")
        assert out.returncode != 0 and "context deadline exceeded" in out.stderr
    plain = etcdctl(f"http://{LOOPBACK}:{tls_cluster[0].peer_port}", "get", "k", dial="1s")
    assert plain.returncode != 0


def _add_when_healthy(m: Member, *args: str) -> subprocess.CompletedProcess[str]:
    """`member add`, retried as an operator would while strict reconfig (on by default, as in
    etcd) answers "unhealthy cluster": the peers have not been connected for 5 s yet."""
    end = time.monotonic() + 30
    while True:
        added = etcdctl(m.client_url, "member", "add", *args)
        if added.returncode == 0:
            return added
        assert "unhealthy cluster" in added.stderr and time.monotonic() < end, added
        time.sleep(0.5)


def test_a_member_joins_over_https(tls_cluster: list[Member], pki: PKI, tmp_path: Path) -> None:
    m1 = tls_cluster[0]
    joining = cluster(tmp_path, ["m4"], peer_args(pki))[0]
    added = _add_when_healthy(m1, "m4", f"--peer-urls={joining.peer_url}")
    initial = next(line.split("=", 1)[1].strip('"') for line in added.stdout.splitlines()
                   if line.startswith("ETCD_INITIAL_CLUSTER="))
    joining.initial_cluster, joining.state = initial, "existing"
    joining.start(())
    try:
        assert etcdctl(joining.client_url, "get", "k", "--print-value-only").stdout == "over-tls\n"
        assert etcdctl(joining.client_url, "put", "k4", "from-m4").returncode == 0
        assert etcdctl(m1.client_url, "get", "k4", "--print-value-only").stdout == "from-m4\n"
    finally:
        joining.stop()
        mid = [line.split(",")[0] for line in etcdctl(m1.client_url, "member", "list").stdout.splitlines()
               if ", m4," in line]
        if mid:
            etcdctl(m1.client_url, "member", "remove", mid[0])


def test_a_member_with_a_foreign_certificate_cannot_join(tls_cluster: list[Member], pki: PKI, tmp_path: Path) -> None:
    m1 = tls_cluster[0]
    intruder = cluster(tmp_path, ["m5"], peer_args(pki, pki.stranger))[0]
    _add_when_healthy(m1, "m5", f"--peer-urls={intruder.peer_url}", "--learner")
    initial = ",".join([f"m1={m1.peer_url}", f"m5={intruder.peer_url}"])
    intruder.initial_cluster, intruder.state = initial, "existing"
    try:
        rc, out = intruder.run_to_exit(timeout=90)
        assert rc == 1 and "cannot join the existing cluster" in out, out[-2000:]
    finally:
        mid = [line.split(",")[0] for line in etcdctl(m1.client_url, "member", "list").stdout.splitlines()
               if ", m5," in line or "unstarted" in line]
        for m in mid:
            etcdctl(m1.client_url, "member", "remove", m)


def test_peer_cert_allowed_cn(pki: PKI, tmp_path: Path) -> None:
    m = cluster(tmp_path, ["m1"], (*peer_args(pki), "--peer-cert-allowed-cn=peer"))[0]
    m.start(())
    try:
        peer = f"https://{LOOPBACK}:{m.peer_port}"
        ok = etcdctl(peer, "put", "a", "1", tls=[f"--cacert={pki.ca.cert}", f"--cert={pki.peer.cert}",
                                                  f"--key={pki.peer.key}"])
        assert ok.returncode == 0, ok
        # alice's certificate is signed by the same CA but has the wrong CN
        bad = etcdctl(peer, "put", "a", "2", tls=[f"--cacert={pki.ca.cert}", f"--cert={pki.client.cert}",
                                                   f"--key={pki.client.key}"])
        assert bad.returncode != 0 and "--peer-cert-allowed-cn" in bad.stderr, bad
        assert etcdctl(m.client_url, "get", "a", "--print-value-only").stdout == "1\n"
    finally:
        m.stop()


def test_peer_auto_tls_cluster(tmp_path: Path) -> None:
    members = cluster(tmp_path, ["a1", "a2", "a3"], ("--peer-auto-tls", "--client-frontends=0"))
    try:
        for m in members:
            m.spawn()
        for m in members:
            m.wait_ready(())
        assert etcdctl(members[0].client_url, "put", "auto", "yes").returncode == 0
        assert etcdctl(members[2].client_url, "get", "auto", "--print-value-only").stdout == "yes\n"
        assert (members[1].data_dir / "fixtures" / "peer" / "cert.pem").is_file()
    finally:
        for m in members:
            m.stop()


@pytest.mark.parametrize("skip", [False, True])
def test_peer_client_certificate_must_name_its_address(pki: PKI, tmp_path: Path, skip: bool) -> None:
    # etcd refuses a peer whose certificate's SANs do not cover the address it connects from
    elsewhere = pki.ca.issue(tmp_path, "elsewhere", "peer", hosts=("10.9.9.9",))
    extra = ("--experimental-peer-skip-client-san-verification",) if skip else ()
    m = cluster(tmp_path, ["m1"], (*peer_args(pki), *extra))[0]
    m.start(())
    try:
        out = etcdctl(f"https://{LOOPBACK}:{m.peer_port}", "put", "a", "1",
                      tls=[f"--cacert={pki.ca.cert}", f"--cert={elsewhere.cert}", f"--key={elsewhere.key}"])
        if skip:
            assert out.returncode == 0, out
        else:
            assert out.returncode != 0 and "do not cover the peer's address 127.0.0.1" in out.stderr, out
    finally:
        m.stop()


def test_peer_cert_allowed_hostname(pki: PKI, tmp_path: Path) -> None:
    m = cluster(tmp_path, ["m1"], (*peer_args(pki), "--peer-cert-allowed-hostname=member.example"))
    right = pki.ca.issue(tmp_path, "right", "any", hosts=("member.example", "127.0.0.1"))
    wrong = pki.ca.issue(tmp_path, "wrong", "any", hosts=("other.example", "127.0.0.1"))
    # the member's own certificate (dialing itself is not needed for one member) only has to be valid
    m[0].start(())
    try:
        peer = f"https://{LOOPBACK}:{m[0].peer_port}"
        ok = etcdctl(peer, "put", "h", "1", tls=[f"--cacert={pki.ca.cert}", f"--cert={right.cert}", f"--key={right.key}"])
        assert ok.returncode == 0, ok
        bad = etcdctl(peer, "put", "h", "2", tls=[f"--cacert={pki.ca.cert}", f"--cert={wrong.cert}", f"--key={wrong.key}"])
        assert bad.returncode != 0 and "--peer-cert-allowed-hostname" in bad.stderr, bad
    finally:
        m[0].stop()
