"""Go-compatible value parsing for petcd's configuration.

etcd parses its flags with Go's ``flag`` and ``strconv`` packages, its URLs with ``net/url`` and
its durations with ``time.ParseDuration``. Operators copy flags between etcd and petcd, so a value
etcd accepts must mean the same here and a value etcd refuses must be refused with the same words.
This module holds those rules (learned from etcd's observable behaviour) and nothing else.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = [
    "EtcdURL",
    "GoValueError",
    "format_go_duration",
    "go_quote",
    "go_quote_list",
    "is_ip",
    "new_urls",
    "parse_go_bool",
    "parse_go_duration",
    "parse_go_int",
    "parse_go_uint",
    "parse_url_map",
    "split_host_port",
]


class GoValueError(ValueError):
    """A value Go would refuse; ``str(err)`` is Go's error text."""


# ---------------------------------------------------------------- strings


def go_quote(s: str) -> str:
    """Go's ``%q`` of a string (strconv.Quote) for the characters that matter in messages."""
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_quote_list(items: list[str] | tuple[str, ...]) -> str:
    """Go's ``%q`` of a ``[]string``: ``["a" "b"]``."""
    return "[" + " ".join(go_quote(s) for s in items) + "]"


# ---------------------------------------------------------------- numbers and booleans

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_go_bool(s: str) -> bool:
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise GoValueError("parse error")


def _underscore_ok(s: str) -> bool:
    # Go allows '_' only between digits (or right after a base prefix) when the base is implied.
    saw = "^"
    i = 0
    if s[:1] in ("+", "-"):
        s = s[1:]
    hexa = False
    if len(s) >= 2 and s[0] == "0" and s[1].lower() in "bxo":
        i = 2
        saw = "0"
        hexa = s[1].lower() == "x"
    while i < len(s):
        c = s[i]
        if c.isdigit() or (hexa and c.lower() in "abcdef"):
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        else:
            if saw == "_":
                return False
            saw = "!"
        i += 1
    return saw != "_"


def _parse_magnitude(s: str) -> int:
    """Digits of a Go integer literal with base 0 (prefixes 0x, 0o, 0b, leading-0 octal, '_')."""
    if s == "":
        raise GoValueError("parse error")
    base = 10
    body = s
    if s[0] == "0" and len(s) > 1:
        p = s[1].lower()
        if p == "x":
            base, body = 16, s[2:]
        elif p == "o":
            base, body = 8, s[2:]
        elif p == "b":
            base, body = 2, s[2:]
        else:
            base, body = 8, s[1:]
    if "_" in s:
        if not _underscore_ok(s):
            raise GoValueError("parse error")
        body = body.replace("_", "")
    if body == "":
        raise GoValueError("parse error")
    digits = "0123456789abcdef"[:base]
    value = 0
    for c in body.lower():
        d = digits.find(c)
        if d < 0:
            raise GoValueError("parse error")
        value = value * base + d
    return value


def parse_go_uint(s: str, bits: int = 64) -> int:
    """``strconv.ParseUint(s, 0, bits)`` with flag's error words ("parse error", "value out of range")."""
    value = _parse_magnitude(s)
    if value >= 1 << bits:
        raise GoValueError("value out of range")
    return value


def parse_go_int(s: str, bits: int = 64) -> int:
    """``strconv.ParseInt(s, 0, bits)``: an optional sign, then as parse_go_uint."""
    neg = False
    body = s
    if s[:1] in ("+", "-"):
        neg = s[0] == "-"
        body = s[1:]
    value = _parse_magnitude(body)
    if neg:
        if value > 1 << (bits - 1):
            raise GoValueError("value out of range")
        return -value
    if value >= 1 << (bits - 1):
        raise GoValueError("value out of range")
    return value


# ---------------------------------------------------------------- durations

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_MAX_DURATION = (1 << 63) - 1


def parse_go_duration(orig: str) -> int:
    """``time.ParseDuration``: returns nanoseconds; errors carry Go's text."""
    s = orig
    neg = False
    if s[:1] in ("-", "+"):
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if s == "":
        raise GoValueError(f"time: invalid duration {go_quote(orig)}")
    total = 0
    while s:
        if not (s[0] == "." or s[0].isdigit()):
            raise GoValueError(f"time: invalid duration {go_quote(orig)}")
        i = 0
        while i < len(s) and s[i].isdigit():
            i += 1
        int_part = s[:i]
        s = s[i:]
        frac_part = ""
        if s.startswith("."):
            s = s[1:]
            j = 0
            while j < len(s) and s[j].isdigit():
                j += 1
            frac_part = s[:j]
            s = s[j:]
        if int_part == "" and frac_part == "":
            raise GoValueError(f"time: invalid duration {go_quote(orig)}")
        j = 0
        while j < len(s) and s[j] != "." and not s[j].isdigit():
            j += 1
        unit = s[:j]
        s = s[j:]
        if unit == "":
            raise GoValueError(f"time: missing unit in duration {go_quote(orig)}")
        if unit not in _UNITS_NS:
            raise GoValueError(f"time: unknown unit {go_quote(unit)} in duration {go_quote(orig)}")
        mult = _UNITS_NS[unit]
        v = int(int_part or "0") * mult
        if frac_part:
            # Go truncates the fractional part towards zero at nanosecond precision.
            v += int(frac_part) * mult // (10 ** len(frac_part))
        total += v
        if total > _MAX_DURATION:
            raise GoValueError(f"time: invalid duration {go_quote(orig)}")
    return -total if neg else total


def format_go_duration(ns: int) -> str:
    """``time.Duration.String`` (e.g. ``2h0m0s``, ``100ms``, ``0s``)."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("\u00b5s", 1_000), ("ns", 1)):
            if u >= size:
                return sign + _trim_frac(u, size) + unit
    secs_ns = u % 60_000_000_000
    mins = (u // 60_000_000_000) % 60
    hours = u // 3_600_000_000_000
    out = _trim_frac(secs_ns, 1_000_000_000) + "s"
    if u >= 60_000_000_000:
        out = f"{mins}m" + out
    if u >= 3_600_000_000_000:
        out = f"{hours}h" + out
    return sign + out


def _trim_frac(value: int, size: int) -> str:
    whole, frac = divmod(value, size)
    if frac == 0:
        return str(whole)
    width = len(str(size)) - 1
    return f"{whole}." + f"{frac:0{width}d}".rstrip("0")


# ---------------------------------------------------------------- URLs


@dataclass(frozen=True, slots=True)
class EtcdURL:
    """One URL as etcd accepts it: scheme http/https/unix/unixs, a host:port and no path."""

    scheme: str
    host: str  # "host:port" exactly as given (brackets kept for IPv6)
    userinfo: str = ""
    query: str = ""
    fragment: str = ""

    @property
    def hostname(self) -> str:
        return split_host_port(self.host)[0]

    @property
    def port(self) -> str:
        return split_host_port(self.host)[1]

    def __str__(self) -> str:
        # Go's url.URL.String() for the URLs etcd keeps (no path, no opaque part).
        out = self.scheme + "://"
        if self.userinfo:
            out += self.userinfo + "@"
        out += self.host
        if self.query:
            out += "?" + self.query
        if self.fragment:
            out += "#" + self.fragment
        return out


def split_host_port(hostport: str) -> tuple[str, str]:
    """``net.SplitHostPort``; raises GoValueError when there is no usable port part."""
    i = hostport.rfind(":")
    if i < 0:
        raise GoValueError(f"address {hostport}: missing port in address")
    j = k = 0
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise GoValueError(f"address {hostport}: missing ']' in address")
        if end + 1 == len(hostport):
            raise GoValueError(f"address {hostport}: missing port in address")
        if end + 1 != i:
            if hostport[end + 1] == ":":
                raise GoValueError(f"address {hostport}: too many colons in address")
            raise GoValueError(f"address {hostport}: missing port in address")
        host = hostport[1:end]
        j, k = 1, end + 1
    else:
        host = hostport[:i]
        if ":" in host:
            raise GoValueError(f"address {hostport}: too many colons in address")
    if "[" in hostport[j:]:
        raise GoValueError(f"address {hostport}: unexpected '[' in address")
    if "]" in hostport[k:]:
        raise GoValueError(f"address {hostport}: unexpected ']' in address")
    return host, hostport[i + 1 :]


_HOST_OK = set("!$&'()*+,;=:[]<>\"-_.~")


def _valid_optional_port(port: str) -> bool:
    if port == "":
        return True
    return port[0] == ":" and all(c.isdigit() and c.isascii() for c in port[1:])


def _parse_url(raw: str) -> tuple[str, str, str, str, str, str]:
    """The part of Go's ``url.Parse`` etcd relies on: (scheme, userinfo, host, path, query, fragment).

    Raises GoValueError with Go's text (``parse "<raw>": <reason>``).
    """

    def fail(reason: str) -> GoValueError:
        return GoValueError(f"parse {go_quote(raw)}: {reason}")

    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise fail("net/url: invalid control character in URL")
    rest, _, fragment = raw.partition("#")
    if rest == "":
        return "", "", "", "", "", fragment
    scheme = ""
    for i, c in enumerate(rest):
        if c.isascii() and c.isalpha():
            continue
        if c.isascii() and (c.isdigit() or c in "+-."):
            if i == 0:
                break
            continue
        if c == ":":
            if i == 0:
                raise fail("missing protocol scheme")
            scheme, rest = rest[:i].lower(), rest[i + 1 :]
        break
    query = ""
    if rest.endswith("?") and rest.count("?") == 1:
        rest = rest[:-1]
    elif "?" in rest:
        rest, _, query = rest.partition("?")
    if not rest.startswith("/"):
        if scheme:
            return scheme, "", "", rest, query, fragment  # opaque: no host
        if ":" in rest.partition("/")[0]:
            raise fail("first path segment in URL cannot contain colon")
    userinfo = host = ""
    if rest.startswith("//") and (scheme or not rest.startswith("///")):
        authority, slash, path = rest[2:].partition("/")
        rest = slash + path
        at = authority.rfind("@")
        if at >= 0:
            userinfo, host = authority[:at], authority[at + 1 :]
        else:
            host = authority
        if host.startswith("["):
            end = host.rfind("]")
            if end < 0:
                raise fail("missing ']' in host")
            if not _valid_optional_port(host[end + 1 :]):
                raise fail(f"invalid port {go_quote(host[end + 1 :])} after host")
        else:
            colon = host.rfind(":")
            if colon >= 0 and not _valid_optional_port(host[colon:]):
                raise fail(f"invalid port {go_quote(host[colon:])} after host")
        for c in host:
            if ord(c) < 0x80 and not (c.isalnum() or c in _HOST_OK):
                if c == "%":
                    continue
                raise fail(f"invalid character {go_quote(c)} in host name")
    return scheme, userinfo, host, rest, query, fragment


def new_urls(items: list[str]) -> tuple[EtcdURL, ...]:
    """etcd's ``types.NewURLs``: validate each URL, then sort them by their string form."""
    if not items:
        raise GoValueError("no valid URLs given")
    out: list[EtcdURL] = []
    for item in items:
        s = item.strip()
        scheme, userinfo, host, path, query, fragment = _parse_url(s)
        if scheme not in ("http", "https", "unix", "unixs"):
            raise GoValueError(f"URL scheme must be http, https, unix, or unixs: {s}")
        try:
            split_host_port(host)
        except GoValueError:
            raise GoValueError(f'URL address does not have the form "host:port": {s}') from None
        if path != "":
            raise GoValueError(f"URL must not contain a path: {s}")
        out.append(EtcdURL(scheme, host, userinfo, query, fragment))
    out.sort(key=str)
    return tuple(out)


def parse_url_map(s: str) -> list[tuple[str, tuple[EtcdURL, ...]]]:
    """etcd's ``types.NewURLsMap`` for ``--initial-cluster``: ``name=url,name=url,...``.

    Names keep the order of their first appearance (etcd uses an unordered map); the URLs of one
    name are validated and sorted as NewURLs does. An entry without ``=`` has an empty URL, which
    fails the scheme check exactly as in etcd.
    """
    grouped: dict[str, list[str]] = {}
    for entry in s.split(","):
        if entry == "":
            continue
        name, _, value = entry.partition("=")
        grouped.setdefault(name, []).append(value)
    return [(name, new_urls(values)) for name, values in grouped.items()]


def is_ip(host: str) -> bool:
    """Go's ``net.ParseIP(host) != nil`` for a host taken out of host:port."""
    if "%" in host:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
