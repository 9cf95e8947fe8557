"""`petcdutl backup` on the command line: etcdutl 3.5.1's flags, usage text and exit codes.

etcdutl parses with cobra/pflag, whose behaviour a user of `etcdutl backup` sees and scripts
against: `--flag value` and `--flag=value`, bool flags that take no separate value
(`--with-v3=false`), the global `-w/--write-out` anywhere, stray words ignored, `-h/--help`
printing the usage on stdout, and every flag error printed as "Error: ..." + the usage +
"Error: ..." again on stderr with exit status 1. argparse does none of that the same way, so the
few rules are written out here.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from petcd.utl.backup import BackupConfig, BackupError, backup
from petcd.wal import WALError

log = logging.getLogger("petcd.utl")

PROG = "petcdutl"
EXIT_ERROR = 1


@dataclass(frozen=True)
class Flag:
    name: str
    usage: str
    default: str = ""
    is_bool: bool = False
    shorthand: str = ""


BACKUP_FLAGS = (
    Flag("backup-dir", "Path to the backup dir"),
    Flag("backup-wal-dir", "Path to the backup wal dir"),
    Flag("data-dir", "Path to the etcd data dir"),
    Flag("help", "help for backup", "false", is_bool=True, shorthand="h"),
    Flag("wal-dir", "Path to the etcd wal dir"),
    Flag("with-v3", "Backup v3 backend data", "true", is_bool=True),
)
GLOBAL_FLAGS = (
    Flag("write-out", "set the output format (fields, json, protobuf, simple, table)", "simple", shorthand="w"),
)
REQUIRED = ("backup-dir", "data-dir")
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def flag_usages(flags: Sequence[Flag]) -> str:
    """pflag's FlagUsages: one line per flag, the descriptions aligned 3 past the longest name."""
    lefts = []
    for f in flags:
        left = f"  -{f.shorthand}, --{f.name}" if f.shorthand else f"      --{f.name}"
        if not f.is_bool:
            left += " string"
        lefts.append(left)
    width = max(len(x) for x in lefts)
    lines = []
    for f, left in zip(flags, lefts, strict=True):
        text = f.usage
        if f.is_bool and f.default == "true":
            text += " (default true)"
        elif not f.is_bool and f.default:
            text += f' (default "{f.default}")'
        lines.append(left.ljust(width) + "   " + text)
    return "\n".join(lines) + "\n"


def usage() -> str:
    return (
        f"Usage:\n  {PROG} backup [flags]\n\nFlags:\n{flag_usages(BACKUP_FLAGS)}\n"
        f"Global Flags:\n{flag_usages(GLOBAL_FLAGS)}"
    )


class FlagError(Exception):
    pass


def _parse_bool(name: str, value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise FlagError(f'invalid argument "{value}" for "--{name}" flag: strconv.ParseBool: parsing "{value}": invalid syntax')


def parse(args: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """pflag's parse of `args`: the flags set (name -> value, bools as "true"/"false") and the
    other words. Raises FlagError with pflag's text."""
    by_name = {f.name: f for f in (*BACKUP_FLAGS, *GLOBAL_FLAGS)}
    by_short = {f.shorthand: f for f in by_name.values() if f.shorthand}
    values: dict[str, str] = {}
    words: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if a == "--":
            words.extend(args[i:])
            break
        if a.startswith("--") and len(a) > 2:
            name, eq, value = a[2:].partition("=")
            f = by_name.get(name)
            if f is None:
                raise FlagError(f"unknown flag: --{name}")
            if f.is_bool:
                values[name] = str(_parse_bool(name, value if eq else "true")).lower()
            elif eq:
                values[name] = value
            elif i < len(args):
                values[name] = args[i]
                i += 1
            else:
                raise FlagError(f"flag needs an argument: --{name}")
        elif a.startswith("-") and len(a) > 1:
            shorts = a[1:]
            while shorts:
                here = shorts  # pflag names the rest of the group, from this letter on
                c, shorts = shorts[0], shorts[1:]
                f = by_short.get(c)
                if f is None:
                    raise FlagError(f"unknown shorthand flag: '{c}' in -{here}")
                if f.is_bool:
                    if shorts.startswith("="):
                        values[f.name] = str(_parse_bool(f.name, shorts[1:])).lower()
                        shorts = ""
                    else:
                        values[f.name] = "true"
                    continue
                if shorts:
                    values[f.name] = shorts.removeprefix("=")
                elif i < len(args):
                    values[f.name] = args[i]
                    i += 1
                else:
                    raise FlagError(f"flag needs an argument: '{c}' in -{here}")
                shorts = ""
        else:
            words.append(a)
    return values, words


def _flag_error(msg: str) -> int:
    sys.stderr.write(f"Error: {msg}\n{usage()}\nError: {msg}\n")
    return EXIT_ERROR


def run(args: Sequence[str], now_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> int:
    """`petcdutl backup ARGS...` (args after the word `backup`); the exit status."""
    try:
        values, _words = parse(args)  # stray words are ignored, as etcdutl ignores them
    except FlagError as e:
        return _flag_error(str(e))
    if values.get("help") == "true":
        sys.stdout.write(usage())
        return 0
    missing = [name for name in REQUIRED if name not in values]
    if missing:
        return _flag_error("required flag(s) " + ", ".join(f'"{n}"' for n in missing) + " not set")
    cfg = BackupConfig(
        data_dir=values["data-dir"],
        backup_dir=values["backup-dir"],
        wal_dir=values.get("wal-dir", ""),
        backup_wal_dir=values.get("backup-wal-dir", ""),
        with_v3=values.get("with-v3", "true") == "true",
    )
    try:
        backup(cfg, now_ms())
    except (BackupError, WALError, OSError) as e:
        sys.stderr.write(f"Error: {e}\n")
        return EXIT_ERROR
    return 0
