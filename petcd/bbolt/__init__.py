"""etcd's bbolt file format without bbolt: reading and writing bbolt databases, etcd-format
snapshots of petcd's backend, and petcd backends made from etcd snapshots. Pure file work; it
imports nothing above the backend layer."""

from petcd.bbolt.page import PAGE_SIZE, BoltFormatError
from petcd.bbolt.reader import BoltReader, Item
from petcd.bbolt.snapshot import (
    SHA256_SIZE,
    EtcdSnapshot,
    import_etcd_db,
    save_etcd_snapshot,
    stream_etcd_snapshot,
    write_etcd_db,
)
from petcd.bbolt.status import DBStatus, db_status
from petcd.bbolt.writer import BoltWriter, Bucket, write_bolt

__all__ = [
    "PAGE_SIZE",
    "SHA256_SIZE",
    "BoltFormatError",
    "BoltReader",
    "BoltWriter",
    "Bucket",
    "DBStatus",
    "EtcdSnapshot",
    "Item",
    "db_status",
    "import_etcd_db",
    "save_etcd_snapshot",
    "stream_etcd_snapshot",
    "write_bolt",
    "write_etcd_db",
]
