"""A short printed summary of what a warehouse holds, for the CLI."""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipelines.normalization.flatten import normalized_tables
from pipelines.storage.layout import DATABASE
from pipelines.storage.raw import RAW_ERRORS, RAW_JOBS, parquet_files

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
        print("  API calls: " + ", ".join(f"{op} {n}" for op, n in sorted(api_calls.items())))
    print(f"\nQuery it with any DuckDB client, read-only: {database}")
