"""The warehouse build: the raw layer becomes a staged DuckDB database (normalized tables, then the
price table and models), in ``<warehouse>/.staging/<run>/``, ready for its checks and for publication
(:mod:`pipelines.warehouse.publication`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.billing.ingest import raw_billing_files
from pipelines.config import CostSettings
from pipelines.models.build import build_models
from pipelines.normalization.checks import GONE_FROM_SAGEMAKER
from pipelines.normalization.flatten import (
    PARENT_TABLE,
    RAW_JSON,
    RECORDS,
    build_normalized_tables,
    create_raw_json_view,
    load_latest_records,
    newest_fetches,
    normalized_tables,
)
from pipelines.pricing.refresh import refreshed_prices_file
from pipelines.schemas import table
from pipelines.sql import CHANGED_JOBS, literal, qualified, run
from pipelines.storage.layout import DATABASE, STAGING, VERSIONS
from pipelines.storage.raw import (
    NOT_FOUND,
    RAW_ERRORS,
    RAW_JOBS,
    parquet_files,
    quarantine_unreadable,
    raw_jobs_source,
)
from pipelines.storage.versions import copy_published_database, discard_retired_database
from pipelines.warehouse.changes import BuildPlan, cost_inputs_fingerprint, plan_build, read_manifest, write_manifest
from pipelines.warehouse.segments import (
    SEGMENTS,
    TABLE_ENDS,
    segment_starting_now,
    stage_changed_rows_from,
    table_ends,
)

# Another writer's staging area is only removed once this old: a Dagster build runs its steps in
# separate processes, so a younger staging area may belong to a build between two steps.
ABANDONED_AFTER_SECONDS = 6 * 3600
STAGED = "staged"
RECYCLED = "recycled_database"  # the manifest's record of whether staging recycled a retired database
# An incremental build's changed jobs, found before the staging database (their final home) is ready.
CHANGED_IN_MEMORY = "changed_jobs_found"
# Jobs parsed at a time by a full build: their typed records are what it holds in memory.
BATCH_JOBS = 100_000
# A full build's last batch: the newest jobs, those the next nights change most (jobs still running, warm
# pools ending). Being a batch of their own, they are a segment and Parquet files of their own, so the night
# after a full build reads and rewrites these rows rather than a whole batch's or week's.
NEWEST_BATCH_JOBS = 10_000
# A full build's table of each job's batch, beside the staging database while the build runs.
BATCHES_DATABASE = "batches.duckdb"
MEMORY_LIMIT_ENV = "SMW_DUCKDB_MEMORY_LIMIT"
# Rows a thread holds in a by-week Parquet export before writing them out (why: build_config).
PARTITIONED_WRITE_FLUSH_ROWS = 65_536


def memory_limit() -> str:
    """DuckDB's memory limit while building; past it, DuckDB spills to disk instead of failing."""
    return os.environ.get(MEMORY_LIMIT_ENV, "1GB")


def build_config(**settings: str) -> dict[str, str | int]:
    """DuckDB's settings for every connection that writes a staged database.

    Vacuuming is off: a checkpoint after an incremental build's deletes would otherwise merge the row groups
    they thinned (0.5 s for one model's 1% of rows at 1M jobs, 2 s a night in all), and rewriting rows
    would move them, while the build finds a job's rows by where they were written
    (:mod:`pipelines.warehouse.segments`). A deleted row's space is reclaimed by the next full build, at
    least weekly.

    A Parquet export by week holds up to ``partitioned_write_flush_threshold`` rows per thread before writing
    them out: at DuckDB's default (524,288) a thread's share of ``jobs`` rows, 44 columns wide, took most of
    the 1 GB limit, and a 10M-job publication ran out of memory. An eighth of that exported them within 1 GB;
    row groups stay full size (they are cut per file, not per flush).

    Commits do not wait for the disk (``fsync_mode``): a staged database is only of use once published, and
    publication checkpoints it and flushes every file to disk itself before the version becomes current; a
    build cut short by a crash is never resumed (its staging area is removed later). In a 1.2M-job night,
    those flushes took about 0.7 s of staging's 4 s."""
    return {
        "memory_limit": memory_limit(),
        "max_vacuum_tasks": 0,
        "partitioned_write_flush_threshold": PARTITIONED_WRITE_FLUSH_ROWS,
        "fsync_mode": "none",
        **settings,
    }


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
        return duckdb.connect(str(self.database), read_only=read_only, config=build_config())


@dataclass(frozen=True)
class StagedBuild:
    staging: Staging
    counts: dict[str, int]  # rows by table
    quarantined: list[Path]  # raw files that could not be read, moved aside before the build
    plan: BuildPlan
    changed_jobs: int  # jobs whose rows this build (re)made: every job in a full build


def stage_from_raw(warehouse: Path, run_id: str, full: bool = False) -> StagedBuild:
    """Quarantine unreadable raw files, then build the normalized tables: only the changed jobs' rows
    when the published version allows it, else every job (see :mod:`pipelines.warehouse.changes`; ``full``
    asks for the latter). A file whose footer reads but whose pages do not fails the build: then every
    file is read in full, the bad ones are quarantined and the build runs once more (in full)."""
    quarantined = quarantine_unreadable(warehouse)
    plan = plan_build(warehouse, full)
    try:
        staging, counts = stage_normalized_tables(warehouse, run_id, plan)
    except duckdb.Error:
        damaged = quarantine_unreadable(warehouse, deep=True)
        if not damaged:
            raise
        quarantined += damaged
        plan = plan_build(warehouse, full)
        staging, counts = stage_normalized_tables(warehouse, run_id, plan)
    changed = counts[PARENT_TABLE]
    if plan.incremental:
        with staging.connect(read_only=True) as connection:
            changed = int(run(connection, f"select count(*) from {CHANGED_JOBS}")[0][0])
    return StagedBuild(staging, counts, quarantined, plan, changed)


def stage_normalized_tables(
    warehouse: Path, run_id: str, plan: BuildPlan | None = None
) -> tuple[Staging, dict[str, int]]:
    """Build the normalized tables from the raw layer into a fresh staging database, with the
    ``latest_raw_json`` view the checks read (publishing drops it). Incremental: the staging database starts
    as a copy of the published one, and only the changed jobs' rows are replaced (their ARNs are staged in
    ``_changed_jobs``). Without a plan, builds every job. Returns row counts by table."""
    plan = plan or plan_build(warehouse, full=True)
    staging = Staging(warehouse, run_id)
    shutil.rmtree(staging.root, ignore_errors=True)
    staging.root.mkdir(parents=True)
    # An incremental build's staging database starts as a copy of the published one (a retired version's
    # database, rewritten where it differs, when there is one free). The copy runs beside the work that
    # reads only the published database (finding and parsing the changed jobs' records), and is waited for
    # before anything is written to it. Leaving the block waits for it too, so a failed build never leaves
    # it writing into a folder a retry removes. An incremental plan names the published version it starts
    # from, a full one none: the published database stands for the build's kind below.
    published = warehouse / VERSIONS / plan.published_version / DATABASE if plan.published_version else None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="staging-copy") as copier:
        copied = copier.submit(_copy_and_start_writeback, warehouse, published, staging.database) if published else None
        if copied is None:  # a full build: the retired database would only take disk while it runs
            discard_retired_database(warehouse)
        recycled = False
        # Work happens in an in-memory database (spilling to disk past the memory limit); only the finished
        # tables are written to the staging file.
        with duckdb.connect(config=build_config(temp_directory=str(staging.root / "spill"))) as connection:
            files = [str(warehouse / f) for f in plan.new_files]
            if files:
                source = raw_jobs_source(connection, files)
            else:
                connection.register("empty_raw", table(RAW_JOBS).arrow_schema().empty_table())
                source = "empty_raw"
            if published is not None:  # incremental: the changed jobs and their records, while the copy runs
                assert copied is not None
                _find_changed_jobs(connection, source, published)
                load_latest_records(connection, source, jobs=CHANGED_IN_MEMORY)
                recycled = copied.result()
            run(connection, f"attach {literal(staging.database)} as {STAGED}")
            segments: list[dict]
            if published is not None:
                changed = qualified(CHANGED_JOBS, STAGED)
                run(connection, f"create table {changed} as select * from {CHANGED_IN_MEMORY}")
                segments = stage_changed_rows_from(connection, STAGED, read_manifest(published.parent) or {})
                counts = build_normalized_tables(connection, catalog=STAGED, jobs=changed, how="replace")
            else:
                counts, segments = _build_in_batches(connection, source, staging.root / BATCHES_DATABASE)
            create_raw_json_view(connection, source, view_catalog=STAGED, changed_only=published is not None)
            if not files:  # the view must outlive this connection, so it cannot read the registered relation
                run(
                    connection,
                    f"create or replace view {STAGED}.main.{RAW_JSON} as "
                    "select null::varchar as training_job_arn, null::varchar as response_json where false",
                )
            _stage_jobs_gone_from_sagemaker(connection, parquet_files(warehouse, RAW_ERRORS))
            run(connection, f"detach {STAGED}")
    shutil.rmtree(staging.root / "spill", ignore_errors=True)
    write_manifest(staging.root, {**plan.manifest(), RECYCLED: recycled, SEGMENTS: segments})
    return staging, counts


def _find_changed_jobs(connection: duckdb.DuckDBPyConnection, source: str, published: Path) -> None:
    """The jobs whose newest record in ``source`` is newer than the published one, or that have none
    published: their ARNs, in the temporary table :data:`CHANGED_IN_MEMORY`. Reads the published database
    itself (its staging copy may not be finished)."""
    run(connection, f"attach {literal(published)} as published (read_only)")
    try:
        run(
            connection,
            f"""
            create temp table {CHANGED_IN_MEMORY} as
            select newest.training_job_arn
            from ({newest_fetches(source)}) newest
            left join published.main.{PARENT_TABLE} published using (training_job_arn)
            where published.training_job_arn is null
               or (newest.fetched_at, newest.run_id) > (published.fetched_at, published.fetch_run_id)
            """,
        )
    finally:
        run(connection, "detach published")


def _copy_and_start_writeback(warehouse: Path, source: Path, target: Path) -> bool:
    """Copy the published database into staging (:func:`copy_published_database`: recycling a retired
    version's database, which writes only what differs), and start writing the copy to disk at once, in the
    background. Publication must fsync it, and the kernel alone would start only after 30 s: at 1M jobs,
    that fsync then wrote the whole of a fresh copy (0.76 s of a 10 s night). A process that ends first
    loses nothing: the kernel writes the pages anyway. Returns whether a retired database was recycled."""
    recycled = copy_published_database(warehouse, source, target)

    def write_back() -> None:
        with contextlib.suppress(OSError), open(target, "rb") as handle:  # gone already: nothing to write
            os.fsync(handle.fileno())

    threading.Thread(target=write_back, name="staging-writeback", daemon=True).start()
    return recycled


def _build_in_batches(
    connection: duckdb.DuckDBPyConnection, source: str, batches_database: Path
) -> tuple[dict[str, int], list[dict]]:
    """Every job's rows, :data:`BATCH_JOBS` jobs at a time, so that the parsed records in memory stay the
    size of a batch however many jobs there are; each batch reads the raw files' row groups that hold jobs
    created in its span of time, and parses only its own jobs' JSON. The batches go from the oldest jobs to the
    newest (by the creation time of each job's newest record), the newest :data:`NEWEST_BATCH_JOBS` being
    the last batch, and each is a segment (:mod:`pipelines.warehouse.segments`): a night mostly changes
    the newest jobs, and the night after a full build then reads only their rows. Returns the row counts and
    the segments."""
    # One row per job: its batch. The table lives in a database file of its own, written and checkpointed
    # before the first batch, so DuckDB can drop its pages from memory and read back only a batch's part
    # (sorted by batch, the other batches' row groups are skipped): in memory, 10M ARNs held about 0.9 GB of
    # the 1 GB limit.
    run(connection, f"attach {literal(batches_database)} as batching")
    run(
        connection,
        f"""
        create table batching.job_batches as
        with ranked as (
            select training_job_arn, created, row_number() over (order by created, training_job_arn) - 1 as position,
                greatest(count(*) over () - {NEWEST_BATCH_JOBS}, 0) as older
            from (
                select training_job_arn, arg_max(creation_time, (fetched_at, run_id)) as created
                from {source} group by training_job_arn
            )
        )
        select training_job_arn, created,
            if(position < older, position // {BATCH_JOBS}, (older + {BATCH_JOBS} - 1) // {BATCH_JOBS}) as batch
        from ranked
        order by position
        """,
    )
    run(connection, "checkpoint batching")
    # Each batch's span of creation times too: the raw files' row groups outside it are skipped (extraction
    # writes jobs in the order it lists them, newest first), so a batch reads its part of the raw layer, not
    # all of it. A job's records outside the span are older records of it, never its newest.
    spans = run(
        connection,
        "select batch, min(created)::varchar, max(created)::varchar, count(*) filter (where created is null) "
        "from batching.job_batches group by batch order by batch",
    ) or [(0, None, None, 0)]
    counts: dict[str, int] = {}
    segments: list[dict] = []
    tables = [declared.name for declared in normalized_tables()]
    for batch, first, last, undated in spans:
        in_batch = f"training_job_arn in (select training_job_arn from batching.job_batches where batch = {batch})"
        if first is not None:
            span = f"creation_time between {literal(first)}::timestamptz and {literal(last)}::timestamptz"
            in_batch += f" and ({span}{' or creation_time is null' if undated else ''})"
        load_latest_records(connection, source, batch=in_batch)
        batch_jobs = f"select job.TrainingJobArn as training_job_arn from {RECORDS}"
        run(connection, f"create or replace temp table batch_jobs as {batch_jobs}")
        how = "create" if batch == 0 else "append"
        if batch == 0:
            segments.append({"jobs_from": 0, "rows_from": dict.fromkeys(tables, 0)})
        else:
            segments.append(segment_starting_now(connection, STAGED, tables))
        counts = build_normalized_tables(connection, catalog=STAGED, jobs="batch_jobs", how=how)
    run(connection, f"drop table {RECORDS}")
    run(connection, "detach batching")
    for leftover in (batches_database, batches_database.with_name(f"{batches_database.name}.wal")):
        leftover.unlink(missing_ok=True)
    return counts, segments


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
    the staging database, after the normalized tables. In an incremental build the per-job models replace
    only the changed jobs' rows, unless the cost inputs (settings, prices, the bill) changed since the
    published version: then they are built whole. The cost inputs are recorded in the staged manifest."""
    manifest = read_manifest(staging.root) or {}
    cost_inputs = cost_inputs_fingerprint(staging.warehouse, costs)
    published = manifest.get("published_version")
    published_manifest = read_manifest(staging.warehouse / VERSIONS / published) if published else None
    changed_only = (
        manifest.get("mode") == "incremental"
        and published_manifest is not None
        and published_manifest.get("cost_inputs") == cost_inputs
    )
    segments = manifest.get(SEGMENTS) or []  # the per-job models built whole record theirs in them
    with staging.connect() as connection:
        counts = build_models(
            connection,
            costs,
            refreshed_prices_file(staging.warehouse),
            raw_billing_files(staging.warehouse),
            changed_only=changed_only,
            segments=segments,
        )
        ends = table_ends(connection)  # the tables are final: publication only exports them
    if manifest:
        write_manifest(
            staging.root,
            {
                **manifest,
                "cost_inputs": cost_inputs,
                "models": "incremental" if changed_only else "full",
                SEGMENTS: segments,
                TABLE_ENDS: ends,
            },
        )
    return counts
