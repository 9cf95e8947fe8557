"""``check best-practices``: the notebook's five rules, judged from the live cluster.

The gRPC API does not tell a member's heartbeat, election timeout, quota or compaction settings.
What the API shows is used (db sizes, alarms, compaction history, a timed defragmentation with
``--time-defrag``); the settings come from the member's ``--config-file`` (etcd's YAML) or a flags
file (``--flags-file``: ``--flag=value`` words or ``ETCD_*=value`` lines, as in a systemd
environment file). A rule that neither source decides is reported as UNKNOWN, saying what would
decide it: never as passed.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass

from petcd.ctl.base import B, Env, S
from petcd.ctl.cli import EXIT_BAD_ARGS, EXIT_ERROR, Command, CtlExit, Runner
from petcd.ctl.client import RpcFailure
from petcd.ctl.datascale import datascale_command
from petcd.ctl.perf import perf_command
from petcd.ctl.printer import out
from petcd.proto.etcdserverpb import rpc_pb2 as pb

KEYS = ("heartbeat-interval", "election-timeout", "quota-backend-bytes", "auto-compaction-mode",
        "auto-compaction-retention")
DEFAULT_QUOTA = 2 * 1024**3
MAX_QUOTA = 8 * 1024**3


@dataclass
class Verdict:
    level: str  # PASS, WARN, FAIL, UNKNOWN
    rule: str
    finding: str
    change: str = ""


def read_settings(config_file: str, flags_file: str) -> dict[str, str]:
    found: dict[str, str] = {}
    if config_file:
        import yaml

        try:
            with open(config_file) as f:
                data = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise CtlExit(EXIT_BAD_ARGS, f"cannot read --config-file {config_file}: {exc}") from None
        if not isinstance(data, dict):
            raise CtlExit(EXIT_BAD_ARGS, f"--config-file {config_file}: not a YAML mapping")
        found.update({k: str(v) for k, v in data.items() if k in KEYS})
    if flags_file:
        try:
            with open(flags_file) as f:
                text = f.read()
        except OSError as exc:
            raise CtlExit(EXIT_BAD_ARGS, f"cannot read --flags-file {flags_file}: {exc}") from None
        words = shlex.split(text, comments=True)
        it = iter(words)
        for w in it:
            if w.startswith("ETCD_") and "=" in w:
                k, _, v = w.partition("=")
                name = k[5:].lower().replace("_", "-")
            elif w.startswith("--"):
                name, eq, v = w[2:].partition("=")
                if not eq:
                    v = next(it, "")
            else:
                continue
            if name in KEYS:
                found[name] = v
    return found


def _int(settings: dict[str, str], key: str, default: int) -> tuple[int, bool]:
    if key not in settings:
        return default, False
    try:
        return int(settings[key]), True
    except ValueError:
        raise CtlExit(EXIT_BAD_ARGS, f"{key}={settings[key]!r} is not a number") from None


def judge(env: Env) -> list[Verdict]:
    settings = read_settings(env.inv.text("config-file"), env.inv.text("flags-file"))
    src = "from " + (env.inv.text("config-file") or env.inv.text("flags-file")) if settings else ""
    hb, hb_known = _int(settings, "heartbeat-interval", 100)
    et, et_known = _int(settings, "election-timeout", 1000)
    quota, quota_known = _int(settings, "quota-backend-bytes", 0)
    verdicts: list[Verdict] = []
    hint = "pass the member's --config-file or --flags-file (its systemd environment file) to decide"

    # 1. heartbeat
    if hb_known:
        ok = hb >= 1000
        verdicts.append(Verdict("PASS" if ok else "WARN", "heartbeat interval", f"{hb} ms ({src})",
                                "" if ok else "the notebook recommends 1 s: --heartbeat-interval=1000"))
    else:
        verdicts.append(Verdict("UNKNOWN", "heartbeat interval", "not readable over the API", hint))
    # 2. election >= 5 x heartbeat
    if hb_known and et_known:
        ok = et >= 5 * hb
        verdicts.append(Verdict("PASS" if ok else "FAIL", "election timeout >= 5 x heartbeat",
                                f"{et} ms vs 5 x {hb} ms = {5 * hb} ms ({src})",
                                "" if ok else f"--election-timeout={max(5 * hb, 5000)} (with heartbeat {hb} ms)"))
    else:
        verdicts.append(Verdict("UNKNOWN", "election timeout >= 5 x heartbeat", "not readable over the API", hint))

    with env.client() as c:
        members = c.member_list().members
        statuses = []
        for m in members:
            for ep in m.clientURLs[:1]:
                try:
                    statuses.append((m, ep, c.status(ep)))
                except RpcFailure as exc:
                    out(f"note: {m.name} ({ep}) does not answer: {exc}\n")
        if not statuses:
            raise CtlExit(EXIT_ERROR, "no member answers; nothing to judge")
        alarms = c.unary("Maintenance", "Alarm", pb.AlarmRequest(action=pb.AlarmRequest.GET)).alarms
        biggest = max(s.dbSize for _, _, s in statuses)
        in_use = max(s.dbSizeInUse for _, _, s in statuses)
        # 3. quota sized to the data
        nospace = any(a.alarm == pb.NOSPACE for a in alarms)
        if nospace:
            verdicts.append(Verdict("FAIL", "quota sized to the data", "NOSPACE alarm active: the quota is full",
                                    "petcdctl recover nospace, then raise --quota-backend-bytes or compact more often"))
        elif quota_known:
            q = quota if quota > 0 else DEFAULT_QUOTA
            share = biggest / q
            if q > MAX_QUOTA:
                verdicts.append(Verdict("WARN", "quota sized to the data", f"quota {q} bytes is above 8 GiB",
                                        "keep --quota-backend-bytes at or below 8589934592"))
            elif share > 0.8:
                verdicts.append(Verdict("WARN", "quota sized to the data",
                                        f"largest db {biggest} bytes is {share:.0%} of the quota {q}",
                                        "raise --quota-backend-bytes, or compact and defragment"))
            else:
                verdicts.append(Verdict("PASS", "quota sized to the data",
                                        f"largest db {biggest} bytes ({in_use} in use) is {share:.0%} of quota {q}"))
        else:
            verdicts.append(Verdict("UNKNOWN", "quota sized to the data",
                                    f"no NOSPACE alarm; largest db {biggest} bytes ({in_use} in use); the quota "
                                    "itself is not readable over the API", hint))
        # 4. periodic auto-compaction
        hkv = c.unary("Maintenance", "HashKV", pb.HashKVRequest(), endpoint=statuses[0][1])
        seen = f"last compaction at revision {hkv.compact_revision} of {hkv.header.revision}" \
            if hkv.compact_revision > 0 else "no compaction has ever run"
        mode = settings.get("auto-compaction-mode", "periodic" if "auto-compaction-retention" in settings else "")
        retention = settings.get("auto-compaction-retention", "")
        if settings and "auto-compaction-retention" in settings:
            on = retention not in ("", "0", "0s")
            ok = on and mode == "periodic"
            verdicts.append(Verdict("PASS" if ok else "WARN", "periodic auto-compaction",
                                    f"mode {mode or 'periodic'}, retention {retention or '0'} ({src}); {seen}",
                                    "" if ok else "--auto-compaction-mode=periodic --auto-compaction-retention=1"))
        elif settings:
            verdicts.append(Verdict("FAIL", "periodic auto-compaction", f"not configured ({src}); {seen}",
                                    "--auto-compaction-mode=periodic --auto-compaction-retention=1"))
        else:
            verdicts.append(Verdict("UNKNOWN", "periodic auto-compaction", f"{seen}; the setting is not readable",
                                    hint))
        # 5. defrag scheduled, and shorter than the election timeout
        free = max(s.dbSize - s.dbSizeInUse for _, _, s in statuses)
        timed = ""
        took = None
        if env.inv.bool("time-defrag"):
            follower = next(((m, ep) for m, ep, s in statuses if s.leader != s.header.member_id), None)
            if follower is not None:
                start = time.monotonic()
                c.unary("Maintenance", "Defragment", pb.DefragmentRequest(), endpoint=follower[1], timeout=300.0)
                took = time.monotonic() - start
                timed = f"; defragmenting follower {follower[0].name} took {took * 1000:.0f} ms"
        et_text = f"election timeout {et} ms" + ("" if et_known else " (etcd's default; not read)")
        finding = f"up to {free} bytes free in a member's db{timed}; {et_text}"
        if took is not None and took * 1000 >= et:
            verdicts.append(Verdict("FAIL", "defrag scheduled and shorter than the election timeout", finding,
                                    "defragment one member at a time (petcdctl defrag --cluster --safe) and raise "
                                    "--election-timeout above the defrag time, or keep the db smaller"))
        elif free >= 100 * 1024 * 1024 or (biggest and free / biggest >= 0.5 and free >= 1024 * 1024):
            verdicts.append(Verdict("WARN", "defrag scheduled and shorter than the election timeout",
                                    finding + "; that much free space says no defrag ran recently",
                                    "schedule `petcdctl defrag --cluster --safe` (cron / systemd timer)"))
        else:
            level = "PASS" if took is not None else "UNKNOWN"
            verdicts.append(Verdict(level, "defrag scheduled and shorter than the election timeout", finding,
                                    "" if took is not None else "the schedule is not visible over the API; "
                                    "--time-defrag measures one follower's defrag against the election timeout"))
    return verdicts


def best_practices(env: Env) -> int:
    if env.args:
        raise CtlExit(EXIT_BAD_ARGS, "check best-practices takes no arguments")
    verdicts = judge(env)
    for i, v in enumerate(verdicts, 1):
        out(f"[{v.level}] {i}. {v.rule}: {v.finding}\n")
        if v.change:
            out(f"    change: {v.change}\n")
    fails = sum(v.level == "FAIL" for v in verdicts)
    warns = sum(v.level == "WARN" for v in verdicts)
    unknown = sum(v.level == "UNKNOWN" for v in verdicts)
    out(f"{len(verdicts) - fails - warns - unknown} passed, {warns} warnings, {fails} failed, {unknown} unknown\n")
    return EXIT_ERROR if fails else 0


def _r(fn: Callable[[Env], int]) -> Runner:
    return lambda inv: fn(Env(inv))


def commands() -> list[Command]:
    return [Command("check <subcommand>", "commands for checking properties of the etcd cluster").add(
        Command("best-practices", "[petcdctl] Judges the notebook's five best practices on the live cluster",
                _r(best_practices), flags=[
                    S("config-file", "", "the member's etcd YAML config file (settings the API does not show)"),
                    S("flags-file", "", "a file of the member's flags (--flag=value) or ETCD_* variables"),
                    B("time-defrag", "defragment one follower and compare the time with the election timeout"),
                ]),
        datascale_command(),
        perf_command(),
    )]
