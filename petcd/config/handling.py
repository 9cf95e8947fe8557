"""Applying the flag table's ``does`` column to a parsed configuration.

A ``refuse`` flag set to anything but its default stops the member (exit 1) with the reason;
a ``warn`` flag the operator set gives exactly one startup warning naming it, with the reason.
URLs with a TLS scheme (https, unixs) are refused too while petcd has no TLS: it would otherwise
serve them in plain text.
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
        if spec.does.action == "refuse" and values[spec.name] != spec.default:
            detail = f"--{spec.name}={_shown(values[spec.name])}: {spec.does.reason}"
            return ConfigError(f"petcd cannot start: {detail}", 1, detail)
    return None


def check_tls_urls(values: Mapping[str, object],
                   initial_cluster: Iterable[tuple[str, tuple[EtcdURL, ...]]]) -> None:
    """Refuse https:// and unixs:// URLs (ConfigError, exit 1) until petcd serves TLS."""
    found: list[tuple[str, EtcdURL]] = []
    for flag in URL_FLAGS:
        urls = values[flag]
        assert isinstance(urls, tuple)
        found += [(flag, u) for u in urls]
    found += [("initial-cluster", u) for _name, urls in initial_cluster for u in urls]
    for flag, url in found:
        if url.scheme in TLS_SCHEMES:
            detail = (f"--{flag} has {url}: TLS is not supported yet (petcd would serve it in plain "
                      "text); use http:// or unix:// URLs")
            raise ConfigError(f"petcd cannot start: {detail}", 1, detail)


def unapplied_warnings(values: Mapping[str, object], flags_set: Iterable[str]) -> list[str]:
    """One warning per ``warn`` flag the operator set (to a value petcd's behaviour does not
    already match), in table order."""
    given = set(flags_set)
    return [f"--{spec.name}={_shown(values[spec.name])} is accepted but not applied: {spec.does.reason}"
            for spec in FLAG_SPECS
            if spec.does.action == "warn" and spec.name in given and values[spec.name] not in spec.does.behaves_as]
