"""petcdctl: etcdctl 3.5's commands, flags, ETCDCTL_* variables and output formats, plus the
notebook's chores as single commands (``recover nospace``, ``defrag --cluster --safe``,
``member replace``, ``check best-practices``).

Exit codes are etcdctl's: 0, 1 for errors, 2 bad connection, 3 invalid input, 4 unsupported
format or feature, 5 interrupted or a cluster that is not healthy, 128 bad arguments.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from petcd.ctl import auth, chores, kv, maint
from petcd.ctl.base import API_VERSION, GLOBAL_FLAGS, VERSION
from petcd.ctl.cli import (
    EXIT_ERROR,
    Command,
    CtlExit,
    FlagError,
    apply_env,
    parse_flags,
    resolve,
    usage,
)
from petcd.ctl.client import RpcFailure
from petcd.ctl.printer import err, out

PROG = "petcdctl"


def build() -> Command:
    root = Command(PROG, "A simple command line client for etcd3 (petcd's etcdctl).", persistent=list(GLOBAL_FLAGS))
    root.add(*kv.commands(), *maint.commands(), *auth.commands(), *chores.commands())
    return root


def _help_requested(argv: Sequence[str]) -> bool:
    for a in argv:
        if a == "--":
            return False
        if a in ("-h", "--help", "--help=true"):
            return True
    return False


def run(argv: Sequence[str]) -> int:
    root = build()
    try:
        cmd, rest = resolve(root, argv)
    except CtlExit as exc:
        err(f"Error: {exc.message}\n")
        return exc.code
    if cmd.run is None or _help_requested(rest):
        out(usage(cmd, VERSION, API_VERSION))
        return 0
    try:
        inv = parse_flags(cmd, rest)
    except FlagError as exc:
        err(f"Error: {exc}\n")
        out(usage(cmd, VERSION, API_VERSION))
        err(f"\nError: {exc}\n")
        return EXIT_ERROR
    try:
        apply_env(inv, ignore=("ETCDCTL_WATCH_KEY", "ETCDCTL_WATCH_RANGE_END") if cmd.name == "watch" else ())
        from petcd.ctl.base import Env

        Env(inv).check_globals()
        return cmd.run(inv)
    except CtlExit as exc:
        sys.stdout.flush()
        if exc.message:
            err(f"Error: {exc.message}\n")
        return exc.code
    except RpcFailure as exc:
        sys.stdout.flush()
        err(f"Error: {exc}\n")
        return EXIT_ERROR
    finally:
        sys.stdout.flush()


def main() -> None:
    os.environ.pop("ETCDCTL_API", None)  # etcdctl 3.5 reads and drops it; v3 is all petcdctl speaks
    try:
        code = run(sys.argv[1:])
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        code = EXIT_ERROR
    sys.exit(code)


if __name__ == "__main__":
    main()
