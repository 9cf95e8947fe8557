"""petcd-benchmark's command line: etcd 3.5 ``tools/benchmark``'s flags, names and defaults.

Global flags may come before or after the subcommand (as cobra's persistent flags may). Flag
values are Go's: integers as ``strconv.ParseInt(s, 0, 64)`` reads them (``10000``, ``10_000``,
``0x10``), booleans bare or ``=true|false``, durations as ``500ms``, ``2s``, ``1m30s``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import NoReturn

from petcd.config.govalues import GoValueError, parse_go_bool, parse_go_duration, parse_go_int

PROG = "petcd-benchmark"
# 0 in etcd's tool means clientv3's non-blocking dial; here it bounds the wait for a first connection
DEFAULT_DIAL_WAIT = 20.0


class UsageError(Exception):
    """A bad flag or argument: printed with a pointer to --help, exit code 2."""

    def __init__(self, message: str, command: str = "") -> None:
        super().__init__(message)
        self.command = command


def go_int(text: str) -> int:
    try:
        return parse_go_int(text)
    except GoValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None


def go_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None


def go_bool(text: str) -> bool:
    try:
        return parse_go_bool(text)
    except GoValueError:
        raise argparse.ArgumentTypeError(f"invalid boolean {text!r}") from None


def go_duration(text: str) -> float:
    """Go's ``time.ParseDuration``, in seconds."""
    try:
        return parse_go_duration(text) / 1e9
    except GoValueError:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.prog)


def _bool_flag(p: argparse.ArgumentParser | argparse._ArgumentGroup, name: str, help_text: str, default: object) -> None:
    p.add_argument(name, type=go_bool, nargs="?", const=True, default=default, metavar="true|false", help=help_text)


def _globals(p: argparse.ArgumentParser, sub: bool) -> None:
    # In a subcommand the globals default to "not given", so the root's values (or defaults) stand.
    def d(value: object) -> object:
        return argparse.SUPPRESS if sub else value

    g = p.add_argument_group("global flags")
    g.add_argument("--endpoints", default=d("127.0.0.1:2379"),
                   help="gRPC endpoints, comma separated: host:port, http://host:port or https://host:port "
                        "(default 127.0.0.1:2379)")
    g.add_argument("--conns", type=go_int, default=d(1), help="total number of gRPC connections (default 1)")
    g.add_argument("--clients", type=go_int, default=d(1),
                   help="total number of gRPC clients, dealt over the connections (default 1)")
    _bool_flag(g, "--precise", "use full floating point precision", d(False))
    _bool_flag(g, "--sample", "'true' to sample requests for every second", d(False))
    g.add_argument("--cert", default=d(""), help="identify HTTPS client using this SSL certificate file")
    g.add_argument("--key", default=d(""), help="identify HTTPS client using this SSL key file")
    g.add_argument("--cacert", default=d(""),
                   help="verify certificates of HTTPS-enabled servers using this CA bundle")
    g.add_argument("--user", default=d(""),
                   help="provide username[:password] and prompt if password is not supplied")
    g.add_argument("--dial-timeout", type=go_duration, default=d(0.0),
                   help=f"dial timeout for client connections (default 0: wait up to {DEFAULT_DIAL_WAIT:g}s)")
    _bool_flag(g, "--target-leader", "connect only to the leader node", d(False))
    g.add_argument("--procs", type=go_int, default=d(0),
                   help="petcd-benchmark only: client processes to spread the connections, clients, "
                        "requests and rate over; one Python process cannot keep a fast server busy "
                        "(default 0: one per CPU, at most --conns and --clients)")


def _rate(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--rate", type=go_int, default=0, help=f"maximum {what} per second (0 is no limit)")


def _total(p: argparse.ArgumentParser, what: str, default: int = 10000) -> None:
    p.add_argument("--total", type=go_int, default=default, help=f"total number of {what} (default {default})")


def _kv_sizes(p: argparse.ArgumentParser, what: str, key_size: int = 8) -> None:
    p.add_argument("--key-size", type=go_int, default=key_size, help=f"key size of {what} (default {key_size})")
    p.add_argument("--val-size", type=go_int, default=8, help=f"value size of {what} (default 8)")


def _key_space(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key-space-size", type=go_int, default=1, help="maximum possible keys (default 1)")


def _consistency(p: argparse.ArgumentParser) -> None:
    p.add_argument("--consistency", default="l", help="Linearizable(l) or Serializable(s) (default l)")


ROOT_HELP = """\
A low-level benchmark tool for etcd3 clusters (etcd's tools/benchmark, for petcd and etcd alike).
It talks to the gRPC API directly. Each subcommand prints etcd benchmark's summary: total time,
slowest, fastest, average and standard deviation of the latency, requests per second, a response
time histogram and the latency distribution; failed requests are listed by error, and make the
exit code 1.
"""

WATCH_HELP = """\
Benchmark watch: create watchers, then send events to them by putting to the watched keys.
--streams Watch streams each create --watch-per-stream watchers, one after another, on keys taken
in turn from --watched-key-total keys (so a key may be watched many times); then --put-total puts
go to the watched keys in turn. The first summary is watch creation; the second counts every
event received, its latency from sending the put to the event's arrival.
"""


def build_parser() -> argparse.ArgumentParser:
    root = _Parser(prog=PROG, description=ROOT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _globals(root, sub=False)
    subs = root.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subs.required = True

    def sub(name: str, summary: str, description: str = "") -> argparse.ArgumentParser:
        p = subs.add_parser(name, help=summary, description=description or summary,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        _globals(p, sub=True)
        return p

    put = sub("put", "Benchmark put",
              "Benchmark put: --total puts of --val-size random bytes, keys from a key space of "
              "--key-space-size keys (random, or in order with --sequential-keys).")
    _kv_sizes(put, "put request")
    _rate(put, "puts")
    _total(put, "put requests")
    _key_space(put)
    _bool_flag(put, "--sequential-keys", "use sequential keys", False)
    put.add_argument("--compact-interval", type=go_duration, default=0.0,
                     help="interval to compact the database (do not combine with the server's "
                          "--auto-compaction-retention), e.g. --compact-interval=5m (default 0: never)")
    put.add_argument("--compact-index-delta", type=go_int, default=1000,
                     help="delta between the current revision and the compact revision (default 1000)")
    _bool_flag(put, "--check-hashkv", "'true' to print the first endpoint's HashKV and db size afterwards", False)

    rng = sub("range", "Benchmark range",
              "Benchmark range: --total ranges of [key, end-range) (just key without end-range).")
    rng.add_argument("range_key", metavar="key")  # not "key": that is the global --key (TLS)
    rng.add_argument("end_range", nargs="?", default="", metavar="end-range")
    _rate(rng, "range requests")
    _total(rng, "range requests")
    _consistency(rng)

    txn = sub("txn-put", "Benchmark txn-put",
              "Benchmark txn-put: --total txns of --txn-ops puts each, keys in order over the key space.")
    _kv_sizes(txn, "txn put")
    txn.add_argument("--txn-ops", type=go_int, default=1, help="number of puts per txn (default 1)")
    _rate(txn, "txns")
    _total(txn, "txn requests")
    _key_space(txn)

    w = sub("watch", "Benchmark watch", WATCH_HELP)
    w.add_argument("--streams", type=go_int, default=10, help="total watch streams (default 10)")
    w.add_argument("--watch-per-stream", type=go_int, default=100, help="total watchers per stream (default 100)")
    w.add_argument("--watched-key-total", type=go_int, default=1, help="total number of keys to be watched (default 1)")
    w.add_argument("--put-rate", type=go_int, default=0, help="number of keys to put per second (0 is no limit)")
    w.add_argument("--put-total", type=go_int, default=1000, help="number of put requests (default 1000)")
    w.add_argument("--key-size", type=go_int, default=32, help="key size of watch request (default 32)")
    _key_space(w)
    _bool_flag(w, "--sequential-keys", "use sequential keys", False)
    w.add_argument("--event-timeout", type=go_duration, default=30.0,
                   help="petcd-benchmark only: how long to wait for the last events after the last put (default 30s)")

    la = sub("lease-keepalive", "Benchmark lease keepalive",
             "Benchmark lease keepalive: every client grants a 100 s lease, then sends --total keep-alives "
             "in all over its own LeaseKeepAlive stream; the leases are revoked at the end.")
    _total(la, "lease keepalive requests")
    _rate(la, "keep-alives")

    mx = sub("mixed", "Benchmark a mixed load of ranges and puts",
             "Benchmark a mixed load: each request is a range with probability rw-ratio/(1+rw-ratio), "
             "else a put (keys in order over the key space). Ranges read [key, end-range) with --limit; "
             "without key, the whole keyspace. One summary for reads, one for writes (as etcd's txn-mixed).")
    mx.add_argument("range_key", nargs="?", default="", metavar="key")
    mx.add_argument("end_range", nargs="?", default="", metavar="end-range")
    _kv_sizes(mx, "mixed put")
    _rate(mx, "requests")
    _total(mx, "requests")
    _key_space(mx)
    _consistency(mx)
    mx.add_argument("--rw-ratio", type=go_float, default=1.0, help="read/write ops ratio (default 1)")
    mx.add_argument("--limit", type=go_int, default=1000, help="read operation range result limit (default 1000)")
    return root


def parse(argv: Sequence[str]) -> argparse.Namespace:
    ns = build_parser().parse_args(list(argv))
    _check(ns)
    return ns


def _check(ns: argparse.Namespace) -> None:
    cmd = f"{PROG} {ns.command}"

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise UsageError(message, cmd)

    need(ns.conns >= 1, f"--conns must be at least 1, got {ns.conns}")
    need(ns.clients >= 1, f"--clients must be at least 1, got {ns.clients}")
    need(ns.procs >= 0, f"--procs must not be negative, got {ns.procs}")
    if ns.procs == 0:
        ns.procs = 1 if ns.command == "watch" else max(1, min(len(os.sched_getaffinity(0)), ns.conns, ns.clients))
    need(ns.procs <= ns.conns and ns.procs <= ns.clients,
         f"--procs {ns.procs} needs at least as many --conns ({ns.conns}) and --clients ({ns.clients})")
    need(ns.dial_timeout >= 0, "--dial-timeout must not be negative")
    for name in ("total", "rate", "put_total", "put_rate", "val_size"):
        if hasattr(ns, name):
            need(getattr(ns, name) >= 0, f"--{name.replace('_', '-')} must not be negative, got {getattr(ns, name)}")
    if hasattr(ns, "consistency"):
        need(ns.consistency in ("l", "s"), f"--consistency must be l (linearizable) or s (serializable), "
                                           f"got {ns.consistency!r}")
    if hasattr(ns, "key_space_size"):
        need(ns.key_space_size > 0, f"expected positive --key-space-size, got ({ns.key_space_size})")
    if hasattr(ns, "key_size"):
        need(ns.key_size >= 1, f"--key-size must be at least 1, got {ns.key_size}")
    if ns.command == "put":
        need(ns.compact_interval >= 0, "--compact-interval must not be negative")
        need(ns.compact_index_delta >= 0, "--compact-index-delta must not be negative")
    if ns.command == "txn-put":
        need(ns.txn_ops >= 1, f"--txn-ops must be at least 1, got {ns.txn_ops}")
        need(ns.txn_ops <= ns.key_space_size, "expected --txn-ops no larger than --key-space-size, "
             f"got txn-ops({ns.txn_ops}) key-space-size({ns.key_space_size})")
    if ns.command == "watch":
        for name in ("streams", "watch_per_stream", "watched_key_total"):
            need(getattr(ns, name) >= 1, f"--{name.replace('_', '-')} must be at least 1")
        need(ns.event_timeout > 0, "--event-timeout must be positive")
        need(ns.procs == 1, "watch runs in one process; --procs is not supported for it")
    if ns.command == "mixed":
        need(ns.rw_ratio >= 0, f"--rw-ratio must not be negative, got {ns.rw_ratio}")
        need(ns.limit >= 0, f"--limit must not be negative, got {ns.limit}")
