"""The flag table's ``does`` column, checked for every flag.

* ``wired``: a non-default value changes the settings the member runs with;
* ``warn``: setting the flag gives exactly one startup warning, naming it;
* ``refuse``: a non-default value exits 1 with a message naming it.

Also: https/unixs URLs need a certificate (etcd's startup errors), and the member process
itself logs each warning once and exits 1 on a refusal.
"""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from petcd.config import (
    FLAG_SPECS,
    FLAGS,
    ConfigError,
    FlagSpec,
    best_practice_warnings,
    load_config_or_exit,
    parse_config,
    settings_from_config,
)
from petcd.config.govalues import format_go_duration
from tests.harness import free_ports

# Values for flags whose generic non-default value (see nondefault) is not valid or not enough.
SPECIAL: dict[str, list[str]] = {
    "heartbeat-interval": ["--heartbeat-interval=200"],
    "election-timeout": ["--election-timeout=2000"],
    "listen-client-urls": ["--listen-client-urls=http://127.0.0.1:1",
                           "--advertise-client-urls=http://127.0.0.1:1"],
    "initial-cluster": ["--initial-cluster=default=http://localhost:2380,b=http://127.0.0.1:2390"],
    "max-concurrent-streams": ["--max-concurrent-streams=100"],
    "auto-compaction-mode": ["--auto-compaction-mode=revision"],
    "auto-compaction-retention": ["--auto-compaction-retention=1"],
    "log-outputs": ["--log-outputs=stdout"],
    "log-level": ["--log-level=debug"],
    "logger": ["--logger=zap"],  # the only value etcd 3.5 accepts; petcd warns that it logs its own way
    "auth-token": ["--auth-token=jwt,priv-key=/k,sign-method=HS256"],
    "cipher-suites": ["--cipher-suites=TLS_AES_128_GCM_SHA256"],
    "cors": ["--cors=http://a.example"],
    # TLS1.2 / TLS1.3 are what gRPC does anyway and are accepted; the narrowing values are refused
    "tls-min-version": ["--tls-min-version=TLS1.3"],
    "tls-max-version": ["--tls-max-version=TLS1.2"],
    "metrics": ["--metrics=extensive"],
    "log-rotation-config-json": ['--log-rotation-config-json={"maxsize": 1}'],
    "enable-log-rotation": ["--enable-log-rotation", "--log-outputs=/tmp/petcd-test.log"],
    # petcd always persists its checkpoints: only =false differs from what it does
    "experimental-enable-lease-checkpoint-persist": ["--experimental-enable-lease-checkpoint-persist=false",
                                                      "--experimental-enable-lease-checkpoint"],
    "client-frontends": ["--client-frontends=0"],
    "discovery": ["--discovery=http://discovery.example/abc"],
    "discovery-srv": ["--discovery-srv=example.com"],
}


def nondefault(spec: FlagSpec) -> list[str]:
    """Command-line arguments that set ``spec`` to a valid value other than its default."""
    if spec.name in SPECIAL:
        return SPECIAL[spec.name]
    flag = f"--{spec.name}"
    if spec.kind == "bool":
        # a warn flag is set against what petcd does anyway, so that it must warn
        if spec.does.behaves_as:
            value = not spec.does.behaves_as[0]
        else:
            value = not spec.default
        return [f"{flag}={'true' if value else 'false'}"]
    if spec.kind in ("uint", "uint32", "int"):
        assert isinstance(spec.default, int)
        return [f"{flag}={spec.default + 1}"]
    if spec.kind == "duration":
        assert isinstance(spec.default, float)
        return [f"{flag}={format_go_duration(int((spec.default + 1) * 1e9))}"]
    if spec.kind == "urls":
        return [f"{flag}=http://127.0.0.1:1"]
    if spec.kind == "choice":
        return [f"{flag}={next(c for c in spec.choices if c != spec.default)}"]
    if spec.kind in ("strings", "unique_strings"):
        return [f"{flag}=x"]
    assert spec.kind == "string", spec
    return [f"{flag}=/tmp/x" if spec.default == "" else f"{flag}={spec.default}x"]


def by_action(action: str) -> list[str]:
    return [s.name for s in FLAG_SPECS if s.does.action == action]


def test_every_flag_says_what_petcd_does_with_it() -> None:
    for spec in FLAG_SPECS:
        assert spec.does.action in ("wired", "warn", "refuse")
        assert (spec.does.reason == "") == (spec.does.action == "wired"), spec.name


@pytest.mark.parametrize("name", [n for n in by_action("wired") if n not in ("version", "config-file")])
def test_wired_flag_changes_the_settings(name: str) -> None:
    base = settings_from_config(parse_config([], {}))
    changed = settings_from_config(parse_config(nondefault(FLAGS[name]), {}))
    assert changed != base


def test_config_file_and_version_are_wired(tmp_path: Path) -> None:
    path = tmp_path / "petcd.yaml"
    path.write_text("name: from-file\n")
    assert settings_from_config(parse_config([f"--config-file={path}"], {})).name == "from-file"
    with pytest.raises(ConfigError) as info:
        parse_config(["--version"], {})
    assert info.value.exit_code == 0 and "petcd Version" in info.value.message


def _naming(name: str, lines: list[str]) -> list[str]:
    pattern = re.compile(rf"--{re.escape(name)}(?![\w-])")
    return [line for line in lines if pattern.search(line)]


@pytest.mark.parametrize("name", by_action("warn"))
def test_warn_flag_gives_one_startup_warning(name: str) -> None:
    cfg = parse_config(nondefault(FLAGS[name]), {})
    startup = [*cfg.warnings, *best_practice_warnings(cfg)]
    named = _naming(name, startup)
    assert len(named) == 1, startup
    assert "not applied" in named[0] and FLAGS[name].does.reason in named[0]


def test_warn_flags_are_quiet_unless_set() -> None:
    cfg = parse_config([], {})
    assert not any("not applied" in w for w in cfg.warnings)


def test_warn_flags_set_to_what_petcd_does_anyway_are_quiet() -> None:
    # e.g. a unit written for etcd 3.4 that says ETCD_ENABLE_V2=false
    cfg = parse_config(["--enable-v2=false", "--socket-reuse-port=false", "--enable-pprof=false"], {})
    assert not any("not applied" in w for w in cfg.warnings)
    assert _naming("enable-pprof", parse_config(["--enable-pprof=true"], {}).warnings)


@pytest.mark.parametrize("name", by_action("refuse"))
def test_refuse_flag_exits_1_naming_it(name: str) -> None:
    stderr = io.StringIO()
    with pytest.raises(SystemExit) as info:
        load_config_or_exit(nondefault(FLAGS[name]), {}, stderr=stderr)
    assert info.value.code == 1
    assert _naming(name, [stderr.getvalue()]), stderr.getvalue()
    assert FLAGS[name].does.reason in stderr.getvalue()


def test_refuse_flags_at_their_default_are_accepted() -> None:
    # setting a refused flag to its default is no request for the feature
    load_config_or_exit(["--client-cert-auth=false", "--proxy=off", "--cert-file="], {})


def test_tls_versions_gRPC_honours_are_accepted() -> None:
    load_config_or_exit(["--tls-min-version=TLS1.2", "--tls-max-version=TLS1.3"], {})


@pytest.mark.parametrize(("argv", "message"), [
    (["--listen-client-urls=https://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379"],
     "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:2379 with "
     "HTTPS scheme"),
    (["--listen-client-urls=unixs://localhost:2379", "--advertise-client-urls=unixs://localhost:2379",
      "--cert-file=/c"],
     "TLS key/cert (--cert-file, --key-file) must be provided for client url unixs://localhost:2379"),
    (["--listen-peer-urls=https://127.0.0.1:2380"],
     "cannot listen on TLS for 127.0.0.1:2380: KeyFile and CertFile are not presented"),
    (["--listen-peer-urls=https://127.0.0.1:2380", "--auto-tls"],
     "cannot listen on TLS for 127.0.0.1:2380: KeyFile and CertFile are not presented"),
])
def test_tls_urls_need_a_certificate(argv: list[str], message: str) -> None:
    # etcd 3.5.1's texts for the same command lines (checked with the binary)
    stderr = io.StringIO()
    with pytest.raises(SystemExit) as info:
        load_config_or_exit(argv, {}, stderr=stderr)
    assert info.value.code == 1
    assert message in stderr.getvalue()


@pytest.mark.parametrize("argv", [
    ["--listen-client-urls=https://127.0.0.1:2379", "--advertise-client-urls=https://127.0.0.1:2379",
     "--cert-file=/c", "--key-file=/k"],
    ["--listen-client-urls=https://127.0.0.1:2379", "--advertise-client-urls=https://127.0.0.1:2379", "--auto-tls"],
    ["--listen-peer-urls=https://127.0.0.1:2380", "--initial-advertise-peer-urls=https://127.0.0.1:2380",
     "--initial-cluster=default=https://127.0.0.1:2380", "--peer-auto-tls"],
    # peers elsewhere may be https while this member's own peer URL is plain
    ["--initial-cluster=default=http://localhost:2380,b=https://127.0.0.1:2390"],
])
def test_tls_urls_with_a_certificate_are_accepted(argv: list[str]) -> None:
    load_config_or_exit(argv, {})


def test_systemd_journal_output_is_refused() -> None:
    stderr = io.StringIO()
    with pytest.raises(SystemExit):
        load_config_or_exit(["--log-outputs=systemd/journal"], {}, stderr=stderr)
    assert "--log-outputs=systemd/journal" in stderr.getvalue()


# ---------------------------------------------------------------- the member process


def _petcd(args: list[str], tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "petcd", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=tmp_path)


def test_member_refuses_https_without_certificate_and_exits_1(tmp_path: Path) -> None:
    proc = _petcd(["--listen-client-urls=https://127.0.0.1:1", "--advertise-client-urls=https://127.0.0.1:1"],
                  tmp_path)
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1
    assert ("TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:1 "
            "with HTTPS scheme") in out


def test_member_logs_each_unapplied_flag_once(tmp_path: Path) -> None:
    client, peer = free_ports(2)
    log = tmp_path / "member.log"
    proc = _petcd([
        "--name=m1", f"--data-dir={tmp_path / 'data'}", f"--listen-client-urls=http://127.0.0.1:{client}",
        f"--advertise-client-urls=http://127.0.0.1:{client}", f"--listen-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}", "--client-frontends=0",
        "--enable-pprof", "--socket-reuse-port", f"--log-outputs={log}",
    ], tmp_path)
    try:
        deadline = time.monotonic() + 60
        while "is ready" not in (log.read_text() if log.exists() else ""):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text() if log.exists() else ""
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = log.read_text()
    lines = text.splitlines()
    assert len(_naming("enable-pprof", lines)) == 1 and len(_naming("socket-reuse-port", lines)) == 1
    assert "not applied" in _naming("enable-pprof", lines)[0]
    # --log-outputs is wired: the member wrote its log to the file, not to stdout/stderr
    assert proc.stdout is not None and "is ready" not in proc.stdout.read()
    assert "petcdctl" not in text and "petcdutl" not in text
