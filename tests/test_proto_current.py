"""The committed generated protobuf modules match what the .proto files produce."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _modules(root: pathlib.Path, under: pathlib.Path) -> list[pathlib.Path]:
    # bytecode caches are not generated modules (they appear once anything imports petcd.proto)
    return sorted(p.relative_to(root) for p in under.rglob("*_pb2*.py*") if "__pycache__" not in p.parts)


def test_generated_modules_are_current(tmp_path: pathlib.Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--out", str(tmp_path)], check=True)
    generated = _modules(tmp_path, tmp_path)
    committed = _modules(ROOT, ROOT / "petcd" / "proto")
    assert generated == committed, "generated module set differs; run scripts/gen_proto.py"
    stale = [str(rel) for rel in generated if (tmp_path / rel).read_bytes() != (ROOT / rel).read_bytes()]
    assert not stale, f"stale generated modules (run scripts/gen_proto.py): {stale}"
