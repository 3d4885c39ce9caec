"""Shared fixtures: one local SageMaker endpoint (moto's server in a subprocess) for the whole session,
reached only through the standard AWS settings, and a fresh demo fleet and clean faults per test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipelines.config import ExtractionSettings, Settings
from pipelines.demo.endpoint import LocalSageMaker
from pipelines.demo.fleet import FleetSpec, generate_fleet

# A fixed "now", so the fleet (and every number derived from it) is the same on every run.
FLEET_END = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
SMALL_FLEET = FleetSpec(jobs=300, seed=11, end=FLEET_END)
REGIONS = ("us-east-1", "eu-west-1")

_AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "SMW_CONFIG",
    "SMW_WAREHOUSE",
    "SMW_REGIONS",
)


@pytest.fixture(scope="session")
def endpoint() -> Iterator[LocalSageMaker]:
    server = LocalSageMaker.start()
    yield server
    server.stop()


@pytest.fixture
def aws(endpoint: LocalSageMaker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> LocalSageMaker:
    """The endpoint, with this process's AWS settings pointing at it, faults off and counters zeroed."""
    for name in _AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in endpoint.environment().items():
        monkeypatch.setenv(name, value)
    # No real AWS configuration on this machine can leak into a test.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    endpoint.set_faults()
    endpoint.reset_stats()
    return endpoint


@pytest.fixture
def fleet(aws: LocalSageMaker) -> list[dict]:
    """The small demo fleet, loaded into the endpoint; returns the generated records."""
    aws.load_fleet(SMALL_FLEET)
    return list(generate_fleet(SMALL_FLEET))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        warehouse=tmp_path / "warehouse",
        regions=REGIONS,
        extraction=replace(ExtractionSettings(), batch_size=100),
    )
