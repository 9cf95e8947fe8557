"""Logging as --log-level and --log-outputs ask: one level for everything, to stderr, stdout
and/or files (appended to), in one text format."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

__all__ = ["configure_logging", "python_level"]

_LEVELS = {
    "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR,
    # zap's panic levels stop the process after logging; petcd only logs them
    "dpanic": logging.CRITICAL, "panic": logging.CRITICAL, "fatal": logging.CRITICAL,
}


def python_level(level: str) -> int:
    """The logging level for an etcd --log-level value (already validated)."""
    return _LEVELS[level]


def configure_logging(level: str, outputs: Sequence[str], tag: str = "") -> None:
    """Send the root logger's records to every --log-outputs target ('default' and 'stderr' are
    stderr, 'stdout' is stdout, anything else a file path); ``tag`` marks a front-end's lines."""
    handlers: list[logging.Handler] = []
    for out in dict.fromkeys(outputs or ("default",)):
        if out in ("default", "stderr"):
            handlers.append(logging.StreamHandler(sys.stderr))
        elif out == "stdout":
            handlers.append(logging.StreamHandler(sys.stdout))
        else:
            handlers.append(logging.FileHandler(out, encoding="utf-8"))
    logging.basicConfig(
        level=python_level(level),
        format=f"%(asctime)s %(levelname)s %(name)s{tag}: %(message)s",
        handlers=handlers,
        force=True,
    )
