"""Flattening: the raw records become typed, normalized tables, by SQL that DuckDB runs.

The raw JSON is parsed once, in C++, into typed STRUCTs and LISTs by ``json_transform`` with a structure
derived from botocore's model (:func:`pipelines.aws_model.duckdb_json_structure`), limited to the members
the SQL reads. Each table is then a plain ``select`` in ``sql/normalized/<table>.sql`` over
``latest_records``, and its columns must match the declaration in ``schemas/tables/<table>.yaml`` exactly
(names and order; types are cast to the declared ones).

Everything here takes a DuckDB connection and works only inside it, so the same functions serve an
in-memory database in the tests and the staging build in the pipeline.
"""

from __future__ import annotations

import json
import re

import duckdb

from pipelines.aws_model import duckdb_json_structure
from pipelines.schemas import TableSchema, all_tables
from pipelines.sql import (
    CHANGED_JOBS,
    build_table,
    check_columns,
    insert_rows,
    literal,
    qualified,
    replace_rows,
    run,
    stage_replacement_rows,
    table_sql,
    typed_rows,
)

NORMALIZED_LAYER = "tables"


def members_read_by_sql() -> frozenset[str]:
    """Every identifier in the normalized tables' SQL: a superset of the response members they read, so
    ``json_transform`` parses those and skips the rest."""
    text = "\n".join(table_sql(t.name) for t in normalized_tables())
    return frozenset(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))


def normalized_tables() -> list[TableSchema]:
    return [t for t in all_tables().values() if t.layer == NORMALIZED_LAYER]


RECORDS = "latest_records"
RAW_JSON = "latest_raw_json"
# Not materialized: DuckDB would otherwise keep every record's JSON (the CTE is read twice) in memory or
# spill it, where reading the raw files twice reads only the keys the first time. Measured on 1M records,
# scanning every newest record: 13.7 s materialized, 5.6-6.1 s not; a full build's batches held its JSON.
_LATEST = """
with fetches as not materialized (
    select account_id, region, training_job_arn, fetched_at, run_id, fetched_with, response_json
    from {source}
),
latest_fetch as (
    -- Keys first: the newest fetch of each job, found without moving the large JSON column around.
    -- The later run breaks a tie, so a job stored twice at the same instant (say by two runs that
    -- overlapped before the writer lock existed) still yields one record, the same one every time.
    select training_job_arn, max(fetched_at) as fetched_at, arg_max(run_id, (fetched_at, run_id)) as run_id
    from fetches
    group by training_job_arn
)
select {columns}
from fetches
join latest_fetch using (training_job_arn, fetched_at, run_id)
"""


def newest_fetches(source: str) -> str:
    """SQL for the key of the newest fetch of each job in ``source``: ARN, fetched_at, run_id."""
    return _LATEST.format(source=source, columns="training_job_arn, fetched_at, run_id")


def load_latest_records(connection: duckdb.DuckDBPyConnection, source: str, jobs: str = "", batch: str = "") -> int:
    """Create ``latest_records``: the newest fetch of every job in ``source`` (a relation with the raw
    columns), or of the jobs in the relation ``jobs`` (their ARNs: an incremental build's changed jobs), or
    of the jobs for which the SQL condition ``batch`` holds (a part of a full build), its response parsed into
    one typed STRUCT column ``job``, ordered by ARN so that every table built from it comes out in the same
    order for the same input. Returns the job count."""
    structure = literal(json.dumps(duckdb_json_structure(wanted=members_read_by_sql())))
    parsed = f"json_transform(response_json, {structure}) as job"
    columns = f"account_id, region, fetched_at, fetched_with, run_id, {parsed}"
    among = f" semi join {jobs} using (training_job_arn)" if jobs else ""
    records = f"(select * from {source} where {batch})" if batch else source
    # Every join here has its small side second (the newest fetches' keys, a list of jobs): the side to hash.
    # DuckDB's estimate of a filtered Parquet scan can fall far below the truth, and it then hashed the
    # records' JSON instead (a 100,000-job full build's two batches: 5.9-6.1 s, 3.3-3.8 s in the written order).
    run(connection, "set disabled_optimizers = 'build_side_probe_side'")
    try:
        run(
            connection,
            f"create or replace table {RECORDS} as {_LATEST.format(source=records, columns=columns)}{among}"
            " order by training_job_arn",
        )
    finally:
        run(connection, "reset disabled_optimizers")
    return int(run(connection, f"select count(*) from {RECORDS}")[0][0])


def create_raw_json_view(
    connection: duckdb.DuckDBPyConnection, source: str, view_catalog: str = "", changed_only: bool = False
) -> None:
    """Create the view ``latest_raw_json`` for the checks: ARN and stored JSON text of the records
    :func:`load_latest_records` parses (every job in ``source``, or with ``changed_only`` those in
    ``_changed_jobs``), in ``view_catalog`` if given."""
    view = f'"{view_catalog}".main.{RAW_JSON}' if view_catalog else RAW_JSON
    raw_json = _LATEST.format(source=source, columns="training_job_arn, response_json")
    # The view lives in the staged database and is read through it: it names the table without the catalog.
    among = f" semi join {CHANGED_JOBS} using (training_job_arn)" if changed_only else ""
    run(connection, f"create or replace view {view} as {raw_json}{among}")


LEFT_OUT = "_rows_left_out"  # staging only: rows that broke their table's contract (dropped at publication)
PARENT_TABLE = "jobs"


NEW_ROWS = "new_rows"  # temporary: a batch's rows of one table in a full build, before they join it


def leave_out_contract_breakers(
    connection: duckdb.DuckDBPyConnection, declared: TableSchema, new_rows: str, catalog: str = ""
) -> int:
    """Remove from the rows about to join a child table (the table ``new_rows``) those that break its
    contract, so that one odd record cannot block everyone's publication: a row with a null required
    column, and every row after the first (in list order) that repeats a key (a tag key twice, say). Each
    is recorded in ``_rows_left_out`` (in ``catalog``) by job and reason; the job's record stays whole in
    the raw layer. ``jobs`` is never repaired: its rows are the jobs, and its checks block. The rows are
    looked at before they join the table, so the cost follows the jobs being built, not the table's size.
    Returns how many rows were left out."""
    if declared.name == PARENT_TABLE:
        return 0
    required = [f'"{c.name}" is null' for c in declared.columns if not c.nullable]
    key = ", ".join(f'"{k}"' for k in declared.key)
    first_of_key = f"select min(rowid) from {new_rows} group by {key}"
    breaking = (
        f"select rowid as row_id, training_job_arn, "
        f"case when {' or '.join(required)} then 'null in a required column' "
        f"else 'repeats the key ({', '.join(declared.key)})' end as reason "
        f"from {new_rows} where ({' or '.join(required)}) or rowid not in ({first_of_key})"
    )
    run(connection, f"create temporary table breaking as {breaking}")
    try:
        removed = int(run(connection, "select count(*) from breaking")[0][0])
        if removed:
            run(
                connection,
                f"insert into {qualified(LEFT_OUT, catalog)} select '{declared.name}', training_job_arn, reason, "
                "count(*) from breaking group by all",
            )
            run(connection, f"delete from {new_rows} where rowid in (select row_id from breaking)")
        return removed
    finally:
        run(connection, "drop table breaking")


def build_normalized_tables(
    connection: duckdb.DuckDBPyConnection, catalog: str = "", jobs: str = "", how: str = "create"
) -> dict[str, int]:
    """Every normalized table from ``latest_records``, in ``catalog`` (default: the connection's own), with
    contract-breaking child rows left out (see :func:`leave_out_contract_breakers`). ``how``: ``create``
    the tables; ``append`` rows to them (a further batch of a full build); or ``replace`` the rows of the
    jobs in the relation ``jobs`` (an incremental build). Returns row counts by table."""
    if how != "append":  # a further batch adds to the list its first batch started
        run(
            connection,
            f"create or replace table {qualified(LEFT_OUT, catalog)} "
            "(table_name varchar, training_job_arn varchar, reason varchar, rows_left_out bigint)",
        )
    counts = {}
    write = build_table if how == "create" else insert_rows
    for declared in normalized_tables():
        sql = table_sql(declared.name)
        check_columns(connection, declared, sql)
        if how == "replace":
            new_rows = stage_replacement_rows(connection, declared, sql, catalog)
            leave_out_contract_breakers(connection, declared, new_rows, catalog)
            # The jobs' rows as published are kept: the build history and the Parquet export compare with them.
            replace_rows(connection, declared, jobs, catalog, keep_previous=declared.name == PARENT_TABLE)
        elif declared.name == PARENT_TABLE:  # never repaired: its rows go straight to the table
            write(connection, declared, sql, catalog)
        else:
            run(connection, f"create or replace temp table {NEW_ROWS} as {typed_rows(declared, sql)}")
            try:
                leave_out_contract_breakers(connection, declared, NEW_ROWS, catalog)
                rows = f"select * from {NEW_ROWS}"
                write(connection, declared, rows, catalog)
            finally:
                run(connection, f"drop table if exists temp.main.{NEW_ROWS}")
        counts[declared.name] = int(run(connection, f"select count(*) from {qualified(declared.name, catalog)}")[0][0])
    return counts
