"""petcd.raft: Raft consensus as a deterministic state machine with no I/O.

See raft.py for the theory of operation and rawnode.py for the application's driver loop.
"""

from .config import Config
from .errors import (
    CompactedError,
    ConfigError,
    NoLeaderError,
    ProposalDroppedError,
    RaftError,
    ReadyNotAdvancedError,
    SnapshotOutOfDateError,
    SnapshotTemporarilyUnavailableError,
    StepLocalMsgError,
    StorageError,
    UnavailableError,
)
from .progress import Inflights, Progress, ProgressState
from .rawnode import RawNode, Status
from .storage import MemoryStorage, Storage
from .tracker import ConfChangeError
from .types import (
    NONE,
    ReadOnlyOption,
    ReadState,
    Ready,
    SoftState,
    StateType,
    describe_entry,
    describe_message,
    msg_from,
    new_message,
)

__all__ = [
    "NONE",
    "CompactedError",
    "ConfChangeError",
    "Config",
    "ConfigError",
    "Inflights",
    "MemoryStorage",
    "NoLeaderError",
    "Progress",
    "ProgressState",
    "ProposalDroppedError",
    "RaftError",
    "RawNode",
    "ReadOnlyOption",
    "ReadState",
    "Ready",
    "ReadyNotAdvancedError",
    "SnapshotOutOfDateError",
    "SnapshotTemporarilyUnavailableError",
    "SoftState",
    "StateType",
    "Status",
    "StepLocalMsgError",
    "Storage",
    "StorageError",
    "UnavailableError",
    "describe_entry",
    "describe_message",
    "msg_from",
    "new_message",
]
