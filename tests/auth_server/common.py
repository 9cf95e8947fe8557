"""Shared pieces of the auth differential tests: etcdctl steps run on real etcd 3.5.1 and on petcd
in lockstep, outputs compared after the harness's normalisation (ids, revisions, addresses)."""

from __future__ import annotations

import difflib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.harness import CtlResult, Etcdctl, Normaliser, Server, output_format

ROOT = "root:123456"


@dataclass(frozen=True)
class Step:
    args: tuple[str, ...]
    user: str | None = None
    stdin: str | None = None
    rc: int | None = None  # checked against real etcd, so a wrong expectation shows at once
    expect: str = ""  # substring of etcd's stdout + stderr

    def argv(self) -> list[str]:
        return [*self.args, *(["--user", self.user] if self.user else [])]


def ctl(*args: str, user: str | None = None, stdin: str | None = None, rc: int | None = None,
        expect: str = "") -> Step:
    return Step(tuple(args), user, stdin, rc, expect)


class Side:
    def __init__(self, servers: Sequence[Server], endpoints: Sequence[str] | None = None) -> None:
        self.servers = list(servers)
        self.ctl = Etcdctl(list(endpoints) if endpoints else [s.endpoint for s in servers])
        self.norm = Normaliser.for_servers(self.servers, base_revision=0)

    def wait_ready(self, user: str) -> None:
        wait_authenticated(self.ctl, user)

    def run(self, step: Step) -> tuple[CtlResult, CtlResult]:
        raw = self.ctl.run(*step.argv(), stdin=step.stdin)
        return raw, self.norm.result(raw, output_format(step.args))


def run_steps(steps: Sequence[Step], etcd: Side, petcd: Side) -> None:
    """Every step on etcd first (its rc / expect must hold), then on petcd; all differences are
    reported together."""
    diffs: list[str] = []
    for i, step in enumerate(steps, 1):
        ref_raw, ref = etcd.run(step)
        if (step.rc is not None and ref_raw.rc != step.rc) or step.expect not in ref_raw.stdout + ref_raw.stderr:
            raise AssertionError(f"step {i} is wrong against real etcd: {step.argv()}\n{ref_raw}")
        _, got = petcd.run(step)
        if got != ref:
            diff = "".join(difflib.unified_diff(str(ref).splitlines(True), str(got).splitlines(True),
                                                "etcd", "petcd"))
            diffs.append(f"step {i}: etcdctl {' '.join(step.argv())}\n{diff}")
    if diffs:
        raise AssertionError(f"{len(diffs)} of {len(steps)} steps differ:\n" + "\n".join(diffs[:8]))


def token(endpoint: str, name: str, password: str) -> str:
    with grpc.insecure_channel(endpoint) as ch:
        resp = pb_grpc.AuthStub(ch).Authenticate(pb.AuthenticateRequest(name=name, password=password), timeout=10)
    return str(resp.token)


def enable_auth(server_endpoint: str, *extra_users: tuple[str, str]) -> None:
    """root (password 123456, root role) and the given users, then auth on."""
    c = Etcdctl(server_endpoint)
    for args in (("user", "add", ROOT), ("user", "grant-role", "root", "root"),
                 *(("user", "add", f"{u}:{p}") for u, p in extra_users), ("auth", "enable")):
        res = c.run(*args)
        assert res.rc == 0, f"{args}: {res}"


def wait_authenticated(ctl: Etcdctl, user: str, timeout: float = 60.0) -> None:
    """Until an authenticated read succeeds (``endpoint health`` fails with auth on and no user)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        res = ctl.run("get", "health-probe", "--user", user, "--dial-timeout=1s", "--command-timeout=2s")
        if res.rc == 0:
            return
        last = str(res)
        time.sleep(0.2)
    raise AssertionError(f"no authenticated read within {timeout}s:\n{last}")
