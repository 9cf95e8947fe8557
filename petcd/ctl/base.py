"""What every command gets: its parsed flags, the display for ``-w``, and a client on demand."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from petcd.ctl.cli import EXIT_BAD_ARGS, EXIT_BAD_FEATURE, CtlExit, Flag, Invocation, go_duration
from petcd.ctl.client import Client, ClientConfig, TLSConfig
from petcd.ctl.printer import Display

VERSION = "3.5.1"
API_VERSION = "3.5"


def S(name: str, default: str, usage: str, short: str = "") -> Flag:
    return Flag(name, "string", default, usage, short)


def B(name: str, usage: str, default: bool = False) -> Flag:
    return Flag(name, "bool", default, usage)


def I(name: str, default: int, usage: str) -> Flag:  # noqa: E743 - a flag-table helper, as S and B
    return Flag(name, "int", default, usage)


def D(name: str, default: float, usage: str) -> Flag:
    return Flag(name, "duration", default, usage)


GLOBAL_FLAGS = [
    Flag("endpoints", "strings", ["127.0.0.1:2379"], "gRPC endpoints"),
    B("debug", "enable client-side debug logging"),
    S("write-out", "simple", "set the output format (fields, json, protobuf, simple, table)", "w"),
    B("hex", "print byte strings as hex encoded strings"),
    D("dial-timeout", 2.0, "dial timeout for client connections"),
    D("command-timeout", 5.0, "timeout for short running command (excluding dial timeout)"),
    D("keepalive-time", 2.0, "keepalive time for client connections"),
    D("keepalive-timeout", 6.0, "keepalive timeout for client connections"),
    B("insecure-transport", "disable transport security for client connections", True),
    B("insecure-discovery", "accept insecure SRV records describing cluster endpoints", True),
    B("insecure-skip-tls-verify",
      "skip server certificate verification (CAUTION: this option should be enabled only for testing purposes)"),
    S("cert", "", "identify secure client using this TLS certificate file"),
    S("key", "", "identify secure client using this TLS key file"),
    S("cacert", "", "verify certificates of TLS-enabled secure servers using this CA bundle"),
    S("user", "", "username[:password] for authentication (prompt if password is not supplied)"),
    S("password", "", "password for authentication (if this option is used, --user option shouldn't include password)"),
    S("discovery-srv", "", "domain name to query for SRV records describing cluster endpoints", "d"),
    S("discovery-srv-name", "", "service name to query when using DNS discovery"),
]


def to_bytes(arg: str) -> bytes:
    """A command-line argument as the bytes the user typed (Go strings are bytes)."""
    return os.fsencode(arg)


@dataclass
class Env:
    inv: Invocation

    @property
    def args(self) -> list[str]:
        return self.inv.args

    def check_globals(self) -> None:
        """Global flags petcdctl accepts must do something: --debug prints the flags as etcdctl does,
        the keepalive flags go to the gRPC channel, DNS discovery is refused."""
        for name in ("discovery-srv", "discovery-srv-name"):
            if self.inv.text(name):
                raise CtlExit(EXIT_BAD_FEATURE, f"--{name}: petcdctl does not do DNS SRV discovery; give --endpoints")

    def print_debug(self) -> None:
        """--debug: the global flags as ETCDCTL_* lines on stderr, each time a client is configured."""
        if self.inv.bool("debug"):
            import sys

            for f in sorted(self.inv.command.inherited(), key=lambda f: f.name):
                value = self.inv.values[f.name]
                if f.kind == "strings":
                    text = "[" + ",".join(value) + "]"  # type: ignore[arg-type]
                elif f.kind == "duration":
                    text = go_duration(float(value))  # type: ignore[arg-type]
                elif f.kind == "bool":
                    text = "true" if value else "false"
                else:
                    text = str(value)
                sys.stderr.write(f"ETCDCTL_{f.name.upper().replace('-', '_')}={text}\n")

    def display(self) -> Display:
        return Display(self.inv.text("write-out"), self.inv.bool("hex"))

    def tls(self) -> TLSConfig:
        for name in ("cert", "key", "cacert"):
            if name in self.inv.changed and not self.inv.text(name):
                raise CtlExit(EXIT_BAD_ARGS, f"empty string is passed to --{name} option")
        return TLSConfig(cacert=self.inv.text("cacert"), cert=self.inv.text("cert"), key=self.inv.text("key"),
                         skip_verify=self.inv.bool("insecure-skip-tls-verify"),
                         insecure_transport=self.inv.bool("insecure-transport"))

    def endpoints(self) -> list[str]:
        return [e.strip() for e in self.inv.strings("endpoints")]

    def config(self, endpoints: Sequence[str] | None = None, *, with_auth: bool = True) -> ClientConfig:
        self.print_debug()
        return ClientConfig(
            endpoints=tuple(endpoints if endpoints is not None else self.endpoints()),
            dial_timeout=self.inv.seconds("dial-timeout"),
            command_timeout=self.inv.seconds("command-timeout"),
            tls=self.tls(),
            user=self.inv.text("user") if with_auth else "",
            password=self.inv.text("password") if with_auth else "",
            keepalive_time=self.inv.seconds("keepalive-time"),
            keepalive_timeout=self.inv.seconds("keepalive-timeout"),
        )

    def client(self, endpoints: Sequence[str] | None = None, *, with_auth: bool = True) -> Client:
        return Client(self.config(endpoints, with_auth=with_auth))

    def cluster_endpoints(self) -> list[str]:
        """``--cluster``: every member's client URLs (etcdctl asks without credentials)."""
        if not self.inv.values.get("cluster"):
            return self.endpoints()
        with self.client(with_auth=False) as c:
            from petcd.ctl.client import RpcFailure

            try:
                members = c.member_list().members
            except RpcFailure as exc:
                raise CtlExit(1, f"failed to fetch endpoints from etcd cluster member list: {exc}") from None
        return [u for m in members for u in m.clientURLs]
