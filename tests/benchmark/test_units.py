"""petcd-benchmark without a server: the report's numbers and layout, the token bucket under a
manual clock, etcd's key encoding, and flag errors (clear message, exit code 2)."""

from __future__ import annotations

import asyncio

import pytest

from petcd.benchmark import cli, main, report
from petcd.benchmark.loads import bench_key, check_key_space, varint
from petcd.benchmark.ratelimit import TokenBucket
from petcd.benchmark.report import Formatter, Results, go_duration, go_g
from tests.benchmark.helpers import bench, summaries


def test_go_g_matches_go_formatting() -> None:
    # fmt.Sprintf("%g", x) in Go for these values
    cases = {0.0: "0", 1.0: "1", 0.5: "0.5", 0.0012345: "0.0012345", 1e-05: "1e-05", 0.0001: "0.0001",
             123456.5: "123456.5", 1234567.0: "1.234567e+06", 99.9: "99.9", 10.0: "10", 2.5e-7: "2.5e-07"}
    for x, want in cases.items():
        assert go_g(x) == want, x


def test_go_duration_matches_go() -> None:
    cases = {0.0: "0s", 5e-7: "500ns", 0.0015: "1.5ms", 0.000123: "123\u00b5s", 2.0: "2s", 90.5: "1m30.5s",
             3725.0: "1h2m5s"}
    for x, want in cases.items():
        assert go_duration(x) == want, x


def test_summary_numbers_and_layout() -> None:
    lats = [0.001 * i for i in range(1, 1001)]  # 1 ms .. 1000 ms
    res = Results(latencies=list(lats))
    res.errors["etcdserver: request timed out"] += 3
    text = Formatter(precise=False).summary(res, total=2.0)
    [s] = summaries(text)
    assert (s.total, s.slowest, s.fastest, s.average) == (2.0, 1.0, 0.001, 0.5005)
    assert s.stddev == pytest.approx(0.2887, abs=1e-4)
    assert s.rps == 500.0
    assert s.ok == 1000
    # bounds 0.001, 0.1009, 0.2008, ... 1.0: (0.001, 0.1009] holds 0.002 .. 0.100
    assert [c for _, c in s.histogram] == [1, 99, 100, 100, 100, 100, 100, 100, 100, 100, 100]
    # the first latency at or past each rank: index ceil(p * n / 100)
    assert s.percentiles == {"10": 0.101, "25": 0.251, "50": 0.501, "75": 0.751, "90": 0.901, "95": 0.951,
                             "99": 0.991, "99.9": 1.0}
    assert s.errors == {"etcdserver: request timed out": 3}
    assert text.startswith("\nSummary:\n  Total:\t2.0000 secs.\n")
    assert "  0.0010 [1]\t|\n  0.1009 [99]\t|" + "\u220e" * 39 + "\n  0.2008 [100]\t|" + "\u220e" * 40 in text


def test_precise_uses_go_g_and_errors_alone_print_only_the_distribution() -> None:
    text = Formatter(precise=True).summary(Results(latencies=[0.25, 0.5]), total=1.0)
    assert "  Total:\t1 secs.\n  Slowest:\t0.5 secs.\n" in text
    only = Results()
    only.errors["boom"] = 2
    assert Formatter(False).summary(only, 1.0) == "\nError distribution:\n  [2]\tboom\n"


def test_time_series() -> None:
    samples = [report.Sample(100.2, 0.002), report.Sample(100.7, 0.004), report.Sample(102.1, 0.001)]
    assert report.time_series(samples).splitlines()[1:] == [
        "Sample in one second (unix latency throughput):",
        "UNIX-SECOND,MIN-LATENCY-MS,AVG-LATENCY-MS,MAX-LATENCY-MS,AVG-THROUGHPUT",
        "100,2ms,3ms,4ms,2", "101,0s,0s,0s,0", "102,1ms,1ms,1ms,1"]


def test_token_bucket_spaces_requests_at_the_rate() -> None:
    t = [0.0]
    slept: list[float] = []

    async def sleep(d: float) -> None:
        slept.append(d)
        t[0] += d

    bucket = TokenBucket(100.0, lambda: t[0], sleep)  # burst 1, as etcd's limiter

    async def go() -> None:
        for _ in range(5):
            await bucket.wait()

    asyncio.run(go())
    assert slept == pytest.approx([0.01] * 4) and t[0] == pytest.approx(0.04)
    t[0] += 1.0  # idle time saves up at most the burst
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(0.01)
    # waiters that arrive together queue up: each reservation is 1/rate after the previous one
    assert bucket.reserve() == pytest.approx(0.02)
    with pytest.raises(ValueError):
        TokenBucket(0, lambda: 0.0, sleep)


def test_keys_are_go_putvarint() -> None:
    assert varint(0) == b"\x00" and varint(1) == b"\x02" and varint(63) == b"\x7e"
    assert varint(64) == b"\x80\x01" and varint(300) == b"\xd8\x04"
    assert bench_key(1, 8) == b"\x02" + bytes(7)
    check_key_space(1, 64)
    with pytest.raises(ValueError, match="too small"):
        check_key_space(1, 65)


def test_globals_before_or_after_the_subcommand() -> None:
    a = cli.parse(["--conns", "3", "put", "--clients=5", "--total", "1_000", "--sequential-keys"])
    assert (a.conns, a.clients, a.total, a.sequential_keys, a.endpoints) == (3, 5, 1000, True, "127.0.0.1:2379")
    b = cli.parse(["range", "k", "--endpoints", "h:1", "--dial-timeout", "1m30s", "--precise=false"])
    assert (b.range_key, b.end_range, b.endpoints, b.dial_timeout, b.precise) == ("k", "", "h:1", 90.0, False)


@pytest.mark.parametrize(
    "args,message",
    [
        (["put", "--total", "ten"], "invalid integer 'ten'"),
        (["put", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["range", "k", "--consistency", "x"], "--consistency must be l (linearizable) or s (serializable)"),
        (["range"], "the following arguments are required: key"),
        (["txn-put", "--txn-ops", "5", "--key-space-size", "2"], "expected --txn-ops no larger than --key-space-size"),
        (["put", "--key-space-size", "0"], "expected positive --key-space-size, got (0)"),
        (["put", "--key-size", "1", "--key-space-size", "1000"], "--key-size 1 is too small"),
        (["--conns", "0", "put"], "--conns must be at least 1"),
        (["--conns", "1", "--procs", "2", "put"], "--procs 2 needs at least as many --conns (1)"),
        (["--endpoints", "unix://x", "put"], "unsupported endpoint scheme"),
        (["--dial-timeout", "5", "put"], "invalid duration '5'"),
        (["bogus"], "invalid choice: 'bogus'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_flag_errors(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    # in process: the same run() the console script calls, without a Python start-up per case
    rc = main.run(args)
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    assert message in err, err
    assert err.startswith("Error: ") and "--help' for usage." in err
    assert out == ""


def test_flag_error_from_the_command_line() -> None:
    r = bench("range", "k", "--consistency", "x", timeout=30)
    assert r.rc == 2 and r.stdout == ""
    assert r.stderr == ("Error: --consistency must be l (linearizable) or s (serializable), got 'x'\n"
                        "Run 'petcd-benchmark range --help' for usage.\n")


def test_help_lists_the_flags() -> None:
    r = bench("put", "--help", timeout=30)
    assert r.rc == 0
    for flag in ("--key-size", "--val-size", "--rate", "--total", "--key-space-size", "--sequential-keys",
                 "--endpoints", "--conns", "--clients", "--procs"):
        assert flag in r.stdout
    top = bench("--help", timeout=30)
    for sub in ("put", "range", "txn-put", "watch", "lease-keepalive", "mixed"):
        assert sub in top.stdout


def test_unreachable_endpoint_is_a_dial_error() -> None:
    from tests.harness import free_ports

    [port] = free_ports(1)
    r = bench("--endpoints", f"127.0.0.1:{port}", "--dial-timeout", "500ms", "put", "--total", "1", timeout=30)
    assert r.rc == 1
    assert "dial error" in r.stderr and f"127.0.0.1:{port}" in r.stderr
