"""A short printed summary of what a warehouse holds, for the CLI."""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipelines.storage.raw import RAW_ERRORS, RAW_JOBS, parquet_files

_JOBS_BY_STATUS = """
with fetches as (
    select * from read_parquet($files)
),
latest as (
    select * from fetches
    qualify row_number() over (partition by training_job_arn order by fetched_at desc) = 1
)
select region, training_job_status, count(*) as jobs
from latest
group by all
order by all
"""


def print_summary(warehouse: Path, api_calls: dict[str, int] | None = None) -> None:
    files = parquet_files(warehouse, RAW_JOBS)
    print(f"\nWarehouse: {warehouse.resolve()}")
    if not files:
        print("  no training jobs stored yet")
        return
    connection = duckdb.connect()
    by_status = connection.sql(_JOBS_BY_STATUS, params={"files": files})
    total = sum(row[2] for row in by_status.fetchall())
    print(f"  {total} training jobs in {len(files)} raw Parquet files")
    print(by_status)
    error_files = parquet_files(warehouse, RAW_ERRORS)
    if error_files:
        errors = connection.sql("select count(*) from read_parquet($files)", params={"files": error_files}).fetchone()
        print(f"  extraction errors recorded so far: {errors[0] if errors else 0}")
    if api_calls:
        print("  API calls: " + ", ".join(f"{op} {n}" for op, n in sorted(api_calls.items())))
