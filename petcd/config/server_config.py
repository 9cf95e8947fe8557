"""petcd's server configuration: etcd's flags, ``--config-file`` and ``ETCD_*`` variables.

``parse_config(argv, environ)`` returns a frozen ``ServerConfig`` with one typed field per etcd
flag (the flag name with ``-`` as ``_``; durations in float seconds, heartbeat and election in
milliseconds, URL lists as ``EtcdURL`` tuples) or raises ``ConfigError(message, exit_code)``
with etcd's message and exit code. Nothing is read but argv, the environment mapping and the
config file; nothing is written. The parsing rules live in ``parse`` (command line,
environment, YAML, validation), Go's value syntax in ``govalues``, the flag table and help in
``flags``, what the table's ``does`` column means in ``handling`` and the ID arithmetic in
``cluster_ids``. The settings a member runs with are built from a ServerConfig in ``settings``.

The data directory defaults to ``<name>.petcd`` (etcd: ``<name>.etcd``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

from petcd.config.cluster_ids import (
    BootstrapError,
    check_bootstrap,
    compute_cluster_id,
    compute_member_id,
)
from petcd.config.flags import DEFAULT_INITIAL_CLUSTER, DEFAULT_NAME, FLAG_SPECS, help_text
from petcd.config.govalues import EtcdURL, GoValueError, go_quote, parse_go_duration, parse_url_map
from petcd.config.handling import check_tls_urls, refusal, unapplied_warnings
from petcd.config.parse import (
    API_VERSION,
    PETCD_VERSION,
    ConfigError,
    ParsedValues,
    parse_values,
    verify_error,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_QUOTA_BYTES",
    "MAX_QUOTA_BYTES",
    "PETCD_VERSION",
    "AuthTokenConfig",
    "ConfigError",
    "EtcdURL",
    "ServerConfig",
    "TLSInfo",
    "check_supported",
    "help_text",
    "load_config_or_exit",
    "parse_config",
]

DEFAULT_QUOTA_BYTES = 2 * 1024 * 1024 * 1024
MAX_QUOTA_BYTES = 8 * 1024 * 1024 * 1024
RECOMMENDED_MAX_REQUEST_BYTES = 10 * 1024 * 1024
JWT_SIGN_METHODS = (
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512",  # etcd 3.5.1 refuses EdDSA ("auth: invalid auth signature method")
)
# Go's crypto/tls names, which etcd's --cipher-suites takes.
CIPHER_SUITES = frozenset({
    "TLS_RSA_WITH_RC4_128_SHA", "TLS_RSA_WITH_3DES_EDE_CBC_SHA", "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA", "TLS_RSA_WITH_AES_128_CBC_SHA256", "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA", "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
})


@dataclass(frozen=True, slots=True)
class TLSInfo:
    """One side's TLS files and options (client side: --cert-file...; peer side: --peer-*)."""

    cert_file: str
    key_file: str
    client_cert_file: str
    client_key_file: str
    trusted_ca_file: str
    client_cert_auth: bool
    crl_file: str
    auto_tls: bool
    allowed_cn: str
    allowed_hostname: str

    @property
    def empty(self) -> bool:
        return self.cert_file == "" and self.key_file == ""


@dataclass(frozen=True, slots=True)
class AuthTokenConfig:
    """--auth-token decoded: ``simple``, or ``jwt`` with its key files, algorithm and TTL."""

    kind: str  # "simple" | "jwt" | "" (no tokens)
    sign_method: str = ""
    pub_key: str = ""
    priv_key: str = ""
    ttl: float = 300.0  # seconds a JWT stays valid


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Every etcd server flag as a typed field, plus what parsing derived from them."""

    # Member
    name: str
    data_dir: str
    wal_dir: str
    snapshot_count: int
    heartbeat_interval: int  # ms
    election_timeout: int  # ms
    initial_election_tick_advance: bool
    listen_peer_urls: tuple[EtcdURL, ...]
    listen_client_urls: tuple[EtcdURL, ...]
    listen_client_http_urls: tuple[EtcdURL, ...]
    max_snapshots: int
    max_wals: int
    quota_backend_bytes: int
    backend_bbolt_freelist_type: str
    backend_batch_interval: float  # seconds
    backend_batch_limit: int
    max_txn_ops: int
    max_request_bytes: int
    max_concurrent_streams: int
    grpc_keepalive_min_time: float  # seconds
    grpc_keepalive_interval: float  # seconds
    grpc_keepalive_timeout: float  # seconds
    socket_reuse_port: bool
    socket_reuse_address: bool
    enable_grpc_gateway: bool
    raft_read_timeout: float  # seconds
    raft_write_timeout: float  # seconds
    unsafe_no_fsync: bool
    # Clustering
    initial_advertise_peer_urls: tuple[EtcdURL, ...]
    initial_cluster: str
    initial_cluster_state: str
    initial_cluster_token: str
    advertise_client_urls: tuple[EtcdURL, ...]
    discovery: str
    discovery_fallback: str
    discovery_proxy: str
    discovery_srv: str
    discovery_srv_name: str
    strict_reconfig_check: bool
    pre_vote: bool
    auto_compaction_retention: str
    auto_compaction_mode: str
    enable_v2: bool
    experimental_enable_v2v3: str
    v2_deprecation: str
    # Security
    cert_file: str
    key_file: str
    client_cert_auth: bool
    client_cert_file: str
    client_key_file: str
    client_crl_file: str
    client_cert_allowed_hostname: str
    trusted_ca_file: str
    auto_tls: bool
    peer_cert_file: str
    peer_key_file: str
    peer_client_cert_auth: bool
    peer_client_cert_file: str
    peer_client_key_file: str
    peer_trusted_ca_file: str
    peer_cert_allowed_cn: str
    peer_cert_allowed_hostname: str
    peer_auto_tls: bool
    self_signed_cert_validity: int
    peer_crl_file: str
    cipher_suites: tuple[str, ...]
    cors: tuple[str, ...]
    host_whitelist: tuple[str, ...]
    tls_min_version: str
    tls_max_version: str
    experimental_peer_skip_client_san_verification: bool
    # Auth
    auth_token: str
    bcrypt_cost: int
    auth_token_ttl: int
    # Profiling and monitoring
    enable_pprof: bool
    metrics: str
    listen_metrics_urls: tuple[EtcdURL, ...]
    # Logging
    logger: str
    log_outputs: tuple[str, ...]
    log_level: str
    enable_log_rotation: bool
    log_rotation_config_json: str
    debug: bool
    log_package_levels: str
    # Distributed tracing
    experimental_enable_distributed_tracing: bool
    experimental_distributed_tracing_address: str
    experimental_distributed_tracing_service_name: str
    experimental_distributed_tracing_instance_id: str
    experimental_distributed_tracing_sampling_rate: int
    # v2 proxy (etcd 3.4/3.5 compatibility)
    proxy: str
    proxy_failure_wait: int
    proxy_refresh_interval: int
    proxy_dial_timeout: int
    proxy_write_timeout: int
    proxy_read_timeout: int
    # Experimental
    experimental_initial_corrupt_check: bool
    experimental_corrupt_check_time: float  # seconds
    experimental_compact_hash_check_enabled: bool
    experimental_compact_hash_check_time: float  # seconds
    experimental_enable_lease_checkpoint: bool
    experimental_enable_lease_checkpoint_persist: bool
    experimental_compaction_batch_limit: int
    experimental_compaction_sleep_interval: float  # seconds
    experimental_watch_progress_notify_interval: float  # seconds
    experimental_warning_apply_duration: float  # seconds
    experimental_warning_unary_request_duration: float  # seconds
    experimental_bootstrap_defrag_threshold_megabytes: int
    experimental_txn_mode_write_with_shared_buffer: bool
    experimental_memory_mlock: bool
    experimental_downgrade_check_time: float  # seconds
    experimental_snapshot_catchup_entries: int
    experimental_max_learners: int
    experimental_wait_cluster_ready_timeout: float  # seconds
    experimental_stop_grpc_service_on_defrag: bool
    experimental_backend_bbolt_freelist_type: str
    # petcd
    client_frontends: int
    client_urls_http: bool
    # Unsafe
    force_new_cluster: bool
    # Other
    config_file: str
    version: bool
    # Derived
    initial_cluster_members: tuple[tuple[str, tuple[EtcdURL, ...]], ...]  # --initial-cluster, parsed
    auto_compaction_retention_value: int  # ns for periodic, a revision count for revision; 0 = off
    auth: AuthTokenConfig
    flags_set: frozenset[str]  # flags given on the command line, by ETCD_* or in the config file
    warnings: tuple[str, ...]  # for the server to log at startup

    # ------------------------------------------------------------ Raft timing

    @property
    def heartbeat_tick(self) -> int:
        """Ticks between heartbeats: one tick is one --heartbeat-interval."""
        return 1

    @property
    def election_ticks(self) -> int:
        return self.election_timeout // self.heartbeat_interval

    @property
    def tick_seconds(self) -> float:
        return self.heartbeat_interval / 1000.0

    # ------------------------------------------------------------ cluster

    @property
    def is_new_cluster(self) -> bool:
        return self.initial_cluster_state == "new"

    def member_id_for(self, name: str) -> int | None:
        """The ID etcd gives member ``name`` of --initial-cluster (None if it is not listed)."""
        for n, urls in self.initial_cluster_members:
            if n == name:
                return compute_member_id(urls, self.initial_cluster_token)
        return None

    @property
    def initial_member_ids(self) -> dict[str, int]:
        return {n: compute_member_id(u, self.initial_cluster_token) for n, u in self.initial_cluster_members}

    @property
    def local_member_id(self) -> int:
        """This member's ID when it bootstraps a new cluster from --initial-cluster."""
        mid = self.member_id_for(self.name)
        if mid is None:
            return compute_member_id(self.initial_advertise_peer_urls, self.initial_cluster_token)
        return mid

    @property
    def initial_cluster_id(self) -> int:
        return compute_cluster_id(self.initial_member_ids.values())

    def check_bootstrap(self, resolve: Callable[[EtcdURL], EtcdURL] | None = None) -> None:
        """etcd's checks for a member starting without data; ConfigError (exit 1) if they fail."""
        try:
            check_bootstrap(self.name, self.initial_advertise_peer_urls, self.initial_cluster_members,
                            joining_existing=not self.is_new_cluster, discovery=self.discovery,
                            resolve=resolve)
        except BootstrapError as e:
            raise ConfigError(str(e), 1, str(e)) from None

    # ------------------------------------------------------------ storage and limits

    @property
    def member_dir(self) -> str:
        return self.data_dir.rstrip("/") + "/member"

    @property
    def wal_path(self) -> str:
        return self.wal_dir or self.member_dir + "/wal"

    @property
    def snap_path(self) -> str:
        return self.member_dir + "/snap"

    @property
    def effective_quota_bytes(self) -> int | None:
        """The NOSPACE threshold: 0 means etcd's 2 GiB default, a negative quota means none."""
        if self.quota_backend_bytes < 0:
            return None
        return self.quota_backend_bytes or DEFAULT_QUOTA_BYTES

    @property
    def effective_bcrypt_cost(self) -> int:
        return self.bcrypt_cost if 4 <= self.bcrypt_cost <= 31 else 10

    @property
    def auto_compaction_enabled(self) -> bool:
        return self.auto_compaction_retention_value != 0

    @property
    def auto_compaction_period(self) -> float:
        """Seconds of history kept by periodic compaction (0 when not periodic)."""
        if self.auto_compaction_mode != "periodic":
            return 0.0
        return self.auto_compaction_retention_value / 1e9

    @property
    def auto_compaction_revisions(self) -> int:
        return self.auto_compaction_retention_value if self.auto_compaction_mode == "revision" else 0

    @property
    def client_tls(self) -> TLSInfo:
        return TLSInfo(self.cert_file, self.key_file, self.client_cert_file, self.client_key_file,
                       self.trusted_ca_file, self.client_cert_auth, self.client_crl_file, self.auto_tls,
                       "", self.client_cert_allowed_hostname)

    @property
    def peer_tls(self) -> TLSInfo:
        return TLSInfo(self.peer_cert_file, self.peer_key_file, self.peer_client_cert_file,
                       self.peer_client_key_file, self.peer_trusted_ca_file, self.peer_client_cert_auth,
                       self.peer_crl_file, self.peer_auto_tls, self.peer_cert_allowed_cn,
                       self.peer_cert_allowed_hostname)

    # URL lists as strings, e.g. for listeners and for member attributes
    @property
    def listen_client_urls_str(self) -> tuple[str, ...]:
        return tuple(str(u) for u in self.listen_client_urls)

    @property
    def listen_peer_urls_str(self) -> tuple[str, ...]:
        return tuple(str(u) for u in self.listen_peer_urls)

    @property
    def advertise_client_urls_str(self) -> tuple[str, ...]:
        return tuple(str(u) for u in self.advertise_client_urls)

    @property
    def initial_advertise_peer_urls_str(self) -> tuple[str, ...]:
        return tuple(str(u) for u in self.initial_advertise_peer_urls)

    @property
    def effective_log_level(self) -> str:
        return "debug" if self.debug else self.log_level


# ---------------------------------------------------------------- building the config


def _atoi(s: str) -> int | None:
    """Go's strconv.Atoi (base 10, optional sign, 64-bit)."""
    body = s[1:] if s[:1] in ("+", "-") else s
    if body == "" or not (body.isascii() and body.isdigit()):
        return None
    v = int(s)
    return v if -(1 << 63) <= v < (1 << 63) else None


def _parse_retention(mode: str, retention: str) -> int:
    """etcd's parseCompactionRetention: a bare number is hours (periodic) or revisions."""
    hours = _atoi(retention)
    if hours is not None and hours >= 0:
        if mode == "revision":
            return hours
        if mode == "periodic":
            return hours * 3_600_000_000_000
        return 0
    try:
        value = parse_go_duration(retention)
    except GoValueError as e:
        detail = f"error parsing CompactionRetention: {e}"
        raise ConfigError(detail, 1, detail) from None
    if value < 0:
        detail = f"error parsing CompactionRetention: negative retention {go_quote(retention)}"
        raise ConfigError(detail, 1, detail)
    if value != 0 and mode == "":
        detail = f"unsupported compaction mode {mode}"
        raise ConfigError(detail, 1, detail)
    return value


def _auth_error(reason: str) -> ConfigError:
    detail = "auth: invalid auth options"
    return ConfigError(f"{reason}: {detail} (--auth-token)", 1, detail)


def _parse_auth_token(opt: str, warnings: list[str]) -> AuthTokenConfig:
    """etcd 3.5.1's --auth-token: ``simple`` (other options ignored), ``jwt,key=value,...``, or
    ``""`` (no tokens: nobody can authenticate). What needs no file is checked here; the key files
    are read when the member builds its token provider (``petcd.auth.new_token_provider``, the
    one that decides; it fails the start with etcd's "auth: invalid auth options" too)."""
    parts = opt.split(",")
    kind, opts = parts[0], {}
    for item in parts[1:]:
        pair = item.split("=")
        if len(pair) != 2:
            raise _auth_error(f"invalid token specific option: {item}")
        if pair[0] in opts:
            raise _auth_error(f"invalid token specific option, duplicated parameters ({pair[0]}): {opt}")
        opts[pair[0]] = pair[1]
    if kind == "simple":
        return AuthTokenConfig("simple")
    if kind == "":
        warnings.append("--auth-token is empty: no tokens are issued, so no user can authenticate")
        return AuthTokenConfig("")
    if kind != "jwt":
        raise _auth_error(f"unknown token type: {kind}")
    ttl = 300.0
    for key, value in opts.items():
        if key == "ttl":
            try:
                ttl = parse_go_duration(value) / 1e9
            except GoValueError:
                raise _auth_error(f"failed to parse ttl option ({value})") from None
        elif key not in ("pub-key", "priv-key", "sign-method"):
            warnings.append(f"--auth-token: unknown JWT option {go_quote(key)} (ignored, as etcd does)")
    method = opts.get("sign-method", "")
    if method not in JWT_SIGN_METHODS:
        raise _auth_error("problem loading JWT options: auth: invalid auth signature method")
    # missing or unusable keys stop the member when it builds its token provider, with etcd's
    # "auth: missing key data" / "auth: invalid auth options"
    pub, priv = opts.get("pub-key", ""), opts.get("priv-key", "")
    return AuthTokenConfig("jwt", method, pub, priv, ttl)


def _finish(pv: ParsedValues) -> ServerConfig:
    """What etcd does between flag validation and opening the data dir, minus any I/O."""
    v: dict[str, Any] = dict(pv.values)
    warnings = list(pv.warnings)
    name = v["name"]
    # `petcd --name foo` alone must bootstrap a one-member cluster named foo, as etcd does.
    if name != DEFAULT_NAME and v["initial-cluster"] == DEFAULT_INITIAL_CLUSTER:
        v["initial-cluster"] = ",".join(f"{name or DEFAULT_NAME}={u}" for u in v["initial-advertise-peer-urls"])
    if v["data-dir"] == "":
        v["data-dir"] = f"{name}.petcd"
    if pv.advertise_client_missing:  # only reachable if validation was skipped
        v["advertise-client-urls"] = ()
    try:
        members = tuple(parse_url_map(v["initial-cluster"]))
    except GoValueError as e:
        detail = f"error setting up initial cluster: {e}"
        raise ConfigError(detail, 1, detail) from None
    retention = _parse_retention(v["auto-compaction-mode"], v["auto-compaction-retention"])
    if v["auto-compaction-mode"] == "revision" and _atoi(v["auto-compaction-retention"]) is None \
            and retention:
        warnings.append(f"--auto-compaction-retention={v['auto-compaction-retention']} is a duration but "
                        f"--auto-compaction-mode=revision counts revisions; it keeps {retention} revisions")
    auth = _parse_auth_token(v["auth-token"], warnings)
    for suite in v["cipher-suites"]:
        if suite not in CIPHER_SUITES:
            raise verify_error(f"unexpected TLS cipher suite {go_quote(suite)}")
    for flag in ("tls-min-version", "tls-max-version"):
        if v[flag] not in ("", "TLS1.2", "TLS1.3"):
            raise verify_error(f"unexpected TLS version {go_quote(v[flag])} (must be one of: TLS1.2, TLS1.3)")
    if v["client-frontends"] < -1:
        raise verify_error(f"--client-frontends={v['client-frontends']}: want -1 (one per CPU), 0 (none) or "
                           "a number of front-end processes")
    if v["max-request-bytes"] > RECOMMENDED_MAX_REQUEST_BYTES:
        warnings.append(f"--max-request-bytes={v['max-request-bytes']} exceeds the recommended maximum of "
                        f"{RECOMMENDED_MAX_REQUEST_BYTES} bytes")
    if v["metrics"] not in ("basic", "extensive"):
        warnings.append(f"--metrics={v['metrics']} is accepted but not applied: only 'basic' and 'extensive' "
                        "mean something; any other value serves the basic set (as etcd does)")
    warnings += unapplied_warnings(v, pv.flags_set)
    fields = {spec.field: v[spec.name] for spec in FLAG_SPECS}
    return ServerConfig(
        **fields,
        initial_cluster_members=members,
        auto_compaction_retention_value=retention,
        auth=auth,
        flags_set=frozenset(pv.flags_set),
        warnings=tuple(warnings),
    )


def parse_config(argv: list[str], environ: Mapping[str, str]) -> ServerConfig:
    """Parse petcd's (etcd's) server flags; see the module docstring. Raises ConfigError."""
    return _finish(parse_values(list(argv), environ))


def check_supported(cfg: ServerConfig) -> None:
    """What petcd refuses to run with although etcd would (see the flag table's ``does``):
    ConfigError (exit 1) naming the flag. parse_config alone accepts everything etcd accepts."""
    values = {spec.name: getattr(cfg, spec.field) for spec in FLAG_SPECS}
    refused = refusal(values)
    if refused is not None:
        raise refused
    check_tls_urls(values)
    if "systemd/journal" in cfg.log_outputs:
        detail = ("--log-outputs=systemd/journal: petcd cannot write to the journal itself; use stderr "
                  "(systemd keeps a service's stderr in the journal)")
        raise ConfigError(f"petcd cannot start: {detail}", 1, detail)


def load_config_or_exit(argv: list[str], environ: Mapping[str, str],
                        stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> ServerConfig:
    """parse_config and check_supported for a main(): prints help/version/errors and exits with
    etcd's exit code (1 for what petcd refuses)."""
    try:
        cfg = parse_config(argv, environ)
        check_supported(cfg)
        return cfg
    except ConfigError as e:
        stream = (stdout or sys.stdout) if e.exit_code == 0 else (stderr or sys.stderr)
        print(e.message, file=stream)
        raise SystemExit(e.exit_code) from None
