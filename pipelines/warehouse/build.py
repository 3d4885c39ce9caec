"""The warehouse build: the raw layer becomes a staged DuckDB database (normalized tables, then the
price table and models), in ``<warehouse>/.staging/<run>/``, ready for its checks and for publication
(:mod:`pipelines.warehouse.publication`)."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.billing.ingest import raw_billing_files
from pipelines.config import CostSettings
from pipelines.models.build import build_models
from pipelines.normalization.checks import GONE_FROM_SAGEMAKER
from pipelines.normalization.flatten import RAW_JSON, build_normalized_tables, load_latest_records
from pipelines.pricing.refresh import refreshed_prices_file
from pipelines.schemas import table
from pipelines.sql import literal, run
from pipelines.storage.layout import DATABASE, STAGING
from pipelines.storage.raw import (
    NOT_FOUND,
    RAW_ERRORS,
    RAW_JOBS,
    parquet_files,
    quarantine_unreadable,
    raw_jobs_source,
)

# Another writer's staging area is only removed once this old: a Dagster build runs its steps in
# separate processes, so a younger staging area may belong to a build between two steps.
ABANDONED_AFTER_SECONDS = 6 * 3600
STAGED = "staged"
MEMORY_LIMIT_ENV = "SMW_DUCKDB_MEMORY_LIMIT"


def memory_limit() -> str:
    """DuckDB's memory limit while building; past it, DuckDB spills to disk instead of failing."""
    return os.environ.get(MEMORY_LIMIT_ENV, "4GB")


@dataclass(frozen=True)
class Staging:
    warehouse: Path
    run_id: str

    @property
    def root(self) -> Path:
        return self.warehouse / STAGING / self.run_id

    @property
    def database(self) -> Path:
        return self.root / DATABASE

    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        if not self.database.exists() and read_only:
            raise FileNotFoundError(
                f"No staged warehouse at {self.database}: the normalization step of run {self.run_id} did not finish."
            )
        return duckdb.connect(str(self.database), read_only=read_only)


@dataclass(frozen=True)
class StagedBuild:
    staging: Staging
    counts: dict[str, int]  # rows by table
    quarantined: list[Path]  # raw files that could not be read, moved aside before the build


def stage_from_raw(warehouse: Path, run_id: str) -> StagedBuild:
    """Quarantine unreadable raw files, then build the normalized tables. A file whose footer reads but
    whose pages do not fails the build: then every file is read in full, the bad ones are quarantined
    and the build runs once more."""
    quarantined = quarantine_unreadable(warehouse)
    try:
        staging, counts = stage_normalized_tables(warehouse, run_id)
    except duckdb.Error:
        damaged = quarantine_unreadable(warehouse, deep=True)
        if not damaged:
            raise
        quarantined += damaged
        staging, counts = stage_normalized_tables(warehouse, run_id)
    return StagedBuild(staging, counts, quarantined)


def stage_normalized_tables(warehouse: Path, run_id: str) -> tuple[Staging, dict[str, int]]:
    """Build every normalized table from the raw layer into a fresh staging database, with the
    ``latest_raw_json`` view the checks read (publishing drops it). Returns row counts by table."""
    staging = Staging(warehouse, run_id)
    shutil.rmtree(staging.root, ignore_errors=True)
    staging.root.mkdir(parents=True)
    # Work happens in an in-memory database (spilling to disk past the memory limit); only the finished
    # tables are written to the staging file.
    config = {"memory_limit": memory_limit(), "temp_directory": str(staging.root / "spill")}
    with duckdb.connect(config=config) as connection:
        run(connection, f"attach {literal(staging.database)} as {STAGED}")
        files = parquet_files(warehouse, RAW_JOBS)
        if files:
            source = raw_jobs_source(connection, files)
        else:
            connection.register("empty_raw", table(RAW_JOBS).arrow_schema().empty_table())
            source = "empty_raw"
        load_latest_records(connection, source, view_catalog=STAGED)
        if not files:  # the view must outlive this connection, so it cannot read the registered relation
            run(
                connection,
                f"create or replace view {STAGED}.main.{RAW_JSON} as "
                "select null::varchar as training_job_arn, null::varchar as response_json where false",
            )
        counts = build_normalized_tables(connection, catalog=STAGED)
        _stage_jobs_gone_from_sagemaker(connection, parquet_files(warehouse, RAW_ERRORS))
        run(connection, f"detach {STAGED}")
    shutil.rmtree(staging.root / "spill", ignore_errors=True)
    return staging, counts


def _stage_jobs_gone_from_sagemaker(connection: duckdb.DuckDBPyConnection, error_files: list[str]) -> None:
    """The jobs SageMaker answered 'not found' for (deleted), by account, region and name (a name is only
    unique within one account and region), for ``no_published_job_lost``."""
    target = f"{STAGED}.main.{GONE_FROM_SAGEMAKER}"
    run(
        connection,
        f"create or replace table {target} (account_id varchar, region varchar, training_job_name varchar)",
    )
    if error_files:
        files = ", ".join(literal(f) for f in error_files)
        run(
            connection,
            f"insert into {target} select distinct account_id, region, training_job_name "
            f"from read_parquet([{files}]) where error_code = '{NOT_FOUND}' and training_job_name is not null",
        )


def remove_abandoned_staging(warehouse: Path, active_run_id: str, min_age_seconds: float) -> list[str]:
    """Staging areas of runs that died before publishing, older than ``min_age_seconds``. Returns their
    names."""
    root = warehouse / STAGING
    removed = []
    if root.exists():
        now = time.time()
        for leftover in root.iterdir():
            if leftover.name != active_run_id and now - leftover.stat().st_mtime >= min_age_seconds:
                shutil.rmtree(leftover, ignore_errors=True)
                removed.append(leftover.name)
    return removed


def stage_models(staging: Staging, costs: CostSettings) -> dict[str, int]:
    """Build the reference tables (the bill's line items from raw/billing, prices) and every SQL model into
    the staging database, after the normalized tables."""
    with staging.connect() as connection:
        return build_models(
            connection, costs, refreshed_prices_file(staging.warehouse), raw_billing_files(staging.warehouse)
        )
