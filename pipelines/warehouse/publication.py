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
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from pipelines.interrupts import stop_requested
from pipelines.normalization.checks import GONE_FROM_SAGEMAKER, JOBS, published_jobs_kept
from pipelines.normalization.flatten import LEFT_OUT, RAW_JSON
from pipelines.schemas import TableSchema, all_tables, table
from pipelines.sql import (
    CHANGED_JOBS,
    CHANGED_ROWS_FROM,
    REPLACED_TABLES,
    identifier,
    is_incremental,
    literal,
    of_changed_jobs,
    of_jobs,
    previous_rows,
    read_parquet_files,
    replaced_by_job,
    replacement_rows,
    run,
    temp_table_once,
)
from pipelines.storage.layout import PARQUET, VERSIONS, published_parquet
from pipelines.storage.versions import current_version, make_current
from pipelines.warehouse.build import Staging
from pipelines.warehouse.changes import read_manifest
from pipelines.warehouse.segments import SEGMENTS

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
        kept = published_jobs_kept(connection, published_parquet(warehouse, JOBS), built_on_published(staging))
        if not kept.passed:
            raise PublicationRefused(f"Not published: {kept.description}.")
        manifest = read_manifest(staging.root) or {}
        changed_weeks = _changed_weeks(connection, staging, manifest)
        newest_from = _newest_segment_jobs_from(manifest)
        paths = {
            name: _export(connection, staging, all_tables()[name], changed_weeks, newest_from) for name in table_names
        }
        run(connection, f"drop view if exists {RAW_JSON}")
        changes = [rows(name) for name in replaced_by_job(connection) for rows in (replacement_rows, previous_rows)]
        for staged_only in (LEFT_OUT, GONE_FROM_SAGEMAKER, CHANGED_JOBS, REPLACED_TABLES, CHANGED_ROWS_FROM, *changes):
            run(connection, f"drop table if exists {identifier(staged_only)}")
        run(connection, "checkpoint")
    _sync_tree(staging.root)
    if stop_requested():  # before the staging folder becomes a version, so it evicts no version readers use
        raise PublicationRefused("Not published: the run was stopped by a signal; the previous version stays.")
    version = warehouse / VERSIONS / staging.run_id
    version.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(version, ignore_errors=True)
    os.replace(staging.root, version)
    make_current(warehouse, staging.run_id)
    return paths


def built_on_published(staging: Staging) -> bool:
    """Whether the staged build is incremental and started from the version published now (no other build
    published since it started)."""
    manifest = read_manifest(staging.root) or {}
    return manifest.get("mode") == "incremental" and manifest.get("published_version") == current_version(
        staging.warehouse
    )


CREATED_WEEK = "created_week"


@dataclass(frozen=True)
class ChangedWeeks:
    """What an incremental build's Parquet export starts from: the published version's files, of which it
    writes again only those holding a changed job's rows, in the tables whose rows it replaced by job (see
    :func:`_export_changed_weeks`); the cost follows the change, not the table."""

    previous: Path  # the published version's folder
    changed: frozenset[str]  # the weeks (Mondays) with a changed job, now or as published
    tables: frozenset[str]  # the tables rebuilt by job whose other jobs' rows are the published version's
    build: str  # names the files of rows this build put in


# A week's files: a full export's (``created-2026-11-23.parquet``, its newest jobs'
# ``created-2026-11-23_<build>.parquet``, more parts ``_1``, ``_2``… when large) and each incremental
# build's (``created-2026-11-23_<build>.parquet``).
_PUBLISHED_WEEK_FILE = re.compile(r"created-(\d{4}-\d{2}-\d{2})(?:_[0-9A-Za-z-]+)*\.parquet")


def _changed_weeks(
    connection: duckdb.DuckDBPyConnection, staging: Staging, manifest: dict[str, Any]
) -> ChangedWeeks | None:
    if manifest.get("mode") != "incremental" or not is_incremental(connection):
        return None
    previous = staging.warehouse / VERSIONS / str(manifest["published_version"])
    if not previous.is_dir():  # removed by later publications while this build waited: export every table whole
        return None
    run(
        connection,
        f"create temp table {_CHANGED_JOB_WEEKS} as select training_job_arn, {_WEEK_OF_JOB} "
        f"from {JOBS} where {of_changed_jobs(connection, table(JOBS), CHANGED_JOBS)}",
    )
    touched = {week for (week,) in run(connection, f"select distinct {CREATED_WEEK} from {_CHANGED_JOB_WEEKS}")}
    # A changed job's week as published counts too: a job deleted and created again under its name keeps
    # its ARN but not its creation time, and its old week's file must lose its rows. The build kept those
    # rows, as the version it started from (``previous``) has them.
    before = identifier(previous_rows(JOBS))
    touched |= {week for (week,) in run(connection, f"select distinct {_WEEK_OF_JOB} from {before}")}
    tables = frozenset(replaced_by_job(connection))
    return ChangedWeeks(previous, frozenset(touched), tables, _file_label(staging))


_JOB_WEEKS = "job_weeks"
_CHANGED_JOB_WEEKS = "changed_job_weeks"
_NEWEST = "newest"  # whether the build wrote a job last (its newest segment)
# The Monday (UTC) of the week a job was created: a night's changes are mostly this week's and last week's.
_WEEK_OF_JOB = f"strftime(date_trunc('week', creation_time at time zone 'UTC'), '%Y-%m-%d') as {CREATED_WEEK}"
# zstd's fastest level: 5-18% faster to write than its default here, for files 0-10% larger.
_PARQUET_OPTIONS = "format parquet, compression zstd, compression_level 1"


def _export(
    connection: duckdb.DuckDBPyConnection,
    staging: Staging,
    declared: TableSchema,
    changed: ChangedWeeks | None,
    newest_from: int,
) -> Path:
    """Write one table's Parquet files into the staged version; returns the table's stable folder. A table
    rebuilt by job is in files by the week its jobs were created in, named by the week's Monday, UTC: one a
    week from a full build (``created-2026-11-23.parquet``), one more from each incremental build that
    changed the week (``created-2026-11-23_<build>.parquet``), so that a night's changes write a few files
    and link the rest; a by-job model's rows of no job in the warehouse are one more file
    (:data:`NO_JOB_FILE`). Any other table is one file (``data.parquet``)."""
    folder = staging.root / PARQUET / declared.name
    folder.mkdir(parents=True, exist_ok=True)
    if not declared.rebuilt_by_job:
        run(connection, f"copy {identifier(declared.name)} to {literal(folder / 'data.parquet')} ({_PARQUET_OPTIONS})")
    elif changed is not None and declared.name in changed.tables:
        _export_changed_weeks(connection, declared, folder, changed)
    else:
        _export_by_week(connection, declared, folder, staging, newest_from)
    if not any(folder.glob("*.parquet")):  # readers glob the folder: an empty table is one empty file
        empty = f"copy (from {identifier(declared.name)} limit 0) to {literal(folder / 'data.parquet')} "
        run(connection, empty + f"({_PARQUET_OPTIONS})")
    return staging.warehouse / PARQUET / declared.name


NO_JOB_FILE = "no-job.parquet"  # a by-job model's rows of no job in the warehouse (cost only the bill knows)


def _write(connection: duckdb.DuckDBPyConnection, rows: str, target: Path) -> None:
    """Write the rows of the query ``rows`` to one Parquet file, or none when there are none."""
    if not run(connection, f"copy ({rows}) to {literal(target)} ({_PARQUET_OPTIONS})")[0][0]:
        target.unlink()


def _export_by_week(
    connection: duckdb.DuckDBPyConnection, declared: TableSchema, folder: Path, staging: Staging, newest_from: int
) -> None:
    """Every week's files of a table rebuilt by job, from the whole table: the rows of the jobs the build
    wrote last (its newest segment, :mod:`pipelines.warehouse.segments`; a full build's newest jobs) apart
    from the week's others, named by the build as an incremental build's are. The nights after mostly
    change those jobs, and then write those files again, not the week's (``newest_from``: the newest
    segment's first ``jobs`` rowid, :func:`_newest_segment_jobs_from`)."""
    # Each job's week of creation and whether the build wrote it last, worked out once for every table.
    job_weeks = temp_table_once(
        connection,
        _JOB_WEEKS,
        f"select training_job_arn, {_WEEK_OF_JOB}, rowid >= {newest_from} as {_NEWEST} from {JOBS}",
    )
    name = identifier(declared.name)
    partitions = staging.root / f".partitions-{declared.name}"
    run(
        connection,
        f"copy (select t.*, m.{CREATED_WEEK}, m.{_NEWEST} from {name} t join {job_weeks} m "
        f"using (training_job_arn)) to {literal(partitions)} "
        f"({_PARQUET_OPTIONS}, partition_by ({CREATED_WEEK}, {_NEWEST}), filename_pattern 'part_{{i}}')",
    )
    build = _file_label(staging)
    for part in sorted(partitions.glob(f"{CREATED_WEEK}=*/{_NEWEST}=*/*.parquet")):
        week, newest = (directory.name.split("=", 1)[1] for directory in (part.parent.parent, part.parent))
        number = part.stem.removeprefix("part_")
        label = f"{'_' + build if newest == 'true' else ''}{'' if number == '0' else '_' + number}"
        os.replace(part, folder / f"created-{week}{label}.parquet")
    shutil.rmtree(partitions, ignore_errors=True)
    if not declared.per_job:
        no_job = f"select * from {name} anti join {job_weeks} using (training_job_arn)"
        _write(connection, no_job, folder / NO_JOB_FILE)


def _newest_segment_jobs_from(manifest: dict[str, Any]) -> int:
    """The lowest ``jobs`` rowid of the build's newest segment, or past every row when the build wrote all
    its jobs as one (then nothing is set apart)."""
    segments = manifest.get(SEGMENTS) or []
    return int(segments[-1]["jobs_from"]) if len(segments) > 1 else 2**62


def _file_label(staging: Staging) -> str:
    """The build's run id as it names the build's own Parquet files."""
    return re.sub(r"[^0-9A-Za-z-]", "-", staging.run_id)


def _export_changed_weeks(
    connection: duckdb.DuckDBPyConnection, declared: TableSchema, folder: Path, changed: ChangedWeeks
) -> None:
    """A table whose rows an incremental build replaced only for the changed jobs. Each week's published files
    are linked, except the few that hold a changed job's rows (found by reading their ARNs alone), which are
    written again without them; the rows the build put in for the changed jobs are one more file per week,
    named by the build (``created-2026-11-23_<build>.parquet``). A night's changes are mostly jobs of the
    night before, whose rows are that night's file: the cost follows the change, not the size of the week.
    A by-job model's file of rows of no job is written again whole: its published rows less the changed
    jobs', plus the build's."""
    published = changed.previous / PARQUET / declared.name
    week_files = sorted(published.glob("created-*.parquet"))
    # The rows the build replaced, as replace_rows matched them (a by-job model's regardless of case).
    replaced = f"training_job_arn is not null and ({of_jobs(declared, CHANGED_JOBS)})"
    in_changed_weeks = [path for path in week_files if _week_of_file(path) in changed.changed]
    holding = set()
    if in_changed_weeks:
        found = f"select distinct filename from {read_parquet_files(in_changed_weeks, filename=True)} where {replaced}"
        holding = {Path(name) for (name,) in run(connection, found)}
    for path in week_files:
        if path in holding:
            _write(connection, f"select * from {read_parquet_files([path])} where not ({replaced})", folder / path.name)
        else:
            _link(path, folder / path.name)
    added = f"select * from {identifier(replacement_rows(declared.name))}"
    weeks = f"select training_job_arn from {_CHANGED_JOB_WEEKS}"
    for week in sorted(changed.changed):
        in_week = f"{added} semi join ({weeks} where {CREATED_WEEK} = {literal(week)}) using (training_job_arn)"
        _write(connection, in_week, folder / f"created-{week}_{changed.build}.parquet")
    if not declared.per_job:
        rows = f"{added} anti join ({weeks}) using (training_job_arn)"  # rows whose job is not in the warehouse
        if (published / NO_JOB_FILE).exists():
            kept = f"select * from {read_parquet_files([published / NO_JOB_FILE])} where not ({replaced})"
            rows = f"{kept} union all by name {rows}"
        _write(connection, rows, folder / NO_JOB_FILE)


def _week_of_file(path: Path) -> str | None:
    """The week (its Monday) a table's Parquet file holds jobs of, from its name."""
    match = _PUBLISHED_WEEK_FILE.fullmatch(path.name)
    return match.group(1) if match else None


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
