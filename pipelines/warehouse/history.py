"""The build history: one row per published build saying what it changed, carried forward from version to
version (each build appends its row to the rows the current version holds) and published with the rest."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from pipelines.schemas import table
from pipelines.sql import (
    CHANGED_JOBS,
    build_table,
    identifier,
    literal,
    of_changed_jobs,
    previous_rows,
    read_parquet_files,
    run,
)
from pipelines.storage.layout import published_parquet
from pipelines.storage.raw import NOT_FOUND, RAW_ERRORS, parquet_files
from pipelines.warehouse.build import Staging
from pipelines.warehouse.publication import built_on_published

BUILD_HISTORY = "build_history"
MAX_DAYS_SHOWN = 31


def stage_build_history(staging: Staging, failed_checks: list[str], now: datetime | None = None) -> dict[str, object]:
    """Add this build's row to the published history, in the staging database; returns the row."""
    warehouse, now = staging.warehouse, now or datetime.now(UTC)
    declared = table(BUILD_HISTORY)
    before = {name: published_parquet(warehouse, name) for name in ("jobs", "cost_daily", BUILD_HISTORY)}
    with staging.connect() as connection:
        if before[BUILD_HISTORY]:
            history = read_parquet_files(before[BUILD_HISTORY])
        else:
            connection.register("no_history", declared.arrow_schema().empty_table())
            history = "no_history"
        previous_build = run(connection, f"select max(built_at) from {history}")[0][0]
        first = not before["jobs"]
        old_jobs = (
            read_parquet_files(before["jobs"])
            if not first
            else "(select null::varchar as training_job_arn, null as training_job_status, null as last_modified_time)"
        )
        compared = "jobs"
        if built_on_published(staging):
            # Built from the published version: only the changed jobs' rows can differ from it.
            compared = f"(select * from jobs where {of_changed_jobs(connection, table('jobs'), CHANGED_JOBS)})"
            old_jobs = identifier(previous_rows("jobs"))  # the rows the build replaced, as published
        new, changed = run(
            connection,
            f"""
            select count(*) filter (where old.training_job_arn is null),
                   count(*) filter (where old.training_job_arn is not null
                       and (old.training_job_status is distinct from jobs.training_job_status
                            or old.last_modified_time is distinct from jobs.last_modified_time))
            from {compared} as jobs left join {old_jobs} as old using (training_job_arn)
            """,
        )[0]
        jobs = run(connection, "select count(*) from jobs")[0][0]
        total = run(connection, "select coalesce(sum(total_cost_usd), 0) from cost_daily")[0][0]
        added, by_day = None, None
        if before["cost_daily"]:
            changes = run(
                connection,
                f"""
                with built as (select day, sum(total_cost_usd) as usd from cost_daily group by day),
                published as (
                    select day, sum(total_cost_usd) as usd from {read_parquet_files(before["cost_daily"])}
                    group by day
                )
                select strftime(day, '%Y-%m-%d'), coalesce(built.usd, 0) - coalesce(published.usd, 0) as change
                from built full outer join published using (day)
                where abs(coalesce(built.usd, 0) - coalesce(published.usd, 0)) >= 0.005
                order by abs(change) desc, day
                """,
            )
            added = sum(change for _, change in changes)
            by_day = changes
        errors = parquet_files(warehouse, RAW_ERRORS)
        failed_to_fetch = 0
        if errors:
            since = f"and occurred_at > {literal(previous_build.isoformat())}::timestamptz" if previous_build else ""
            failed_to_fetch = run(
                connection,
                "select count(distinct (account_id, region, training_job_name)) from read_parquet("
                f"[{', '.join(literal(f) for f in errors)}]) where error_code <> '{NOT_FOUND}' {since}",
            )[0][0]
        billed = run(
            connection,
            "select case when count(*) > 0 then sum(effective_cost_usd) end from billing_line_items",
        )[0][0]
        row: dict[str, object] = {
            "build_id": staging.run_id,
            "built_at": now,
            "jobs": int(jobs),
            "new_jobs": int(new),
            "changed_jobs": int(changed),
            "jobs_failed_to_fetch": int(failed_to_fetch),
            "estimated_total_usd": float(total),
            "spend_added_usd": None if added is None else round(float(added), 2),
            "days_touched": None if by_day is None else len(by_day),
            "spend_added_by_day": None
            if not by_day
            else json.dumps({day: round(float(change), 2) for day, change in by_day[:MAX_DAYS_SHOWN]}),
            "billed_total_usd": None if billed is None else float(billed),
            "checks_failed": len(failed_checks),
            "failed_checks": "\n".join(failed_checks) or None,
        }
        connection.register("this_build", pa.Table.from_pylist([row], schema=declared.arrow_schema()))
        build_table(
            connection,
            declared,
            f"select * from (select * from {history} union all by name select * from this_build) order by built_at",
        )
    return row


def newest_build(warehouse: Path) -> dict[str, object] | None:
    """The newest row of the published build history, if there is one."""
    import duckdb

    files = published_parquet(warehouse, BUILD_HISTORY)
    if not files:
        return None
    with duckdb.connect() as connection:
        cursor = connection.execute(f"select * from {read_parquet_files(files)} order by built_at desc limit 1")
        found = cursor.fetchall()
        columns = [column[0] for column in cursor.description]
    return dict(zip(columns, found[0], strict=True)) if found else None
