"""A command tree with etcdctl's flag syntax (pflag), its usage text and its exit codes.

etcdctl is a cobra program: flags may come before or after arguments, ``--name=value`` and
``--name value`` both work, a boolean flag takes an optional ``=false``, ``--`` ends the flags,
a command may be named by any unique prefix, and the flags of a parent declared as persistent are
inherited by its subcommands. Errors on flags print the command's usage on stdout and the error on
stderr (twice, as etcdctl does: once from the command library, once from the program), exit 1.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

# etcdctl's exit codes
EXIT_SUCCESS = 0
EXIT_ERROR = 1
EXIT_BAD_CONNECTION = 2
EXIT_INVALID_INPUT = 3
EXIT_BAD_FEATURE = 4
EXIT_INTERRUPTED = 5
EXIT_IO = 6
EXIT_BAD_ARGS = 128
EXIT_CLUSTER_NOT_HEALTHY = 5

Kind = Literal["bool", "string", "int", "duration", "strings"]
Value = bool | str | int | float | list[str]


class CtlExit(Exception):
    """Ends the command: ``Error: <message>`` on stderr (when given) and the exit code."""

    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(message or "")
        self.code = code
        self.message = message


def fail(code: int, message: str) -> CtlExit:
    return CtlExit(code, message)


@dataclass(frozen=True)
class Flag:
    name: str
    kind: Kind
    default: Value
    usage: str
    short: str = ""

    def default_text(self) -> str:
        if self.kind == "string":
            return go_quote(str(self.default))
        if self.kind == "bool":
            return "true" if self.default else "false"
        if self.kind == "duration":
            return go_duration(float(self.default))  # type: ignore[arg-type]
        if self.kind == "strings":
            return "[" + ",".join(self.default) + "]"  # type: ignore[arg-type]
        return str(self.default)

    def parse(self, text: str, spelled: str) -> Value:
        where = f'"{spelled}" flag'
        try:
            if self.kind == "bool":
                return parse_go_bool(text)
            if self.kind == "int":
                return parse_go_int(text)
            if self.kind == "duration":
                return parse_go_duration(text)
            if self.kind == "strings":
                return [] if text == "" else [p for p in text.split(",")]
        except ValueError as exc:
            raise FlagError(f'invalid argument "{text}" for {where}: {exc}') from None
        return text


class FlagError(Exception):
    pass


Runner = Callable[["Invocation"], int]


@dataclass
class Command:
    use: str
    short: str
    run: Runner | None = None
    long: str = ""
    flags: list[Flag] = field(default_factory=list)
    persistent: list[Flag] = field(default_factory=list)
    subcommands: list[Command] = field(default_factory=list)
    parent: Command | None = None

    @property
    def name(self) -> str:
        return self.use.split(" ", 1)[0]

    def add(self, *cmds: Command) -> Command:
        for c in cmds:
            c.parent = self
            self.subcommands.append(c)
        return self

    def path(self) -> list[Command]:
        out: list[Command] = []
        c: Command | None = self
        while c is not None:
            out.insert(0, c)
            c = c.parent
        return out

    def command_path(self) -> str:
        return " ".join(c.name for c in self.path())

    def inherited(self) -> list[Flag]:
        return [f for c in self.path()[:-1] for f in c.persistent]

    def local(self) -> list[Flag]:
        return [*self.flags, *self.persistent, Flag("help", "bool", False, f"help for {self.name}", "h")]

    def all_flags(self) -> list[Flag]:
        return [*self.local(), *self.inherited()]

    def find_sub(self, word: str) -> Command | None:
        exact = [c for c in self.subcommands if c.name == word]
        if exact:
            return exact[0]
        matches = [c for c in self.subcommands if c.name.startswith(word)]
        return matches[0] if len(matches) == 1 else None


@dataclass
class Invocation:
    command: Command
    args: list[str]
    values: dict[str, Value]
    changed: set[str]
    raw_args: list[str]

    def get(self, name: str) -> Value:
        return self.values[name]

    def text(self, name: str) -> str:
        return str(self.values[name])

    def bool(self, name: str) -> bool:
        return bool(self.values[name])

    def int(self, name: str) -> int:
        v = self.values[name]
        assert isinstance(v, int)
        return v

    def seconds(self, name: str) -> float:
        v = self.values[name]
        assert isinstance(v, int | float)
        return float(v)

    def strings(self, name: str) -> list[str]:
        v = self.values[name]
        assert isinstance(v, list)
        return v


# --- Go value syntax -----------------------------------------------------------------------------
def parse_go_bool(text: str) -> bool:
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{text}": invalid syntax')


def parse_go_int(text: str, base: int = 10) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+" if base == 10 else r"[+-]?[0-9a-fA-F]+", text):
        raise ValueError(f'strconv.ParseInt: parsing "{text}": invalid syntax')
    v = int(text, base)
    if not -(2**63) <= v < 2**63:
        raise ValueError(f'strconv.ParseInt: parsing "{text}": value out of range')
    return v


def parse_go_uint(text: str, base: int = 16) -> int:
    if not re.fullmatch(r"[0-9a-fA-F]+" if base == 16 else r"[0-9]+", text):
        raise ValueError(f'strconv.ParseUint: parsing "{text}": invalid syntax')
    v = int(text, base)
    if v >= 2**64:
        raise ValueError(f'strconv.ParseUint: parsing "{text}": value out of range')
    return v


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration ("5s", "1m30s", "250ms", "0")."""
    s = text
    sign = 1.0
    if s[:1] in "+-" and s:
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f'time: invalid duration "{text}"')
    total, pos = 0.0, 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m or m.group(1) in ("", "."):
            if re.match(r"[0-9.]+$", s[pos:]):
                raise ValueError(f'time: missing unit in duration "{text}"')
            raise ValueError(f'time: invalid duration "{text}"')
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String() for a duration."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return sign + _trim(f"{ns / 1e3:.3f}") + "µs"
    if ns < 1_000_000_000:
        return sign + _trim(f"{ns / 1e6:.6f}") + "ms"
    h, rem = divmod(ns, 3600 * 10**9)
    m, rem = divmod(rem, 60 * 10**9)
    secs = _trim(f"{rem / 1e9:.9f}") + "s"
    if h:
        return f"{sign}{h}h{m}m{secs}"
    if m:
        return f"{sign}{m}m{secs}"
    return sign + secs


def _trim(num: str) -> str:
    return num.rstrip("0").rstrip(".") if "." in num else num


def go_quote(text: str) -> str:
    """Go's %q of a string (strconv.Quote)."""
    out = ['"']
    for ch in text:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch in "\a\b\f\v":
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\v": "\\v"}[ch])
        elif 0xDC80 <= o <= 0xDCFF:  # an undecodable byte (surrogateescape)
            out.append(f"\\x{o - 0xDC00:02x}")
        elif o < 0x20:
            out.append(f"\\x{o:02x}")
        elif not ch.isprintable() and o >= 0x7F:  # DEL too: Go 1.16 (etcdctl 3.5.1's) quotes it as \u007f
            out.append(f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def bytes_text(data: bytes) -> str:
    """Bytes as Go's string(b) prints them: undecodable bytes kept as they are on output."""
    return data.decode("utf-8", errors="surrogateescape")


# --- parsing -------------------------------------------------------------------------------------
def resolve(root: Command, argv: Sequence[str]) -> tuple[Command, list[str]]:
    """The command named by the leading words of argv (flags skipped), and argv without them."""
    cmd = root
    rest = list(argv)
    i = 0
    while i < len(rest):
        word = rest[i]
        if word == "--":
            break
        if word.startswith("-") and word != "-":
            flag = _lookup_any(cmd, word)
            if flag is not None and flag.kind != "bool" and "=" not in word and not _short_inline(word):
                i += 2
            else:
                i += 1
            continue
        sub = cmd.find_sub(word)
        if sub is None:
            if cmd.subcommands and cmd.run is None:
                msg = f'unknown command "{word}" for "{cmd.command_path()}"'
                raise CtlExit(EXIT_ERROR, f"{msg}\nRun '{cmd.command_path()} --help' for usage.\nError: {msg}")
            break
        cmd = sub
        del rest[i]
    return cmd, rest


def _short_inline(word: str) -> bool:
    return not word.startswith("--") and len(word) > 2


def _lookup_any(cmd: Command, word: str) -> Flag | None:
    name = word.lstrip("-").split("=", 1)[0]
    for c in cmd.path():
        for f in [*c.flags, *c.persistent]:
            if (word.startswith("--") and f.name == name) or (not word.startswith("--") and f.short == name[:1]):
                return f
    return None


def parse_flags(cmd: Command, argv: Sequence[str]) -> Invocation:
    flags = cmd.all_flags()
    by_name = {f.name: f for f in flags}
    by_short = {f.short: f for f in flags if f.short}
    values: dict[str, Value] = {f.name: f.default for f in flags}
    changed: set[str] = set()
    args: list[str] = []
    it = list(argv)
    i = 0

    def take_value(f: Flag, spelled: str, inline: str | None) -> None:
        nonlocal i
        if inline is not None:
            text = inline
        elif f.kind == "bool":
            text = "true"
        elif i < len(it):
            text = it[i]
            i += 1
        else:
            raise FlagError(f"flag needs an argument: {spelled}")
        values[f.name] = f.parse(text, spelled if not f.short else f"-{f.short}, --{f.name}")
        changed.add(f.name)

    while i < len(it):
        word = it[i]
        i += 1
        if word == "--":
            args.extend(it[i:])
            break
        if word.startswith("--"):
            name, eq, inline = word[2:].partition("=")
            f = by_name.get(name)
            if f is None:
                raise FlagError(f"unknown flag: --{name}")
            take_value(f, f"--{name}", inline if eq else None)
        elif word.startswith("-") and word != "-":
            letters = word[1:]
            while letters:
                ch, letters = letters[0], letters[1:]
                f = by_short.get(ch)
                if f is None:
                    raise FlagError(f"unknown shorthand flag: '{ch}' in {word}")
                if letters.startswith("="):
                    take_value(f, f"-{ch}", letters[1:])
                    letters = ""
                elif f.kind != "bool" and letters:
                    take_value(f, f"-{ch}", letters)
                    letters = ""
                else:
                    take_value(f, f"-{ch}", None)
        else:
            args.append(word)
    return Invocation(cmd, args, values, changed, list(argv))


def apply_env(inv: Invocation, prefix: str = "ETCDCTL", ignore: Sequence[str] = ()) -> None:
    """ETCDCTL_<FLAG> sets a global flag not given on the command line (etcd's SetPflagsFromEnv):
    a value that does not parse is ignored, as etcdctl does; an unknown variable is warned about."""
    flags = inv.command.inherited() if inv.command.parent else inv.command.persistent
    known = {prefix + "_" + f.name.upper().replace("-", "_"): f for f in flags}
    for key in sorted(os.environ):
        if key.startswith(prefix + "_") and key not in known and key not in ignore:
            _log_warn_unknown_env(f"{key}={os.environ[key]}")
    for key, f in known.items():
        if f.name in inv.changed or key not in os.environ:
            continue
        try:
            inv.values[f.name] = f.parse(os.environ[key], f"--{f.name}")
        except FlagError:
            continue
        inv.changed.add(f.name)


def _log_warn_unknown_env(assignment: str) -> None:
    import json
    import time

    line = {"level": "warn", "ts": time.time(), "caller": "flags/flag.go:93",
            "msg": "unrecognized environment variable", "environment-variable": assignment}
    write_err(json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n")


# --- usage (etcd's cobrautl template, rendered through Go's tabwriter) ----------------------------
def flag_usages(flags: Sequence[Flag]) -> list[str]:
    lines = []
    for f in sorted(flags, key=lambda f: f.name):
        head = f"  -{f.short}, --{f.name}" if f.short else f"      --{f.name}"
        value = f"={f.default_text()}"
        if f.kind == "bool":
            value = f"[{value}]"
        lines.append(f"{head}{value}\t{f.usage}")
    return lines


def use_line(cmd: Command) -> str:
    parent = cmd.parent.command_path() + " " if cmd.parent else ""
    line = parent + cmd.use
    if "[flags]" not in line:
        line += " [flags]"
    return line


def usage(cmd: Command, version: str, api_version: str) -> str:
    name = cmd.name if cmd.parent is None else " ".join(c.name for c in cmd.path()[1:])
    out = ["NAME:", f"\t{name} - {cmd.short}", "", "USAGE:", f"\t{use_line(cmd)}"]
    if cmd.parent is None:
        out += ["", "VERSION:", f"\t{version}"]
    if cmd.subcommands:
        out += ["", "API VERSION:", f"\t{api_version}", "", "", "COMMANDS:"]
        for sub in sorted(_all_subs(cmd), key=lambda c: c.command_path()):
            if sub.run is not None:
                sub_name = " ".join(c.name for c in sub.path()[len(cmd.path()):])
                out.append(f"\t{sub_name}\t{sub.short}")
    if cmd.long:
        out += ["", "DESCRIPTION:"]
        out += [f"\t{line}" for line in cmd.long.strip("\n\t ").split("\n")]
    out += ["", "OPTIONS:", *flag_usages(cmd.local())]
    if cmd.inherited():
        out += ["", "GLOBAL OPTIONS:", *flag_usages(cmd.inherited())]
    return tabwriter("\n".join(out) + "\n\n")


def _all_subs(cmd: Command) -> list[Command]:
    out: list[Command] = []
    for s in sorted(cmd.subcommands, key=lambda c: c.name):
        out.append(s)
        out.extend(_all_subs(s))
    return out


def tabwriter(text: str, tabwidth: int = 8, padding: int = 1) -> str:
    """Go's text/tabwriter with padchar '\\t': tab-terminated cells aligned in column blocks."""
    lines = [line.split("\t") for line in text.split("\n")]
    widths: list[list[int]] = [[0] * (len(c) - 1) for c in lines]

    def format_block(start: int, col: int) -> None:
        end = start
        while end < len(lines) and len(lines[end]) - 1 > col:
            end += 1
        width = max(len(lines[k][col]) for k in range(start, end)) + padding
        width = (width + tabwidth - 1) // tabwidth * tabwidth
        for k in range(start, end):
            widths[k][col] = width
        k = start
        while k < end:
            if len(lines[k]) - 1 > col + 1:
                format_block(k, col + 1)
                while k < end and len(lines[k]) - 1 > col + 1:
                    k += 1
            else:
                k += 1

    row = 0
    while row < len(lines):
        if len(lines[row]) > 1:
            start = row
            format_block(start, 0)
            while row < len(lines) and len(lines[row]) > 1:
                row += 1
        else:
            row += 1
    out = []
    for cells, ws in zip(lines, widths, strict=True):
        parts = []
        for cell, w in zip(cells, ws, strict=False):
            gap = w - len(cell)
            parts.append(cell + "\t" * ((gap + tabwidth - 1) // tabwidth))
        parts.append(cells[-1])
        out.append("".join(parts))
    return "\n".join(out)


def write_err(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()
