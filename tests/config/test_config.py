"""petcd's server configuration: etcd's flags, ETCD_* variables and --config-file.

The expected messages and exit codes are the ones real etcd 3.5.1 gives for the same input
(tests/config/test_config_vs_etcd.py checks them against the etcd 3.5.1 binary directly).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from petcd.config.cluster_ids import compute_cluster_id, compute_member_id
from petcd.config.flags import FLAG_SPECS, help_text
from petcd.config.govalues import (
    GoValueError,
    format_go_duration,
    new_urls,
    parse_go_duration,
    parse_go_int,
    parse_go_uint,
    parse_url_map,
)
from petcd.config.server_config import (
    ConfigError,
    ServerConfig,
    check_supported,
    load_config_or_exit,
    parse_config,
)
from petcd.config.startup import best_practice_warnings, startup_notes

NOTEBOOK_ETCD1 = (
    "--name etcd-1 --data-dir /tmp/petcd-notebook/etcd1 --initial-advertise-peer-urls http://127.0.0.1:2381 "
    "--listen-peer-urls http://127.0.0.1:2381 --listen-client-urls http://127.0.0.1:2379 "
    "--advertise-client-urls http://127.0.0.1:2379 --initial-cluster-token etcd-lock-cluster-1 "
    "--initial-cluster etcd-1=http://127.0.0.1:2381,etcd-2=http://127.0.0.1:2382,etcd-3=http://127.0.0.1:2383 "
    "--initial-cluster-state new --heartbeat-interval 1000 --auto-compaction-mode=revision "
    "--auto-compaction-retention=1000 --quota-backend-bytes 8589934592 --election-timeout 5000"
).split()


def err(argv: list[str], env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(argv, env or {})
    return info.value


# ---------------------------------------------------------------- defaults


def test_defaults_match_etcd_with_petcd_data_dir() -> None:
    c = parse_config([], {})
    assert c.name == "default"
    assert c.data_dir == "default.petcd"
    assert c.wal_dir == ""
    assert c.listen_client_urls_str == ("http://localhost:2379",)
    assert c.listen_peer_urls_str == ("http://localhost:2380",)
    assert c.advertise_client_urls_str == ("http://localhost:2379",)
    assert c.initial_advertise_peer_urls_str == ("http://localhost:2380",)
    assert c.initial_cluster == "default=http://localhost:2380"
    assert c.initial_cluster_state == "new"
    assert c.initial_cluster_token == "etcd-cluster"
    assert (c.heartbeat_interval, c.election_timeout) == (100, 1000)
    assert (c.heartbeat_tick, c.election_ticks) == (1, 10)
    assert c.snapshot_count == 100000
    assert (c.max_snapshots, c.max_wals) == (5, 5)
    assert c.quota_backend_bytes == 0 and c.effective_quota_bytes == 2 * 1024**3
    assert (c.max_request_bytes, c.max_txn_ops) == (1572864, 128)
    assert (c.auto_compaction_mode, c.auto_compaction_retention) == ("periodic", "0")
    assert not c.auto_compaction_enabled
    assert (c.grpc_keepalive_min_time, c.grpc_keepalive_interval, c.grpc_keepalive_timeout) == (5.0, 7200.0, 20.0)
    assert c.auth.kind == "simple" and c.bcrypt_cost == 10 and c.auth_token_ttl == 300
    assert c.strict_reconfig_check and c.pre_vote and not c.enable_v2
    assert (c.logger, c.log_level, c.log_outputs, c.metrics) == ("zap", "info", ("default",), "basic")
    assert c.cors == ("*",) and c.host_whitelist == ("*",)
    assert c.max_concurrent_streams == 2**32 - 1
    assert c.flags_set == frozenset() and c.warnings == ()
    # etcd's well-known IDs for a default single member
    assert c.local_member_id == 0x8E9E05C52164694D
    assert c.initial_cluster_id == 0xCDF818194E3A8C32


def test_every_flag_has_a_typed_field() -> None:
    fields = set(ServerConfig.__dataclass_fields__)
    for spec in FLAG_SPECS:
        assert spec.field in fields, spec.name
    c = parse_config([], {})
    for spec in FLAG_SPECS:
        if spec.name != "data-dir":
            assert getattr(c, spec.field) == spec.default, spec.name


def test_config_is_frozen() -> None:
    c = parse_config([], {})
    with pytest.raises(AttributeError):
        c.name = "x"  # type: ignore[misc]


# ---------------------------------------------------------------- flag forms


@pytest.mark.parametrize("argv", [
    ["--name", "n1"], ["--name=n1"], ["-name", "n1"], ["-name=n1"],
])
def test_string_flag_forms(argv: list[str]) -> None:
    c = parse_config(argv, {})
    assert c.name == "n1" and c.data_dir == "n1.petcd" and "name" in c.flags_set


@pytest.mark.parametrize(("argv", "expected"), [
    (["--enable-v2"], True), (["-enable-v2"], True), (["--enable-v2=true"], True), (["--enable-v2=false"], False),
    (["--enable-v2=1"], True), (["--enable-v2=0"], False), (["--enable-v2=T"], True), (["--enable-v2=False"], False),
    (["--strict-reconfig-check=false"], None),
])
def test_bool_flag_forms(argv: list[str], expected: bool | None) -> None:
    c = parse_config(argv, {})
    if expected is None:
        assert c.strict_reconfig_check is False
    else:
        assert c.enable_v2 is expected


def test_bool_flag_does_not_take_next_argument() -> None:
    e = err(["--enable-v2", "false"])
    assert (e.exit_code, e.detail) == (1, "'false' is not a valid flag")
    assert e.message == "error verifying flags, 'false' is not a valid flag. See 'petcd --help'."


def test_last_occurrence_wins_and_value_may_start_with_dash() -> None:
    c = parse_config(["--name", "a", "--name=b", "--initial-cluster-token", "-tok-"], {})
    assert c.name == "b" and c.initial_cluster_token == "-tok-"


def test_go_integer_syntax_is_accepted() -> None:
    c = parse_config(["--heartbeat-interval=0x64", "--election-timeout=1_000", "--max-txn-ops=0200"], {})
    assert (c.heartbeat_interval, c.election_timeout, c.max_txn_ops) == (100, 1000, 128)


def test_durations_and_lists() -> None:
    c = parse_config(["--grpc-keepalive-min-time=1m30s", "--backend-batch-interval=100ms",
                      "--log-outputs=stdout,stderr,stdout", "--cipher-suites=TLS_AES_128_GCM_SHA256",
                      "--cors=http://a.example:1,*", "--listen-metrics-urls=http://127.0.0.1:9000"], {})
    assert c.grpc_keepalive_min_time == 90.0 and c.backend_batch_interval == pytest.approx(0.1)
    assert c.log_outputs == ("stderr", "stdout")
    assert c.cipher_suites == ("TLS_AES_128_GCM_SHA256",)
    assert c.cors == ("*", "http://a.example:1")
    assert [str(u) for u in c.listen_metrics_urls] == ["http://127.0.0.1:9000"]


def test_urls_are_sorted_as_etcd_sorts_them() -> None:
    c = parse_config(["--listen-client-urls=http://127.0.0.2:1,http://127.0.0.1:2",
                      "--advertise-client-urls=https://[::1]:2379,unix://sock:0"], {})
    assert c.listen_client_urls_str == ("http://127.0.0.1:2", "http://127.0.0.2:1")
    assert c.advertise_client_urls_str == ("https://[::1]:2379", "unix://sock:0")
    assert c.advertise_client_urls[0].hostname == "::1" and c.advertise_client_urls[0].port == "2379"


def test_notebook_command_line_is_accepted() -> None:
    c = parse_config(NOTEBOOK_ETCD1, {})
    assert c.name == "etcd-1" and c.data_dir == "/tmp/petcd-notebook/etcd1"
    assert [n for n, _ in c.initial_cluster_members] == ["etcd-1", "etcd-2", "etcd-3"]
    assert [str(u) for u in c.initial_cluster_members[1][1]] == ["http://127.0.0.1:2382"]
    assert (c.heartbeat_interval, c.election_timeout, c.election_ticks) == (1000, 5000, 5)
    assert c.auto_compaction_mode == "revision" and c.auto_compaction_revisions == 1000
    assert c.quota_backend_bytes == 8589934592 and c.warnings == ()
    c.check_bootstrap()
    assert set(c.initial_member_ids) == {"etcd-1", "etcd-2", "etcd-3"}
    assert c.local_member_id == c.initial_member_ids["etcd-1"]


def test_ignored_legacy_flags_warn() -> None:
    c = parse_config(["-v", "--name", "x", "--peer-heartbeat-interval=5"], {})
    assert c.name == "x"
    assert any('"v"' in w for w in c.warnings) and any("peer-heartbeat-interval" in w for w in c.warnings)


# ---------------------------------------------------------------- flag errors (exit code 2)


@pytest.mark.parametrize(("argv", "detail"), [
    (["--bad-flag"], "flag provided but not defined: -bad-flag"),
    (["-bad-flag=1"], "flag provided but not defined: -bad-flag"),
    (["--name"], "flag needs an argument: -name"),
    (["---name=x"], "bad flag syntax: ---name=x"),
    (["-=x"], "bad flag syntax: -=x"),
    (["--heartbeat-interval", "abc"], 'invalid value "abc" for flag -heartbeat-interval: parse error'),
    (["--heartbeat-interval=-5"], 'invalid value "-5" for flag -heartbeat-interval: parse error'),
    (["--heartbeat-interval=+10"], 'invalid value "+10" for flag -heartbeat-interval: parse error'),
    (["--heartbeat-interval=99999999999999999999"],
     'invalid value "99999999999999999999" for flag -heartbeat-interval: value out of range'),
    (["--snapshot-count=1e3"], 'invalid value "1e3" for flag -snapshot-count: parse error'),
    (["--quota-backend-bytes=abc"], 'invalid value "abc" for flag -quota-backend-bytes: parse error'),
    (["--grpc-keepalive-min-time=5"], 'invalid value "5" for flag -grpc-keepalive-min-time: parse error'),
    (["--enable-v2=maybe"], 'invalid boolean value "maybe" for -enable-v2: parse error'),
    (["--enable-v2="], 'invalid boolean value "" for -enable-v2: parse error'),
    (["--initial-cluster-state", "foo"], 'invalid value "foo" for flag -initial-cluster-state: invalid value'),
    (["--discovery-fallback=foo"], 'invalid value "foo" for flag -discovery-fallback: invalid value'),
    (["--proxy=foo"], 'invalid value "foo" for flag -proxy: invalid value'),
    (["--listen-client-urls", "ftp://127.0.0.1:1"],
     'invalid value "ftp://127.0.0.1:1" for flag -listen-client-urls: URL scheme must be http, https, unix, '
     'or unixs: ftp://127.0.0.1:1'),
    (["--listen-client-urls", "127.0.0.1:1"],
     'invalid value "127.0.0.1:1" for flag -listen-client-urls: parse "127.0.0.1:1": first path segment in URL '
     'cannot contain colon'),
    (["--listen-client-urls", "http://127.0.0.1"],
     'invalid value "http://127.0.0.1" for flag -listen-client-urls: URL address does not have the form '
     '"host:port": http://127.0.0.1'),
    (["--advertise-client-urls", "http://127.0.0.1:2379/path"],
     'invalid value "http://127.0.0.1:2379/path" for flag -advertise-client-urls: URL must not contain a path: '
     'http://127.0.0.1:2379/path'),
    (["--cors", "http://[bad"],
     'invalid value "http://[bad" for flag -cors: parse "http://[bad": missing \']\' in host'),
    (["--max-txn-ops=18446744073709551616"],
     'invalid value "18446744073709551616" for flag -max-txn-ops: value out of range'),
])
def test_flag_errors_exit_2_with_usage(argv: list[str], detail: str) -> None:
    e = err(argv)
    assert e.exit_code == 2
    assert e.detail == detail
    assert e.message.startswith(detail + "\nUsage:")


def test_help_and_version_exit_0() -> None:
    for argv in (["-h"], ["--help"], ["-help"], ["--name", "x", "-h"]):
        e = err(argv)
        assert e.exit_code == 0 and e.message == help_text()
    e = err(["--version"])
    assert (e.exit_code, e.message) == (0, "petcd Version: 0.1.0\nAPI Version: 3.5")
    assert err(["--version", "--bad"]).exit_code == 2  # flags are parsed first, as in etcd
    assert parse_config(["--version=false"], {}).version is False


def test_help_lists_every_flag() -> None:
    text = help_text()
    for spec in FLAG_SPECS:
        assert f"  --{spec.name} " in text, spec.name
    assert "--data-dir '${name}.petcd'" in text


def test_load_config_or_exit_prints_and_exits() -> None:
    out, errs = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as info:
        load_config_or_exit(["--version"], {}, out, errs)
    assert info.value.code == 0 and out.getvalue().startswith("petcd Version:") and errs.getvalue() == ""
    with pytest.raises(SystemExit) as info:
        load_config_or_exit(["--nope"], {}, out, errs)
    assert info.value.code == 2 and errs.getvalue().startswith("flag provided but not defined: -nope\n")
    assert load_config_or_exit(["--name=z"], {}, out, errs).name == "z"


# ---------------------------------------------------------------- validation (exit code 1)


@pytest.mark.parametrize(("argv", "detail"), [
    (["extra-arg"], "'extra-arg' is not a valid flag"),
    (["--", "--name", "x"], "'--name' is not a valid flag"),
    (["--election-timeout", "400"],
     "--election-timeout[400ms] should be at least as 5 times as --heartbeat-interval[100ms]"),
    (["--heartbeat-interval", "1000", "--election-timeout", "4999"],
     "--election-timeout[4999ms] should be at least as 5 times as --heartbeat-interval[1000ms]"),
    (["--election-timeout", "50001"], "--election-timeout[50001ms] is too long, and should be set less than 50000ms"),
    (["--heartbeat-interval", "0"], "--heartbeat-interval must be >0 (set to 0ms)"),
    (["--election-timeout", "0"], "--election-timeout must be >0 (set to 0ms)"),
    (["--listen-peer-urls", "http://myhost:2380"], "expected IP in URL for binding (http://myhost:2380)"),
    (["--listen-metrics-urls", "http://myhost:1"], "expected IP in URL for binding (http://myhost:1)"),
    (["--advertise-client-urls", "http://:2379"],
     '--advertise-client-urls "http://:2379" must be "host:port" (unexpected empty host (http://:2379))'),
    (["--initial-advertise-peer-urls", "http://:2380"],
     '--initial-advertise-peer-urls "http://:2380" must be "host:port" (unexpected empty host (http://:2380))'),
    (["--discovery", "http://x:1/abc", "--initial-cluster", "default=http://localhost:2380"],
     'multiple discovery or bootstrap flags are set. Choose one of "initial-cluster", "discovery" or "discovery-srv"'),
    (["--listen-client-urls", "http://127.0.0.1:2379"],
     "--advertise-client-urls is required when --listen-client-urls is set explicitly"),
    (["--auto-compaction-mode", "foo"], 'unknown auto-compaction-mode "foo"'),
    (["--logger=foo"], 'unknown logger option "foo"'),
    (["--log-level=foo"], 'unknown level "foo"'),
    (["--experimental-enable-lease-checkpoint-persist"],
     "setting experimental-enable-lease-checkpoint-persist requires experimental-enable-lease-checkpoint"),
    (["--cipher-suites=bad"], 'unexpected TLS cipher suite "bad"'),
    (["--tls-min-version=TLS1.0"], 'unexpected TLS version "TLS1.0" (must be one of: TLS1.2, TLS1.3)'),
    (["--enable-log-rotation"],
     "--log-outputs requires a single file path when --log-rotate-config-json is defined"),
])
def test_validation_errors_exit_1(argv: list[str], detail: str) -> None:
    e = err(argv)
    assert (e.exit_code, e.detail) == (1, detail)
    assert e.message.startswith(f"error verifying flags, {detail}. See 'petcd --help'.")


@pytest.mark.parametrize(("argv", "detail"), [
    (["--auto-compaction-retention", "abc"], 'error parsing CompactionRetention: time: invalid duration "abc"'),
    (["--auto-compaction-retention", "-1"], 'error parsing CompactionRetention: time: missing unit in duration "-1"'),
    (["--auto-compaction-retention", "1x"],
     'error parsing CompactionRetention: time: unknown unit "x" in duration "1x"'),
    (["--initial-cluster", "default"],
     "error setting up initial cluster: URL scheme must be http, https, unix, or unixs: "),
    (["--initial-cluster", "default=ftp://x:1"],
     "error setting up initial cluster: URL scheme must be http, https, unix, or unixs: ftp://x:1"),
    (["--auth-token", "foo"], "auth: invalid auth options"),
    (["--auth-token", "jwt"], "auth: invalid auth options"),
    (["--auth-token", "jwt,sign-method=EdDSA,pub-key=a"], "auth: invalid auth options"),
    (["--auth-token", "jwt,sign-method=RS256,ttl=x,pub-key=a"], "auth: invalid auth options"),
    (["--auth-token", "simple,a=b,a=c"], "auth: invalid auth options"),
    (["--auth-token", "jwt,sign-method"], "auth: invalid auth options"),
])
def test_startup_errors_exit_1(argv: list[str], detail: str) -> None:
    e = err(argv)
    assert (e.exit_code, e.detail) == (1, detail)


def test_discovery_alone_clears_the_default_initial_cluster() -> None:
    c = parse_config(["--discovery-srv", "example.com"], {})
    assert c.initial_cluster == "" and c.initial_cluster_members == ()
    # parsed as etcd parses it, then refused: petcd has no DNS discovery
    with pytest.raises(ConfigError, match=r"--discovery-srv=example\.com: DNS discovery is not supported"):
        check_supported(c)


def test_election_timeout_exactly_5x_and_50000_are_allowed() -> None:
    c = parse_config(["--heartbeat-interval=10000", "--election-timeout=50000"], {})
    assert c.election_ticks == 5


def test_auto_compaction_retention_forms() -> None:
    def cfg(mode: str, ret: str) -> ServerConfig:
        return parse_config([f"--auto-compaction-mode={mode}", f"--auto-compaction-retention={ret}"], {})

    assert cfg("periodic", "1").auto_compaction_period == 3600.0
    assert cfg("periodic", "1h30m").auto_compaction_period == 5400.0
    assert cfg("periodic", "5m").auto_compaction_period == 300.0
    assert cfg("revision", "1000").auto_compaction_revisions == 1000
    assert cfg("periodic", "0").auto_compaction_enabled is False
    odd = cfg("revision", "1h")  # etcd reads the duration's nanoseconds as a count
    assert odd.auto_compaction_revisions == 3_600_000_000_000 and odd.warnings


def test_jwt_auth_token() -> None:
    c = parse_config(["--auth-token=jwt,pub-key=/k.pub,priv-key=/k,sign-method=RS256,ttl=10m"], {})
    assert (c.auth.kind, c.auth.sign_method, c.auth.pub_key, c.auth.priv_key, c.auth.ttl) == (
        "jwt", "RS256", "/k.pub", "/k", 600.0)


def test_auth_token_options_etcd_accepts() -> None:
    # etcd 3.5.1 starts with these: unknown JWT options are ignored with a warning, an empty
    # --auth-token means no tokens; key files are read when the member starts (tests/auth_server)
    c = parse_config(["--auth-token=jwt,sign-method=RS256,pub-key=a,bogus=1"], {})
    assert c.auth.kind == "jwt" and any('unknown JWT option "bogus"' in w for w in c.warnings)
    assert parse_config(["--auth-token="], {}).auth.kind == ""
    assert parse_config(["--auth-token=simple,x=y"], {}).auth.kind == "simple"


def test_warnings_for_accepted_but_unusual_values() -> None:
    c = parse_config(["--quota-backend-bytes=9000000000", "--bcrypt-cost=3", "--max-request-bytes=20000000",
                      "--logger=zap", "--metrics=foo"], {})
    text = "\n".join(c.warnings)
    for needle in ("--max-request-bytes=20000000 exceeds",
                   "--logger=zap is accepted but not applied", "--metrics=foo is accepted but not applied"):
        assert needle in text
    # the quota is a best practice, said once, at startup
    assert "quota" not in text and any("above the 8 GiB" in w for w in best_practice_warnings(c))
    assert c.effective_bcrypt_cost == 10 and c.effective_quota_bytes == 9000000000
    assert parse_config(["--quota-backend-bytes=-1"], {}).effective_quota_bytes is None


# ---------------------------------------------------------------- initial cluster


def test_name_alone_derives_initial_cluster_from_advertised_peer_urls() -> None:
    c = parse_config(["--name", "solo", "--initial-advertise-peer-urls", "http://127.0.0.1:9380",
                      "--listen-peer-urls", "http://127.0.0.1:9380"], {})
    assert c.initial_cluster == "solo=http://127.0.0.1:9380"
    c.check_bootstrap()


@pytest.mark.parametrize(("argv", "detail"), [
    (["--initial-cluster", "other=http://localhost:2380"],
     'couldn\'t find local name "default" in the initial cluster configuration'),
    (["--initial-cluster", ""], 'couldn\'t find local name "default" in the initial cluster configuration'),
    (["--initial-advertise-peer-urls", "http://127.0.0.1:32381", "--initial-cluster",
      "default=http://127.0.0.1:32380"],
     '--initial-cluster has default=http://127.0.0.1:32380 but missing from '
     '--initial-advertise-peer-urls=http://127.0.0.1:32381 '
     '("http://127.0.0.1:32381"(resolved from "http://127.0.0.1:32381") != '
     '"http://127.0.0.1:32380"(resolved from "http://127.0.0.1:32380"))'),
    (["--initial-advertise-peer-urls", "http://127.0.0.1:32380,http://127.0.0.1:32381", "--initial-cluster",
      "default=http://127.0.0.1:32380"],
     "--initial-advertise-peer-urls has http://127.0.0.1:32381 but missing from "
     "--initial-cluster=default=http://127.0.0.1:32380,default=http://127.0.0.1:32381"),
    (["--initial-advertise-peer-urls", "http://127.0.0.1:32380", "--initial-cluster",
      "default=http://127.0.0.1:32380,default=http://127.0.0.1:32381"],
     '--initial-cluster has default=http://127.0.0.1:32381 but missing from '
     '--initial-advertise-peer-urls=http://127.0.0.1:32380 '
     '(len(["http://127.0.0.1:32380"]) != len(["http://127.0.0.1:32380" "http://127.0.0.1:32381"]))'),
    (["--initial-advertise-peer-urls", "http://127.0.0.1:32380", "--initial-cluster",
      "default=http://127.0.0.1:32380,b=http://127.0.0.1:32380"],
     "initial cluster b=http://127.0.0.1:32380,default=http://127.0.0.1:32380 has duplicate url"),
])
def test_bootstrap_checks(argv: list[str], detail: str) -> None:
    c = parse_config(argv, {})  # accepted: the checks only apply to a member without data
    with pytest.raises(ConfigError) as info:
        c.check_bootstrap()
    assert (info.value.exit_code, info.value.detail) == (1, detail)


def test_bootstrap_check_can_resolve_host_names() -> None:
    c = parse_config(["--initial-cluster", "default=http://127.0.0.1:2380"], {})
    with pytest.raises(ConfigError):
        c.check_bootstrap()
    c.check_bootstrap(resolve=lambda u: type(u)(u.scheme, u.host.replace("localhost", "127.0.0.1")))


def test_trailing_comma_in_initial_cluster_is_ignored() -> None:
    c = parse_config(["--initial-cluster", "default=http://localhost:2380,"], {})
    assert [n for n, _ in c.initial_cluster_members] == ["default"]


def test_member_and_cluster_ids() -> None:
    # the default member: etcd's well-known 8e9e05c52164694d in cluster cdf818194e3a8c32
    assert compute_member_id(["http://localhost:2380"], "etcd-cluster") == 0x8E9E05C52164694D
    assert compute_cluster_id([0x8E9E05C52164694D]) == 0xCDF818194E3A8C32
    # sorted and concatenated, so order does not matter; the token changes everything
    a = compute_member_id(["http://b:2", "http://a:1"], "t")
    assert a == compute_member_id(["http://a:1", "http://b:2"], "t") != compute_member_id(["http://a:1"], "t")
    assert compute_member_id(["http://a:1"], "t") != compute_member_id(["http://a:1"], "u")
    assert compute_member_id(["http://a:1"], "t", now=1) != compute_member_id(["http://a:1"], "t")
    assert compute_cluster_id([3, 1, 2]) == compute_cluster_id([1, 2, 3])


# ---------------------------------------------------------------- environment


def test_env_fills_flags_not_given() -> None:
    env = {"ETCD_NAME": "envname", "ETCD_DATA_DIR": "/d", "ETCD_ENABLE_V2": "true",
           "ETCD_LISTEN_CLIENT_URLS": "http://127.0.0.1:5379", "ETCD_ADVERTISE_CLIENT_URLS": "http://127.0.0.1:5379",
           "ETCD_HEARTBEAT_INTERVAL": "200", "ETCD_ELECTION_TIMEOUT": "2000", "ETCDCTL_API": "3", "PATH": "/bin"}
    c = parse_config(["--snapshot-count=10"], env)
    assert (c.name, c.data_dir, c.enable_v2, c.heartbeat_interval, c.election_timeout, c.snapshot_count) == (
        "envname", "/d", True, 200, 2000, 10)
    assert c.listen_client_urls_str == ("http://127.0.0.1:5379",)
    assert {"name", "data-dir", "snapshot-count"} <= c.flags_set
    assert not any("environment" in w for w in c.warnings)


def test_env_and_flag_both_set_is_fatal_like_etcd() -> None:
    for value in ("b", ""):  # even an empty variable counts, as in etcd
        e = err(["--name", "a"], {"ETCD_NAME": value})
        assert e.exit_code == 1
        assert e.detail == ('conflicting environment variable "ETCD_NAME" is shadowed by corresponding '
                            "command-line flag (either unset environment variable or disable flag)")


def test_env_errors_and_unknown_variables() -> None:
    e = err([], {"ETCD_HEARTBEAT_INTERVAL": "abc"})
    assert (e.exit_code, e.detail) == (1, 'invalid value "abc" for ETCD_HEARTBEAT_INTERVAL: parse error')
    e = err([], {"ETCD_INITIAL_CLUSTER_STATE": "bad"})
    assert e.detail == 'invalid value "bad" for ETCD_INITIAL_CLUSTER_STATE: invalid value'
    e = err([], {"ETCD_ENABLE_V2": "maybe"})
    assert e.detail == 'invalid value "maybe" for ETCD_ENABLE_V2: parse error'
    c = parse_config([], {"ETCD_FOO": "bar", "ETCD_NAME": ""})
    assert c.name == "default" and "unrecognized environment variable ETCD_FOO=bar" in c.warnings


def test_env_listen_client_without_advertise_is_refused() -> None:
    e = err([], {"ETCD_LISTEN_CLIENT_URLS": "http://127.0.0.1:5379"})
    assert e.detail == "--advertise-client-urls is required when --listen-client-urls is set explicitly"


# ---------------------------------------------------------------- config file

FILE_YAML = """\
name: fromfile
data-dir: /var/lib/fromfile
listen-client-urls: http://127.0.0.1:6379
advertise-client-urls: http://127.0.0.1:6379
listen-peer-urls: http://127.0.0.1:6380
initial-advertise-peer-urls: http://127.0.0.1:6380
initial-cluster: fromfile=http://127.0.0.1:6380
initial-cluster-token: tok
initial-cluster-state: existing
heartbeat-interval: 1000
election-timeout: 5000
quota-backend-bytes: 8589934592
auto-compaction-mode: periodic
auto-compaction-retention: "1"
grpc-keepalive-min-time: 10000000000
enable-v2: yes
log-outputs: [stderr]
cipher-suites: [TLS_AES_128_GCM_SHA256]
wal-dir:
client-transport-security:
  cert-file: /c.crt
  key-file: /c.key
  client-cert-auth: true
peer-transport-security:
  trusted-ca-file: /ca.crt
  auto-tls: true
"""


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "petcd.yaml"
    p.write_text(text)
    return str(p)


def test_config_file_with_etcd_keys(tmp_path: Path) -> None:
    path = write(tmp_path, FILE_YAML)
    c = parse_config(["--config-file", path], {})
    assert (c.name, c.data_dir, c.wal_dir, c.initial_cluster_token, c.initial_cluster_state) == (
        "fromfile", "/var/lib/fromfile", "", "tok", "existing")
    assert (c.heartbeat_interval, c.election_timeout, c.quota_backend_bytes) == (1000, 5000, 8589934592)
    assert c.auto_compaction_period == 3600.0 and c.grpc_keepalive_min_time == 10.0 and c.enable_v2
    assert c.listen_client_urls_str == ("http://127.0.0.1:6379",)
    assert c.log_outputs == ("stderr",) and c.cipher_suites == ("TLS_AES_128_GCM_SHA256",)
    assert c.client_tls.cert_file == "/c.crt" and c.client_tls.client_cert_auth
    assert c.peer_tls.trusted_ca_file == "/ca.crt" and c.peer_tls.auto_tls and c.peer_tls.empty
    assert c.config_file == path
    c.check_bootstrap()


def test_config_file_ignores_flags_and_env(tmp_path: Path) -> None:
    path = write(tmp_path, FILE_YAML)
    c = parse_config(["--config-file", path, "--name", "flagname"], {"ETCD_NAME": "x", "ETCD_BOGUS": "1"})
    assert c.name == "fromfile"
    c = parse_config([], {"ETCD_CONFIG_FILE": path, "ETCD_HEARTBEAT_INTERVAL": "300"})
    assert c.name == "fromfile" and c.heartbeat_interval == 1000
    # flags are still parsed: a bad one is still an error
    assert err(["--config-file", path, "--heartbeat-interval", "abc"]).exit_code == 2


def test_config_file_defaults_and_lenient_scalars(tmp_path: Path) -> None:
    path = write(tmp_path, "name: n\ninitial-cluster-token: 123\nauto-compaction-retention: 2\nodd-key: 1\n")
    c = parse_config(["--config-file", path], {})
    assert c.data_dir == "n.petcd" and c.initial_cluster == "n=http://localhost:2380"
    assert c.initial_cluster_token == "123" and c.auto_compaction_period == 7200.0
    assert c.advertise_client_urls_str == ("http://localhost:2379",)
    assert any("odd-key" in w for w in c.warnings)
    assert parse_config(["--config-file", write(tmp_path, "")], {}).name == "default"


@pytest.mark.parametrize(("text", "detail"), [
    ("election-timeout: 0\n", "--election-timeout must be >0 (set to 0ms)"),
    ('heartbeat-interval: "100"\n', "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal string "
     "into Go struct field configYAML.heartbeat-interval of type uint"),
    ("heartbeat-interval: -1\n", "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal number -1 "
     "into Go struct field configYAML.heartbeat-interval of type uint"),
    ("listen-client-urls: [http://127.0.0.1:1]\n", "error unmarshaling JSON: while decoding JSON: json: cannot "
     "unmarshal array into Go struct field configYAML.listen-client-urls of type string"),
    ("enable-v2: 3\n", "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal number into Go struct "
     "field configYAML.enable-v2 of type bool"),
    ("initial-cluster-state: bogus\n", 'unexpected clusterState "bogus"'),
    ("- a\n- b\n", "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal array into Go value of "
     "type embed.configYAML"),
])
def test_config_file_errors(tmp_path: Path, text: str, detail: str) -> None:
    e = err(["--config-file", write(tmp_path, text)])
    assert (e.exit_code, e.detail) == (1, detail)


def test_config_file_io_yaml_and_url_errors(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    e = err(["--config-file", missing])
    assert (e.exit_code, e.detail) == (1, f"open {missing}: no such file or directory")
    e = err(["--config-file", write(tmp_path, "name: [1\n")])
    assert e.exit_code == 1 and e.detail.startswith("error converting YAML to JSON: yaml: ")
    e = err(["--config-file", write(tmp_path, "listen-client-urls: ftp://127.0.0.1:1\n")])
    assert (e.exit_code, e.message) == (
        1, "unexpected error setting up listen-client-urls: URL scheme must be http, https, unix, or unixs: "
           "ftp://127.0.0.1:1")


# ---------------------------------------------------------------- best practices


def test_best_practice_warnings_for_defaults() -> None:
    # defaults the operator did not set are not mentioned, except the dangerous one: no compaction
    w = best_practice_warnings(parse_config([], {}))
    assert len(w) == 1
    assert "--auto-compaction-mode=periodic --auto-compaction-retention=1" in w[0]
    notes = startup_notes(parse_config([], {}))
    assert len(notes) == 1 and "etcdctl defrag" in notes[0] and "petcdctl" not in notes[0]


def test_best_practice_warnings_for_what_the_operator_set() -> None:
    w = best_practice_warnings(parse_config(["--heartbeat-interval=100", "--election-timeout=1000"], {}))
    assert len(w) == 2 and "--heartbeat-interval=1000" in w[0] and "--election-timeout=5000" in w[0]
    w = best_practice_warnings(parse_config(["--election-timeout=2000"], {}))
    assert "--election-timeout is 2000 ms" in w[0]
    assert any("--quota-backend-bytes is negative" in x
               for x in best_practice_warnings(parse_config(["--quota-backend-bytes=-1"], {})))
    unsafe = best_practice_warnings(parse_config(["--unsafe-no-fsync"], {}))
    assert "--unsafe-no-fsync is set" in unsafe[0]


def test_best_practice_warnings_for_notebook_settings() -> None:
    argv = ["--heartbeat-interval=1000", "--election-timeout=5000", "--quota-backend-bytes=8589934592",
            "--auto-compaction-mode=periodic", "--auto-compaction-retention=1"]
    assert best_practice_warnings(parse_config(argv, {})) == []
    big = best_practice_warnings(parse_config([*argv[:2], "--quota-backend-bytes=9000000000"], {}))
    assert any("above the 8 GiB" in x for x in big)


# ---------------------------------------------------------------- Go value syntax


def test_go_numbers() -> None:
    assert parse_go_uint("0x1_0") == 16 and parse_go_uint("0b101") == 5 and parse_go_uint("0o17") == 15
    assert parse_go_int("-0x10") == -16 and parse_go_int("+7") == 7
    for bad in ("", "_1", "1_", "1__0", "08", "0x", "1.0", " 1"):
        with pytest.raises(GoValueError):
            parse_go_uint(bad)
    with pytest.raises(GoValueError, match="out of range"):
        parse_go_int(str(2**63))
    assert parse_go_int(str(-(2**63))) == -(2**63)


def test_go_durations() -> None:
    assert parse_go_duration("1h30m") == 5400 * 10**9
    assert parse_go_duration("1.5s") == 1_500_000_000
    assert parse_go_duration("-2ms") == -2_000_000
    assert parse_go_duration("0") == 0 and parse_go_duration("300\u00b5s") == 300_000
    for bad, text in (("", 'time: invalid duration ""'), ("1", 'time: missing unit in duration "1"'),
                      ("1y", 'time: unknown unit "y" in duration "1y"'), ("s", 'time: invalid duration "s"')):
        with pytest.raises(GoValueError) as info:
            parse_go_duration(bad)
        assert str(info.value) == text
    assert [format_go_duration(n) for n in (0, 7200 * 10**9, 100_000_000, 5 * 10**9, 1_500_000_000)] == [
        "0s", "2h0m0s", "100ms", "5s", "1.5s"]


def test_url_rules() -> None:
    assert [str(u) for u in new_urls([" http://B:1 ", "http://a:2"])] == ["http://B:1", "http://a:2"]
    assert [str(u) for u in new_urls(["http://b:1", "http://a:2"])] == ["http://a:2", "http://b:1"]
    assert str(new_urls(["HTTP://h:1"])[0]) == "http://h:1"
    for bad, text in (
        ("http://a b:1", 'parse "http://a b:1": invalid character " " in host name'),
        ("http://a:x", 'parse "http://a:x": invalid port ":x" after host'),
        (":1", 'parse ":1": missing protocol scheme'),
        ("http://::1:2379", 'URL address does not have the form "host:port": http://::1:2379'),
        ("http://a:1/", "URL must not contain a path: http://a:1/"),
    ):
        with pytest.raises(GoValueError) as info:
            new_urls([bad])
        assert str(info.value) == text
    with pytest.raises(GoValueError, match="no valid URLs given"):
        new_urls([])
    m = parse_url_map("b=http://b:1,a=http://a:1,b=http://a:2")
    assert [(n, [str(u) for u in us]) for n, us in m] == [("b", ["http://a:2", "http://b:1"]), ("a", ["http://a:1"])]


def test_client_frontends_flag() -> None:
    assert parse_config([], {}).client_frontends == -1
    assert parse_config(["--client-frontends=0"], {}).client_frontends == 0
    assert parse_config([], {"ETCD_CLIENT_FRONTENDS": "3"}).client_frontends == 3
    e = err(["--client-frontends=-2"])
    assert e.exit_code == 1
    assert "--client-frontends=-2" in e.message
    assert err(["--client-frontends=two"]).exit_code == 2
