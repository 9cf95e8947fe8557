"""petcdutl: etcdutl's offline commands for petcd (`snapshot status`, `snapshot restore`, `defrag`,
`backup`).

Flags, defaults, output and exit codes are etcdutl 3.5.1's: errors print `Error: ...` on stderr
and exit 1 (bad arguments 128, an unsupported output format 4); the default output format is
`simple`. `--bump-revision`/`--mark-compacted` are etcdutl 3.6's restore flags. `backup` parses
its flags as etcdutl's cobra does (petcd.utl.backup_cmd), usage and flag errors included.
"""

from __future__ import annotations

import argparse
import logging
import struct
import sys
from collections.abc import Sequence

from petcd.bbolt import BoltFormatError, db_status
from petcd.utl import backup_cmd
from petcd.utl.defrag import DefragError, defrag_data_dir
from petcd.utl.printer import FORMATS, UNSUPPORTED, format_status
from petcd.utl.restore import RestoreConfig, RestoreError, restore

EXIT_ERROR = 1
EXIT_BAD_FEATURE = 4
EXIT_BAD_ARGS = 128

log = logging.getLogger("petcd.utl")


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message)


def _fail(msg: str, code: int) -> int:
    sys.stderr.write(f"Error: {msg}\n")
    return code


def _parser() -> _Parser:
    top = _Parser(prog="petcdutl", description="petcd's offline utility (etcdutl's snapshot commands)")
    top.add_argument("-w", "--write-out", default="simple",
                     help="set the output format (fields, json, protobuf, simple, table)")
    cmds = top.add_subparsers(dest="command")
    snap = cmds.add_parser("snapshot", help="Manages etcd node snapshots")
    snap_cmds = snap.add_subparsers(dest="snapshot_command")
    status = snap_cmds.add_parser("status", help="Gets backend snapshot status of a given file")
    status.add_argument("-w", "--write-out", default=argparse.SUPPRESS)
    status.add_argument("file", nargs="*")
    rs = snap_cmds.add_parser("restore", help="Restores an etcd member snapshot to a petcd directory")
    rs.add_argument("-w", "--write-out", default=argparse.SUPPRESS)
    rs.add_argument("file", nargs="*")
    rs.add_argument("--data-dir", default=None, help="Path to the output data directory")
    rs.add_argument("--wal-dir", default="", help="Path to the WAL directory (use --data-dir if none given)")
    rs.add_argument("--initial-cluster", default="default=http://localhost:2380",
                    help="Initial cluster configuration for restore bootstrap")
    rs.add_argument("--initial-cluster-token", default="etcd-cluster",
                    help="Initial cluster token for the etcd cluster during restore bootstrap")
    rs.add_argument("--initial-advertise-peer-urls", default="http://localhost:2380",
                    help="List of this member's peer URLs to advertise to the rest of the cluster")
    rs.add_argument("--name", default="default", help="Human-readable name for this member")
    rs.add_argument("--skip-hash-check", action="store_true",
                    help="Ignore snapshot integrity hash value (required if copied from data directory)")
    rs.add_argument("--bump-revision", type=int, default=0,
                    help="How much to increase the latest revision after restore")
    rs.add_argument("--mark-compacted", action="store_true",
                    help="Mark the latest revision after restore as the point of scheduled compaction "
                         "(required if --bump-revision > 0, disallowed otherwise)")
    # listed for --help only: main() hands `backup` to backup_cmd before argparse sees it
    cmds.add_parser("backup", help="[legacy] offline backup of etcd directory", add_help=False)
    dg = cmds.add_parser("defrag", help="Defragments the storage of the etcd")
    dg.add_argument("-w", "--write-out", default=argparse.SUPPRESS)
    dg.add_argument("args", nargs="*")
    dg.add_argument("--data-dir", default=None,
                    help="Required. Defragments a data directory not in use by etcd.")
    return top


def _defrag(args: argparse.Namespace) -> int:
    if args.data_dir is None:
        return _fail('required flag(s) "data-dir" not set', EXIT_ERROR)
    if args.args:  # etcdutl ignores them; a stray word is more likely a mistake
        return _fail(f"defrag takes no arguments (got {' '.join(args.args)})", EXIT_BAD_ARGS)
    try:
        defrag_data_dir(args.data_dir)
    except (DefragError, OSError) as e:
        return _fail(f"Failed to defragment etcd data[{args.data_dir}] ({e})", EXIT_ERROR)
    return 0


def _status(args: argparse.Namespace) -> int:
    if len(args.file) != 1:
        return _fail("snapshot status requires exactly one argument", EXIT_BAD_ARGS)
    fmt = args.write_out
    if fmt not in FORMATS and fmt not in UNSUPPORTED:
        return _fail("unsupported output format", EXIT_BAD_FEATURE)
    path = args.file[0]
    try:
        ds = db_status(path)
    except FileNotFoundError:
        return _fail(f"stat {path}: no such file or directory", EXIT_ERROR)
    except (BoltFormatError, OSError) as e:
        return _fail(str(e), EXIT_ERROR)
    if fmt in UNSUPPORTED:  # etcdutl finds this out only when printing
        return _fail(f"{fmt} not supported as output format", EXIT_BAD_FEATURE)
    sys.stdout.write(format_status(ds, fmt))
    return 0


def _restore(args: argparse.Namespace) -> int:
    if args.data_dir is None:
        return _fail('required flag(s) "data-dir" not set', EXIT_ERROR)
    if len(args.file) != 1:
        return _fail("snapshot restore requires exactly one argument", EXIT_BAD_ARGS)
    if args.bump_revision < 0:
        return _fail("--bump-revision must not be negative", EXIT_BAD_ARGS)
    if (args.bump_revision == 0) == args.mark_compacted:
        if args.bump_revision or args.mark_compacted:
            return _fail("--mark-compacted required if --revision-bump > 0", EXIT_BAD_ARGS)
    cfg = RestoreConfig(
        snapshot_path=args.file[0],
        name=args.name,
        data_dir=args.data_dir,
        wal_dir=args.wal_dir,
        peer_urls=args.initial_advertise_peer_urls.split(","),
        initial_cluster=args.initial_cluster,
        initial_cluster_token=args.initial_cluster_token,
        skip_hash_check=args.skip_hash_check,
        bump_revision=args.bump_revision,
        mark_compacted=args.mark_compacted,
    )
    log.info("restoring snapshot %s to data dir %s", cfg.snapshot_path, cfg.data_dir)
    try:
        res = restore(cfg)
    except (RestoreError, BoltFormatError, OSError) as e:
        return _fail(str(e), EXIT_ERROR)
    except (struct.error, IndexError, ValueError, RecursionError) as e:  # pages bbolt would panic on
        return _fail(f"invalid database: {e}", EXIT_ERROR)
    log.info(
        "restored snapshot %s: member %x in cluster %x, revision %d, %d key records",
        cfg.snapshot_path, res.member_id, res.cluster_id, res.revision, res.keys_restored,
    )
    return 0


def _command_at(argv: list[str]) -> int:
    """Where the command word is, past the global -w/--write-out flag (-1 if there is none)."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-w", "--write-out"):
            i += 2
        elif a.startswith("--write-out=") or (a.startswith("-w") and not a.startswith("--")):
            i += 1
        elif a.startswith("-"):
            return -1
        else:
            return i
    return -1


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s\t%(levelname)s\t%(message)s")
    words = list(sys.argv[1:] if argv is None else argv)
    at = _command_at(words)
    if at >= 0 and words[at] == "backup":
        return backup_cmd.run(words[:at] + words[at + 1 :])
    parser = _parser()
    try:
        args = parser.parse_args(words)
    except _UsageError as e:
        return _fail(str(e), EXIT_BAD_ARGS)
    if args.command == "defrag":
        return _defrag(args)
    if args.command != "snapshot" or args.snapshot_command is None:
        parser.print_help()
        return 0
    if args.snapshot_command == "status":
        return _status(args)
    return _restore(args)


if __name__ == "__main__":
    sys.exit(main())
