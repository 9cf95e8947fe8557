"""petcd/config sits low in the layers: importing it loads no server, api, peer or frontend code."""

from __future__ import annotations

import json
import subprocess
import sys


def test_config_imports_nothing_above_it() -> None:
    code = ("import json, sys, petcd.config, petcd.config.logs, petcd.config.startup; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('petcd.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out)
    higher = ("petcd.server", "petcd.api", "petcd.peer", "petcd.frontend", "petcd.ctl", "petcd.utl")
    assert [m for m in loaded if m.startswith(higher)] == []
