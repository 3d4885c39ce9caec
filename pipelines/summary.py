"""A short printed summary of what a warehouse holds, for the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from pipelines.normalization.flatten import normalized_tables
from pipelines.report import REPORT
from pipelines.sql import literal
from pipelines.storage.layout import DATABASE, PARQUET
from pipelines.storage.raw import RAW_ERRORS, RAW_JOBS, parquet_files
from pipelines.warehouse.publication import previous_version

_JOBS_BY_STATUS = """
select region, training_job_status, count(*) as jobs
from jobs
group by all
order by all
"""


def print_summary(warehouse: Path, api_calls: dict[str, int] | None = None) -> None:
    database = warehouse / DATABASE
    print(f"\nWarehouse: {warehouse.resolve()}")
    print(f"  raw layer: {len(parquet_files(warehouse, RAW_JOBS))} Parquet files under {warehouse / 'raw'}")
    if not database.exists():
        print("  no published tables yet")
        return
    with duckdb.connect(str(database), read_only=True) as connection:
        counts = {
            t.name: connection.execute(f'select count(*) from "{t.name}"').fetchall()[0][0] for t in normalized_tables()
        }
        print(f"  {database}: " + ", ".join(f"{name} {count}" for name, count in counts.items()))
        print(connection.sql(_JOBS_BY_STATUS))
    error_files = parquet_files(warehouse, RAW_ERRORS)
    if error_files:
        with duckdb.connect() as connection:
            errors = connection.execute("select count(*) from read_parquet(?)", [error_files]).fetchall()[0][0]
        print(f"  extraction errors recorded so far: {errors}")
    if api_calls:
        per_job = f" ({sum(api_calls.values()) / counts['jobs']:.3f} a job)" if counts.get("jobs") else ""
        print("  API calls: " + ", ".join(f"{op} {n}" for op, n in sorted(api_calls.items())) + per_job)
    print(f"\nQuery it with any DuckDB client, read-only: {database}")


_CHANGES = """
select
    count(*) as jobs,
    count(*) filter (where before.training_job_arn is null) as new_jobs,
    count(*) filter (
        where before.training_job_arn is not null
        and (before.training_job_status is distinct from jobs.training_job_status
             or before.last_modified_time is distinct from jobs.last_modified_time)
    ) as changed_jobs
from jobs
left join {before} as before using (training_job_arn)
"""

_SPEND = """
select
    coalesce(sum(total_cost_usd) filter (where day = current_date - 1), 0),
    coalesce(sum(total_cost_usd) filter (where day >= date_trunc('month', current_date)), 0),
    coalesce(sum(total_cost_usd), 0)
from {cost_daily}
"""


_BILL = """
select
    coalesce(sum(effective_cost_usd), 0),
    coalesce(sum(effective_cost_usd) filter (where status in ('matched', 'discounted')), 0),
    coalesce(sum(effective_cost_usd) filter (where status = 'unattributed'), 0),
    max(billed_until)
from cost_reconciliation
where status <> 'no_bill'
"""


def run_summary(warehouse: Path) -> dict[str, Any] | None:
    """What the current version holds against the previous one: jobs new and changed, and the estimated
    spend (yesterday, month to date, all time; UTC days) with what this version changed in it."""
    database = warehouse / DATABASE
    if not database.exists():
        return None
    previous = previous_version(warehouse)
    before_jobs = previous / PARQUET / "jobs" / "data.parquet" if previous else None
    before_costs = previous / PARQUET / "cost_daily" / "data.parquet" if previous else None
    with duckdb.connect(str(database), read_only=True) as connection:
        empty = "(select null::varchar as training_job_arn, null as training_job_status, null as last_modified_time)"
        source = f"read_parquet({literal(before_jobs)})" if before_jobs and before_jobs.exists() else empty
        jobs, new, changed = connection.execute(_CHANGES.format(before=source)).fetchone()
        yesterday, month, total = connection.execute(_SPEND.format(cost_daily="cost_daily")).fetchone()
        total_before = None
        if before_costs and before_costs.exists():
            total_before = connection.execute(
                _SPEND.format(cost_daily=f"read_parquet({literal(before_costs)})")
            ).fetchone()[2]
        billed, agreeing, unattributed, billed_until = connection.execute(_BILL).fetchone()
    report = warehouse / REPORT
    return {
        "warehouse": str(warehouse.resolve()),
        "jobs": int(jobs),
        "new_jobs": int(new),
        "changed_jobs": int(changed),
        "first_version": previous is None,
        "spend_yesterday_usd": round(float(yesterday), 2),
        "spend_month_to_date_usd": round(float(month), 2),
        "spend_all_time_usd": round(float(total), 2),
        "spend_change_usd": None if total_before is None else round(float(total - total_before), 2),
        "report": str(report.resolve()) if report.exists() else None,
        # From the bill (billing.exports), when one is loaded: what it charged, and how much of that is on
        # jobs whose estimate agrees with it (matched, or discounted below an agreeing list price).
        "billed_usd": round(float(billed), 2) if billed_until else None,
        "billed_agreeing_usd": round(float(agreeing), 2) if billed_until else None,
        "billed_unattributed_usd": round(float(unattributed), 2) if billed_until else None,
        "billed_until": billed_until.isoformat() if billed_until else None,
    }


def _usd(amount: float) -> str:
    return f"{'-' if amount < 0 else ''}${abs(amount):,.2f}"


def print_run_summary(summary: dict[str, Any]) -> None:
    since = "(the first version)" if summary["first_version"] else "since the previous version"
    print(
        f"Published {summary['jobs']:,} jobs to {summary['warehouse']}: {summary['new_jobs']:,} new and "
        f"{summary['changed_jobs']:,} changed {since}."
    )
    difference = summary["spend_change_usd"]
    change = ""
    if difference is not None:
        change = (
            f" ({'+' if difference > 0 else '-'}${abs(difference):,.2f} since the previous version)"
            if abs(difference) >= 0.005
            else " (unchanged since the previous version)"
        )
    print(
        f"Estimated spend: yesterday ${summary['spend_yesterday_usd']:,.2f}, month to date "
        f"${summary['spend_month_to_date_usd']:,.2f}, all time ${summary['spend_all_time_usd']:,.2f}{change}."
    )
    if summary["billed_until"]:
        print(
            f"Bill: {_usd(summary['billed_usd'])} of SageMaker training billed up to {summary['billed_until'][:10]}: "
            f"{_usd(summary['billed_agreeing_usd'])} on jobs whose estimate agrees, "
            f"{_usd(summary['billed_unattributed_usd'])} on no job; the rest in cost_reconciliation."
        )
    if summary["report"]:
        print(f"Cost report: {summary['report']}")
