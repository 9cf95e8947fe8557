"""Run etcdctl, and normalise its output so two servers' answers can be compared.

Two servers never agree on ids, ports, timings or (unless their histories are identical) revision
numbers. ``Normaliser`` replaces each with a placeholder that keeps what matters:

- revisions become ``<R+n>`` relative to a base revision (the server's revision when the scenario
  began), so an extra or missing revision bump still shows; without a base they are numbered in
  order of appearance (``<R1>``, ``<R2>``...), the same number for the same value;
- cluster and member ids become ``<CLUSTER>`` / ``<MEMBER1>``..., lease ids ``<LEASE1>``... in
  order of appearance, in decimal (json, fields) and hex (simple) forms alike;
- raft term, raft index, db sizes, server version and durations become fixed placeholders; 0 is
  kept wherever it means "none" (revision 0, lease 0, a zero header in a nested txn response);
- endpoints, peer addresses and data dirs become ``<ENDPOINT>``, ``<PEER>``, ``<DATA_DIR>``;
- etcdctl's own JSON log lines on stderr lose their timestamp, client UUID and (3.5) the Go pointer
  naming the client's resolver target.

Placeholders replace only values of the expected shape, so a malformed value still shows up.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness.procs import ETCDCTL_BIN, Server, clean_env

CTL_TIMEOUT = 30.0


@dataclass(frozen=True)
class CtlResult:
    rc: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"rc={self.rc}\n--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"


def output_format(args: Sequence[str]) -> str:
    """The ``-w`` / ``--write-out`` format an etcdctl command line asks for (default ``simple``)."""
    fmt = "simple"
    it = iter(args)
    for arg in it:
        if arg in ("-w", "--write-out"):
            fmt = next(it, fmt)
        elif arg.startswith(("-w=", "--write-out=")):
            fmt = arg.split("=", 1)[1]
    return fmt


class Etcdctl:
    """etcdctl (API v3) bound to some endpoints; ``run`` never raises on a non-zero exit code."""

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        binary: Path = ETCDCTL_BIN,
        global_args: Sequence[str] = (),
        timeout: float = CTL_TIMEOUT,
    ) -> None:
        eps = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        self.endpoints = eps
        self.binary = binary
        self.global_args = tuple(global_args)
        self.timeout = timeout

    @classmethod
    def for_server(cls, server: Server, **kw: Any) -> Etcdctl:
        return cls(server.endpoint, **kw)

    def argv(self, args: Sequence[str]) -> list[str]:
        return [str(self.binary), f"--endpoints={','.join(self.endpoints)}", *self.global_args, *args]

    def run(self, *args: str, stdin: str | None = None, env: Mapping[str, str] | None = None) -> CtlResult:
        full_env = {**clean_env(), "ETCDCTL_API": "3", **(env or {})}
        try:
            out = subprocess.run(
                self.argv(args),
                input=(stdin or "").encode(),
                capture_output=True,
                env=full_env,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"etcdctl {' '.join(args)} did not finish in {self.timeout}s") from exc
        return CtlResult(out.returncode, out.stdout.decode(errors="replace"), out.stderr.decode(errors="replace"))


# Field names, in json (snake/camel case as etcdctl prints them) and in `-w fields` output.
_REV_KEYS = {"revision", "create_revision", "mod_revision", "compact_revision", "compactRevision"}
_REV_FIELDS = {"Revision", "CreateRevision", "ModRevision", "PrevCreateRevision", "PrevModRevision",
               "CompactRevision"}
_CLUSTER_KEYS = {"cluster_id", "ClusterID"}
_MEMBER_KEYS = {"member_id", "MemberID", "leader", "Leader"}
_LEASE_KEYS = {"lease", "Lease", "PrevLease", "id"}  # "id": lease list / timetolive json
_ID_KEYS = {"ID"}  # a member in member list, a lease in lease grant: decided by the value
_TERM_KEYS = {"raft_term", "raftTerm", "RaftTerm"}
_INDEX_KEYS = {"raftIndex", "raftAppliedIndex", "RaftIndex", "RaftAppliedIndex"}
_SIZE_KEYS = {"dbSize", "dbSizeInUse", "DBSize", "DBSizeInUse"}
_DURATION_KEYS = {"took", "Took"}
_REMAINING_TTL_KEYS = {"ttl"}  # timetolive's remaining seconds tick while commands run

_SEMVER = re.compile(r"\d+\.\d+\.\d+(?:[-+][\w.-]+)?")
_GO_DURATION = r"(?:\d+(?:\.\d+)?(?:ns|µs|us|ms|s|m|h))+"
_FIELDS_LINE = re.compile(r'^"(\w+)" : (.*)$')
# etcdctl 3.5's client logs name its resolver target by a Go pointer: "etcd-endpoints://0xc000372380/".
_RESOLVER_TARGET = re.compile(r"etcd-endpoints://0x[0-9a-f]+/")
_CLIENT_UUID = re.compile(r"client-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# At least one digit, so English words made of a-f ("lease added") are left alone.
_LEASE_HEX = re.compile(r"\blease ([0-9a-f]*[0-9][0-9a-f]*)\b")
_HEX_TOKEN = re.compile(r"\b[0-9a-f]{8,16}\b")
_DEC_TOKEN = re.compile(r"\b\d{6,20}\b")
# etcdctl prints member ids with Go's %16x (space-padded): "Member  a9b2... added to cluster c6d2...".
_MEMBER_MSG = re.compile(
    r"^Member +([0-9a-f]{1,16}) (added to|removed from|updated in|promoted in) cluster +([0-9a-f]{1,16})$"
)
# `member list` simple output: "ID, started|unstarted, name, peer URLs, client URLs, is learner".
_MEMBER_LINE = re.compile(r"^([0-9a-f]{1,16})(, (?:started|unstarted), .*)$")
_COMPACTED = re.compile(r"\bcompacted revision (\d+)\b")
_TOOK = re.compile(r"\btook = " + _GO_DURATION)
_REMAINING = re.compile(r"\bremaining\(-?\d+s\)")
# `endpoint status` simple output: endpoint, id, version, db size, leader?, learner?, term, index,
# applied index, errors.
_STATUS_LINE = re.compile(
    r"^(?P<ep>[^,]+), (?P<id>[^,]+), (?P<ver>[^,]+), (?P<size>\d+(?:\.\d+)? [kMGT]?B), "
    r"(?P<lead>true|false), (?P<learner>true|false), (?P<term>\d+), (?P<idx>\d+), (?P<applied>\d+), "
    r"(?P<errs>.*)$"
)


@dataclass
class Normaliser:
    """Maps one server's ids, revisions and addresses to placeholders (see the module docstring).

    Keep one instance per server per scenario: order-of-appearance numbering spans its lifetime.
    """

    replacements: dict[str, str] = field(default_factory=dict)  # literal text -> placeholder
    base_revision: int | None = None
    cluster_ids: list[int] = field(default_factory=list)
    member_ids: list[int] = field(default_factory=list)
    lease_ids: list[int] = field(default_factory=list)
    revisions: list[int] = field(default_factory=list)

    @classmethod
    def for_servers(cls, servers: Sequence[Server], base_revision: int | None = None) -> Normaliser:
        """A normaliser for the members of one cluster (one server for single-member tests)."""
        norm = cls(base_revision=base_revision)
        for i, s in enumerate(servers, 1):
            suffix = "" if len(servers) == 1 else str(i)
            # Longest first, so a data dir containing a port number is replaced as a whole.
            norm.replacements[str(s.data_dir)] = f"<DATA_DIR{suffix}>"
            norm.replacements[str(s.workdir)] = f"<WORKDIR{suffix}>"
            norm.replacements[s.endpoint] = f"<ENDPOINT{suffix}>"
            norm.replacements[s.peer_endpoint] = f"<PEER{suffix}>"
            ids = s.ids()
            if ids.cluster_id not in norm.cluster_ids:
                norm.cluster_ids.append(ids.cluster_id)
            norm.member_ids.append(ids.member_id)
        return norm

    # --- single values ---------------------------------------------------------------------------
    def rev(self, value: int) -> str | int:
        if value == 0:
            return 0
        if self.base_revision is not None:
            return f"<R{value - self.base_revision:+d}>"
        if value not in self.revisions:
            self.revisions.append(value)
        return f"<R{self.revisions.index(value) + 1}>"

    def lease(self, value: int) -> str | int:
        if value == 0:
            return 0
        if value not in self.lease_ids:
            self.lease_ids.append(value)
        return f"<LEASE{self.lease_ids.index(value) + 1}>"

    def member(self, value: int) -> str | int:
        if value == 0:
            return 0
        if value not in self.member_ids:
            self.member_ids.append(value)
        return f"<MEMBER{self.member_ids.index(value) + 1}>"

    def cluster(self, value: int) -> str | int:
        if value == 0:
            return 0
        if value not in self.cluster_ids:
            self.cluster_ids.append(value)
        return "<CLUSTER>" if self.cluster_ids.index(value) == 0 else f"<CLUSTER{self.cluster_ids.index(value) + 1}>"

    def any_id(self, value: int) -> str | int:
        """A value that is a member id if we know it as one, else a lease id."""
        if value in self.cluster_ids:
            return self.cluster(value)
        if value in self.member_ids:
            return self.member(value)
        return self.lease(value)

    def _known_id(self, value: int) -> str | None:
        if value == 0:
            return None
        if value in self.cluster_ids:
            return str(self.cluster(value))
        if value in self.member_ids:
            return str(self.member(value))
        if value in self.lease_ids:
            return str(self.lease(value))
        return None

    # --- whole outputs ---------------------------------------------------------------------------
    def result(self, result: CtlResult, fmt: str = "simple") -> CtlResult:
        return CtlResult(result.rc, self.output(result.stdout, fmt), self.stderr(result.stderr))

    def output(self, text: str, fmt: str) -> str:
        if fmt == "json":
            return self.json_output(text)
        if fmt == "fields":
            return self.fields_output(text)
        return self.simple_output(text)

    def stderr(self, text: str) -> str:
        return "\n".join(self._log_line(line) for line in text.split("\n"))

    def _log_line(self, line: str) -> str:
        """etcdctl's client logs JSON lines to stderr; drop the parts that differ per run."""
        if line.startswith("{") and '"level"' in line:
            try:
                obj = json.loads(line)
            except ValueError:
                return self.text(line)
            if isinstance(obj, dict):
                obj.pop("ts", None)
                return self.text(json.dumps(obj, separators=(",", ":")))
        return self.text(line)

    def json_output(self, text: str) -> str:
        try:
            return json.dumps(_sorted_members(self.json_value(json.loads(text))), separators=(",", ":")) + "\n"
        except ValueError:
            pass
        lines = []
        for line in text.split("\n"):
            try:
                lines.append(json.dumps(self.json_value(json.loads(line)), separators=(",", ":")))
            except ValueError:
                lines.append(self.simple_output(line))  # e.g. `compact -w json` prints plain text
        return "\n".join(lines)

    def json_value(self, obj: Any, key: str | None = None) -> Any:
        if isinstance(obj, dict):
            if "peerURLs" in obj and isinstance(obj.get("ID"), int):
                self.member(obj["ID"])  # a member record: its ID is a member id, even a new one
            return {k: self.json_value(v, k) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.json_value(v, key) for v in obj]
        if isinstance(obj, bool) or obj is None:
            return obj
        if isinstance(obj, int) and key is not None:
            return self._number(key, obj)
        if isinstance(obj, str):
            if key in _DURATION_KEYS and re.fullmatch(_GO_DURATION, obj):
                return "<DURATION>"
            if key in ("version", "Version") and _SEMVER.fullmatch(obj):
                return "<VERSION>"
            return self.text(obj)
        return obj

    def _number(self, key: str, value: int) -> Any:
        if key in _REV_KEYS or key in _REV_FIELDS:
            return self.rev(value)
        if key in _CLUSTER_KEYS:
            return self.cluster(value)
        if key in _MEMBER_KEYS:
            return self.member(value)
        if key in _LEASE_KEYS:
            return self.lease(value)
        if key in _ID_KEYS:
            return self.any_id(value)
        if value != 0 and key in _TERM_KEYS:
            return "<TERM>"
        if value != 0 and key in _INDEX_KEYS:
            return "<RAFT_INDEX>"
        if key in _SIZE_KEYS:
            return "<DB_SIZE>"
        if value > 0 and key in _REMAINING_TTL_KEYS:
            return "<TTL>"
        return value

    def fields_output(self, text: str) -> str:
        out = []
        for line in text.split("\n"):
            m = _FIELDS_LINE.match(line)
            if not m:
                out.append(self.text(line))
                continue
            name, raw = m.group(1), m.group(2)
            value: Any = raw
            if re.fullmatch(r"\d+", raw):
                value = self._number(name, int(raw))
            elif name in _DURATION_KEYS and re.fullmatch(_GO_DURATION, raw):
                value = "<DURATION>"
            elif name == "Version" and re.fullmatch(r'"' + _SEMVER.pattern + '"', raw):
                value = '"<VERSION>"'
            else:
                value = self.text(raw)
            out.append(f'"{name}" : {value}')
        return "\n".join(out)

    def simple_output(self, text: str) -> str:
        return _sort_member_lines(self._simple_lines(text))

    def _simple_lines(self, text: str) -> str:
        lines = []
        bare_leases = 0  # `lease list` prints "found N leases", then N bare hex ids
        for line in text.split("\n"):
            if bare_leases and re.fullmatch(r"[0-9a-f]{1,16}", line):
                bare_leases -= 1
                lines.append(str(self.lease(int(line, 16))))
                continue
            m_found = re.fullmatch(r"found (\d+) leases", line)
            if m_found:
                bare_leases = int(m_found.group(1))
            m_member = _MEMBER_MSG.match(line) or _MEMBER_LINE.match(line)
            if m_member and m_member.re is _MEMBER_MSG:
                line = (f"Member {self.member(int(m_member.group(1), 16))} {m_member.group(2)} cluster "
                        f"{self.cluster(int(m_member.group(3), 16))}")
            elif m_member:
                line = f"{self.member(int(m_member.group(1), 16))}{m_member.group(2)}"
            line = _COMPACTED.sub(lambda m: f"compacted revision {self.rev(int(m.group(1)))}", line)
            line = self.text(line)
            m = _STATUS_LINE.match(line)
            if m:
                g = m.groupdict()
                ver = "<VERSION>" if _SEMVER.fullmatch(g["ver"]) else g["ver"]
                line = (f"{g['ep']}, {g['id']}, {ver}, <DB_SIZE>, {g['lead']}, {g['learner']}, <TERM>, "
                        f"<RAFT_INDEX>, <RAFT_INDEX>, {g['errs']}")
            lines.append(line)
        return "\n".join(lines)

    def text(self, text: str) -> str:
        """Substitutions that are safe anywhere: addresses, known ids, client UUIDs, timings."""
        for literal in sorted(self.replacements, key=len, reverse=True):
            text = text.replace(literal, self.replacements[literal])
        text = _CLIENT_UUID.sub("client-<UUID>", text)
        text = _RESOLVER_TARGET.sub("etcd-endpoints://<PTR>/", text)
        text = _TOOK.sub("took = <DURATION>", text)
        text = _REMAINING.sub("remaining(<TTL>)", text)
        # "lease 694d7d8f0d0b8a05 granted / revoked / ...": the simple form names leases in hex.
        text = _LEASE_HEX.sub(lambda m: f"lease {self.lease(int(m.group(1), 16))}", text)
        text = _DEC_TOKEN.sub(lambda m: self._known_id(int(m.group(0))) or m.group(0), text)
        text = _HEX_TOKEN.sub(lambda m: self._known_id(int(m.group(0), 16)) or m.group(0), text)
        return text


# etcd lists members in id order and ids differ between two servers, so member lists are compared
# in placeholder order instead: json "members" arrays, `member list` lines, ETCD_INITIAL_CLUSTER.
def _sorted_members(obj: Any) -> Any:
    if isinstance(obj, dict):
        out = {k: _sorted_members(v) for k, v in obj.items()}
        members = out.get("members")
        if isinstance(members, list) and all(isinstance(m, dict) for m in members):
            out["members"] = sorted(members, key=lambda m: str(m.get("ID")))
        return out
    if isinstance(obj, list):
        return [_sorted_members(v) for v in obj]
    return obj


_INITIAL_CLUSTER = re.compile(r'^ETCD_INITIAL_CLUSTER="(.*)"$')
_NORMALISED_MEMBER_LINE = re.compile(r"^<MEMBER\d+>, (?:started|unstarted), ")


def _sort_member_lines(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    run: list[str] = []
    for line in [*lines, None]:
        if line is not None and _NORMALISED_MEMBER_LINE.match(line):
            run.append(line)
            continue
        out.extend(sorted(run))
        run = []
        if line is None:
            break
        m = _INITIAL_CLUSTER.match(line)
        out.append(f'ETCD_INITIAL_CLUSTER="{",".join(sorted(m.group(1).split(",")))}"' if m else line)
    return "\n".join(out)
