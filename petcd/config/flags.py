"""The table of petcd's server flags: etcd's names, kinds and defaults, and petcd's help text.

Every flag etcd 3.4 or 3.5 accepts on its server command line is listed (and a few of 3.6 and
petcd's own), so a command line or a systemd unit written for etcd is understood. Each entry says
what petcd does with its flag (``does``):

* ``wired``: the flag changes what the member does (tests/config/test_flag_table.py shows it);
* ``warn``: accepted and validated, but not applied; if the operator sets it, the member logs that
  once at startup, with the reason;
* ``refuse``: a value other than the default stops the member (exit 1) with the reason, because
  running without the feature would mislead (TLS, discovery, a v2 proxy...).

The table is the only place defaults live. ``ServerConfig`` has one field per entry (the flag
name with ``-`` turned into ``_``); durations are stored as float seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from petcd.config.govalues import new_urls

Kind = Literal[
    "string", "bool", "uint", "uint32", "int", "duration", "urls", "choice", "strings",
    "unique_strings", "cors",
]

# Go types named in config-file type errors, as etcd's JSON decoder names them.
GO_TYPES: dict[str, str] = {
    "string": "string", "bool": "bool", "uint": "uint", "uint32": "uint32", "int": "int",
    "duration": "time.Duration", "urls": "string", "choice": "string", "strings": "[]string",
    "unique_strings": "string", "cors": "string",
}

# Flags Go's etcd still accepts and ignores (options of etcd 0.4/2.x). petcd does the same.
IGNORED_FLAGS = (
    "cluster-active-size", "cluster-remove-delay", "cluster-sync-interval", "config", "force",
    "max-result-buffer", "max-retry-attempts", "peer-heartbeat-interval", "peer-election-timeout",
    "retry-interval", "snapshot", "v", "vv",
)

DEFAULT_LISTEN_PEER_URLS = "http://localhost:2380"
DEFAULT_LISTEN_CLIENT_URLS = "http://localhost:2379"
DEFAULT_INITIAL_ADVERTISE_PEER_URLS = "http://localhost:2380"
DEFAULT_ADVERTISE_CLIENT_URLS = "http://localhost:2379"
DEFAULT_NAME = "default"
DEFAULT_INITIAL_CLUSTER = f"{DEFAULT_NAME}={DEFAULT_INITIAL_ADVERTISE_PEER_URLS}"


Action = Literal["wired", "warn", "refuse"]


@dataclass(frozen=True, slots=True)
class Handling:
    """What petcd does with a flag; ``reason`` says why a warn/refuse flag is not applied.
    ``behaves_as``: values of a warn flag that petcd's behaviour already matches (e.g.
    --enable-v2=false), which therefore give no warning."""

    action: Action
    reason: str = ""
    behaves_as: tuple[object, ...] = ()


WIRED = Handling("wired")


def warn(reason: str, behaves_as: tuple[object, ...] = ()) -> Handling:
    return Handling("warn", reason, behaves_as)


def refuse(reason: str, behaves_as: tuple[object, ...] = ()) -> Handling:
    """``behaves_as``: values that ask for what petcd does anyway, so they are accepted."""
    return Handling("refuse", reason, behaves_as)


@dataclass(frozen=True, slots=True)
class FlagSpec:
    name: str
    kind: Kind
    default: object
    help: str
    group: str
    shown_default: str  # how --help shows the default
    does: Handling
    choices: tuple[str, ...] = ()

    @property
    def field(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return "ETCD_" + self.name.upper().replace("-", "_")


def _default(kind: Kind, text: str) -> object:
    if kind == "bool":
        return text == "true"
    if kind in ("uint", "uint32", "int"):
        return int(text)
    if kind == "duration":
        return float(text)
    if kind == "urls":
        return new_urls(text.split(",")) if text else ()
    if kind == "strings":
        return tuple(text.split(",")) if text else ()
    if kind in ("unique_strings", "cors"):
        return tuple(sorted(set(text.split(",")))) if text else ()
    return text


_SPECS: list[FlagSpec] = []
_group = ""


def _g(name: str) -> None:
    global _group
    _group = name


def _f(name: str, kind: Kind, default: str, help: str, shown: str | None = None,
       choices: tuple[str, ...] = (), *, does: Handling) -> None:
    _SPECS.append(FlagSpec(name, kind, _default(kind, default), help, _group,
                           default if shown is None else shown, does, choices))


_g("Member")
_f("name", "string", DEFAULT_NAME, "This member's name, unique in the cluster.", does=WIRED)
_f("data-dir", "string", "", "Directory for the member's data (WAL, snapshots, database).",
   "${name}.petcd", does=WIRED)
_f("wal-dir", "string", "", "Put the write-ahead log in this directory instead of inside --data-dir.",
   does=WIRED)
_f("snapshot-count", "uint", "100000", "Applied entries between two Raft snapshots.", does=WIRED)
_f("heartbeat-interval", "uint", "100", "Milliseconds between leader heartbeats (one Raft tick).", does=WIRED)
_f("election-timeout", "uint", "1000",
   "Milliseconds a follower waits without hearing from a leader before starting an election; "
   "at least 5 x --heartbeat-interval and at most 50000.", does=WIRED)
_f("initial-election-tick-advance", "bool", "true",
   "On boot, skip most of the first election timeout so a leader is elected sooner.", does=WIRED)
_f("listen-peer-urls", "urls", DEFAULT_LISTEN_PEER_URLS,
   "Comma-separated URLs to accept peer (member-to-member) traffic on.", does=WIRED)
_f("listen-client-urls", "urls", DEFAULT_LISTEN_CLIENT_URLS,
   "Comma-separated URLs to accept client traffic (the gRPC API) on.", does=WIRED)
_f("listen-client-http-urls", "urls", "",
   "Comma-separated URLs to serve only the HTTP side of the client API on (health, version, metrics, "
   "the JSON gateway).", does=WIRED)
_f("max-snapshots", "uint", "5", "Snapshot files to keep (0 keeps all).", does=WIRED)
_f("max-wals", "uint", "5", "WAL files to keep (0 keeps all).", does=WIRED)
_f("quota-backend-bytes", "int", "0",
   "Database size that raises the NOSPACE alarm (0 = 2 GiB; negative disables the quota).", does=WIRED)
_f("backend-bbolt-freelist-type", "string", "map", "Accepted for etcd compatibility (bbolt only).",
   does=warn("a bbolt setting; petcd's LMDB backend has no freelist choice"))
_f("backend-batch-interval", "duration", "0",
   "Longest time a backend write batch stays open before it is committed.", "", does=WIRED)
_f("backend-batch-limit", "int", "0", "Most operations in one backend write batch before it is committed.",
   does=WIRED)
_f("max-txn-ops", "uint", "128", "Most operations allowed in one transaction.", does=WIRED)
_f("max-request-bytes", "uint", "1572864", "Largest client request accepted, in bytes.", does=WIRED)
_f("max-concurrent-streams", "uint32", "4294967295", "Most concurrent gRPC streams per client connection.",
   "math.MaxUint32", does=WIRED)
_f("grpc-keepalive-min-time", "duration", "5", "Shortest interval a client may ping the server at.", "5s",
   does=WIRED)
_f("grpc-keepalive-interval", "duration", "7200",
   "How often the server pings an idle client connection (0: gRPC's default, 2h).", "2h", does=WIRED)
_f("grpc-keepalive-timeout", "duration", "20",
   "How long to wait for a ping answer before closing the connection (0: gRPC's default, 20s).", "20s",
   does=WIRED)
_f("socket-reuse-port", "bool", "false", "Set SO_REUSEPORT on listeners.",
   does=warn("petcd's member listeners never set SO_REUSEPORT", behaves_as=(False,)))
_f("socket-reuse-address", "bool", "false", "Set SO_REUSEADDR on listeners.",
   does=warn("petcd's listeners keep gRPC's own SO_REUSEADDR choice"))
_f("enable-grpc-gateway", "bool", "true", "Serve the JSON/HTTP gateway of the v3 API on client URLs.",
   does=WIRED)
_f("raft-read-timeout", "duration", "5", "Read timeout on each peer connection.", "5s",
   does=warn("petcd's peer streams use their own keepalive timeouts"))
_f("raft-write-timeout", "duration", "5", "Write timeout on each peer connection.", "5s",
   does=warn("petcd's peer streams use their own keepalive timeouts"))
_f("unsafe-no-fsync", "bool", "false", "Never fsync (loses data on a crash; tests only).", does=WIRED)

_g("Clustering")
_f("initial-advertise-peer-urls", "urls", DEFAULT_INITIAL_ADVERTISE_PEER_URLS,
   "This member's peer URLs, as the other members should reach them.", does=WIRED)
_f("initial-cluster", "string", DEFAULT_INITIAL_CLUSTER,
   "Members of a new cluster, as name=peer-url pairs separated by commas.", does=WIRED)
_f("initial-cluster-state", "choice", "new",
   "'new' to create a cluster, 'existing' to join one (ignored once the member has data).",
   choices=("new", "existing"), does=WIRED)
_f("initial-cluster-token", "string", "etcd-cluster",
   "Cluster token mixed into member and cluster IDs so separate clusters never mix.", does=WIRED)
_f("advertise-client-urls", "urls", DEFAULT_ADVERTISE_CLIENT_URLS,
   "This member's client URLs, as clients should reach them.", does=WIRED)
_f("discovery", "string", "", "Discovery service URL to bootstrap from.",
   does=refuse("discovery is not supported yet; list the members with --initial-cluster"))
_f("discovery-fallback", "choice", "proxy", "What to do when discovery fails: 'exit' or 'proxy'.",
   choices=("exit", "proxy"), does=warn("only used with --discovery, which petcd does not support"))
_f("discovery-proxy", "string", "", "HTTP proxy for the discovery service.",
   does=warn("only used with --discovery, which petcd does not support"))
_f("discovery-srv", "string", "", "DNS domain whose SRV records list the cluster.",
   does=refuse("DNS discovery is not supported yet; list the members with --initial-cluster"))
_f("discovery-srv-name", "string", "", "Suffix of the SRV name queried with --discovery-srv.",
   does=warn("only used with --discovery-srv, which petcd does not support"))
_f("strict-reconfig-check", "bool", "true", "Refuse membership changes that would lose quorum.", does=WIRED)
_f("pre-vote", "bool", "true", "Run Raft's pre-vote phase so a rejoining member does not force an election.",
   does=WIRED)
_f("auto-compaction-retention", "string", "0",
   "History to keep when compacting automatically: hours or a duration such as 30m for 'periodic', "
   "a revision count for 'revision'; 0 turns automatic compaction off.", does=WIRED)
_f("auto-compaction-mode", "string", "periodic",
   "How to read --auto-compaction-retention: 'periodic' (time) or 'revision' (count).", does=WIRED)
_f("enable-v2", "bool", "false", "Accept etcd v2 API requests (petcd serves only v3).",
   does=warn("petcd serves only the v3 API", behaves_as=(False,)))
_f("experimental-enable-v2v3", "string", "", "Serve v2 requests from the v3 store under this prefix.",
   does=warn("petcd serves only the v3 API", behaves_as=("",)))
_f("v2-deprecation", "choice", "not-yet", "Stage of the v2 store deprecation.",
   choices=("not-yet", "write-only", "write-only-drop-data", "gone"), does=warn("petcd has no v2 store"))

_g("Security")
# TLS: gRPC's Python API has no TLS version bounds (it always speaks TLS 1.2 and 1.3), no CRLs
# and no per-connection verification hook; what it cannot do is refused with that reason.
_NO_CRL = refuse("gRPC's Python API cannot check certificate revocation lists")
_f("cert-file", "string", "", "TLS certificate for client connections.", does=WIRED)
_f("key-file", "string", "", "TLS key for client connections.", does=WIRED)
_f("client-cert-auth", "bool", "false", "Require clients to present a certificate signed by --trusted-ca-file.",
   does=WIRED)
_f("client-cert-file", "string", "", "Certificate this member presents as a client (default --cert-file).",
   does=warn("petcd never dials its own client URLs, so it presents no client certificate there"))
_f("client-key-file", "string", "", "Key this member uses as a client (default --key-file).",
   does=warn("petcd never dials its own client URLs, so it presents no client certificate there"))
_f("client-crl-file", "string", "", "Certificate revocation list for client certificates.", does=_NO_CRL)
_f("client-cert-allowed-hostname", "string", "", "Hostname a client certificate must carry.", does=WIRED)
_f("trusted-ca-file", "string", "", "CA bundle that signs client certificates.", does=WIRED)
_f("auto-tls", "bool", "false", "Serve clients with a generated self-signed certificate.", does=WIRED)
_f("peer-cert-file", "string", "", "TLS certificate for peer connections.", does=WIRED)
_f("peer-key-file", "string", "", "TLS key for peer connections.", does=WIRED)
_f("peer-client-cert-auth", "bool", "false", "Require peers to present a certificate signed by --peer-trusted-ca-file.",
   does=WIRED)
_f("peer-client-cert-file", "string", "", "Certificate this member presents to peers (default --peer-cert-file).",
   does=WIRED)
_f("peer-client-key-file", "string", "", "Key this member uses towards peers (default --peer-key-file).",
   does=WIRED)
_f("peer-trusted-ca-file", "string", "", "CA bundle that signs peer certificates.", does=WIRED)
_f("peer-cert-allowed-cn", "string", "", "Common name a peer certificate must carry.", does=WIRED)
_f("peer-cert-allowed-hostname", "string", "", "Hostname a peer certificate must carry.", does=WIRED)
_f("peer-auto-tls", "bool", "false", "Use a generated self-signed certificate for peers.", does=WIRED)
_f("self-signed-cert-validity", "uint", "1", "Years the generated certificates stay valid.", does=WIRED)
_f("peer-crl-file", "string", "", "Certificate revocation list for peer certificates.", does=_NO_CRL)
_f("cipher-suites", "strings", "", "Comma-separated TLS cipher suites (empty: the TLS library's choice).",
   does=WIRED)
_f("cors", "cors", "*", "Comma-separated origins allowed by CORS ('*' allows all).",
   does=warn("petcd does not serve the HTTP side of the client API yet"))
_f("host-whitelist", "unique_strings", "*", "Host names accepted in HTTP requests on insecure listeners ('*' = all).",
   does=warn("petcd does not serve the HTTP side of the client API yet"))
# gRPC (BoringSSL) always accepts TLS 1.2 and 1.3 and its Python API cannot narrow that: the
# values that ask for exactly this range are accepted, the others refused
_f("tls-min-version", "string", "", "Lowest TLS version accepted: TLS1.2 or TLS1.3.",
   does=refuse("gRPC's Python API cannot narrow the TLS versions; petcd always accepts TLS 1.2 and 1.3",
               behaves_as=("TLS1.2",)))
_f("tls-max-version", "string", "", "Highest TLS version accepted: TLS1.2 or TLS1.3.",
   does=refuse("gRPC's Python API cannot narrow the TLS versions; petcd always accepts TLS 1.2 and 1.3",
               behaves_as=("TLS1.3",)))
_f("experimental-peer-skip-client-san-verification", "bool", "false",
   "Do not check the SAN of peers' client certificates.", does=WIRED)

_g("Auth")
_f("auth-token", "string", "simple",
   "Token type: 'simple', or 'jwt,pub-key=<path>,priv-key=<path>,sign-method=<alg>[,ttl=<duration>]'.",
   does=WIRED)
_f("bcrypt-cost", "uint", "10", "bcrypt cost for password hashes (4 to 31).", does=WIRED)
_f("auth-token-ttl", "uint", "300", "Seconds a simple token lives without use.", does=WIRED)

_g("Profiling and monitoring")
_f("enable-pprof", "bool", "false", "Serve profiling data under /debug/pprof/ on client URLs.",
   does=warn("pprof is Go's profiler; petcd has no /debug/pprof endpoints", behaves_as=(False,)))
_f("metrics", "string", "basic",
   "Metrics detail: 'basic' or 'extensive' (adds the gRPC handling-time histograms).", does=WIRED)
_f("listen-metrics-urls", "urls", "", "Extra URLs serving only /metrics and /health.", does=WIRED)

_g("Logging")
_f("logger", "string", "zap", "Logger: only 'zap' is accepted ('capnslog' was removed in etcd 3.5).",
   does=warn("petcd always logs through Python's logging, as text lines"))
_f("log-outputs", "unique_strings", "default", "Comma-separated log targets: 'default', 'stderr', 'stdout' or file paths.",
   does=WIRED)
_f("log-level", "string", "info", "Log level: debug, info, warn, error, panic or fatal.", does=WIRED)
_f("enable-log-rotation", "bool", "false", "Rotate the log file given as the single --log-outputs target.",
   does=warn("petcd does not rotate its log files; use logrotate or journald", behaves_as=(False,)))
_f("log-rotation-config-json", "string",
   '{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}',
   "Log rotation settings as JSON.",
   does=warn("petcd does not rotate its log files; use logrotate or journald"))
_f("debug", "bool", "false", "Same as --log-level=debug (etcd 3.4 flag).", does=WIRED)
_f("log-package-levels", "string", "", "Per-package log levels (etcd 3.4 flag; recorded only).",
   does=warn("petcd has one log level for all of it (--log-level)", behaves_as=("",)))

_g("Distributed tracing")
_f("experimental-enable-distributed-tracing", "bool", "false", "Export OpenTelemetry traces.",
   does=warn("petcd does not export traces", behaves_as=(False,)))
_f("experimental-distributed-tracing-address", "string", "localhost:4317", "Trace collector address.",
   does=warn("petcd does not export traces"))
_f("experimental-distributed-tracing-service-name", "string", "etcd", "Service name in traces.",
   does=warn("petcd does not export traces"))
_f("experimental-distributed-tracing-instance-id", "string", "", "Instance ID in traces.",
   does=warn("petcd does not export traces"))
_f("experimental-distributed-tracing-sampling-rate", "int", "0", "Spans sampled per million.",
   does=warn("petcd does not export traces"))

_g("v2 proxy (etcd 3.4/3.5 compatibility)")
_f("proxy", "choice", "off", "v2 proxy mode: 'off', 'readonly' or 'on' (petcd has no v2 proxy).",
   choices=("off", "readonly", "on"),
   does=refuse("petcd has no v2 proxy mode; it would start as a member instead"))
_f("proxy-failure-wait", "uint", "5000", "Milliseconds an endpoint stays marked failed.",
   does=warn("petcd has no v2 proxy mode"))
_f("proxy-refresh-interval", "uint", "30000", "Milliseconds between endpoint refreshes.",
   does=warn("petcd has no v2 proxy mode"))
_f("proxy-dial-timeout", "uint", "1000", "Milliseconds before a dial times out.",
   does=warn("petcd has no v2 proxy mode"))
_f("proxy-write-timeout", "uint", "5000", "Milliseconds before a write times out.",
   does=warn("petcd has no v2 proxy mode"))
_f("proxy-read-timeout", "uint", "0", "Milliseconds before a read times out.",
   does=warn("petcd has no v2 proxy mode"))

_g("Experimental")
_f("experimental-initial-corrupt-check", "bool", "false",
   "Before starting, compare this member's data hash with its peers' and refuse to start on a mismatch.",
   does=WIRED)
_f("experimental-corrupt-check-time", "duration", "0",
   "Interval of the leader's data hash comparison with its followers (0 = never); a mismatch raises CORRUPT.",
   "0s", does=WIRED)
_f("experimental-compact-hash-check-enabled", "bool", "false", "Leader compares compaction hashes with followers.",
   does=warn("petcd does not compare compaction hashes yet", behaves_as=(False,)))
_f("experimental-compact-hash-check-time", "duration", "60", "Interval of the compaction hash check.", "1m",
   does=warn("petcd does not compare compaction hashes yet"))
_f("experimental-enable-lease-checkpoint", "bool", "false", "Leader checkpoints lease TTLs to followers.",
   does=WIRED)
_f("experimental-enable-lease-checkpoint-persist", "bool", "false",
   "Persist lease checkpoints (needs --experimental-enable-lease-checkpoint).",
   does=warn("petcd always persists the checkpoints it makes", behaves_as=(True,)))
_f("experimental-compaction-batch-limit", "int", "1000", "Revisions deleted per compaction batch.",
   does=WIRED)
_f("experimental-compaction-sleep-interval", "duration", "0.01", "Pause between compaction batches.", "10ms",
   does=warn("petcd runs one compaction batch per apply round instead of sleeping"))
_f("experimental-watch-progress-notify-interval", "duration", "600", "Interval of watch progress notifications.",
   "10m", does=WIRED)
_f("experimental-warning-apply-duration", "duration", "0.1", "Log a warning when applying takes longer.", "100ms",
   does=warn("petcd does not time applies against a threshold"))
_f("experimental-warning-unary-request-duration", "duration", "0.3",
   "Log a warning when a unary request takes longer.", "300ms",
   does=warn("petcd does not time requests against a threshold"))
_f("experimental-bootstrap-defrag-threshold-megabytes", "uint", "0",
   "Defragment at start when at least this many MB would be freed (0 = never).",
   does=warn("petcd does not defragment at start", behaves_as=(0,)))
_f("experimental-txn-mode-write-with-shared-buffer", "bool", "true", "Share the read buffer in write transactions.",
   does=warn("a bbolt buffer detail with no counterpart in petcd"))
_f("experimental-memory-mlock", "bool", "false", "Lock the process memory in RAM.",
   does=warn("petcd does not lock its memory", behaves_as=(False,)))
_f("experimental-downgrade-check-time", "duration", "5", "Interval of the downgrade check.", "5s",
   does=warn("petcd has no downgrade support"))
_f("experimental-snapshot-catchup-entries", "uint", "5000", "Entries kept after a snapshot for slow followers.",
   does=WIRED)
_f("experimental-max-learners", "int", "1", "Most learner members in the cluster.", does=WIRED)
_f("experimental-wait-cluster-ready-timeout", "duration", "5", "How long to wait for the cluster to be ready.",
   "5s", does=warn("petcd serves clients without waiting for the cluster to be ready"))
_f("experimental-stop-grpc-service-on-defrag", "bool", "false", "Report NOT_SERVING on health while defragmenting.",
   does=warn("petcd keeps serving during a defrag", behaves_as=(False,)))
_f("experimental-backend-bbolt-freelist-type", "string", "array", "Accepted for etcd 3.4 compatibility (bbolt only).",
   does=warn("a bbolt setting; petcd's LMDB backend has no freelist choice"))

_g("petcd")
_f("client-frontends", "int", "-1",
   "Processes serving the client gRPC API beside the member, sharing its client ports "
   "(-1: one per CPU of the member's share of the machine, i.e. its CPUs over the members of "
   "--initial-cluster on this host, at least 1 and at most 4, none on a one-CPU machine; "
   "0: the member serves clients itself).",
   "-1", does=WIRED)
_f("client-urls-http", "bool", "true",
   "Serve the HTTP side (/health, /version, /metrics, the JSON gateway) on --listen-client-urls too, "
   "as etcd does, by looking at each connection's first bytes; every gRPC connection is then relayed "
   "through petcd (on a quiet machine: under 5% of check perf throughput, 2-15% more server "
   "CPU per write; docs/benchmarks.md). false: the client URLs are gRPC's own, and the HTTP side is "
   "served on --listen-client-http-urls and --listen-metrics-urls only. --listen-client-http-urls turns it off.",
   does=WIRED)

_g("Unsafe")
_f("force-new-cluster", "bool", "false",
   "Restart as a one-member cluster keeping the data (unsafe; remove the flag once it is running).",
   does=WIRED)
_g("Other")
_f("config-file", "string", "", "Read the configuration from this YAML file; flags and ETCD_* variables are then ignored.",
   does=WIRED)
_f("version", "bool", "false", "Print petcd's version and the etcd API version it implements, then exit.",
   does=WIRED)

FLAG_SPECS: tuple[FlagSpec, ...] = tuple(_SPECS)
FLAGS: dict[str, FlagSpec] = {s.name: s for s in FLAG_SPECS}


USAGE = """Usage:

  petcd [flags]
    Start a petcd member (an etcd-compatible key-value server).

  petcd --version
    Print petcd's version and the etcd API version it implements.

  petcd -h | --help
    Print this help, with every flag and its default.

  petcd --config-file <path>
    Take the whole configuration from a YAML file using etcd's keys; other flags and ETCD_*
    environment variables are then ignored.
"""


def help_text() -> str:
    """--help: the usage lines, then every flag by group with its default."""
    lines = [USAGE.rstrip("\n"), ""]
    group = ""
    for spec in FLAG_SPECS:
        if spec.group != group:
            group = spec.group
            lines.append(f"\n{group}:")
        shown = f"'{spec.shown_default}'" if spec.kind != "bool" else spec.shown_default
        if spec.kind == "bool":
            shown = f"'{'true' if spec.default else 'false'}'"
        lines.append(f"  --{spec.name} {shown}")
        lines.append(f"    {spec.help}")
        if spec.does.action == "warn":
            lines.append(f"    (accepted but not applied: {spec.does.reason})")
        elif spec.does.action == "refuse" and spec.does.behaves_as:
            accepted = ", ".join(str(v) for v in spec.does.behaves_as)
            lines.append(f"    (refused unless left at the default or set to {accepted}: {spec.does.reason})")
        elif spec.does.action == "refuse":
            lines.append(f"    (refused unless left at the default: {spec.does.reason})")
    lines.append("")
    lines.append("Every flag can also be given as an environment variable ETCD_<FLAG> (upper case, '-' as '_'),")
    lines.append("e.g. ETCD_DATA_DIR; a flag given both ways is an error.")
    return "\n".join(lines)
