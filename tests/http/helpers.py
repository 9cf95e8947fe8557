"""HTTP helpers for the differential tests of the HTTP side (etcd 3.5.1 against petcd)."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness import LOOPBACK, Etcdctl, Server, ServerGroup, free_ports


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_names(self) -> list[str]:
        """The header names in order, without Date (its value changes)."""
        return [k for k, _ in self.headers]

    def json(self) -> Any:
        return json.loads(self.body)

    def shape(self) -> tuple[int, str | None, bytes]:
        return self.status, self.header("Content-Type"), self.body


def request(url: str, method: str = "GET", path: str = "/", body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 10.0) -> Answer:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read() if method != "HEAD" else b""
        return Answer(resp.status, resp.getheaders(), data)
    finally:
        conn.close()


def raw(url: str, data: bytes, timeout: float = 3.0) -> bytes:
    """Send bytes, read until the server closes or goes quiet for ``timeout``."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            pass
        return out


@dataclass
class HttpPair:
    """etcd 3.5.1 and petcd side by side: ``etcd_http``/``petcd_http`` are where each serves its
    client-URL HTTP side (etcd: its client URL; petcd: --listen-client-http-urls), ``*_metrics`` the
    --listen-metrics-urls listener of each."""

    etcd: Server
    petcd: Server
    etcd_http: str
    petcd_http: str
    etcd_metrics: str
    petcd_metrics: str

    def petcd_ctl(self, *args: str) -> str:
        out = Etcdctl(self.petcd.endpoint).run(*args)
        assert out.rc == 0, out
        return out.stdout

    def etcd_ctl(self, *args: str) -> str:
        out = Etcdctl(self.etcd.endpoint).run(*args)
        assert out.rc == 0, out
        return out.stdout


def start_pair(group: ServerGroup, extra: Sequence[str] = ()) -> HttpPair:
    e_metrics, p_http, p_metrics = (f"http://{LOOPBACK}:{p}" for p in free_ports(3))
    etcd = group.start("etcd", extra_args=[f"--listen-metrics-urls={e_metrics}", *extra])
    petcd = group.start_target(extra_args=[f"--listen-metrics-urls={p_metrics}",
                                           f"--listen-client-http-urls={p_http}", *extra])
    return HttpPair(etcd, petcd, etcd.client_url, p_http, e_metrics, p_metrics)


def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def workdir(tmp: Path, name: str) -> Path:
    d = tmp / name
    d.mkdir(parents=True, exist_ok=True)
    return d
