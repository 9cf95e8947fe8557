"""petcdctl check perf: the pieces on their own (load table, key layout, rate limiter, progress bar
text, verdict on given numbers), refusals and a short run against petcd compared with etcdctl
3.5.1's texts, and (on demand, 2 minutes) full 60-second runs of both tools side by side."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import pytest

from petcd.ctl import perf
from petcd.ctl.progress import Bar, go_duration_seconds, render, time_left_text
from tests.ctl.helpers import as_etcdctl, petcdctl
from tests.harness import Etcdctl, Server, ServerGroup
from tests.harness.procs import clean_env

S = 10**9  # nanoseconds in a second


def test_load_table_and_aliases() -> None:
    assert {k: (v.limit, v.clients, v.duration) for k, v in perf.LOADS.items()} == {
        "s": (150, 50, 60), "m": (1000, 200, 60), "l": (8000, 500, 60), "xl": (15000, 1000, 60)}
    for alias, name in (("small", "s"), ("medium", "m"), ("large", "l"), ("xLarge", "xl"), ("xl", "xl")):
        assert perf.load_for(alias) is perf.LOADS[name]
    with pytest.raises(perf.CtlExit) as exc:
        perf.load_for("xlarge")  # the alias is case-sensitive, as etcdctl's map
    assert (exc.value.code, exc.value.message) == (4, "unknown load option xlarge")


def test_key_is_prefix_then_a_zero_padded_go_varint() -> None:
    # binary.PutVarint zig-zags: 0 -> 00, 1 -> 02, 63 -> 7e, 64 -> 80 01, 2**62 -> 9 bytes
    assert [perf.varint(n) for n in (0, 1, 63, 64, -1)] == [b"\x00", b"\x02", b"\x7e", b"\x80\x01", b"\x01"]
    assert perf.varint(2**63 - 1) == b"\xfe" + b"\xff" * 8 + b"\x01"
    key = perf.perf_key(b"/p/", 64)
    assert len(key) == 3 + 256 and key.startswith(b"/p/\x80\x01") and key[5:] == bytes(254)


def test_limiter_spaces_tokens_and_stops_before_the_deadline() -> None:
    now = [100.0]
    lim = perf.Limiter(150, lambda: now[0])
    assert lim.reserve(deadline=101.0) == 0.0  # the bucket starts full
    wait = lim.reserve(deadline=101.0)
    assert wait == pytest.approx(1 / 150)
    now[0] += wait  # type: ignore[operator]
    assert lim.reserve(deadline=101.0) == pytest.approx(1 / 150)
    now[0] = 100.999
    assert lim.reserve(deadline=101.0) == 0.0
    assert lim.reserve(deadline=101.0) is None  # the next token would come after the deadline
    assert lim.reserve(deadline=101.1) == pytest.approx(1 / 150)  # a refusal took no token
    now[0] = 105.0  # a long pause saves up one token only
    assert lim.reserve(deadline=200.0) == 0.0
    assert lim.reserve(deadline=200.0) == pytest.approx(1 / 150)


# Frames etcdctl 3.5.1's check perf drew on a 100-column terminal (and with no terminal).
FRAMES_100 = [
    ((0, 0, 0), " 0 / 60 B" + " " * 82 + "!   0.00%"),
    ((1, 1 * S, 0), " 1 / 60 Bom" + " " * 73 + "!   1.67% 00m59s"),
    ((30, 30 * S, 0), " 30 / 60 B" + "o" * 36 + "m" + " " * 37 + "!  50.00% 00m30s"),
    ((59, 59 * S, 1 * S), " 59 / 60 B" + "o" * 79 + "m !  98.33%"),
]


@pytest.mark.parametrize("state,line", FRAMES_100)
def test_progress_frames_as_etcdctl_draws_them(state: tuple[int, int, int], line: str) -> None:
    current, changed, since = state
    assert render(60, current, width=100, from_start=changed + since, from_change=changed, since_change=since) == line


def test_progress_final_frame_and_no_terminal() -> None:
    assert render(60, 60, width=100, from_start=60 * S + S // 10, finished=True) == \
        " 60 / 60 B" + "o" * 76 + "! 100.00% 1m0s"
    assert render(60, 0, width=0) == " 0 / 60    0.00%"
    assert render(60, 1, width=0, from_start=S, from_change=S) == " 1 / 60    1.67% 00m59s"
    assert render(60, 59, width=0, from_start=60 * S, from_change=59 * S, since_change=S) == " 59 / 60   98.33%"
    assert render(3, 3, width=0, from_start=3 * S + 5, finished=True) == " 3 / 3  100.00% 3s"
    # the library's quirks kept: no zero-padded hours, and a whole hour after the days shows as minutes
    assert [time_left_text(n * S) for n in (59, 600, 3700, 90000, 90001)] == \
        ["00m59s", "10m00s", "1h01m40s", "1d60m00s", "1d1h00m01s"]


def test_bar_draws_on_start_and_ends_with_a_newline() -> None:
    written: list[str] = []
    now = [0]
    bar = Bar(2, write=written.append, clock=lambda: now[0], width=lambda: 0, refresh=3600.0).start()
    now[0] = S
    bar.add(1)
    bar.update()
    now[0] = 2 * S
    bar.add(1)
    bar.finish()
    bar.finish()  # once only
    assert written == ["\r 0 / 2    0.00%", "\r 1 / 2   50.00% 00m01s", "\r 2 / 2  100.00% 2s", "\n"]


VERDICTS = [
    (perf.Stats(150.4, 0.034243, 0.001175, 0.01), 150,
     ["PASS: Throughput is 151 writes/s", "PASS: Slowest request took 0.034243s", "PASS: Stddev is 0.001175s",
      "PASS"], True),
    (perf.Stats(135.0, 0.5, 0.1, 0.01), 150,  # 90% exactly fails; 0.5 s and 0.1 s exactly pass
     ["FAIL: Throughput too low: 136 writes/s", "PASS: Slowest request took 0.500000s", "PASS: Stddev is 0.100000s",
      "FAIL"], False),
    (perf.Stats(149.0, 0.5000001, 0.1000001, 0.2), 150,
     ["PASS: Throughput is 150 writes/s", "Slowest request took too long: 0.500000s",
      "Stddev too high: 0.100000s", "FAIL"], False),
    (perf.Stats(150.0, 0.01, 0.001, 0.01, {"etcdserver: request timed out": 3}), 150,
     ["FAIL: too many errors", "FAIL: ERROR(etcdserver: request timed out) -> 3", "PASS: Throughput is 151 writes/s",
      "PASS: Slowest request took 0.010000s", "PASS: Stddev is 0.001000s", "FAIL"], False),
]


@pytest.mark.parametrize("stats,limit,lines,ok", VERDICTS)
def test_verdict_on_measured_numbers(stats: perf.Stats, limit: int, lines: list[str], ok: bool) -> None:
    assert perf.verdict(stats, limit) == (lines, ok)


def test_stats_as_etcds_report_computes_them() -> None:
    s = perf.Stats.of([0.1, 0.3], {}, 2.0)
    assert (s.rps, s.slowest, s.average) == (1.0, 0.3, 0.2) and s.stddev == pytest.approx(0.1)
    # no write succeeded: Go's 0/0 gives NaN, which the stddev test lets pass ("PASS: Stddev is NaNs")
    empty = perf.Stats.of([], {"context deadline exceeded": 5}, 1.0)
    lines, ok = perf.verdict(empty, 150)
    assert not ok and math.isnan(empty.stddev)
    assert lines[-4:] == ["FAIL: Throughput too low: 1 writes/s", "PASS: Slowest request took 0.000000s",
                          "PASS: Stddev is NaNs", "FAIL"]


# --- against servers -----------------------------------------------------------------------------
def test_refusals_same_as_etcdctl(petcd_server: Server) -> None:
    ep = petcd_server.endpoint
    Etcdctl(ep).run("put", "/busy-perf/k", "v")
    for args in (("check", "perf", "--prefix=/busy-perf/"), ("check", "perf", "--load=huge")):
        e = Etcdctl(ep).run(*args)
        p = as_etcdctl(petcdctl(ep, *args))
        assert (p.rc, p.stdout, p.stderr) == (e.rc, e.stdout, e.stderr) and e.rc != 0
    assert Etcdctl(ep).run("get", "/busy-perf/k", "--print-value-only").stdout == "v\n"  # untouched


def test_help_same_as_etcdctl_but_for_the_duration_flag() -> None:
    e = Etcdctl("127.0.0.1:1").run("check", "perf", "--help")
    p = as_etcdctl(petcdctl("127.0.0.1:1", "check", "perf", "--help"))
    assert "--duration=1m0s" in p.stdout and "[etcdctl]" in p.stdout  # petcdctl's own flag says so
    assert [ln for ln in p.stdout.splitlines() if "--duration" not in ln] == e.stdout.splitlines()
    r = petcdctl("127.0.0.1:1", "check", "perf", "--duration=1.5s")
    assert r.rc == 128 and "whole number of seconds" in r.stderr


_RESULT = re.compile(r"PASS: Throughput is (\d+) writes/s|FAIL: Throughput too low: (\d+) writes/s")


def _check_run(stdout: str, rc: int, seconds: int) -> int:
    """The shape every run has, whatever the machine's speed; returns the writes/s figure."""
    frames, _, tail = stdout.rpartition(f"\r {seconds} / {seconds}  100.00% ")
    assert frames.startswith("\r 0 / ") and tail.split("\n", 1)[0] in (
        go_duration_seconds(seconds * S), go_duration_seconds((seconds + 1) * S)), stdout
    lines = tail.split("\n", 1)[1].splitlines()
    assert lines[-1] == ("PASS" if rc == 0 else "FAIL") and rc in (0, 1), stdout
    m = _RESULT.fullmatch(lines[-4])
    assert m, lines
    assert re.fullmatch(r"(PASS: Slowest request took|Slowest request took too long:) \d+\.\d{6}s", lines[-3])
    assert re.fullmatch(r"(PASS: Stddev is|Stddev too high:) \d+\.\d{6}s", lines[-2])
    return int(m.group(1) or m.group(2))


def test_short_run_against_petcd(petcd_server: Server) -> None:
    ep = petcd_server.endpoint
    before = int(Etcdctl(ep).run("get", "x", "-w", "fields").stdout.split('"Revision" : ')[1].split()[0])
    r = petcdctl(ep, "check", "perf", "--duration=2s", "--prefix=/short-perf/", "--auto-compact", "--auto-defrag",
                 timeout=60)
    writes = _check_run(r.stdout, r.rc, 2)
    after = int(Etcdctl(ep).run("get", "x", "-w", "fields").stdout.split('"Revision" : ')[1].split()[0])
    puts = after - before - 1  # one revision for the cleanup's delete
    assert 2 * 150 * 0.5 <= puts <= 2 * 150 + 2, (puts, r)  # rate-limited to the load's 150/s
    assert abs(writes - puts / 2) <= 0.25 * 150, (writes, puts)
    assert f"Compacting with revision {after}\nCompacted with revision {after}\n" in r.stdout
    assert f'Defragmenting "{ep}"\nDefragmented "{ep}"\n' in r.stdout
    assert Etcdctl(ep).run("get", "/short-perf/", "--prefix", "--count-only", "-w", "fields").stdout.count(
        '"Count" : 0') == 1


def test_ctrl_c_ends_the_load_and_still_cleans_up_and_judges(petcd_server: Server) -> None:
    """As etcdctl: the first SIGINT stops the writes; the prefix is deleted, the verdict printed
    straight after the bar's last frame (the bar is never finished)."""
    import signal
    import time

    ep = petcd_server.endpoint
    proc = subprocess.Popen([sys.executable, "-m", "petcd.ctl", f"--endpoints={ep}", "check", "perf",
                             "--prefix=/int-perf/", "--auto-compact"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=clean_env())
    time.sleep(2.5)
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - start < 10, "the load did not stop at the first Ctrl-C"
    text = out.decode()
    frames, _, tail = text.partition("Compacting with revision ")
    assert frames.startswith("\r 0 / 60 ") and "100.00%" not in frames and not frames.endswith("\n"), text
    rev = tail.split("\n", 1)[0]
    assert f"Compacted with revision {rev}\n" in tail and tail.rstrip("\n").rsplit("\n", 1)[-1] in ("PASS", "FAIL")
    assert proc.returncode == (0 if tail.endswith("\nPASS\n") else 1), (proc.returncode, text, err)
    left = Etcdctl(ep).run("get", "/int-perf/", "--prefix", "--count-only", "-w", "fields").stdout
    assert '"Count" : 0\n' in left


FULL = os.environ.get("PETCD_CHECK_PERF_FULL") == "1"


@pytest.mark.slow
@pytest.mark.skipif(not FULL, reason="set PETCD_CHECK_PERF_FULL=1 for 60-second runs of etcdctl and petcdctl")
def test_full_run_beside_etcdctl(petcd_server: Server) -> None:
    """etcdctl's and petcdctl's full 60-second check on the same server: the same shape of output
    (frames, final lines, exit code agreeing with them) and the prefix cleaned up by both."""
    ep = petcd_server.endpoint
    results = []
    for argv in ([str(Etcdctl(ep).binary)], [sys.executable, "-m", "petcd.ctl"]):
        r = subprocess.run([*argv, f"--endpoints={ep}", "check", "perf"], capture_output=True, env=clean_env(),
                           timeout=180)
        results.append((_check_run(r.stdout.decode(), r.returncode, 60), r.stdout.decode().count("\r")))
        left = Etcdctl(ep).run("get", "/etcdctl-check-perf/", "--prefix", "--count-only", "-w", "fields").stdout
        assert '"Count" : 0\n' in left
    (e_writes, e_frames), (p_writes, p_frames) = results
    assert abs(p_writes - e_writes) <= 0.1 * 150 and abs(p_frames - e_frames) <= 15, results


# --- check datascale -----------------------------------------------------------------------------
def test_datascale_reads_the_metric_as_etcdctl() -> None:
    from petcd.ctl.datascale import LOADS, parse_resident

    assert {k: (v.limit, v.kv_size, v.clients) for k, v in LOADS.items()} == {
        "s": (10000, 1024, 50), "m": (100000, 1024, 200), "l": (1000000, 1024, 500), "xl": (3000000, 1024, 1000)}
    page = "# HELP process_resident_memory_bytes x\n# TYPE process_resident_memory_bytes gauge\n" \
           "process_resident_memory_bytes 2.4576e+07\nprocess_virtual_memory_bytes 1e+09\n"
    assert parse_resident(page) == 24576000.0
    assert parse_resident("process_resident_memory_bytes x\n") == \
        'parse error: strconv.ParseFloat: parsing "x": invalid syntax'
    assert parse_resident("up 1\n") == "could not find: process_resident_memory_bytes"


def test_datascale_same_as_etcdctl_without_metrics(servers: ServerGroup) -> None:
    """With --client-urls-http=false petcd's client port speaks only gRPC: both tools fail to read
    the metric, with the same words (Go's for a port that answers HTTP/1 with HTTP/2 frames),
    before writing anything."""
    ep = servers.start("petcd", extra_args=["--client-urls-http=false"]).endpoint
    Etcdctl(ep).run("put", "/busy-scale/k", "v")
    for args in (("check", "datascale"), ("check", "datascale", "--prefix=/busy-scale/"),
                 ("check", "datascale", "--load=tiny")):
        e = Etcdctl(ep).run(*args)
        p = as_etcdctl(petcdctl(ep, *args))
        assert (p.rc, p.stdout, p.stderr) == (e.rc, e.stdout, e.stderr) and e.rc != 0, f"{e}\n{p}"
    assert "FAIL: Could not read process_resident_memory_bytes before the put operations." in \
        Etcdctl(ep).run("check", "datascale").stdout


@pytest.mark.slow
@pytest.mark.skipif(not FULL, reason="set PETCD_CHECK_PERF_FULL=1 for datascale's 10,000 writes")
def test_datascale_small_load_on_petcd_with_metrics(servers: ServerGroup) -> None:
    srv = servers.start("petcd")  # /metrics on the client URL: petcd's default, as etcd's
    r = petcdctl(srv.endpoint, "check", "datascale", "--auto-compact", timeout=120)
    head, _, rest = r.stdout.partition("\r")
    assert head == "Start data scale check for work load [10000 key-value pairs, 1024 bytes per key-value, " \
                   "50 concurrent clients].\n", r
    assert "\r 10000 / 10000  100.00% " in rest and r.rc == 0, r
    assert "Compacting with revision 10002\nCompacted with revision 10002\n" in rest
    assert re.search(r"\nPASS: Approximate system memory used : -?\d+\.\d\d MB\.\n$", rest), rest
