"""Fixtures for the auth tests: a real backend in a temp dir, a manual clock, seeded randomness."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from petcd.auth import AuthStore, SimpleTokenProvider
from petcd.backend import Backend
from petcd.clock import ManualClock

# the lowest bcrypt cost keeps the tests fast; the cost itself is tested in test_passwords
COST = 4


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    be = Backend(tmp_path / "db", map_size=64 << 20)
    yield be
    be.close()


@pytest.fixture
def store(backend: Backend, clock: ManualClock) -> AuthStore:
    return AuthStore(backend, SimpleTokenProvider(clock, random.Random(7)), bcrypt_cost=COST)
