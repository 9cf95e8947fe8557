"""etcdutl 3.5.1's output formats for `snapshot status`: simple, table, json, fields."""

from __future__ import annotations

import json
import math

from petcd.bbolt import DBStatus

_SIZES = ("B", "kB", "MB", "GB", "TB", "PB", "EB")
FORMATS = ("simple", "table", "json", "fields")
UNSUPPORTED = ("protobuf",)  # known to etcdutl, but not for snapshot status


def human_bytes(n: int) -> str:
    """go-humanize's Bytes: SI units, one decimal below 10, none above."""
    if n < 10:
        return f"{n} B"
    e = math.floor(math.log(n) / math.log(1000))
    val = math.floor(n / 1000**e * 10 + 0.5) / 10
    return f"{val:.1f} {_SIZES[e]}" if val < 10 else f"{val:.0f} {_SIZES[e]}"


def _row(ds: DBStatus) -> list[str]:
    return [f"{ds.hash:x}", str(ds.revision), str(ds.total_key), human_bytes(ds.total_size)]


def _table(header: list[str], rows: list[list[str]]) -> str:
    """tablewriter's default look: centred upper-case headers, right-aligned cells."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def centre(s: str, w: int) -> str:
        gap = w - len(s)
        left = gap // 2
        return " " * left + s + " " * (gap - left)

    lines = [rule, "| " + " | ".join(centre(h.upper(), w) for h, w in zip(header, widths, strict=True)) + " |", rule]
    for r in rows:
        lines.append("| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |")
    lines.append(rule)
    return "\n".join(lines) + "\n"


def format_status(ds: DBStatus, fmt: str) -> str:
    """The text etcdutl prints for this status in this format (fmt in FORMATS)."""
    if fmt == "simple":
        return ", ".join(_row(ds)) + "\n"
    if fmt == "table":
        return _table(["hash", "revision", "total keys", "total size"], [_row(ds)])
    if fmt == "json":
        d = {"hash": ds.hash, "revision": ds.revision, "totalKey": ds.total_key, "totalSize": ds.total_size}
        return json.dumps(d, separators=(",", ":")) + "\n"
    if fmt == "fields":
        return (
            f'"Hash" : {ds.hash}\n"Revision" : {ds.revision}\n"Keys" : {ds.total_key}\n"Size" : {ds.total_size}\n'
        )
    raise ValueError(f"unsupported output format {fmt}")
