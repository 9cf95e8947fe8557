"""etcd's MVCC key-value store: revisions, the key index, compaction, hashes."""

from petcd.mvcc.errors import CompactedError, CorruptError, FutureRevError, MVCCError, RevisionNotFoundError
from petcd.mvcc.index import TreeIndex
from petcd.mvcc.key_index import Generation, KeyIndex
from petcd.mvcc.kvstore import KVStore, RangeOptions, RangeResult, WriteTxn

__all__ = [
    "CompactedError",
    "CorruptError",
    "FutureRevError",
    "Generation",
    "KVStore",
    "KeyIndex",
    "MVCCError",
    "RangeOptions",
    "RangeResult",
    "RevisionNotFoundError",
    "TreeIndex",
    "WriteTxn",
]
