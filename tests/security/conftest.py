"""Fixtures of every security test module: the network guard, shared secrets and simulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.datocms_simulator import DatoCMSSimulator
from devstack.stack import Secrets
from tests.netguard import loopback_guard


@pytest.fixture(autouse=True)
def loopback_only() -> Iterator[list[str]]:
    """Every test here runs with non-loopback resolution and connections refused."""
    with loopback_guard() as refused:
        yield refused
    assert refused == [], "a test tried to reach a non-loopback address"


@pytest.fixture(scope="module")
def secrets() -> Secrets:
    return Secrets()


@pytest.fixture(scope="module")
def simulator(secrets: Secrets) -> Iterator[DatoCMSSimulator]:
    # One simulator per module, never rate-limiting (starting one per test costs more
    # than the tests); each `Scene` looks only at the requests made since it began.
    with DatoCMSSimulator(api_token=secrets.datocms_token, rate_limit=1_000_000) as sim:
        yield sim
