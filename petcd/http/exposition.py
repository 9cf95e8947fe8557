"""Prometheus text format 0.0.4 written the way etcd's Go client writes it.

prometheus_client's own writer differs from Go's in ways a diff (or a strict dashboard query)
sees: it renames counters that lack ``_total`` (etcd has several, e.g.
``etcd_server_health_success``) and prints ``1.0`` where Go prints ``1``. So the families are
prometheus_client ``Metric`` objects, collected at scrape time, and this module prints them as
Go does: families sorted by name, samples sorted by label values, labels sorted by name with
``le`` last, numbers in Go's shortest ``%g`` form (``2.147483648e+09``, ``0.001``, ``+Inf``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the families come from petcd.http.collector, which imports prometheus_client
    from prometheus_client.metrics_core import Metric
    from prometheus_client.samples import Sample

__all__ = ["CONTENT_TYPE", "go_float", "write_text"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def go_float(v: float) -> str:
    """strconv.FormatFloat(v, 'g', -1, 64), with the Prometheus client's special cases."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "0"
    sign, digit_tuple, exponent = Decimal(repr(float(v))).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    nd = len(digits)
    dp = nd + exponent  # position of the decimal point after the first digits
    exp = dp - 1
    neg = "-" if sign else ""
    if exp < -4 or exp >= 6:  # Go's rule for the shortest %g
        mant = digits[0] + ("." + digits[1:] if nd > 1 else "")
        return f"{neg}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if dp <= 0:
        return f"{neg}0.{'0' * -dp}{digits}"
    if dp >= nd:
        return f"{neg}{digits}{'0' * (dp - nd)}"
    return f"{neg}{digits[:dp]}.{digits[dp:]}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(sample: Sample) -> str:
    items = sorted((k, v) for k, v in sample.labels.items() if k != "le")
    if "le" in sample.labels:
        items.append(("le", sample.labels["le"]))
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}"


_SUFFIX_ORDER = {"_bucket": 0, "_sum": 1, "_count": 2}


def _sample_key(family: Metric, s: Sample) -> tuple[object, ...]:
    # Go groups a histogram's series by their labels, then buckets (by bound), sum, count
    labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
    suffix = s.name[len(family.name):]
    le = float(s.labels["le"].replace("+Inf", "inf")) if "le" in s.labels else 0.0
    return (labels, _SUFFIX_ORDER.get(suffix, 0), le)


def write_text(families: Iterable[Metric]) -> bytes:
    out: list[str] = []
    for family in sorted(families, key=lambda f: f.name):
        if not family.samples:
            continue
        out.append(f"# HELP {family.name} {family.documentation.replace(chr(92), chr(92) * 2)}\n")
        out.append(f"# TYPE {family.name} {family.type}\n")
        for s in sorted(family.samples, key=lambda s: _sample_key(family, s)):
            out.append(f"{s.name}{_labels(s)} {go_float(s.value)}\n")
    return "".join(out).encode()
