"""From parsed flags (ServerConfig) to what the running member uses (ServerSettings)."""

from __future__ import annotations

from petcd.server.bootstrap import Member
from petcd.server.config import ServerConfig
from petcd.server.settings import ServerSettings

# no quota: a very large ceiling instead of a special case on the write path
_UNLIMITED = 1 << 62


def settings_from_config(cfg: ServerConfig) -> ServerSettings:
    ids = cfg.initial_member_ids
    members = [Member(ids[name], name, [str(u) for u in urls]) for name, urls in cfg.initial_cluster_members]
    quota = cfg.effective_quota_bytes
    return ServerSettings(
        name=cfg.name,
        data_dir=cfg.data_dir,
        wal_dir=cfg.wal_dir,
        member_id=cfg.local_member_id,
        cluster_id=cfg.initial_cluster_id,
        initial_members=members,
        advertise_client_urls=list(cfg.advertise_client_urls_str),
        initial_advertise_peer_urls=list(cfg.initial_advertise_peer_urls_str),
        initial_cluster_state=cfg.initial_cluster_state,
        heartbeat_interval_ms=cfg.heartbeat_interval,
        election_timeout_ms=cfg.election_timeout,
        snapshot_count=cfg.snapshot_count,
        snapshot_catchup_entries=cfg.experimental_snapshot_catchup_entries or 5000,
        quota_backend_bytes=_UNLIMITED if quota is None else quota,
        max_request_bytes=cfg.max_request_bytes,
        max_txn_ops=cfg.max_txn_ops,
        backend_batch_interval=cfg.backend_batch_interval or 0.1,
        auto_compaction_mode=cfg.auto_compaction_mode,
        auto_compaction_retention=cfg.auto_compaction_retention,
        auto_compaction_retention_value=cfg.auto_compaction_retention_value,
        max_wals=cfg.max_wals,
        strict_reconfig_check=cfg.strict_reconfig_check,
        watch_progress_notify_interval=cfg.experimental_watch_progress_notify_interval or 600.0,
        max_snapshots=cfg.max_snapshots,
    )
