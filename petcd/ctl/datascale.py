"""``check datascale``: etcdctl 3.5.1's memory check, with its load table and texts.

As etcdctl: refuse a prefix that holds keys; read ``process_resident_memory_bytes`` from the first
endpoint's ``/metrics`` (``http://`` added to a bare host:port; over https the client certificate
is sent, the server's is verified against the system's roots unless --insecure-skip-tls-verify);
put the load's number of 512-byte keys with 512-byte zero values from one client per simulated
client, counting them on the progress bar; read the memory again; delete the prefix (and compact,
defragment when asked); print the difference in MB, or FAIL with the errors.

petcd serves /metrics on its plain-text client URLs (unless ``--client-urls-http=false`` or
``--listen-client-http-urls`` moves it away), so a petcd started that way fails this check the
way etcdctl does against a server without one: it cannot read the metric.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass

from petcd.ctl.base import B, Env, S, to_bytes
from petcd.ctl.cli import EXIT_ERROR, EXIT_INVALID_INPUT, Command, CtlExit, go_quote
from petcd.ctl.perf import ALIASES, compact_at, count_producer, defrag_endpoint, load_in_loop
from petcd.ctl.printer import out
from petcd.ctl.progress import Bar
from petcd.proto.etcdserverpb import rpc_pb2 as pb


@dataclass(frozen=True)
class ScaleLoad:
    limit: int  # key-value pairs written
    kv_size: int  # what etcdctl announces; the keys and values it writes are 512 bytes each
    clients: int


LOADS = {"s": ScaleLoad(10_000, 1024, 50), "m": ScaleLoad(100_000, 1024, 200), "l": ScaleLoad(1_000_000, 1024, 500),
         "xl": ScaleLoad(3_000_000, 1024, 1000)}
KEY_SIZE = VALUE_SIZE = 512
DEFAULT_PREFIX = "/etcdctl-check-datascale/"
METRIC = "process_resident_memory_bytes"


def load_for(name: str) -> ScaleLoad:
    if name not in ALIASES:
        raise CtlExit(4, f"unknown load option {name}")
    return LOADS[ALIASES[name]]


def parse_resident(text: str) -> float | str:
    """The metric's value from a /metrics page, or etcdctl's complaint."""
    value = ""
    for line in text.split("\n"):
        if line.startswith(METRIC):
            value = line[len(METRIC):].strip()
            break
    if not value:
        return f"could not find: {METRIC}"
    try:
        return float(value)
    except ValueError:
        return f'parse error: strconv.ParseFloat: parsing "{value}": invalid syntax'


def _go_fetch_error(exc: Exception, url: str) -> str:
    """Go's net/http wording for the common failures (a refused connection; a port that answers
    in another protocol, such as gRPC's HTTP/2 frames); Python's for the rest."""
    reason: object = getattr(exc, "reason", exc)
    if isinstance(reason, ConnectionRefusedError):
        hostport = url.split("://", 1)[1].split("/", 1)[0]
        return f"dial tcp {hostport}: connect: connection refused"
    if isinstance(reason, http.client.BadStatusLine):
        raw = str(getattr(reason, "line", "")).encode("latin-1", "replace")
        raw = raw[:-1] if raw.endswith(b"\n") else raw
        raw = raw[:-1] if raw.endswith(b"\r") else raw
        line = go_quote(raw.decode("utf-8", "surrogateescape"))
        return f"net/http: HTTP/1.x transport connection broken: malformed HTTP response {line}"
    return str(reason)


def resident_memory(endpoint: str, env: Env) -> float:
    """etcdctl's endpointMemoryMetrics: 0 (after saying why) when the metric cannot be read."""
    host = endpoint if endpoint.startswith(("http://", "https://")) else "http://" + endpoint
    url = host + "/metrics"
    ctx = None
    if host.startswith("https://"):
        ctx = ssl.create_default_context()
        if env.inv.bool("insecure-skip-tls-verify"):
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        try:
            ctx.load_cert_chain(env.inv.text("cert"), env.inv.text("key"))
        except (OSError, ssl.SSLError) as exc:
            out(f"client certificate error: {exc}\n")
            return 0.0
    try:
        with urllib.request.urlopen(url, timeout=30, context=ctx) as resp:
            body = resp.read().decode("utf-8", "replace")
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        out(f'fetch error: Get "{url}": {_go_fetch_error(exc, url)}\n')
        return 0.0
    found = parse_resident(body)
    if isinstance(found, str):
        out(found + "\n")
        return 0.0
    return found


def check_datascale(env: Env) -> int:
    from petcd.ctl.kv import prefix_end

    load = load_for(env.inv.text("load"))
    text_prefix = env.inv.text("prefix")
    prefix = to_bytes(text_prefix)
    rng = (prefix or b"\x00", prefix_end(prefix) if prefix else b"\x00")
    with env.client() as client:
        resp = client.unary("KV", "Range", pb.RangeRequest(key=rng[0], range_end=rng[1], limit=1), timeout=3600.0)
        if resp.kvs:
            raise CtlExit(EXIT_INVALID_INPUT, f'prefix "{text_prefix}" has keys. Delete with petcdctl del --prefix '
                                              f"{text_prefix} first")
        first = client.endpoints[0]
        before = resident_memory(first, env)
        if before == 0:
            out("FAIL: Could not read process_resident_memory_bytes before the put operations.\n")
            return EXIT_ERROR
        out(f"Start data scale check for work load [{load.limit} key-value pairs, {load.kv_size} bytes per "
            f"key-value, {load.clients} concurrent clients].\n")
        bar = Bar(load.limit).start()
        outcome = load_in_loop(client, load.clients,
                               lambda stop: count_producer(load.limit, prefix, KEY_SIZE, VALUE_SIZE, stop),
                               threading.Event(), on_result=bar.add)
        bar.finish()
        after = resident_memory(first, env)
        if after == 0:
            out("FAIL: Could not read process_resident_memory_bytes after the put operations.\n")
            return EXIT_ERROR
        deleted = client.unary("KV", "DeleteRange", pb.DeleteRangeRequest(key=rng[0], range_end=rng[1]),
                               timeout=3600.0)
        if env.inv.bool("auto-compact"):
            compact_at(client, deleted.header.revision)
        if env.inv.bool("auto-defrag"):
            for ep in client.endpoints:
                defrag_endpoint(client, ep)
    if outcome.errors:
        out("FAIL: too many errors\n")
        for e, n in outcome.errors.items():
            out(f"FAIL: ERROR({e}) -> {n}\n")
        return EXIT_ERROR
    out(f"PASS: Approximate system memory used : {(after - before) / (1024 * 1024):.2f} MB.\n")
    return 0


def datascale_command() -> Command:
    return Command("datascale [options]", "Check the memory usage of holding data for different workloads on a "
                   "given server endpoint.", lambda inv: check_datascale(Env(inv)),
                   long="If no endpoint is provided, localhost will be used. If multiple endpoints are provided, "
                        "first endpoint will be used.",
                   flags=[
                       S("load", "s", "The datascale check's workload model. Accepted workloads: "
                                      "s(small), m(medium), l(large), xl(xLarge)"),
                       S("prefix", DEFAULT_PREFIX, "The prefix for writing the datascale check's keys."),
                       B("auto-compact", "Compact storage with last revision after test is finished."),
                       B("auto-defrag", "Defragment storage after test is finished."),
                   ])
