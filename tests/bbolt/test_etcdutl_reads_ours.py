"""Files from our bbolt writer, read by real etcdutl 3.5.1 (bbolt 1.3.6): `snapshot status` runs
bbolt's consistency check and hashes every bucket, so agreeing figures mean bbolt read every page
as we meant it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from petcd.bbolt import Bucket, db_status, write_bolt
from tests.bbolt.etcd351 import etcdutl, petcdutl


def _random_db(rng: random.Random, path: Path) -> None:
    buckets = []
    for name in sorted({rng.choice([b"alarm", b"key", b"lease", b"meta", b"zz", b"a" * 30]) for _ in range(6)}):
        n = rng.choice([0, 1, 5, 300, 3000])
        items: dict[bytes, bytes | Bucket] = {}
        for i in range(n):
            key = i.to_bytes(8, "big") + b"_" + bytes(8) if name == b"key" else rng.randbytes(rng.randint(1, 60))
            items[key] = rng.randbytes(rng.choice([0, 3, 40, 700, 5000, 70000]) if rng.random() < 0.05
                                       else rng.choice([0, 8, 30, 120]))
        if name == b"zz":  # nested buckets, small (inline) and large
            items[b"nest-small"] = Bucket([(b"a", b"1")])
            items[b"nest-large"] = Bucket([(f"{i:05d}".encode(), b"v" * 90) for i in range(400)])
        buckets.append((name, Bucket(sorted(items.items()))))
    with open(path, "wb") as f:
        write_bolt(f, buckets)


@pytest.mark.parametrize("seed", range(6))
def test_etcdutl_status_agrees(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "db"
    _random_db(random.Random(seed), path)
    ours = db_status(path)
    theirs = json.loads(etcdutl("snapshot", "status", str(path), "-w", "json").stdout)
    assert theirs == {"hash": ours.hash, "revision": ours.revision, "totalKey": ours.total_key,
                      "totalSize": ours.total_size}
    for fmt in ("simple", "table", "fields"):
        assert petcdutl("snapshot", "status", str(path), "-w", fmt).stdout == \
            etcdutl("snapshot", "status", str(path), "-w", fmt).stdout
