"""Test harness: etcd/petcd server processes, etcdctl runs, output normalisation, scenarios."""

from tests.harness.ctl import CtlResult, Etcdctl, Normaliser, output_format
from tests.harness.ports import LOOPBACK, free_ports
from tests.harness.procs import (
    DIFF_TARGET_ENV,
    ETCD_BIN,
    ETCDCTL_BIN,
    HarnessError,
    Kind,
    MemberIds,
    Server,
    ServerGroup,
    diff_target_kind,
    require_etcd,
    server_group,
)
from tests.harness.scenario import Mismatch, Scenario, Step, assert_same, ctl, run_scenario, scenario, txn

__all__ = [
    "DIFF_TARGET_ENV",
    "ETCDCTL_BIN",
    "ETCD_BIN",
    "LOOPBACK",
    "CtlResult",
    "Etcdctl",
    "HarnessError",
    "Kind",
    "MemberIds",
    "Mismatch",
    "Normaliser",
    "Scenario",
    "Server",
    "ServerGroup",
    "Step",
    "assert_same",
    "ctl",
    "diff_target_kind",
    "free_ports",
    "output_format",
    "require_etcd",
    "run_scenario",
    "scenario",
    "server_group",
    "txn",
]
