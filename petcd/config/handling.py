"""Applying the flag table's ``does`` column to a parsed configuration.

A ``refuse`` flag set to anything but its default stops the member (exit 1) with the reason;
a ``warn`` flag the operator set gives exactly one startup warning naming it, with the reason.
A URL with a TLS scheme (https, unixs) needs the certificate to serve it with, as etcd
requires (``check_tls_urls``); petcd never serves such a URL in plain text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from petcd.config.flags import FLAG_SPECS
from petcd.config.govalues import EtcdURL
from petcd.config.parse import ConfigError

__all__ = ["TLS_SCHEMES", "URL_FLAGS", "check_tls_urls", "refusal", "unapplied_warnings"]

TLS_SCHEMES = ("https", "unixs")
# flags holding URLs this member listens on or tells others about
URL_FLAGS = (
    "listen-peer-urls", "listen-client-urls", "listen-client-http-urls", "listen-metrics-urls",
    "initial-advertise-peer-urls", "advertise-client-urls",
)


def _shown(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def refusal(values: Mapping[str, object]) -> ConfigError | None:
    """The error for the first ``refuse`` flag whose value is not its default, if any."""
    for spec in FLAG_SPECS:
        value = values[spec.name]
        if spec.does.action == "refuse" and value != spec.default and value not in spec.does.behaves_as:
            detail = f"--{spec.name}={_shown(values[spec.name])}: {spec.does.reason}"
            return ConfigError(f"petcd cannot start: {detail}", 1, detail)
    return None


def check_tls_urls(values: Mapping[str, object]) -> None:
    """etcd's startup checks for https:// and unixs:// URLs this member listens on: each needs a
    certificate and key, or --auto-tls (ConfigError, exit 1, with etcd's message)."""
    def urls(flag: str) -> tuple[EtcdURL, ...]:
        found = values[flag]
        assert isinstance(found, tuple)
        return found

    client_tls = (values["cert-file"] != "" and values["key-file"] != "") or values["auto-tls"] is True
    for url in urls("listen-client-urls"):
        if url.scheme in TLS_SCHEMES and not client_tls:
            detail = (f"TLS key/cert (--cert-file, --key-file) must be provided for client url {url} "
                      "with HTTPS scheme")
            raise ConfigError(f"petcd cannot start: {detail}", 1, detail)
    peer_tls = (values["peer-cert-file"] != "" and values["peer-key-file"] != "") or values["peer-auto-tls"] is True
    for url in urls("listen-peer-urls"):
        if url.scheme in TLS_SCHEMES and not peer_tls:
            detail = f"cannot listen on TLS for {url.host}: KeyFile and CertFile are not presented"
            raise ConfigError(f"petcd cannot start: {detail}", 1, detail)
    for flag in ("listen-client-http-urls", "listen-metrics-urls"):
        for url in urls(flag):
            if url.scheme in TLS_SCHEMES:
                detail = f"--{flag} has {url}: petcd serves no TLS on this listener yet; use http://"
                raise ConfigError(f"petcd cannot start: {detail}", 1, detail)


def unapplied_warnings(values: Mapping[str, object], flags_set: Iterable[str]) -> list[str]:
    """One warning per ``warn`` flag the operator set (to a value petcd's behaviour does not
    already match), in table order."""
    given = set(flags_set)
    return [f"--{spec.name}={_shown(values[spec.name])} is accepted but not applied: {spec.does.reason}"
            for spec in FLAG_SPECS
            if spec.does.action == "warn" and spec.name in given and values[spec.name] not in spec.does.behaves_as]
