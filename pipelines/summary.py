"""A short printed summary of what a warehouse holds, for the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb

from pipelines.config import remote_origin
from pipelines.normalization.flatten import normalized_tables
from pipelines.report import REPORT, money
from pipelines.storage.layout import DATABASE
from pipelines.storage.raw import RAW_ERRORS, RAW_JOBS, parquet_files
from pipelines.warehouse.history import newest_build

_JOBS_BY_STATUS = """
select region, training_job_status, count(*) as jobs
from jobs
group by all
order by all
"""


def print_summary(warehouse: Path, api_calls: dict[str, int] | None = None) -> None:
    database = warehouse / DATABASE
    origin = remote_origin(warehouse)
    print(
        f"\nWarehouse: {origin} (working copy {warehouse.resolve()})"
        if origin
        else f"\nWarehouse: {warehouse.resolve()}"
    )
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


_SPEND = """
select
    coalesce(sum(total_cost_usd) filter (where day = current_date - 1), 0),
    coalesce(sum(total_cost_usd) filter (where day >= date_trunc('month', current_date)), 0),
    coalesce(sum(total_cost_usd), 0)
from cost_daily
"""

_BILL = """
select status, sum(effective_cost_usd), max(billed_until)
from cost_reconciliation
where status <> 'no_bill'
group by status
order by abs(sum(effective_cost_usd)) desc, status
"""


def run_summary(warehouse: Path) -> dict[str, Any] | None:
    """What the newest build changed (its row of ``build_history``: jobs new and changed, failed fetches,
    spend added and the days it touched, checks that failed) and the estimated spend (yesterday, month to
    date, all time; UTC days), with the bill's figures when one is loaded."""
    database = warehouse / DATABASE
    build = newest_build(warehouse)
    if not database.exists() or build is None:
        return None
    with duckdb.connect(str(database), read_only=True) as connection:
        yesterday, month, total = connection.execute(_SPEND).fetchone()
        by_status = connection.execute(_BILL).fetchall()
    billed_until = max((until for _, _, until in by_status if until is not None), default=None)
    report = warehouse / REPORT
    by_day = json.loads(build["spend_added_by_day"]) if build["spend_added_by_day"] else {}
    origin = remote_origin(warehouse)  # an s3:// warehouse, of which ``warehouse`` is the working copy
    return {
        "warehouse": origin or str(warehouse.resolve()),
        "working_copy": str(warehouse.resolve()) if origin else None,
        "build_id": build["build_id"],
        "jobs": int(build["jobs"]),
        "new_jobs": int(build["new_jobs"]),
        "changed_jobs": int(build["changed_jobs"]),
        "jobs_failed_to_fetch": int(build["jobs_failed_to_fetch"]),
        "first_version": build["spend_added_usd"] is None,
        "spend_yesterday_usd": round(float(yesterday), 2),
        "spend_month_to_date_usd": round(float(month), 2),
        "spend_all_time_usd": round(float(total), 2),
        "spend_change_usd": build["spend_added_usd"],
        "days_touched": build["days_touched"],
        "spend_added_by_day": by_day,
        "checks_failed": build["failed_checks"].split("\n") if build["failed_checks"] else [],
        "report": str(report.resolve()) if report.exists() else None,
        "report_uri": f"{origin}/{REPORT.as_posix()}" if origin and report.exists() else None,
        # From the bill (billing.exports), when one is loaded: what it charged, by why the estimate differs
        # (cost_reconciliation.status); the parts add up to the total.
        "billed_usd": round(float(sum(usd for _, usd, _ in by_status)), 2) if billed_until else None,
        "billed_by_status_usd": {status: round(float(usd), 2) for status, usd, _ in by_status}
        if billed_until
        else None,
        "billed_until": billed_until.isoformat() if billed_until else None,
    }


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
    if summary["spend_added_by_day"]:
        days = list(summary["spend_added_by_day"].items())
        shown = ", ".join(f"{day} {'+' if usd > 0 else '-'}${abs(usd):,.2f}" for day, usd in days[:3])
        more = f" and {summary['days_touched'] - 3} more" if summary["days_touched"] > 3 else ""
        days_word = "day" if summary["days_touched"] == 1 else "days"
        print(f"Spend changed on {summary['days_touched']} {days_word}: {shown}{more}.")
    if summary["jobs_failed_to_fetch"]:
        print(
            f"{summary['jobs_failed_to_fetch']:,} jobs failed to fetch since the previous build; "
            "the next run retries them."
        )
    if summary["billed_until"]:
        print(
            f"Bill: {money(summary['billed_usd'])} of SageMaker training billed up to {summary['billed_until'][:10]}: "
            + ", ".join(f"{status} {money(usd)}" for status, usd in summary["billed_by_status_usd"].items())
            + " (cost_reconciliation.status)."
        )
    if summary["report"]:
        also = f" (and {summary['report_uri']})" if summary["report_uri"] else ""
        print(f"Cost report: {summary['report']}{also}")
