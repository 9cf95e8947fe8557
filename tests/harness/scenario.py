"""Scripted etcdctl scenarios, run step by step against real etcd and against the server under test.

A scenario is data: a name and a list of ``Step``s (etcdctl arguments, optional stdin). Arguments
may use templates, resolved per server because each server has its own revisions and lease ids:

- ``{p}``: the scenario's key prefix (``<name>/``), so scenarios can share one server;
- ``{rev}``, ``{rev+3}``, ``{rev-1}``: the server's revision when the scenario began, plus/minus;
- ``{NAME}``: a value captured by an earlier step's ``capture=(NAME, regex)`` from that server's
  raw stdout (e.g. a lease id).

Real etcd runs each step first; its output is the expected value. Each step also states the exit
code real etcd must give (``rc``, default 0) and optionally a substring it must print (``expect``):
this keeps a scenario honest, since two servers that fail the same way (say, both unreachable)
would otherwise "agree".
"""

from __future__ import annotations

import difflib
import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from tests.harness.ctl import CtlResult, Etcdctl, Normaliser, output_format
from tests.harness.procs import Server

_TEMPLATE = re.compile(r"\{(\w+)(?:([+-])(\d+))?\}")
MAX_REPORTED = 5


@dataclass(frozen=True)
class Step:
    args: tuple[str, ...]
    stdin: str | None = None
    rc: int = 0
    expect: str = ""
    capture: tuple[str, str] | None = None

    def label(self) -> str:
        text = "etcdctl " + " ".join(shlex.quote(_clip(a)) for a in self.args)
        if self.stdin is not None:
            text += f"  <<< {_clip(self.stdin)!r}"
        return text


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"


def ctl(
    *args: str,
    stdin: str | None = None,
    rc: int = 0,
    expect: str = "",
    capture: tuple[str, str] | None = None,
) -> Step:
    return Step(tuple(args), stdin, rc, expect, capture)


def txn(*compares_success_failure: Sequence[str], flags: Sequence[str] = (), rc: int = 0,
        expect: str = "") -> Step:
    """``etcdctl txn`` fed on stdin: compares, success ops, failure ops (each a list of lines)."""
    if len(compares_success_failure) != 3:
        raise ValueError("txn(compares, success, failure)")
    body = "".join("".join(f"{line}\n" for line in block) + "\n" for block in compares_success_failure)
    return Step(("txn", *flags), body, rc, expect)


@dataclass(frozen=True)
class Scenario:
    name: str
    steps: tuple[Step, ...]
    # Needs its own pair of servers (reads the whole keyspace, or server flags). Fresh servers have
    # the same history, so their revisions are compared as they are: a new etcd is at revision 1.
    fresh: bool = False
    server_args: tuple[str, ...] = ()  # flags for a fresh pair

    def __post_init__(self) -> None:
        if self.server_args and not self.fresh:
            raise ValueError(f"{self.name}: server_args need fresh=True")


def scenario(name: str, *steps: Step, fresh: bool = False, server_args: Sequence[str] = ()) -> Scenario:
    return Scenario(name, tuple(steps), fresh, tuple(server_args))


@dataclass
class Side:
    """One server's view of a running scenario."""

    server: Server
    prefix: str
    absolute: bool = False  # compare revisions as they are (fresh servers), not relative to the base
    ctl: Etcdctl = field(init=False)
    base_revision: int = field(init=False)
    norm: Normaliser = field(init=False)
    vars: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ctl = Etcdctl.for_server(self.server)
        res = self.ctl.run("get", self.prefix, "-w", "json")
        if res.rc != 0:
            raise AssertionError(f"{self.server.label}: cannot read base revision:\n{res}")
        # Go's JSON encoder leaves out a zero revision; a header without one says revision 0.
        self.base_revision = int(json.loads(res.stdout)["header"].get("revision", 0))
        self.norm = Normaliser.for_servers([self.server], base_revision=0 if self.absolute else self.base_revision)

    def resolve(self, text: str) -> str:
        def sub(m: re.Match[str]) -> str:
            name, sign, num = m.group(1), m.group(2), m.group(3)
            if name == "p":
                value: str | int = self.prefix
            elif name == "rev":
                value = self.base_revision
            elif name in self.vars:
                value = self.vars[name]
            else:
                raise AssertionError(f"{self.server.label}: unknown template {{{name}}} in {text!r}")
            if sign:
                if not isinstance(value, int):
                    raise AssertionError(f"arithmetic on non-number template {m.group(0)!r}")
                value = value + int(num) if sign == "+" else value - int(num)
            return str(value)

        return _TEMPLATE.sub(sub, text)

    def run(self, step: Step) -> tuple[CtlResult, CtlResult]:
        """Run a step; return (raw, normalised) results."""
        args = [self.resolve(a) for a in step.args]
        stdin = self.resolve(step.stdin) if step.stdin is not None else None
        raw = self.ctl.run(*args, stdin=stdin)
        if step.capture is not None:
            name, pattern = step.capture
            m = re.search(pattern, raw.stdout)
            if m:
                self.vars[name] = m.group(1)
        return raw, self.norm.result(raw, output_format(args))


@dataclass(frozen=True)
class Mismatch:
    index: int
    step: Step
    expected: CtlResult
    actual: CtlResult

    def describe(self, target_label: str) -> str:
        exp = str(self.expected).splitlines(keepends=True)
        act = str(self.actual).splitlines(keepends=True)
        diff = "".join(difflib.unified_diff(exp, act, "etcd", target_label))
        return f"step {self.index}: {self.step.label()}\n{diff}"


def run_scenario(sc: Scenario, reference: Server, target: Server) -> list[Mismatch]:
    """Run ``sc`` on both servers in lockstep; return the steps whose normalised results differ.

    Raises AssertionError at once when real etcd does not give a step's declared ``rc`` /
    ``expect``: then the scenario itself is wrong.
    """
    ref = Side(reference, f"{sc.name}/", absolute=sc.fresh)
    tgt = Side(target, f"{sc.name}/", absolute=sc.fresh)
    mismatches: list[Mismatch] = []
    for i, step in enumerate(sc.steps, 1):
        ref_raw, ref_norm = ref.run(step)
        if ref_raw.rc != step.rc or step.expect not in ref_raw.stdout + ref_raw.stderr:
            raise AssertionError(
                f"scenario {sc.name!r} step {i} is wrong against real etcd "
                f"(declared rc={step.rc}, expect={step.expect!r}):\n{step.label()}\n{ref_raw}"
            )
        if step.capture is not None and step.capture[0] not in ref.vars:
            raise AssertionError(f"scenario {sc.name!r} step {i}: capture {step.capture} found nothing")
        _, tgt_norm = tgt.run(step)
        if tgt_norm != ref_norm:
            mismatches.append(Mismatch(i, step, ref_norm, tgt_norm))
    return mismatches


def assert_same(sc: Scenario, reference: Server, target: Server) -> None:
    mismatches = run_scenario(sc, reference, target)
    if mismatches:
        shown = "\n".join(m.describe(target.label) for m in mismatches[:MAX_REPORTED])
        more = len(mismatches) - MAX_REPORTED
        tail = f"\n... and {more} more differing steps" if more > 0 else ""
        raise AssertionError(
            f"scenario {sc.name!r}: {len(mismatches)} of {len(sc.steps)} steps differ "
            f"between etcd and {target.label}\n{shown}{tail}"
        )
