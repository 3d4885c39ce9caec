"""Shared fixtures: one local SageMaker endpoint (moto's server in a subprocess) for the whole session,
reached only through the standard AWS settings, and a fresh demo fleet and clean faults per test."""

from __future__ import annotations

import copy
import fcntl
import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.config import CostSettings, ExtractionSettings, Settings
from pipelines.demo.endpoint import LocalSageMaker
from pipelines.demo.fleet import FleetSpec, arn_account_and_region, generate_fleet
from pipelines.demo.nights import build, differing_rows
from pipelines.extraction.redaction import redact
from pipelines.normalization.flatten import build_normalized_tables, create_raw_json_view, load_latest_records
from pipelines.schemas import all_tables, table
from pipelines.storage.layout import DATABASE, PARQUET
from pipelines.storage.raw import RAW_JOBS, raw_job_row

# A fixed "now", so the fleet (and every number derived from it) is the same on every run.
FLEET_END = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
SMALL_FLEET = FleetSpec(jobs=150, seed=11, end=FLEET_END)
REGIONS = ("us-east-1", "eu-west-1")
DEMO_BILL = "s3://smw-test-billing/cur2"

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


def _point_at(endpoint: LocalSageMaker, monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """This process's AWS settings point at ``endpoint``, faults off, counters zeroed."""
    for name in _AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in endpoint.environment().items():
        monkeypatch.setenv(name, value)
    # No real AWS configuration on this machine can leak into a test.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(folder / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(folder / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    endpoint.set_faults()
    endpoint.reset_stats()


@pytest.fixture
def aws(endpoint: LocalSageMaker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> LocalSageMaker:
    """The endpoint, with this process's AWS settings pointing at it, faults off and counters zeroed."""
    _point_at(endpoint, monkeypatch, tmp_path)
    return endpoint


@pytest.fixture(scope="session")
def demo_warehouse(endpoint: LocalSageMaker, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SMALL_FLEET and its bill (DEMO_BILL) published by the whole CLI chain (extract, load the bill, build,
    check, publish) for REGIONS, once for
    the session and every xdist worker of it, for tests that only read it. Copy it (``copy_of``) to change it."""
    from pipelines.cli import EXIT_OK, main
    from pipelines.demo.bill import deliver_demo_bill

    # Under xdist each worker has its own base folder inside the session's, which they share.
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    warehouse = shared / "demo" / "warehouse"
    with (shared / "demo-warehouse.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first worker builds it; the others wait, then read it
        if not (warehouse / DATABASE).exists():
            with pytest.MonkeyPatch.context() as monkeypatch:
                _point_at(endpoint, monkeypatch, shared)
                monkeypatch.setenv("SMW_REGIONS", ",".join(REGIONS))
                endpoint.load_fleet(SMALL_FLEET)
                deliver_demo_bill(SMALL_FLEET, DEMO_BILL)  # its bill, in the endpoint's S3
                assert main(["run", "--warehouse", str(warehouse), "--billing", DEMO_BILL]) == EXIT_OK
    return warehouse


def published_rows(warehouse: Path, table_name: str) -> int:
    """Rows of a published table, counted in its Parquet files' footers."""
    return sum(pq.read_metadata(path).num_rows for path in (warehouse / "parquet" / table_name).glob("*.parquet"))


def copy_of(warehouse: Path, destination: Path) -> Path:
    """A private copy of a published warehouse (its links are relative, so the copy stands alone)."""
    shutil.copytree(warehouse, destination, symlinks=True)
    return destination


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
        extraction=replace(ExtractionSettings(), batch_size=40),
    )


# -- records and tables for tests that build without the endpoint -------------------------------------

FETCHED = datetime(2026, 11, 2, tzinfo=UTC)


def raw_table(records: list[dict[str, Any]]) -> pa.Table:
    rows = [raw_job_row(*arn_account_and_region(r["TrainingJobArn"]), redact(r), FETCHED, "test") for r in records]
    return pa.Table.from_pylist(rows, schema=table(RAW_JOBS).arrow_schema())


def normalize(records: list[dict[str, Any]]) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    connection.register("raw", raw_table(records))
    load_latest_records(connection, "raw")
    create_raw_json_view(connection, "raw")
    build_normalized_tables(connection)
    return connection


# A minimal job for hand-computed cases: cost and bill tests build their records with it.
T0 = datetime(2026, 10, 20, 10, 0, tzinfo=UTC)


def record(
    name: str,
    *,
    start: datetime | None = T0,
    seconds: int = 3600,
    billable: int | None = None,
    status: str = "Completed",
    resources: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A minimal DescribeTrainingJob record: created 5 minutes before ``start``, ran ``seconds``."""
    created = (start or T0) - timedelta(minutes=5)
    rec: dict[str, Any] = {
        "TrainingJobName": name,
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}",
        "ModelArtifacts": {"S3ModelArtifacts": ""},
        "TrainingJobStatus": status,
        "SecondaryStatus": status,
        "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
        "CreationTime": created,
        "ResourceConfig": resources or {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "EnableManagedSpotTraining": False,
        "Tags": [{"Key": "team", "Value": "search"}],
        "SecondaryStatusTransitions": [{"Status": "Starting", "StartTime": created, "EndTime": start or created}],
    }
    if start is not None and status != "InProgress":
        end = start + timedelta(seconds=seconds)
        rec.update(
            TrainingStartTime=start,
            TrainingEndTime=end,
            LastModifiedTime=end,
            TrainingTimeInSeconds=seconds,
            BillableTimeInSeconds=seconds if billable is None else billable,
        )
        rec["SecondaryStatusTransitions"] += [
            {"Status": "Training", "StartTime": start, "EndTime": end},
            {"Status": status, "StartTime": end, "EndTime": end},
        ]
    if start is not None and status == "InProgress":
        rec.update(TrainingStartTime=start, LastModifiedTime=start, SecondaryStatus="Training")
        rec["SecondaryStatusTransitions"].append({"Status": "Training", "StartTime": start})
    rec.update(extra)
    return rec


def renamed(record: dict[str, Any], name: str) -> dict[str, Any]:
    """A new job like ``record``, created recently enough for an incremental listing to see it."""
    arn = record["TrainingJobArn"].rsplit("/", 1)[0] + "/" + name
    return {**copy.deepcopy(record), "TrainingJobName": name, "TrainingJobArn": arn, "CreationTime": FETCHED}


PUBLISHED = [name for name, declared in all_tables().items() if declared.layer not in ("raw", "history")]


def same_as_full_build(warehouse: Path, scratch: Path, costs: CostSettings | None = None) -> None:
    """A full build of a copy of the raw layer holds exactly the incremental warehouse's tables and Parquet."""
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(warehouse / "raw", scratch / "raw")
    result = build(scratch, full=True, costs=costs)
    assert result["mode"] == "full" and not result["failed_checks"]
    assert differing_rows(warehouse / "sagemaker.duckdb", scratch / "sagemaker.duckdb", PUBLISHED) == {}
    with duckdb.connect() as connection:
        for name in ("jobs", "tags", "job_costs", "job_cost_days_tagged", "cost_daily", "cost_reconciliation"):
            # Each row in the file of the same week: the file name's week is compared with the row.
            files = [
                f"(select * exclude (filename), regexp_extract(filename, 'created-([0-9-]+)', 1) as week "
                f"from read_parquet('{folder}/{PARQUET}/{name}/*.parquet', filename = true))"
                for folder in (warehouse, scratch)
            ]
            one_way = f"from {files[0]} except all from {files[1]}"
            other_way = f"from {files[1]} except all from {files[0]}"
            assert connection.execute(f"select count(*) from ({one_way})").fetchall() == [(0,)], name
            assert connection.execute(f"select count(*) from ({other_way})").fetchall() == [(0,)], name
