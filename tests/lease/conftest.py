"""Fixtures for the lessor tests: a manual clock and a real backend + KVStore in a temp dir."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from petcd.backend import Backend
from petcd.clock import ManualClock
from petcd.lease import Lessor
from petcd.mvcc import KVStore


@dataclass
class Env:
    path: Path
    clock: ManualClock
    backend: Backend
    store: KVStore
    lessor: Lessor

    def put(self, key: bytes, lease: int = 0, value: bytes = b"v") -> None:
        """A put as the applier does it: write, then tell the lessor about the changes."""
        with self.store.write() as txn:
            txn.put(key, value, lease)
        self.lessor.apply_changes(txn.changes)

    def delete(self, key: bytes, end: bytes = b"") -> None:
        with self.store.write() as txn:
            txn.delete_range(key, end)
        self.lessor.apply_changes(txn.changes)

    def live_keys(self) -> list[bytes]:
        return [kv.key for kv in self.store.range(b"\x00", b"\x00").kvs]

    def reopen(self, **kw: object) -> None:
        """Close everything and open it again from disk, as a restart does."""
        self.backend.force_commit()
        self.backend.close()
        self.backend = Backend(self.path / "db", map_size=64 << 20)
        self.store = KVStore(self.backend)
        self.lessor = make_lessor(self.backend, self.clock, self.store, **kw)


def make_lessor(backend: Backend, clock: ManualClock, store: KVStore, **kw: object) -> Lessor:
    opts: dict[str, object] = {"min_ttl": 2, "checkpoint_interval": 10.0}
    opts.update(kw)
    return Lessor(backend, clock, store, **opts)  # type: ignore[arg-type]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    clock = ManualClock(start=1000.0)  # moved by hand: expiry is tested without sleeping
    backend = Backend(tmp_path / "db", map_size=64 << 20)
    store = KVStore(backend)
    e = Env(tmp_path, clock, backend, store, make_lessor(backend, clock, store))
    yield e
    e.backend.close()
