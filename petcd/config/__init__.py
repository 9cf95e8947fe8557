"""petcd's configuration: etcd's flag table (with what petcd does with each flag), parsing of the
command line, ETCD_* variables and --config-file, Go-style values, cluster IDs, and the frozen
settings a member runs with. Nothing here imports server, api or frontend code."""

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
