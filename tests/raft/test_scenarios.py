"""Runs every scenario script in testdata/ and compares its trace with the golden output.

Re-record after an intended behaviour change with ``PETCD_REWRITE_GOLDEN=1`` and review the diff.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from .scenario import run_script

TESTDATA = Path(__file__).parent / "testdata"
SCRIPTS = sorted(TESTDATA.glob("*.txt"))


def test_scripts_exist() -> None:
    assert len(SCRIPTS) >= 8


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_scenario(path: Path) -> None:
    expected, actual = run_script(path)
    if os.environ.get("PETCD_REWRITE_GOLDEN") == "1":
        path.write_text(actual)
        return
    if expected != actual:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True),
                                            "golden", "actual"))
        pytest.fail(f"{path.name} differs from its golden output "
                    f"(PETCD_REWRITE_GOLDEN=1 to re-record):\n{diff}")
