"""``watch``: etcdctl 3.5.1's watch command, its ``-i`` interactive mode and its ``-- command`` form.

- ``watch [flags] key [range_end] [-- command args...]``: one watch; with a command, the command
  runs once per event (after the event is printed) with ``ETCD_WATCH_REVISION``,
  ``ETCD_WATCH_EVENT_TYPE``, ``ETCD_WATCH_KEY`` and ``ETCD_WATCH_VALUE`` in its environment, the
  last three Go-quoted as etcdctl sets them (``"PUT"``, ``"foo"``); a failing command ends petcdctl
  with ``command [...] error (...)`` and exit 1. ``ETCDCTL_WATCH_KEY`` / ``ETCDCTL_WATCH_RANGE_END``
  stand for the key and range end.
- ``watch -i``: lines on stdin, each ``watch [flags] key [range_end] [-- command ...]`` (a new
  watch, its events printed as they come while more lines are read) or ``progress`` (a progress
  request on the stream: every watch prints ``progress notify: REV``). As in etcdctl, a line's
  flags are its own (the command line's --prefix/--rev/--prev-kv/--progress-notify are not
  inherited); a bad line is reported on stderr and skipped, except where etcdctl exits (bad
  arguments or flags: exit 128); end of input ends the command (exit 3).

All watches share one gRPC stream, as etcd's client multiplexes them; the created answers come back
in request order, which is how a reply is matched to its watch.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from petcd.ctl.base import B, Env, I, to_bytes
from petcd.ctl.cli import (
    EXIT_BAD_ARGS,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_INVALID_INPUT,
    Command,
    CtlExit,
    Flag,
    FlagError,
    bytes_text,
    go_quote,
    parse_flags,
)
from petcd.ctl.client import Client, RpcFailure
from petcd.ctl.printer import Display, err, out
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.mvccpb import kv_pb2

BAD_ARGS = "bad number of arguments"
BAD_ARGS_ENV = "bad number of arguments (found conflicting environment key)"
BAD_ARGS_SEP = "bad number of arguments (found separator --, but no commands)"
COMPACTED = "etcdserver: mvcc: required revision has been compacted"
NO_LEADER = "etcdserver: no leader"


def watch_flags() -> list[Flag]:
    return [
        Flag("interactive", "bool", False, "Interactive mode", "i"),
        B("prefix", "Watch on a prefix if prefix is set"),
        I("rev", 0, "Revision to start watching"),
        B("prev-kv", "get the previous key-value pair before the event happens"),
        B("progress-notify", "get periodic watch progress notification from server"),
    ]


@dataclass(frozen=True)
class WatchSpec:
    args: list[str]  # key [range_end]; more are ignored, as etcdctl does
    prefix: bool
    rev: int
    prev_kv: bool
    progress_notify: bool
    exec_args: list[str]

    def create_request(self) -> pb.WatchCreateRequest:
        """etcdctl's getWatchChan: ValueError with its text for what it refuses."""
        from petcd.ctl.kv import prefix_end

        if not self.args:
            raise ValueError(BAD_ARGS)
        create = pb.WatchCreateRequest(key=to_bytes(self.args[0]), start_revision=self.rev, prev_kv=self.prev_kv,
                                       progress_notify=self.progress_notify)
        if len(self.args) == 2:
            if self.prefix:
                raise ValueError("`range_end` and `--prefix` are mutually exclusive")
            create.range_end = to_bytes(self.args[1])
        if self.prefix:
            create.range_end = prefix_end(create.key) if create.key else b"\x00"
            if not create.key:
                create.key = b"\x00"
        return create


def _after_watch_word(os_args: Sequence[str]) -> list[str]:
    raw = list(os_args)
    if "watch" in raw:
        return raw[raw.index("watch") + 1:]
    return raw


def _cut_exec(watch_args: list[str], after_sep: list[str]) -> list[str]:
    """The positional arguments without the command's words (the last match of its first word)."""
    if not after_sep:
        return watch_args
    for end in range(len(watch_args) - 1, -1, -1):
        if watch_args[end] == after_sep[0]:
            return watch_args[:end]
    return watch_args[:-1]


def parse_command_line(os_args: Sequence[str], command_args: list[str], env_key: str, env_range: str,
                       inv_values: dict[str, Any]) -> WatchSpec:
    """etcdctl's parseWatchArgs for the command line (ValueError with its text)."""
    raw = _after_watch_word(os_args)
    sep = raw.index("--") if "--" in raw else -1
    if sep >= 0 and sep == len(raw) - 1:
        raise ValueError(BAD_ARGS_SEP)
    if sep < 0 and not raw and not env_key:
        raise ValueError(BAD_ARGS)
    watch_args = list(command_args)
    if sep >= 0 and env_key:
        # the words before "--" that are positional would conflict with the variable
        r = len(raw) - 1
        for w in range(len(watch_args) - 1, -1, -1):
            if r >= 0 and watch_args[w] == raw[r]:
                r -= 1
                continue
            if r == sep:
                raise ValueError(BAD_ARGS_ENV)
    if sep < 0 and watch_args and env_key:
        raise ValueError(BAD_ARGS_ENV)
    exec_args = raw[sep + 1:] if sep >= 0 else []
    if env_key:
        watch_args = [env_key, *([env_range] if env_range else []), *watch_args]
    if sep >= 0:
        watch_args = _cut_exec(watch_args, exec_args)
    return WatchSpec(watch_args, bool(inv_values["prefix"]), int(inv_values["rev"]), bool(inv_values["prev-kv"]),
                     bool(inv_values["progress-notify"]), exec_args)


_LINE_CMD = Command("watch", "", flags=watch_flags())


def _parse_line_flags(words: list[str]) -> tuple[list[str], dict[str, Any]]:
    try:
        inv = parse_flags(_LINE_CMD, words)
    except FlagError as exc:
        raise ValueError(str(exc)) from None
    if "help" in inv.changed:  # pflag's own answer: the line's flag set has no help flag
        raise ValueError("pflag: help requested")
    return inv.args, inv.values


def parse_line(words: list[str], env_key: str, env_range: str) -> WatchSpec:
    """etcdctl's parseWatchArgs for an interactive line (``watch`` first; ValueError with its text)."""
    if not words or words[0] != "watch":
        raise ValueError("args[0] must be 'watch' for interactive calls")
    watch_args = words[1:]
    sep = watch_args.index("--") if "--" in watch_args else -1
    if sep >= 0 and sep == len(watch_args) - 1:
        raise ValueError(BAD_ARGS_SEP)
    positional, values = _parse_line_flags(watch_args)
    if sep < 0 and not env_key and not positional:
        raise ValueError(BAD_ARGS)
    if sep < 0 and positional and env_key:
        raise ValueError(BAD_ARGS_ENV)
    exec_args = watch_args[sep + 1:] if sep >= 0 else []
    args = positional
    if env_key:
        args = [env_key, *([env_range] if env_range else []), *args]
    if sep >= 0:
        args = _cut_exec(args, exec_args)
    return WatchSpec(args, bool(values["prefix"]), int(values["rev"]), bool(values["prev-kv"]),
                     bool(values["progress-notify"]), exec_args)


# --- printing and commands -----------------------------------------------------------------------
_SIGNALS = {signal.SIGHUP: "hangup", signal.SIGINT: "interrupt", signal.SIGQUIT: "quit", signal.SIGKILL: "killed",
            signal.SIGTERM: "terminated", signal.SIGSEGV: "segmentation fault", signal.SIGABRT: "aborted",
            signal.SIGPIPE: "broken pipe", signal.SIGUSR1: "user defined signal 1",
            signal.SIGUSR2: "user defined signal 2"}


def go_string_list(words: Sequence[str]) -> str:
    """Go's %q of a []string."""
    return "[" + " ".join(go_quote(w) for w in words) + "]"


def run_event_command(exec_args: list[str], resp: Any, ev: Any) -> None:
    """One event's command, as etcdctl runs it; a failure ends the whole process with exit 1."""
    env = {**os.environ,
           "ETCD_WATCH_REVISION": str(resp.header.revision),
           "ETCD_WATCH_EVENT_TYPE": go_quote(kv_pb2.Event.EventType.Name(ev.type)),
           "ETCD_WATCH_KEY": go_quote(bytes_text(ev.kv.key)),
           "ETCD_WATCH_VALUE": go_quote(bytes_text(ev.kv.value))}
    name = exec_args[0]
    problem = ""
    path = name if os.sep in name else shutil.which(name)
    if path is None:
        problem = f'exec: {go_quote(name)}: executable file not found in $PATH'
    else:
        sys.stdout.flush()
        try:
            rc = subprocess.run([path, *exec_args[1:]], env=env, check=False).returncode
        except OSError as exc:
            problem = f"fork/exec {path}: {(exc.strerror or str(exc)).lower()}"
        else:
            if rc > 0:
                problem = f"exit status {rc}"
            elif rc < 0:
                problem = "signal: " + _SIGNALS.get(signal.Signals(-rc), f"signal {-rc}")
    if problem:
        err(f"command {go_string_list(exec_args)} error ({problem})\n")
        os._exit(EXIT_ERROR)


def is_progress_notify(resp: Any) -> bool:
    return (not resp.events and not resp.canceled and not resp.created and resp.compact_revision == 0
            and resp.header.revision != 0)


_print_lock = threading.Lock()


def print_response(display: Display, resp: Any, exec_args: list[str]) -> bool:
    """etcdctl's printWatchCh for one answer; False once the watch has ended."""
    with _print_lock:
        ended = resp.canceled or resp.compact_revision != 0
        if ended:
            reason = resp.cancel_reason or (COMPACTED if resp.compact_revision else "")
            err(f"watch was canceled ({reason})\n")
        if is_progress_notify(resp):
            out(f"progress notify: {resp.header.revision}\n")
        display.watch(resp)
        sys.stdout.flush()
    for ev in resp.events:
        if exec_args:
            run_event_command(exec_args, resp, ev)
    return not ended


# --- the stream ----------------------------------------------------------------------------------
_STOP = None


class Watcher:
    """One watch: its answers queued, printed (and its command run) on a thread of its own."""

    def __init__(self, display: Display, spec: WatchSpec) -> None:
        self.display = display
        self.spec = spec
        self.answers: queue.Queue[Any] = queue.Queue()
        self.created = threading.Event()  # the server answered the create (or the stream ended)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="watch-printer", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while (resp := self.answers.get()) is not _STOP:
            if not print_response(self.display, resp, self.spec.exec_args):
                break
        self.done.set()


class WatchStream:
    """One Watch stream carrying every watch; answers dispatched to their watchers by id."""

    def __init__(self, client: Client) -> None:
        self.requests: queue.Queue[pb.WatchRequest | None] = queue.Queue()
        self.pending: deque[Watcher] = deque()
        self.watchers: dict[int, Watcher] = {}
        self.lock = threading.Lock()
        self.ended = threading.Event()
        self.client = client
        self.reader = threading.Thread(target=self._read, name="watch-stream", daemon=True)
        self.reader.start()

    def _outgoing(self) -> Iterator[pb.WatchRequest]:
        while (req := self.requests.get()) is not None:
            yield req

    def watch(self, watcher: Watcher, create: pb.WatchCreateRequest) -> None:
        """Send the create and wait for the server's answer, as etcd's client does (so with an
        unreachable server, etcdctl's interactive watch waits at its first watch line)."""
        with self.lock:
            if self.ended.is_set():
                watcher.created.set()
                watcher.answers.put(_STOP)
                return
            self.pending.append(watcher)
            self.requests.put(pb.WatchRequest(create_request=create))
        watcher.created.wait()

    def progress(self) -> None:
        self.requests.put(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))

    def _read(self) -> None:
        try:
            # etcdctl's watches require a leader: a member that loses its leader ends the stream
            for resp in self.client.stream("Watch", "Watch", self._outgoing(), metadata=(("hasleader", "true"),)):
                self._dispatch(resp)
        except RpcFailure as exc:
            if exc.details == NO_LEADER:  # etcd's client hands every watch this closing answer
                with self.lock:
                    live = list(self.watchers.values())
                for w in live:
                    w.answers.put(pb.WatchResponse(canceled=True, cancel_reason=NO_LEADER))
        finally:
            with self.lock:
                for w in [*self.pending, *self.watchers.values()]:
                    w.created.set()
                    w.answers.put(_STOP)
                self.pending.clear()
                self.watchers.clear()
                self.ended.set()

    def _dispatch(self, resp: Any) -> None:
        with self.lock:
            if resp.created:
                if not self.pending:
                    return
                w = self.pending.popleft()
                w.created.set()
                if resp.canceled:
                    w.answers.put(resp)
                else:
                    self.watchers[resp.watch_id] = w
                return
            if resp.watch_id == -1 and is_progress_notify(resp):
                targets = list(self.watchers.values())
            else:
                found = self.watchers.get(resp.watch_id)
                targets = [found] if found is not None else []
                if resp.canceled or resp.compact_revision:
                    self.watchers.pop(resp.watch_id, None)
        for w in targets:
            w.answers.put(resp)

    def close(self) -> None:
        self.requests.put(None)
        threading.Thread(target=self.client.close, daemon=True).start()


# --- the command ---------------------------------------------------------------------------------
def _env_watch_vars() -> tuple[str, str]:
    key, rng = os.environ.get("ETCDCTL_WATCH_KEY", ""), os.environ.get("ETCDCTL_WATCH_RANGE_END", "")
    if not key and rng:
        raise CtlExit(EXIT_BAD_ARGS, f"ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={go_quote(rng)}")
    return key, rng


def run_watch(env: Env) -> int:
    env_key, env_range = _env_watch_vars()
    if env.inv.bool("interactive"):
        return run_interactive(env, env_key, env_range)
    try:
        spec = parse_command_line(sys.argv, env.inv.args, env_key, env_range, env.inv.values)
    except ValueError as exc:
        raise CtlExit(EXIT_BAD_ARGS, str(exc)) from None
    client = env.client()
    try:
        create = spec.create_request()
    except ValueError as exc:
        raise CtlExit(EXIT_BAD_ARGS, str(exc)) from None
    display = env.display()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(EXIT_INTERRUPTED))
    stream = WatchStream(client)
    watcher = Watcher(display, spec)
    try:
        stream.watch(watcher, create)
        while not watcher.done.wait(0.5):
            pass
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        stream.close()
    raise CtlExit(EXIT_INTERRUPTED, "watch is canceled by the server")


def run_interactive(env: Env, env_key: str, env_range: str) -> int:
    from petcd.ctl.kv import argify

    display = env.display()
    client = env.client()
    streams: list[WatchStream] = []

    def stream() -> WatchStream:
        if not streams or streams[-1].ended.is_set():
            streams.append(WatchStream(client))
        return streams[-1]

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(EXIT_INTERRUPTED))
    stdin = sys.stdin.buffer
    try:
        while True:
            raw = stdin.readline()
            if not raw.endswith(b"\n"):
                raise CtlExit(EXIT_INVALID_INPUT, "error reading watch request line: EOF")
            line = raw[:-1].decode("utf-8", "surrogateescape")
            words = argify(line)
            if not words:
                err(f"Invalid command: {line} (watch and progress supported)\n")
                continue
            if words[0] == "watch":
                if len(words) < 2 and not env_key:
                    err(f"Invalid command {line} (command type or key is not provided)\n")
                    continue
                try:
                    spec = parse_line(words, env_key, env_range)
                except ValueError as exc:
                    raise CtlExit(EXIT_BAD_ARGS, str(exc)) from None
                try:
                    create = spec.create_request()
                except ValueError as exc:
                    err(f"Invalid command {line} ({exc})\n")
                    continue
                stream().watch(Watcher(display, spec), create)
            elif words[0] == "progress":
                stream().progress()
            else:
                err(f"Invalid command {line} (only support watch)\n")
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        sys.stdout.flush()
        for s in streams:
            s.close()


def watch_command() -> Command:
    return Command("watch [options] [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]",
                   "Watches events stream on keys or prefixes", lambda inv: run_watch(Env(inv)), flags=watch_flags())
