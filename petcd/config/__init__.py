"""petcd's configuration: etcd's flag table (with what petcd does with each flag), parsing of the
command line, ETCD_* variables and --config-file, Go-style values, cluster IDs, and the frozen
settings a member runs with. Nothing here imports server, api or frontend code.

The names are loaded on first use (PEP 562): a client front-end process imports only
``petcd.config.logs`` and ``petcd.config.govalues``, and the rest (the flag table, YAML, the
protobuf modules) would cost it ~0.1-0.2 s at every start."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from petcd.config.flags import FLAG_SPECS, FLAGS, FlagSpec, Handling, help_text
    from petcd.config.govalues import EtcdURL
    from petcd.config.members import Member
    from petcd.config.parse import API_VERSION, PETCD_VERSION, ConfigError
    from petcd.config.server_config import (
        AuthTokenConfig,
        ServerConfig,
        TLSInfo,
        check_supported,
        load_config_or_exit,
        parse_config,
    )
    from petcd.config.settings import ServerSettings, settings_from_config, settings_from_flags
    from petcd.config.startup import best_practice_warnings, startup_notes

_MODULE_OF = {
    "FLAG_SPECS": "flags",
    "FLAGS": "flags",
    "FlagSpec": "flags",
    "Handling": "flags",
    "help_text": "flags",
    "EtcdURL": "govalues",
    "Member": "members",
    "API_VERSION": "parse",
    "PETCD_VERSION": "parse",
    "ConfigError": "parse",
    "AuthTokenConfig": "server_config",
    "ServerConfig": "server_config",
    "TLSInfo": "server_config",
    "check_supported": "server_config",
    "load_config_or_exit": "server_config",
    "parse_config": "server_config",
    "ServerSettings": "settings",
    "settings_from_config": "settings",
    "settings_from_flags": "settings",
    "best_practice_warnings": "startup",
    "startup_notes": "startup",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"petcd.config.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "API_VERSION",
    "FLAGS",
    "FLAG_SPECS",
    "PETCD_VERSION",
    "AuthTokenConfig",
    "ConfigError",
    "EtcdURL",
    "FlagSpec",
    "Handling",
    "Member",
    "ServerConfig",
    "ServerSettings",
    "TLSInfo",
    "best_practice_warnings",
    "check_supported",
    "help_text",
    "load_config_or_exit",
    "parse_config",
    "settings_from_config",
    "settings_from_flags",
    "startup_notes",
]
