"""put, get, del, txn, compaction: etcdctl 3.5's key-value commands (watch is in watch.py)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Sequence

from petcd.ctl.base import B, Env, I, S, to_bytes
from petcd.ctl.cli import (
    EXIT_BAD_ARGS,
    EXIT_BAD_FEATURE,
    EXIT_ERROR,
    EXIT_INVALID_INPUT,
    Command,
    CtlExit,
    Flag,
    FlagError,
    Invocation,
    parse_flags,
    parse_go_int,
)
from petcd.ctl.printer import err, out
from petcd.proto.etcdserverpb import rpc_pb2 as pb

NO_PREFIX_END = b"\x00"


def prefix_end(key: bytes) -> bytes:
    k = bytearray(key)
    for i in range(len(k) - 1, -1, -1):
        if k[i] < 0xFF:
            k[i] += 1
            return bytes(k[: i + 1])
    return NO_PREFIX_END


# --- requests from arguments (shared with txn) ---------------------------------------------------
def get_request(inv: Invocation) -> pb.RangeRequest:
    args = inv.args
    if not args:
        raise CtlExit(EXIT_BAD_ARGS, "get command needs one argument as key and an optional argument as range_end")
    if inv.bool("prefix") and inv.bool("from-key"):
        raise CtlExit(EXIT_BAD_ARGS, "`--prefix` and `--from-key` cannot be set at the same time, choose one")
    if inv.bool("keys-only") and inv.bool("count-only"):
        raise CtlExit(EXIT_BAD_ARGS, "`--keys-only` and `--count-only` cannot be set at the same time, choose one")
    req = pb.RangeRequest()
    consistency = inv.text("consistency")
    if consistency == "s":
        req.serializable = True
    elif consistency != "l":
        raise CtlExit(EXIT_BAD_FEATURE, f'unknown consistency flag "{consistency}"')
    key = to_bytes(args[0])
    if len(args) > 1:
        if inv.bool("prefix") or inv.bool("from-key"):
            raise CtlExit(EXIT_BAD_ARGS,
                          "too many arguments, only accept one argument when `--prefix` or `--from-key` is set")
        req.range_end = to_bytes(args[1])
    req.limit = inv.int("limit")
    if inv.int("rev") > 0:
        req.revision = inv.int("rev")
    order = inv.text("order").upper()
    orders = {"ASCEND": pb.RangeRequest.ASCEND, "DESCEND": pb.RangeRequest.DESCEND, "": pb.RangeRequest.NONE}
    if order not in orders:
        raise CtlExit(EXIT_BAD_FEATURE, f"bad sort order {inv.text('order')}")
    target = inv.text("sort-by").upper()
    targets = {"CREATE": pb.RangeRequest.CREATE, "KEY": pb.RangeRequest.KEY, "MODIFY": pb.RangeRequest.MOD,
               "VALUE": pb.RangeRequest.VALUE, "VERSION": pb.RangeRequest.VERSION, "": pb.RangeRequest.KEY}
    if target not in targets:
        raise CtlExit(EXIT_BAD_FEATURE, f"bad sort target {inv.text('sort-by')}")
    req.sort_order, req.sort_target = orders[order], targets[target]
    # clientv3: sorting by key ascending is what the server does anyway, so it asks for no sort
    if req.sort_target == pb.RangeRequest.KEY and req.sort_order == pb.RangeRequest.ASCEND:
        req.sort_order = pb.RangeRequest.NONE
    if inv.bool("prefix"):
        if not key:
            key, req.range_end = b"\x00", b"\x00"
        else:
            req.range_end = prefix_end(key)
    if inv.bool("from-key"):
        if not key:
            key = b"\x00"
        req.range_end = b"\x00"
    req.key = key
    req.keys_only = inv.bool("keys-only")
    req.count_only = inv.bool("count-only")
    return req


def put_request(inv: Invocation, stdin: bytes | None = None) -> pb.PutRequest:
    args = inv.args
    if not args:
        raise CtlExit(EXIT_BAD_ARGS, "put command needs 1 argument and input from stdin or 2 arguments")
    if inv.bool("ignore-value") and len(args) > 1:
        raise CtlExit(EXIT_BAD_ARGS, "put command needs only 1 argument when 'ignore-value' is set")
    value = b""
    if not inv.bool("ignore-value"):
        if len(args) > 1:
            value = to_bytes(args[1])
        else:
            value = sys.stdin.buffer.read() if stdin is None else stdin
            if not value:
                raise CtlExit(EXIT_BAD_ARGS, "put command needs 1 argument and input from stdin or 2 arguments")
    try:
        lease = parse_go_int(inv.text("lease"), 16)
    except ValueError as exc:
        raise CtlExit(EXIT_BAD_ARGS, f"bad lease ID ({exc}), expecting ID in Hex") from None
    return pb.PutRequest(key=to_bytes(args[0]), value=value, lease=lease, prev_kv=inv.bool("prev-kv"),
                         ignore_value=inv.bool("ignore-value"), ignore_lease=inv.bool("ignore-lease"))


def del_request(inv: Invocation) -> pb.DeleteRangeRequest:
    args = inv.args
    if not args or len(args) > 2:
        raise CtlExit(EXIT_BAD_ARGS, "del command needs one argument as key and an optional argument as range_end")
    if inv.bool("prefix") and inv.bool("from-key"):
        raise CtlExit(EXIT_BAD_ARGS, "`--prefix` and `--from-key` cannot be set at the same time, choose one")
    key = to_bytes(args[0])
    req = pb.DeleteRangeRequest()
    if len(args) > 1:
        if inv.bool("prefix") or inv.bool("from-key"):
            raise CtlExit(EXIT_BAD_ARGS,
                          "too many arguments, only accept one argument when `--prefix` or `--from-key` is set")
        req.range_end = to_bytes(args[1])
    if inv.bool("prefix"):
        if not key:
            key, req.range_end = b"\x00", b"\x00"
        else:
            req.range_end = prefix_end(key)
    req.prev_kv = inv.bool("prev-kv")
    if inv.bool("from-key"):
        if not key:
            key = b"\x00"
        req.range_end = b"\x00"
    req.key = key
    return req


# --- commands ------------------------------------------------------------------------------------
def run_get(env: Env) -> int:
    req = get_request(env.inv)
    display = env.display()
    with env.client() as c:
        resp = c.unary("KV", "Range", req)
    if env.inv.bool("count-only") and display.fmt != "fields":
        raise CtlExit(EXIT_BAD_ARGS, "--count-only is only for `--write-out=fields`")
    if env.inv.bool("print-value-only"):
        if display.fmt != "simple":
            raise CtlExit(EXIT_BAD_ARGS, "print-value-only is only for `--write-out=simple`")
        display.value_only = True
    display.get(resp)
    return 0


def run_put(env: Env) -> int:
    req = put_request(env.inv)
    display = env.display()
    with env.client() as c:
        display.put(c.unary("KV", "Put", req))
    return 0


def run_del(env: Env) -> int:
    req = del_request(env.inv)
    display = env.display()
    with env.client() as c:
        display.delete(c.unary("KV", "DeleteRange", req))
    return 0


def run_compaction(env: Env) -> int:
    if len(env.args) != 1:
        raise CtlExit(EXIT_BAD_ARGS, "compaction command needs 1 argument")
    try:
        rev = parse_go_int(env.args[0])
    except ValueError as exc:
        raise CtlExit(EXIT_ERROR, str(exc)) from None
    env.display()
    with env.client() as c:
        c.unary("KV", "Compact", pb.CompactionRequest(revision=rev, physical=env.inv.bool("physical")))
    out(f"compacted revision {rev}\n")
    return 0


# --- txn -----------------------------------------------------------------------------------------
_QUOTED = r'"(?:[^"\\]|\\.)*"|`[^`]*`'
_ARG = re.compile(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'|[^\'"\s]\S*[^\'"\s]?')
_ESCAPE = re.compile(r'\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|[abfnrtv\\"\'])')


def go_unquote(text: str) -> str:
    """strconv.Unquote of a "..." or `...` string; ValueError if it is not one."""
    if len(text) >= 2 and text[0] == text[-1] == "`":
        return text[1:-1]
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise ValueError("invalid syntax")
    body = text[1:-1]
    if re.search(r'(?<!\\)(?:\\\\)*"', body):
        raise ValueError("invalid syntax")
    simple = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\",
              '"': '"', "'": "'"}
    raw = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(body):
        raw += body[pos:m.start()].encode("utf-8", "surrogateescape")
        e = m.group(1)
        if e[0] == "x":
            raw.append(int(e[1:], 16))
        elif e[0] in "uU":
            raw += chr(int(e[1:], 16)).encode()
        elif e[0] in "01234567":
            raw.append(int(e, 8) & 0xFF)
        else:
            raw += simple[e].encode()
        pos = m.end()
    rest = body[pos:]
    if "\\" in rest:
        raise ValueError("invalid syntax")
    raw += rest.encode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "surrogateescape")


def argify(line: str) -> list[str]:
    """etcdctl's argify, its quirk kept: a single-quoted word is cut to ``word[1:n-1]`` where n is
    the number of words on the line (etcdctl slices by the wrong length), and a line where that
    slice is out of range ends the program as etcdctl's panic does (exit 2)."""
    found = _ARG.findall(line)
    args = []
    for a in found:
        if a.startswith("'"):
            raw = a.encode("utf-8", "surrogateescape")
            high = len(found) - 1
            if high < 1 or high > len(raw):
                why = f"[1:{high}]" if high < 1 else f"[:{high}] with length {len(raw)}"
                err(f"panic: runtime error: slice bounds out of range {why}\n")
                raise CtlExit(2)
            a = raw[1:high].decode("utf-8", "surrogateescape")
        elif a.startswith('"'):
            try:
                a = go_unquote(a)
            except ValueError:
                raise CtlExit(EXIT_INVALID_INPUT, "unexpected EOF") from None
        args.append(a)
    return args


_CMP = re.compile(r"\s*(" + _QUOTED + r")\)\s+(\S+)\s+(" + _QUOTED + r")")
_OPS = {"=": pb.Compare.EQUAL, "!=": pb.Compare.NOT_EQUAL, ">": pb.Compare.GREATER, "<": pb.Compare.LESS}


def parse_compare(line: str) -> pb.Compare:
    target, paren, rest = line.partition("(")
    if not paren:
        raise ValueError(f"malformed comparison: {line}")
    m = _CMP.match(rest)
    if not m:
        raise ValueError(f"malformed comparison: {line}")
    key, op, val = go_unquote(m.group(1)), m.group(2), go_unquote(m.group(3))
    if op not in _OPS:
        raise ValueError(f"malformed comparison: {line} (unknown operator {op})")
    cmp = pb.Compare(key=to_bytes(key), result=_OPS[op])
    ints = {"ver": pb.Compare.VERSION, "version": pb.Compare.VERSION, "c": pb.Compare.CREATE,
            "create": pb.Compare.CREATE, "m": pb.Compare.MOD, "mod": pb.Compare.MOD, "lease": pb.Compare.LEASE}
    if target in ints:
        try:
            v = parse_go_int(val, 16 if target == "lease" else 10)
        except ValueError:
            raise ValueError(f"invalid txn compare request: {line}") from None
        cmp.target = ints[target]
        field = {pb.Compare.VERSION: "version", pb.Compare.CREATE: "create_revision",
                 pb.Compare.MOD: "mod_revision", pb.Compare.LEASE: "lease"}[cmp.target]
        setattr(cmp, field, v)
    elif target in ("val", "value"):
        cmp.target = pb.Compare.VALUE
        cmp.value = to_bytes(val)
    else:
        raise ValueError(f"malformed comparison: {line} (unknown target {target})")
    return cmp


def _read_line(stream: Iterator[bytes]) -> str:
    line = next(stream, None)
    if line is None or not line.endswith(b"\n"):
        raise CtlExit(EXIT_INVALID_INPUT, "EOF")
    return line.decode("utf-8", "surrogateescape").strip()


def parse_op(line: str) -> pb.RequestOp:
    args = argify(line)
    if len(args) < 2:
        raise CtlExit(EXIT_INVALID_INPUT, f"invalid txn compare request: {line}")
    cmd = {c.name: c for c in (PUT, GET, DEL)}.get(args[0])
    if cmd is None:
        raise CtlExit(EXIT_INVALID_INPUT, f"invalid txn request: {line}")
    try:
        inv = parse_flags(cmd, args[1:])
    except FlagError:
        raise CtlExit(EXIT_INVALID_INPUT, f"invalid txn request: {line}") from None
    if cmd is PUT:
        return pb.RequestOp(request_put=put_request(inv, stdin=b""))
    if cmd is GET:
        return pb.RequestOp(request_range=get_request(inv))
    return pb.RequestOp(request_delete_range=del_request(inv))


def run_txn(env: Env) -> int:
    if env.args:
        raise CtlExit(EXIT_BAD_ARGS, "txn command does not accept argument")
    interactive = env.inv.bool("interactive")
    client = env.client()
    lines = iter(sys.stdin.buffer.readline, b"")
    req = pb.TxnRequest()

    def section(prompt: str) -> Iterator[str]:
        if interactive:
            out(prompt + "\n")
            sys.stdout.flush()
        while True:
            line = _read_line(lines)
            if not line:
                return
            yield line

    try:
        for line in section("compares:"):
            try:
                req.compare.append(parse_compare(line))
            except ValueError as exc:
                raise CtlExit(EXIT_INVALID_INPUT, str(exc)) from None
        for line in section("success requests (get, put, del):"):
            req.success.append(parse_op(line))
        for line in section("failure requests (get, put, del):"):
            req.failure.append(parse_op(line))
        resp = client.unary("KV", "Txn", req)
    finally:
        client.close()
    env.display().txn(resp)
    return 0


GET = Command("get [options] <key> [range_end]", "Gets the key or a range of keys", flags=[
    S("consistency", "l", "Linearizable(l) or Serializable(s)"),
    S("order", "", "Order of results; ASCEND or DESCEND (ASCEND by default)"),
    S("sort-by", "", "Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION"),
    I("limit", 0, "Maximum number of results"),
    B("prefix", "Get keys with matching prefix"),
    B("from-key", "Get keys that are greater than or equal to the given key using byte compare"),
    I("rev", 0, "Specify the kv revision"),
    B("keys-only", "Get only the keys"),
    B("count-only", "Get only the count"),
    B("print-value-only", 'Only write values when using the "simple" output format'),
])
PUT = Command("put [options] <key> <value> (<value> can also be given from stdin)",
              "Puts the given key into the store", long="""
Puts the given key into the store.

When <value> begins with '-', <value> is interpreted as a flag.
Insert '--' for workaround:

$ put <key> -- <value>
$ put -- <key> <value>

If <value> isn't given as a command line argument and '--ignore-value' is not specified,
this command tries to read the value from standard input.

If <lease> isn't given as a command line argument and '--ignore-lease' is not specified,
this command tries to read the value from standard input.

For example,
$ cat file | put <key>
will store the content of the file to <key>.
""", flags=[
    S("lease", "0", "lease ID (in hexadecimal) to attach to the key"),
    B("prev-kv", "return the previous key-value pair before modification"),
    B("ignore-value", "updates the key using its current value"),
    B("ignore-lease", "updates the key using its current lease"),
])
DEL = Command("del [options] <key> [range_end]", "Removes the specified key or range of keys [key, range_end)",
              flags=[
                  B("prefix", "delete keys with matching prefix"),
                  B("prev-kv", "return deleted key-value pairs"),
                  B("from-key", "delete keys that are greater than or equal to the given key using byte compare"),
              ])


def commands() -> Sequence[Command]:
    GET.run = lambda inv: run_get(Env(inv))
    PUT.run = lambda inv: run_put(Env(inv))
    DEL.run = lambda inv: run_del(Env(inv))
    txn = Command("txn [options]", "Txn processes all the requests in one transaction",
                  lambda inv: run_txn(Env(inv)),
                  flags=[Flag("interactive", "bool", False, "Input transaction in interactive mode", "i")])
    compaction = Command("compaction [options] <revision>", "Compacts the event history in etcd",
                         lambda inv: run_compaction(Env(inv)),
                         flags=[B("physical", "'true' to wait for compaction to physically remove all old revisions")])
    from petcd.ctl.watch import watch_command

    return [GET, PUT, DEL, txn, compaction, watch_command()]
