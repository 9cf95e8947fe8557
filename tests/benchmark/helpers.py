"""Run petcd-benchmark (this tree, as a subprocess) and read its summaries back, strictly."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as rpc
from tests.harness import CtlResult
from tests.harness.procs import clean_env


def bench(*args: str, timeout: float = 120.0) -> CtlResult:
    out = subprocess.run([sys.executable, "-m", "petcd.benchmark", *args], capture_output=True,
                         env=clean_env(), timeout=timeout, check=False)
    return CtlResult(out.returncode, out.stdout.decode(errors="replace"), out.stderr.decode(errors="replace"))


_NUM = r"(\d+\.\d{4})"
_SUMMARY = re.compile(
    r"\nSummary:\n"
    rf"  Total:\t{_NUM} secs\.\n"
    rf"  Slowest:\t{_NUM} secs\.\n"
    rf"  Fastest:\t{_NUM} secs\.\n"
    rf"  Average:\t{_NUM} secs\.\n"
    rf"  Stddev:\t{_NUM} secs\.\n"
    rf"  Requests/sec:\t{_NUM}\n"
    r"\nResponse time histogram:\n"
    r"((?:  \d+\.\d{4} \[\d+\]\t\|\u220e*\n){11})"
    r"\nLatency distribution:\n"
    r"((?:  [\d.]+% in \d+\.\d{4} secs\.\n)*)"
    r"(?:\nError distribution:\n((?:  \[\d+\]\t.*\n)+))?"
)
_ERRORS_ONLY = re.compile(r"\nError distribution:\n((?:  \[\d+\]\t.*\n)+)")


@dataclass
class Summary:
    total: float
    slowest: float
    fastest: float
    average: float
    stddev: float
    rps: float
    histogram: list[tuple[float, int]]
    percentiles: dict[str, float]
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> int:
        """Successful requests: the histogram's counts."""
        return sum(c for _, c in self.histogram)


def _errors(block: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (block or "").splitlines():
        m = re.fullmatch(r"  \[(\d+)\]\t(.*)", line)
        assert m, line
        out[m.group(2)] = int(m.group(1))
    return out


def summaries(text: str) -> list[Summary]:
    """Every summary in ``text``, in order; each must be in etcd benchmark's exact layout."""
    found = []
    for m in _SUMMARY.finditer(text):
        nums = [float(m.group(i)) for i in range(1, 7)]
        hist = [(float(b), int(c)) for b, c in re.findall(r"  (\d+\.\d{4}) \[(\d+)\]", m.group(7))]
        pcts = {p: float(v) for p, v in re.findall(r"  ([\d.]+)% in (\d+\.\d{4}) secs", m.group(8))}
        found.append(Summary(*nums, hist, pcts, _errors(m.group(9))))
    assert found, f"no summary in:\n{text}"
    return found


def only_errors(text: str) -> dict[str, int]:
    m = _ERRORS_ONLY.search(text)
    assert m, text
    return _errors(m.group(1))


def varint_key(n: int, size: int) -> bytes:
    """etcd benchmark's key for number n: Go's PutVarint (zig-zag) into size zero bytes."""
    u, out = n << 1, bytearray()
    while u >= 0x80:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)
    return bytes(out).ljust(size, b"\0")


class Grpc:
    """A plain synchronous client, to look at what a benchmark wrote."""

    def __init__(self, endpoint: str) -> None:
        self.channel = grpc.insecure_channel(endpoint)
        self.kv = rpc.KVStub(self.channel)  # type: ignore[no-untyped-call]
        self.lease = rpc.LeaseStub(self.channel)  # type: ignore[no-untyped-call]

    def revision(self) -> int:
        return int(self.kv.Range(pb.RangeRequest(key=b"\0", count_only=True)).header.revision)

    def get(self, key: bytes) -> pb.RangeResponse:
        return self.kv.Range(pb.RangeRequest(key=key))

    def leases(self) -> list[int]:
        return [lease.ID for lease in self.lease.LeaseLeases(pb.LeaseLeasesRequest()).leases]

    def close(self) -> None:
        self.channel.close()


def assert_keys(client: Grpc, keys: Sequence[bytes], value_size: int) -> None:
    for k in keys:
        kvs = client.get(k).kvs
        assert len(kvs) == 1 and len(kvs[0].value) == value_size, (k, kvs)
