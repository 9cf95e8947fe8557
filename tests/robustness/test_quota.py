"""The quota (NOSPACE) path on a real 3-member petcd under concurrent clients and watchers: the
alarm raised, what is refused and what still works, the operator's recovery (compact, defrag every
member, disarm), with a small quota and with one hardly above an empty database
(tests/robustness/quota.py; more runs: ``python -m tests.robustness --scenario quota``, against
etcd: ``python -m tests.robustness.quota --kind etcd``). Also the suite's bookkeeping of refused
writes, on hand-made data."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.robustness.linearizability import (
    Get,
    GetOk,
    LeaseRevoke,
    Op,
    Put,
    PutOk,
    Refused,
    Txn,
    TxnOk,
    check,
    load_history,
    save_history,
)
from tests.robustness.quota import QUOTA, TINY_QUOTA, run_quota
from tests.robustness.suite import RunConfig, patch_history, refused_but_applied
from tests.robustness.workload import Event


@pytest.mark.parametrize("quota", [QUOTA, TINY_QUOTA], ids=["small", "tiny"])
def test_nospace_alarm_and_recovery_under_load(tmp_path: Path, quota: int) -> None:
    result = run_quota(tmp_path, RunConfig(11, "quota", duration=3.0), quota=quota)
    print(result.summary())
    assert result.ok, result.summary()
    stats = result.stats
    # the clients met the alarm, and wrote again after the recovery
    assert int(stats["refused"]) > 0 and int(stats["alarms"]) >= 1, result.summary()  # type: ignore[call-overload]
    assert int(stats["ops"]) > 100 and int(stats["probe_acked"]) > 10, result.summary()  # type: ignore[call-overload]


# -- refused writes in the history ----------------------------------------------------------------

K = b"rb/k"


def test_a_refused_write_changed_nothing() -> None:
    ops = [
        Op(1, 0, 1, Put(K, b"a"), PutOk(2)),
        Op(2, 2, 3, Put(K, b"b"), Refused()),
        Op(2, 4, 5, Txn(K, "value", b"a", Put(K, b"c"), Get(K)), Refused()),
        Op(3, 6, 7, Get(K), GetOk(b"a", 2, 2)),
    ]
    assert check(ops).ok
    # a read that saw the refused value: not linearizable
    assert not check([*ops[:3], Op(3, 6, 7, Get(K), GetOk(b"b", 3, 3))]).ok
    # a refused write is definite: unlike an unknown one it cannot take effect later
    unknown = [ops[0], Op(2, 2, math.inf, Put(K, b"b"), None), Op(3, 6, 7, Get(K), GetOk(b"b", 3, 3))]
    assert check(unknown).ok and not check([*unknown[:1], ops[1], unknown[2]]).ok
    # refused is for what adds data only
    assert not check([Op(1, 0, 1, LeaseRevoke(7), Refused())]).ok


def test_a_refused_write_that_took_effect_is_found_and_settled() -> None:
    truth = [Event(2, K, "put", b"a"), Event(3, K, "put", b"b")]
    ops = [
        Op(1, 0, 1, Put(K, b"a"), PutOk(2)),
        Op(2, 2, 3, Put(K, b"b"), Refused()),  # applied all the same (etcd's apply-time quota check)
        Op(2, 4, 5, Put(K, b"x"), Refused()),
        Op(3, 6, 7, Get(K), GetOk(b"b", 3, 3)),
    ]
    assert refused_but_applied(ops, truth) == [ops[1]]
    patched = patch_history(ops, truth)
    assert patched[1] == Op(2, 2, 7, Put(K, b"b"), PutOk(3)) and patched[2] == ops[2]
    assert check(patched).ok


def test_refused_survives_the_history_file(tmp_path: Path) -> None:
    ops = [Op(1, 0, 1, Put(K, b"a"), Refused()), Op(1, 2, 3, Txn(K, "mod", 0, Put(K, b"b"), Get(K)), TxnOk(True, 2))]
    save_history(tmp_path / "h.json", ops)
    assert load_history(tmp_path / "h.json") == ops
