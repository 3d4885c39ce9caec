"""The published warehouse: ``<warehouse>/sagemaker.duckdb`` and ``<warehouse>/parquet/<table>/``.

A run builds everything in a staging area first (``<warehouse>/.staging/<run>/``): the DuckDB file, then
the Parquet export of every table beside it. Publication is then one atomic step for both:

- the finished staging folder is renamed to ``.versions/<run>/`` (it holds ``sagemaker.duckdb`` and
  ``parquet/``);
- the symbolic link ``current`` is swapped to it in one ``rename``;
- ``sagemaker.duckdb`` and ``parquet`` at the top of the warehouse are fixed links through ``current``
  (``current/sagemaker.duckdb``, ``current/parquet``): the paths readers and BI tools use never change.

A failure or crash at any point before the swap leaves the previous version fully current (DuckDB and
Parquet together); after it, the new one. A reader that holds the old DuckDB file open keeps reading the
old version (same inode) and sees the new one when it reconnects. Staging leftovers are removed later.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.config import CostSettings
from pipelines.interrupts import stop_requested
from pipelines.models.build import build_models
from pipelines.normalization.checks import GONE_FROM_SAGEMAKER, JOBS, published_jobs_kept
from pipelines.normalization.flatten import (
    LEFT_OUT,
    RAW_JSON,
    build_normalized_tables,
    load_latest_records,
    raw_source,
    run,
)
from pipelines.pricing.refresh import refreshed_prices_file
from pipelines.schemas import table
from pipelines.storage.raw import NOT_FOUND, RAW_ERRORS, RAW_JOBS, parquet_files, quarantine_unreadable

DATABASE = "sagemaker.duckdb"
PARQUET = "parquet"
CURRENT = "current"
VERSIONS = ".versions"
STAGING = ".staging"
KEEP_VERSIONS = 2  # the current version and the one before, for readers still on it
# Another writer's staging area is only removed once this old: a Dagster build runs its steps in
# separate processes, so a younger staging area may belong to a build between two steps.
ABANDONED_AFTER_SECONDS = 6 * 3600
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
    "temp_directory": "",  # no spilling: a reader writes nothing, not even temporary files
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


def published_parquet(warehouse: Path, table_name: str) -> Path:
    """The stable path of a published table's Parquet file (it follows ``current``)."""
    return warehouse / PARQUET / table_name / "data.parquet"


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
        _stage_jobs_gone_from_sagemaker(connection, parquet_files(warehouse, RAW_ERRORS))
        run(connection, f"detach {STAGED}")
    shutil.rmtree(staging.root / "spill", ignore_errors=True)
    return staging, counts


def _stage_jobs_gone_from_sagemaker(connection: duckdb.DuckDBPyConnection, error_files: list[str]) -> None:
    """The names SageMaker answered 'not found' for (deleted jobs), for ``no_published_job_lost``."""
    target = f"{STAGED}.main.{GONE_FROM_SAGEMAKER}"
    run(connection, f"create or replace table {target} (training_job_name varchar)")
    if error_files:
        files = ", ".join(f"'{_quote(Path(f))}'" for f in error_files)
        run(
            connection,
            f"insert into {target} select distinct training_job_name from read_parquet([{files}]) "
            f"where error_code = '{NOT_FOUND}' and training_job_name is not null",
        )


class PublicationRefused(RuntimeError):
    """The staged build must not become current (it would drop published jobs, or a stop was asked for)."""


def publish(staging: Staging, table_names: list[str]) -> dict[str, Path]:
    """Export the staged tables to Parquet beside the staged database, then make both current in one
    step. Returns the stable path of each table's Parquet file. Refuses, leaving the current version in
    place, when a stop signal has arrived or when the build would drop a job that is published now
    (checked again here, under the build lock: another run may have published since this one's checks)."""
    warehouse = staging.warehouse
    with staging.connect() as connection:
        kept = published_jobs_kept(connection, published_parquet(warehouse, JOBS))
        if not kept.passed:
            raise PublicationRefused(f"Not published: {kept.description}.")
        run(connection, f"drop view if exists {RAW_JSON}")
        run(connection, f"drop table if exists {LEFT_OUT}")
        run(connection, f"drop table if exists {GONE_FROM_SAGEMAKER}")
        run(connection, "checkpoint")
    connection = staging.connect(read_only=True)
    try:
        paths = {}
        for name in table_names:
            target = staging.root / PARQUET / name / "data.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            run(connection, f"copy \"{name}\" to '{_quote(target)}' (format parquet, compression zstd)")
            paths[name] = warehouse / PARQUET / name / "data.parquet"
    finally:
        connection.close()
    _sync_tree(staging.root)
    version = warehouse / VERSIONS / staging.run_id
    version.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(version, ignore_errors=True)
    os.replace(staging.root, version)
    os.utime(version)  # its age orders the versions kept for readers
    if stop_requested():
        raise PublicationRefused("Not published: the run was stopped by a signal; the previous version stays.")
    _swap_symlink(warehouse / CURRENT, Path(VERSIONS) / staging.run_id)  # the one step that publishes
    _ensure_stable_links(warehouse)
    _remove_old_versions(warehouse, keep=staging.run_id)
    return paths


def _sync_tree(root: Path) -> None:
    """Flush every file under ``root`` to disk, so that the published version survives a power loss."""
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def _ensure_stable_links(warehouse: Path) -> None:
    """``sagemaker.duckdb`` and ``parquet`` point through ``current``. Made once; a warehouse from the
    older layout (a real file and a link to a version) is converted here, each path in one rename."""
    for name in (DATABASE, PARQUET):
        link = warehouse / name
        target = Path(CURRENT) / name
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        if link.is_dir() and not link.is_symlink():
            link.rename(link.with_name(f"{name}.old"))  # a real directory from the oldest layout
        _swap_symlink(link, target)


def _swap_symlink(link: Path, target: Path) -> None:
    temporary = link.with_name(f"{link.name}.tmp-{os.getpid()}")
    temporary.unlink(missing_ok=True)
    os.symlink(target, temporary)
    os.replace(temporary, link)


def current_version(warehouse: Path) -> Path | None:
    link = warehouse / CURRENT
    return (warehouse / os.readlink(link)) if link.is_symlink() else None


def _remove_old_versions(warehouse: Path, keep: str) -> None:
    versions = sorted((p for p in (warehouse / VERSIONS).iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for old in versions[:-KEEP_VERSIONS]:
        if old.name != keep:
            shutil.rmtree(old, ignore_errors=True)


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
    """Build the price table and every SQL model into the staging database, after the normalized tables."""
    with staging.connect() as connection:
        return build_models(connection, costs, refreshed_prices_file(staging.warehouse))
