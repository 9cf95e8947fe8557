"""A petcd or etcd member with TLS URLs, started and stopped by PID (tests/harness's Server
builds http:// URLs only)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness import ETCD_BIN, ETCDCTL_BIN, HarnessError, free_ports
from tests.harness.procs import clean_env

LOOPBACK = "127.0.0.1"


def etcdctl(endpoint: str, *args: str, tls: Sequence[str] = (), timeout: float = 30.0,
            dial: str = "2s", cwd: Path | None = None, command: str = "5s") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ETCDCTL_BIN), f"--endpoints={endpoint}", f"--dial-timeout={dial}", f"--command-timeout={command}",
         *tls, *args],
        env={**clean_env(), "ETCDCTL_API": "3"}, capture_output=True, text=True, timeout=timeout, check=False,
        cwd=cwd)


@dataclass
class Member:
    workdir: Path
    name: str = "m1"
    kind: str = "petcd"
    client_scheme: str = "https"
    peer_scheme: str = "http"
    args: tuple[str, ...] = ()
    initial_cluster: str = ""
    state: str = "new"
    client_port: int = 0
    peer_port: int = 0
    more_client_urls: tuple[str, ...] = ()  # listened on besides client_url
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.client_port or not self.peer_port:
            self.client_port, self.peer_port = free_ports(2)
        self.workdir.mkdir(parents=True, exist_ok=True)

    @property
    def client_url(self) -> str:
        return f"{self.client_scheme}://{LOOPBACK}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"{self.peer_scheme}://{LOOPBACK}:{self.peer_port}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / f"{self.name}.data"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.kind}-{self.name}.log"

    def command(self) -> list[str]:
        argv = [str(ETCD_BIN)] if self.kind == "etcd" else [sys.executable, "-m", "petcd"]
        return [
            *argv, f"--name={self.name}", f"--data-dir={self.data_dir}",
            f"--listen-client-urls={','.join((self.client_url, *self.more_client_urls))}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={self.peer_url}", f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={self.initial_cluster or f'{self.name}={self.peer_url}'}",
            f"--initial-cluster-state={self.state}", "--initial-cluster-token=tls-test", *self.args,
        ]

    def spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.command(), cwd=self.workdir, env=clean_env(), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, tls: Sequence[str], timeout: float = 40.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise HarnessError(f"{self.name} exited rc={self.proc.returncode}\n{self.log()[-3000:]}")
            out = etcdctl(self.client_url, "endpoint", "health", tls=tls, dial="1s")
            if out.returncode == 0:
                return
            last = out.stderr[-300:]
            time.sleep(0.2)
        raise HarnessError(f"{self.name} not healthy: {last}\n{self.log()[-3000:]}")

    def start(self, tls: Sequence[str]) -> Member:
        self.spawn()
        try:
            self.wait_ready(tls)
        except BaseException:
            self.stop()
            raise
        return self

    def run_to_exit(self, timeout: float = 60.0) -> tuple[int, str]:
        """Start and wait for the process to exit (for startup errors): (exit code, output)."""
        self.spawn()
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout)
        finally:
            self.stop()
        return rc, self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
