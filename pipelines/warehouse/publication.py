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
from pathlib import Path

import duckdb

from pipelines.interrupts import stop_requested
from pipelines.normalization.checks import GONE_FROM_SAGEMAKER, JOBS, published_jobs_kept
from pipelines.normalization.flatten import LEFT_OUT, RAW_JSON
from pipelines.sql import identifier, literal, run
from pipelines.storage.layout import PARQUET, VERSIONS, published_parquet
from pipelines.storage.versions import make_current
from pipelines.warehouse.build import Staging

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
            run(connection, f"copy {identifier(name)} to {literal(target)} (format parquet, compression zstd)")
            paths[name] = warehouse / PARQUET / name / "data.parquet"
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


def _sync_tree(root: Path) -> None:
    """Flush every file under ``root`` to disk, so that the published version survives a power loss."""
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
