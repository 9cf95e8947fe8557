"""systemd readiness: petcd started as contrib/systemd/petcd.service starts it (the settings of
contrib/systemd/petcd.env as ETCD_* variables, NOTIFY_SOCKET set) sends READY=1 on a real unix
datagram socket once it serves clients, and STOPPING=1 when it shuts down."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from petcd.server.sdnotify import notify, socket_address
from tests.bbolt.etcd351 import ETCD, etcdctl, keyspace
from tests.harness import LOOPBACK, Server, free_ports
from tests.harness.procs import clean_env

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "contrib" / "systemd" / "petcd.service"
ENV_FILE = ROOT / "contrib" / "systemd" / "petcd.env"
NOTEBOOK_PEERS = {"etcd-1": 2381, "etcd-2": 2382, "etcd-3": 2383}
NOTEBOOK_CLIENTS = {"etcd-1": 2379, "etcd-2": 2378, "etcd-3": 2377}


class NotifySocket:
    """A bound unix datagram socket, as systemd's: a path, or an abstract name given as `@...`."""

    def __init__(self, directory: Path, abstract: bool) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"petcd-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.env_value = "@" + name
        else:
            path = directory / f"notify-{uuid.uuid4().hex[:8]}.sock"
            self.sock.bind(str(path))
            self.env_value = str(path)

    def receive(self, timeout: float) -> str | None:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(4096).decode()
        except TimeoutError:
            return None

    def wait_for(self, state: str, timeout: float) -> tuple[str, float]:
        """The first message with this assignment, and when it came."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self.receive(left)
            if msg is not None and state in msg.split("\n"):
                return msg, time.monotonic()
        raise AssertionError(f"no {state} within {timeout}s")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_sockets(tmp_path: Path) -> Iterator[list[NotifySocket]]:
    made: list[NotifySocket] = []
    yield made
    for s in made:
        s.close()


def member_env(name: str, data_dir: Path, peers: dict[str, int], clients: dict[str, int]) -> dict[str, str]:
    """contrib/systemd/petcd.env for member `name`, edited as docs/systemd.md says (ETCD_NAME and
    the member's own URLs), with the notebook's ports mapped to free ones."""
    env: dict[str, str] = {}
    for line in ENV_FILE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        env[key] = value
    env["ETCD_NAME"] = name
    env["ETCD_DATA_DIR"] = str(data_dir)
    for key in ("ETCD_LISTEN_PEER_URLS", "ETCD_INITIAL_ADVERTISE_PEER_URLS"):
        env[key] = env[key].replace(":2381", f":{peers[name]}")
    for key in ("ETCD_LISTEN_CLIENT_URLS", "ETCD_ADVERTISE_CLIENT_URLS"):
        env[key] = env[key].replace(":2379", f":{clients[name]}")
    for member, port in NOTEBOOK_PEERS.items():
        env["ETCD_INITIAL_CLUSTER"] = env["ETCD_INITIAL_CLUSTER"].replace(
            f"{member}=http://127.0.0.1:{port}", f"{member}=http://127.0.0.1:{peers.get(member, port)}"
        )
    return env


class Unit:
    """petcd run the way the unit runs it: ExecStart with no flags, settings from the env file."""

    def __init__(self, workdir: Path, env: dict[str, str], notify_socket: NotifySocket) -> None:
        self.log_path = workdir / f"{env['ETCD_NAME']}.log"
        self.env = {**clean_env(), **env, "NOTIFY_SOCKET": notify_socket.env_value}
        self.client_port = int(env["ETCD_LISTEN_CLIENT_URLS"].rsplit(":", 1)[1])
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "petcd"], env=self.env, cwd=workdir, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    @property
    def endpoint(self) -> str:
        return f"{LOOPBACK}:{self.client_port}"

    def as_server(self) -> Server:
        """A harness view of it, for etcdctl helpers (never started by the harness)."""
        return Server("petcd", self.log_path.parent / "view", client_port=self.client_port, peer_port=0)

    def listening(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex((LOOPBACK, self.client_port)) == 0

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def test_notify_sends_one_datagram(tmp_path: Path, notify_sockets: list[NotifySocket]) -> None:
    for abstract in (False, True):
        ns = NotifySocket(tmp_path, abstract)
        notify_sockets.append(ns)
        assert notify("READY=1\nSTATUS=x", {"NOTIFY_SOCKET": ns.env_value})
        assert ns.receive(2) == "READY=1\nSTATUS=x"
    assert not notify("READY=1", {})
    assert not notify("READY=1", {"NOTIFY_SOCKET": "vsock:2:1234"})  # not for petcd: refused, not crashed
    assert not notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert socket_address("@abc") == "\0abc" and socket_address("/run/x") == "/run/x"


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_single_member_unit_is_ready_then_stopping(
    tmp_path: Path, notify_sockets: list[NotifySocket], abstract: bool
) -> None:
    ns = NotifySocket(tmp_path, abstract)
    notify_sockets.append(ns)
    client, peer = free_ports(2)
    env = member_env("etcd-1", tmp_path / "etcd-1", {"etcd-1": peer}, {"etcd-1": client})
    env["ETCD_INITIAL_CLUSTER"] = f"etcd-1=http://127.0.0.1:{peer}"  # a one-member cluster
    unit = Unit(tmp_path, env, ns)
    try:
        msg, _ = ns.wait_for("READY=1", 60)
        assert f"STATUS=serving clients on http://127.0.0.1:{client}" in msg.split("\n")
        # ready means serving: a linearizable request answers at once, with the env file's name
        server = unit.as_server()
        etcdctl(server, "--command-timeout=2s", "put", "k", "v")
        assert keyspace(server)[1][0]["value"] == "dg=="
        assert "etcd-1" in etcdctl(server, "member", "list").stdout
        unit.proc.send_signal(signal.SIGTERM)
        ns.wait_for("STOPPING=1", 30)
        assert unit.proc.wait(30) == 0
    finally:
        unit.stop()
    log = unit.log_path.read_text()
    # every setting of the env file was understood (no unknown-variable warning)
    assert "unrecognized environment variable" not in log and "no longer supported" not in log, log[-2000:]


def test_member_without_quorum_listens_but_is_not_ready(tmp_path: Path, notify_sockets: list[NotifySocket]) -> None:
    """The notebook's three members from the env file: the first one alone listens but cannot
    serve (no quorum), so systemd hears nothing; once the others start, all three are ready."""
    ports = free_ports(6)
    names = ["etcd-1", "etcd-2", "etcd-3"]
    peers = {n: ports[2 * i] for i, n in enumerate(names)}
    clients = {n: ports[2 * i + 1] for i, n in enumerate(names)}
    units: list[Unit] = []
    sockets = []
    try:
        for n in names:
            ns = NotifySocket(tmp_path, abstract=True)
            notify_sockets.append(ns)
            sockets.append(ns)
            env = member_env(n, tmp_path / n, peers, clients)
            # faster elections than the notebook's 1 s / 5 s, and the member serving clients
            # itself, to keep three members light on a shared machine
            env.update(ETCD_HEARTBEAT_INTERVAL="100", ETCD_ELECTION_TIMEOUT="1000", ETCD_CLIENT_FRONTENDS="0")
            units.append(Unit(tmp_path, env, ns))
            if n == "etcd-1":
                deadline = time.monotonic() + 30
                while not units[0].listening() and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert units[0].listening()
                assert sockets[0].receive(3) is None
        for ns in sockets:
            ns.wait_for("READY=1", 60)
        for u in units:
            etcdctl(u.as_server(), "--command-timeout=2s", "endpoint", "health")
    finally:
        for u in units:
            u.stop()


def test_unit_file_verifies(tmp_path: Path) -> None:
    """systemd-analyze verify accepts the shipped unit (ExecStart pointed at this tree's petcd)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze not found: apt-get install systemd"
    launcher = tmp_path / "petcd"
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} -m petcd \"$@\"\n")
    launcher.chmod(0o755)
    text = UNIT.read_text()
    assert re.search(r"^Type=notify$", text, re.M)
    assert re.search(r"^EnvironmentFile=/etc/petcd/petcd.env$", text, re.M)
    unit = tmp_path / "petcd.service"
    unit.write_text(text.replace("ExecStart=/usr/local/bin/petcd", f"ExecStart={launcher}")
                    .replace("EnvironmentFile=/etc/petcd/petcd.env", f"EnvironmentFile={ENV_FILE}"))
    out = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"})
    assert out.returncode == 0, out.stderr
    assert "petcd.service" not in out.stderr, out.stderr  # no complaint about the unit


def test_real_etcd_reads_the_same_env_file_and_notifies_too(tmp_path: Path, notify_sockets: list[NotifySocket]) -> None:
    """petcd.env is etcd's format: etcd 3.5.1 started with it (as etcd's own unit would) runs
    and sends READY=1 on the same kind of socket, so the unit behaves the same for both."""
    ns = NotifySocket(tmp_path, abstract=False)
    notify_sockets.append(ns)
    client, peer = free_ports(2)
    env = member_env("etcd-1", tmp_path / "etcd-1", {"etcd-1": peer}, {"etcd-1": client})
    env["ETCD_INITIAL_CLUSTER"] = f"etcd-1=http://127.0.0.1:{peer}"
    log_path = tmp_path / "etcd.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen([str(ETCD)], env={**clean_env(), **env, "NOTIFY_SOCKET": ns.env_value},
                                cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        ns.wait_for("READY=1", 60)
        server = Server("etcd", tmp_path / "view", client_port=client, peer_port=0)
        assert "etcd-1" in etcdctl(server, "member", "list").stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert "unrecognized environment variable" not in log_path.read_text()
