"""Publication: a staged, checked build becomes current in one step, DuckDB and Parquet together.

- the staged tables are exported to Parquet beside the staged database;
- the finished staging folder is renamed to ``.versions/<run>/``;
- the symbolic link ``current`` is swapped to it in one ``rename``;
- ``sagemaker.duckdb`` and ``parquet`` at the top of the warehouse are fixed links through ``current``.

A failure or crash at any point before the swap leaves the previous version fully current; after it, the
new one. A reader that holds the old DuckDB file open keeps reading the old version (same inode) and sees
the new one when it reconnects. Readers connect with :func:`connect_reader`, which can read the
warehouse's tables and nothing else.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.interrupts import stop_requested
from pipelines.normalization.checks import GONE_FROM_SAGEMAKER, JOBS, published_jobs_kept
from pipelines.normalization.flatten import LEFT_OUT, RAW_JSON
from pipelines.schemas import TableSchema, all_tables
from pipelines.sql import (
    CHANGED_JOBS,
    REPLACED_TABLES,
    identifier,
    is_incremental,
    literal,
    read_parquet_files,
    replaced_by_job,
    run,
)
from pipelines.storage.layout import PARQUET, VERSIONS, published_parquet
from pipelines.storage.versions import make_current
from pipelines.warehouse.build import Staging
from pipelines.warehouse.changes import read_manifest

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


class PublicationRefused(RuntimeError):
    """The staged build must not become current (it would drop published jobs, or a stop was asked for)."""


def publish(staging: Staging, table_names: list[str]) -> dict[str, Path]:
    """Export the staged tables to Parquet beside the staged database, then make both current in one
    step. Returns the stable folder of each table's Parquet files. Refuses, leaving the current version in
    place, when a stop signal has arrived or when the build would drop a job that is published now
    (checked again here, under the build lock: another run may have published since this one's checks)."""
    warehouse = staging.warehouse
    with staging.connect() as connection:
        kept = published_jobs_kept(connection, published_parquet(warehouse, JOBS))
        if not kept.passed:
            raise PublicationRefused(f"Not published: {kept.description}.")
        unchanged_weeks = _weeks_without_changes(connection, staging)
        run(connection, f"drop view if exists {RAW_JSON}")
        for staged_only in (LEFT_OUT, GONE_FROM_SAGEMAKER, CHANGED_JOBS, REPLACED_TABLES):
            run(connection, f"drop table if exists {staged_only}")
        run(connection, "checkpoint")
    connection = staging.connect(read_only=True)
    try:
        # Each job's week of creation, worked out once for every per-job table's files.
        run(connection, f"create temp table {_JOB_WEEKS} as select training_job_arn, {_WEEK_OF_JOB} from {JOBS}")
        paths = {name: _export(connection, staging, all_tables()[name], unchanged_weeks) for name in table_names}
    finally:
        connection.close()
    _sync_tree(staging.root)
    if stop_requested():  # before the staging folder becomes a version, so it evicts no version readers use
        raise PublicationRefused("Not published: the run was stopped by a signal; the previous version stays.")
    version = warehouse / VERSIONS / staging.run_id
    version.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(version, ignore_errors=True)
    os.replace(staging.root, version)
    make_current(warehouse, staging.run_id)
    return paths


CREATED_WEEK = "created_week"


@dataclass(frozen=True)
class UnchangedWeeks:
    """An incremental build's weeks of job creation that hold no changed job: their Parquet files are the
    published version's, linked rather than written again, for the tables whose rows it did not rebuild."""

    previous: Path  # the published version's folder
    weeks: frozenset[str]
    changed: frozenset[str]  # the weeks with a changed job, written again
    tables: frozenset[str]  # the per-job tables whose other jobs' rows are the published version's


def _weeks_without_changes(connection: duckdb.DuckDBPyConnection, staging: Staging) -> UnchangedWeeks | None:
    manifest = read_manifest(staging.root)
    if not manifest or manifest.get("mode") != "incremental" or not is_incremental(connection):
        return None
    previous = staging.warehouse / VERSIONS / str(manifest["published_version"])
    # A changed job's week as published counts too: a job deleted and created again under its name keeps
    # its ARN but not its creation time, and its old week's file must lose its rows.
    published_jobs = sorted((previous / PARQUET / JOBS).glob("*.parquet"))
    before = f"select {_WEEK_OF_JOB}, training_job_arn from {read_parquet_files(published_jobs)}"
    if not published_jobs:
        before = "select null::varchar, null::varchar where false"
    rows = run(
        connection,
        f"""
        with weeks as (select {_WEEK_OF_JOB}, training_job_arn from {JOBS} union all {before})
        select distinct {CREATED_WEEK}, training_job_arn in (select training_job_arn from {CHANGED_JOBS})
        from weeks
        """,
    )
    touched = frozenset(week for week, changed in rows if changed)
    weeks = frozenset(week for week, _ in rows if week not in touched)
    return UnchangedWeeks(previous, weeks, touched, frozenset(replaced_by_job(connection)))


_JOB_WEEKS = "job_weeks"
# The Monday (UTC) of the week a job was created: a night's changes are mostly this week's and last week's.
_WEEK_OF_JOB = f"strftime(date_trunc('week', creation_time at time zone 'UTC'), '%Y-%m-%d') as {CREATED_WEEK}"


def _export(
    connection: duckdb.DuckDBPyConnection, staging: Staging, declared: TableSchema, unchanged: UnchangedWeeks | None
) -> Path:
    """Write one table's Parquet files into the staged version; returns the table's stable folder. A per-job
    table is one file per week its jobs were created in (``created-2026-11-23.parquet``, named by the week's
    Monday, UTC), so that a night's changes rewrite a few files and link the rest; any other table is one
    file (``data.parquet``)."""
    folder = staging.root / PARQUET / declared.name
    folder.mkdir(parents=True, exist_ok=True)
    options = "format parquet, compression zstd"
    if not declared.per_job:
        run(connection, f"copy {identifier(declared.name)} to {literal(folder / 'data.parquet')} ({options})")
        return staging.warehouse / PARQUET / declared.name
    weeks = f"select * from {_JOB_WEEKS}"
    if unchanged is not None and declared.name in unchanged.tables:
        for week in unchanged.weeks:
            for old in (unchanged.previous / PARQUET / declared.name).glob(f"created-{week}*.parquet"):
                _link(old, folder / old.name)
        written = ", ".join(map(literal, sorted(unchanged.changed))) or "null"
        weeks += f" where {CREATED_WEEK} in ({written})"
    partitions = staging.root / f".partitions-{declared.name}"
    run(
        connection,
        f"copy (select t.*, m.{CREATED_WEEK} from {identifier(declared.name)} t join ({weeks}) m "
        f"using (training_job_arn)) to {literal(partitions)} "
        f"({options}, partition_by ({CREATED_WEEK}), filename_pattern 'part_{{i}}')",
    )
    for part in sorted(partitions.glob(f"{CREATED_WEEK}=*/*.parquet")):
        week, number = part.parent.name.split("=", 1)[1], part.stem.removeprefix("part_")
        os.replace(part, folder / f"created-{week}{'' if number == '0' else '_' + number}.parquet")
    shutil.rmtree(partitions, ignore_errors=True)
    if not any(folder.glob("*.parquet")):  # readers glob the folder: an empty table is one empty file
        empty = f"copy (from {identifier(declared.name)} limit 0) to {literal(folder / 'data.parquet')} ({options})"
        run(connection, empty)
    return staging.warehouse / PARQUET / declared.name


def _link(source: Path, target: Path) -> None:
    """``target`` as a second name of ``source`` (files of a version never change), or a copy where the
    file system cannot link."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _sync_tree(root: Path) -> None:
    """Flush every file under ``root`` to disk, so that the published version survives a power loss."""
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
