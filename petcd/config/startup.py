"""What the member says about its configuration at startup, beyond parse warnings.

Each warning names the flag to change. A flag the operator did not set is only mentioned when
its default is dangerous (automatic compaction off: history grows until the quota stops writes).
"""

from __future__ import annotations

from petcd.config.server_config import MAX_QUOTA_BYTES, ServerConfig

__all__ = ["best_practice_warnings", "startup_notes"]


def best_practice_warnings(cfg: ServerConfig) -> list[str]:
    """The notebook's production practices (heartbeat, election timeout, quota, compaction),
    and the loud warning --unsafe-no-fsync deserves."""
    out: list[str] = []
    if cfg.unsafe_no_fsync:
        out.append("--unsafe-no-fsync is set: the WAL and the database are never fsynced, so a crash or "
                   "power loss can lose acknowledged writes and leave this member's data corrupt; "
                   "never use it in production")
    if cfg.force_new_cluster:
        out.append("--force-new-cluster is set: this member restarts as the only member of its cluster, "
                   "removing the others from it; take the flag out once it runs, then add members back "
                   "with `etcdctl member add`")
    hb, et = cfg.heartbeat_interval, cfg.election_timeout
    if "heartbeat-interval" in cfg.flags_set and hb < 1000:
        out.append(f"--heartbeat-interval is {hb} ms; for production members that may be far apart "
                   "1000 ms is recommended: set --heartbeat-interval=1000 --election-timeout=5000")
    elif "election-timeout" in cfg.flags_set and et < 5 * max(hb, 1000):
        out.append(f"--election-timeout is {et} ms; 5 x a 1000 ms heartbeat is recommended for production: "
                   "set --election-timeout=5000 (with --heartbeat-interval=1000)")
    if cfg.quota_backend_bytes > MAX_QUOTA_BYTES:
        out.append(f"--quota-backend-bytes is {cfg.quota_backend_bytes}, above the 8 GiB recommended maximum: "
                   "size it from your expected data, at most --quota-backend-bytes=8589934592")
    elif cfg.quota_backend_bytes < 0:
        out.append("--quota-backend-bytes is negative, so the database may grow until the disk is full: "
                   "set a quota sized from your expected data, up to --quota-backend-bytes=8589934592")
    if not cfg.auto_compaction_enabled:
        out.append("automatic compaction is off, so old revisions pile up until the quota stops writes "
                   "(NOSPACE alarm): set --auto-compaction-mode=periodic --auto-compaction-retention=1 "
                   "(keep one hour of history)")
    return out


def startup_notes(cfg: ServerConfig) -> list[str]:
    """Informational lines (not warnings) for the operator."""
    return ["compaction frees space inside the database file but never shrinks it: schedule "
            "`etcdctl defrag` regularly (e.g. from cron), one member at a time, after compaction"]
