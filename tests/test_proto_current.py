"""The committed generated protobuf modules match what the .proto files produce."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_generated_modules_are_current(tmp_path: pathlib.Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--out", str(tmp_path)], check=True)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*_pb2*.py*"))
    committed = sorted(p.relative_to(ROOT) for p in (ROOT / "petcd" / "proto").rglob("*_pb2*.py*"))
    assert generated == committed, "generated module set differs; run scripts/gen_proto.py"
    stale = [str(rel) for rel in generated if (tmp_path / rel).read_bytes() != (ROOT / rel).read_bytes()]
    assert not stale, f"stale generated modules (run scripts/gen_proto.py): {stale}"
