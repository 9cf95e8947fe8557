"""Configuration of one Raft node."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .errors import ConfigError
from .storage import Storage
from .types import ReadOnlyOption


@dataclass(slots=True)
class Config:
    id: int
    # Ticks without hearing from a leader before a follower campaigns; the actual timeout is
    # drawn from [election_tick, 2 * election_tick) with ``rand`` after every reset.
    election_tick: int = 10
    # Ticks between leader heartbeats.
    heartbeat_tick: int = 1
    storage: Storage | None = None
    # The index the application has already applied (when restarting); raft will not hand out
    # committed entries at or below it again.
    applied: int = 0
    # Bytes of entries per append message (0: one entry per message).
    max_size_per_msg: int = 1 << 20
    # Bytes of committed entries per Ready (0: same as max_size_per_msg).
    max_committed_size_per_ready: int = 1 << 30
    # Bytes of proposal payloads a leader holds uncommitted before dropping proposals (0: no limit).
    max_uncommitted_entries_size: int = 0
    # Append messages in flight per follower in the replicate state.
    max_inflight_msgs: int = 256
    check_quorum: bool = True
    pre_vote: bool = True
    read_only_option: ReadOnlyOption = ReadOnlyOption.SAFE
    disable_proposal_forwarding: bool = False
    # Source of election-timeout randomness; default: random.Random(id) (deterministic).
    rand: random.Random | None = None

    def validate(self) -> None:
        if self.id == 0:
            raise ConfigError("cannot use none as id")
        if self.heartbeat_tick <= 0:
            raise ConfigError("heartbeat tick must be greater than 0")
        if self.election_tick <= self.heartbeat_tick:
            raise ConfigError("election tick must be greater than heartbeat tick")
        if self.storage is None:
            raise ConfigError("storage cannot be nil")
        if self.max_inflight_msgs <= 0:
            raise ConfigError("max inflight messages must be greater than 0")
        if self.max_uncommitted_entries_size < 0 or self.max_size_per_msg < 0:
            raise ConfigError("sizes must not be negative")
        if self.read_only_option == ReadOnlyOption.LEASE_BASED and not self.check_quorum:
            raise ConfigError("check_quorum must be enabled when read_only_option is LEASE_BASED")
