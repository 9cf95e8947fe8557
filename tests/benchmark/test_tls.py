"""petcd-benchmark over mutual TLS (--cacert, --cert, --key; https:// endpoints) against petcd and
etcd 3.5.1 serving https with certificates made at test time."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.benchmark.helpers import bench, summaries
from tests.harness import require_etcd
from tests.tls.certs import PKI, make_pki
from tests.tls.member import Member

pytestmark = pytest.mark.etcd


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    require_etcd()
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module", params=["etcd", "petcd"])
def member(request: pytest.FixtureRequest, pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Member]:
    m = Member(tmp_path_factory.mktemp("mtls"), kind=request.param,
               args=(f"--cert-file={pki.server.cert}", f"--key-file={pki.server.key}",
                     f"--trusted-ca-file={pki.ca.cert}", "--client-cert-auth"))
    m.start([f"--cacert={pki.ca.cert}", f"--cert={pki.client.cert}", f"--key={pki.client.key}"])
    yield m
    m.stop()


def test_put_and_range_over_mutual_tls(member: Member, pki: PKI) -> None:
    tls = ["--cacert", str(pki.ca.cert), "--cert", str(pki.client.cert), "--key", str(pki.client.key)]
    r = bench("--endpoints", member.client_url, *tls, "--conns", "2", "--clients", "4", "put", "--total", "40")
    assert r.rc == 0, r
    assert summaries(r.stdout)[0].ok == 40
    # a bare host:port is TLS too when TLS flags are given, as in etcd's tool
    bare = member.client_url.removeprefix("https://")
    r = bench("--endpoints", bare, *tls, "range", "k", "--total", "20", "--consistency", "s")
    assert r.rc == 0, r
    assert summaries(r.stdout)[0].ok == 20


def test_no_client_certificate_is_not_served(member: Member, pki: PKI) -> None:
    r = bench("--endpoints", member.client_url, "--cacert", str(pki.ca.cert), "--dial-timeout", "2s",
              "put", "--total", "5")
    assert r.rc == 1, r
    assert "dial error" in r.stderr or "Error distribution" in r.stdout, r
