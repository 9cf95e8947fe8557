"""Initial-cluster arithmetic: member and cluster IDs, and etcd's bootstrap checks.

A new cluster's IDs are not random: every member computes them from the same flags, so they
agree without talking. A member's ID is the first 8 bytes (big-endian) of SHA-1 over its sorted
peer URLs concatenated, followed by the cluster token (and, for a member added at runtime, the
Unix time of the request). The cluster ID is the first 8 bytes of SHA-1 over the sorted member
IDs written as 8-byte big-endian integers. petcd computes exactly what etcd computes, so a petcd
member started with etcd's flags reports etcd's IDs.

The bootstrap checks (is this member in --initial-cluster, do its advertised peer URLs match,
is a URL listed twice) apply only when a member starts without data; the server calls
``check_bootstrap`` in that case. Their messages are etcd's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from petcd.config.govalues import EtcdURL, go_quote, go_quote_list

__all__ = [
    "BootstrapError",
    "check_bootstrap",
    "compute_cluster_id",
    "compute_member_id",
    "url_map_string",
]

Resolver = Callable[[EtcdURL], EtcdURL]


class BootstrapError(ValueError):
    """--initial-cluster does not fit this member; ``str(err)`` is etcd's text."""


def compute_member_id(peer_urls: Iterable[EtcdURL | str], token: str, now: int | None = None) -> int:
    """etcd's member ID: sha1(sorted peer URLs joined + token [+ unix seconds]), first 8 bytes."""
    data = "".join(sorted(str(u) for u in peer_urls)) + token
    if now is not None:
        data += str(now)
    return int.from_bytes(hashlib.sha1(data.encode()).digest()[:8], "big")


def compute_cluster_id(member_ids: Iterable[int]) -> int:
    """etcd's cluster ID: sha1 over the sorted member IDs as 8-byte big-endian, first 8 bytes."""
    raw = b"".join(i.to_bytes(8, "big") for i in sorted(member_ids))
    return int.from_bytes(hashlib.sha1(raw).digest()[:8], "big")


def url_map_string(members: Sequence[tuple[str, Sequence[EtcdURL]]]) -> str:
    """etcd's URLsMap.String(): every name=url pair, sorted, joined with commas."""
    return ",".join(sorted(f"{name}={u}" for name, urls in members for u in urls))


def _urls_equal(a: list[str], b: list[str], resolve: Resolver | None,
                a_urls: Sequence[EtcdURL], b_urls: Sequence[EtcdURL]) -> tuple[bool, str]:
    """etcd's URLStringsEqual: same length, then equal after resolving host names."""
    if len(a) != len(b):
        return False, f"len({go_quote_list(a)}) != len({go_quote_list(b)})"
    oa = sorted(a_urls, key=str)
    ob = sorted(b_urls, key=str)
    ra = [str(resolve(u)) if resolve else str(u) for u in oa]
    rb = [str(resolve(u)) if resolve else str(u) for u in ob]
    for x, y, ox, oy in zip(ra, rb, oa, ob, strict=True):
        if x != y:
            # etcd 3.5's wording (3.4 said 'resolved urls: "x" != "y"')
            return False, (f"{go_quote(x)}(resolved from {go_quote(str(ox))}) != "
                           f"{go_quote(y)}(resolved from {go_quote(str(oy))})")
    return True, ""


def check_bootstrap(
    name: str,
    advertise_peer_urls: Sequence[EtcdURL],
    initial_cluster: Sequence[tuple[str, Sequence[EtcdURL]]],
    *,
    joining_existing: bool = False,
    discovery: str = "",
    resolve: Resolver | None = None,
) -> None:
    """etcd's VerifyBootstrap / VerifyJoinExisting for a member that has no data yet.

    ``resolve`` maps a URL to the URL with its host resolved (etcd resolves host names before
    comparing); without it URLs compare as written.
    """
    cluster = dict(initial_cluster)
    if name not in cluster:
        raise BootstrapError(f"couldn't find local name {go_quote(name)} in the initial cluster configuration")
    own = cluster[name]
    ap_strs = sorted(str(u) for u in advertise_peer_urls)
    cl_strs = sorted(str(u) for u in own)
    ok, why = _urls_equal(ap_strs, cl_strs, resolve, advertise_peer_urls, own)
    if not ok:
        ap_set, cl_set = set(ap_strs), set(cl_strs)
        missing = [u for u in cl_strs if u not in ap_set]
        if missing:
            raise BootstrapError(
                f"--initial-cluster has {','.join(f'{name}={u}' for u in missing)} but missing from "
                f"--initial-advertise-peer-urls={','.join(ap_strs)} ({why})"
            )
        extra = [u for u in ap_strs if u not in cl_set]
        own_map = url_map_string([(name, advertise_peer_urls)])
        if extra:
            raise BootstrapError(
                f"--initial-advertise-peer-urls has {','.join(extra)} but missing from --initial-cluster={own_map}"
            )
        raise BootstrapError(
            f"failed to resolve {','.join(ap_strs)} to match --initial-cluster={own_map} ({why})"
        )
    seen: set[str] = set()
    for _, urls in initial_cluster:
        for u in urls:
            if str(u) in seen:
                raise BootstrapError(f"initial cluster {url_map_string(initial_cluster)} has duplicate url")
            seen.add(str(u))
    if joining_existing:
        if discovery:
            raise BootstrapError("discovery URL should not be set when joining existing initial cluster")
        return
    if url_map_string(initial_cluster) == "" and discovery == "":
        raise BootstrapError("initial cluster unset and no discovery URL found")
