"""Run petcdctl (this tree, as a subprocess) the way tests/harness runs etcdctl."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence

from tests.harness import CtlResult
from tests.harness.procs import clean_env


def petcdctl(endpoints: str | Sequence[str], *args: str, stdin: str = "", env: Mapping[str, str] | None = None,
             timeout: float = 120.0) -> CtlResult:
    eps = endpoints if isinstance(endpoints, str) else ",".join(endpoints)
    argv = [sys.executable, "-m", "petcd.ctl", f"--endpoints={eps}", *args]
    out = subprocess.run(argv, input=stdin.encode(), capture_output=True, env={**clean_env(), **(env or {})},
                         timeout=timeout, check=False)
    return CtlResult(out.returncode, out.stdout.decode(errors="replace"), out.stderr.decode(errors="replace"))


def as_etcdctl(result: CtlResult) -> CtlResult:
    """petcdctl names itself; everything else must be etcdctl's bytes."""
    return CtlResult(result.rc, result.stdout.replace("petcdctl", "etcdctl"),
                     result.stderr.replace("petcdctl", "etcdctl"))
