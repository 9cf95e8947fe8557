#!/usr/bin/env python3
"""Regenerate the committed protobuf / gRPC modules under petcd/proto.

Usage: python scripts/gen_proto.py [--out DIR]
With --out the modules are written under DIR instead of the source tree
(the currency test uses this to compare against what is committed).
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "petcd" / "proto"


def proto_files() -> list[pathlib.Path]:
    return sorted(PROTO_DIR.rglob("*.proto"))


def has_service(path: pathlib.Path) -> bool:
    return any(line.lstrip().startswith("service ") for line in path.read_text().splitlines())


def generate(out: pathlib.Path) -> None:
    from grpc_tools import protoc  # imported late: a dev-only dependency

    include = pathlib.Path(protoc.__file__).parent / "_proto"
    files = proto_files()
    rel = [str(p.relative_to(ROOT)) for p in files]
    args = ["protoc", f"-I{ROOT}", f"-I{include}", f"--python_out={out}", f"--pyi_out={out}"]
    rc = protoc.main(args + rel)
    if rc != 0:
        sys.exit(f"protoc failed with {rc}")
    grpc_files = [str(p.relative_to(ROOT)) for p in files if has_service(p)]
    if grpc_files:
        rc = protoc.main(["protoc", f"-I{ROOT}", f"-I{include}", f"--grpc_python_out={out}", *grpc_files])
        if rc != 0:
            sys.exit(f"protoc (grpc) failed with {rc}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=pathlib.Path, default=None)
    ns = ap.parse_args()
    if ns.out is None:
        generate(ROOT)
    else:
        ns.out.mkdir(parents=True, exist_ok=True)
        generate(ns.out)
        # keep package markers so the output tree mirrors the source tree
        for init in PROTO_DIR.rglob("__init__.py"):
            dst = ns.out / init.relative_to(ROOT)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(init, dst)


if __name__ == "__main__":
    main()
