"""The published warehouse: ``<warehouse>/sagemaker.duckdb`` and ``<warehouse>/parquet/<table>/``.

A run builds everything in a staging area first (``<warehouse>/.staging/<run>/``) and publishes it with
renames:

- the DuckDB file is built complete and closed, then renamed over ``sagemaker.duckdb``. A reader that
  holds the old file open keeps reading the old version (same inode) and sees the new one when it
  reconnects; nobody ever opens a half-built file;
- the Parquet tables are written to ``.versions/<run>/`` and ``parquet`` is a symbolic link swapped to
  it in one rename, so a reader of the Parquet files sees one complete set of tables, old or new.

A crash before a rename leaves the previous version in place; staging leftovers are removed next time.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.config import CostSettings
from pipelines.models.build import build_models
from pipelines.normalization.flatten import (
    RAW_JSON,
    build_normalized_tables,
    load_latest_records,
    raw_source,
    run,
)
from pipelines.pricing.refresh import refreshed_prices_file
from pipelines.schemas import table
from pipelines.storage.raw import RAW_JOBS, parquet_files

DATABASE = "sagemaker.duckdb"
PARQUET = "parquet"
VERSIONS = ".versions"
STAGING = ".staging"
KEEP_VERSIONS = 2  # the current Parquet version and the one before, for readers still on it
STAGED = "staged"
MEMORY_LIMIT_ENV = "SMW_DUCKDB_MEMORY_LIMIT"


# What a reader of the published warehouse may do: read its tables, nothing else. No file outside the
# database (read_csv, COPY, ATTACH, EXPORT), no extension installed or loaded, and no way to change that
# from SQL. BI connections should pass the same settings (see the README).
READER_CONFIG: dict[str, str | bool] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,
}


def connect_reader(database: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the published DuckDB file that can reach nothing else."""
    return duckdb.connect(str(database), read_only=True, config=dict(READER_CONFIG))


def memory_limit() -> str:
    """DuckDB's memory limit while building; past it, DuckDB spills to disk instead of failing."""
    return os.environ.get(MEMORY_LIMIT_ENV, "4GB")


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")


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
        run(connection, f"attach '{_quote(staging.database)}' as {STAGED}")
        files = parquet_files(warehouse, RAW_JOBS)
        if files:
            source = raw_source(files)
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
        run(connection, f"detach {STAGED}")
    shutil.rmtree(staging.root / "spill", ignore_errors=True)
    return staging, counts


def publish(staging: Staging, table_names: list[str]) -> dict[str, Path]:
    """Export the staged tables to Parquet, then make the staged database and Parquet set current."""
    warehouse = staging.warehouse
    with staging.connect() as connection:
        run(connection, f"drop view if exists {RAW_JSON}")
        run(connection, "checkpoint")
    version = warehouse / VERSIONS / staging.run_id
    shutil.rmtree(version, ignore_errors=True)
    connection = staging.connect(read_only=True)
    try:
        paths = {}
        for name in table_names:
            target = version / name / "data.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            run(connection, f"copy \"{name}\" to '{_quote(target)}' (format parquet, compression zstd)")
            paths[name] = warehouse / PARQUET / name / "data.parquet"
    finally:
        connection.close()
    _swap_symlink(warehouse / PARQUET, Path(VERSIONS) / staging.run_id)
    os.replace(staging.database, warehouse / DATABASE)
    shutil.rmtree(staging.root, ignore_errors=True)
    _remove_old_versions(warehouse, keep=staging.run_id)
    return paths


def _swap_symlink(link: Path, target: Path) -> None:
    if link.exists() and not link.is_symlink():
        # A real directory from an older layout: move it aside once; from now on the swap is atomic.
        link.rename(link.with_name(f"{link.name}.old"))
    temporary = link.with_name(f"{link.name}.tmp-{os.getpid()}")
    temporary.unlink(missing_ok=True)
    os.symlink(target, temporary)
    os.replace(temporary, link)


def _remove_old_versions(warehouse: Path, keep: str) -> None:
    versions = sorted((p for p in (warehouse / VERSIONS).iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for old in versions[:-KEEP_VERSIONS]:
        if old.name != keep:
            shutil.rmtree(old, ignore_errors=True)


def remove_abandoned_staging(warehouse: Path, active_run_id: str) -> None:
    """Staging areas of runs that died before publishing."""
    root = warehouse / STAGING
    if root.exists():
        for leftover in root.iterdir():
            if leftover.name != active_run_id:
                shutil.rmtree(leftover, ignore_errors=True)


def stage_models(staging: Staging, costs: CostSettings) -> dict[str, int]:
    """Build the price table and every SQL model into the staging database, after the normalized tables."""
    with staging.connect() as connection:
        return build_models(connection, costs, refreshed_prices_file(staging.warehouse))
