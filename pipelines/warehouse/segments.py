"""Where an incremental build finds the changed jobs' rows without reading whole tables.

DuckDB numbers a table's rows by position (``rowid``): an insert takes the numbers after the highest one,
and a deleted row keeps its number, because the build never vacuums
(:func:`pipelines.warehouse.build.build_config`). Each build
writes a job's rows into every table rebuilt per job at once, after the rows already there. So all of a
job's rows lie at or after the rowid at which the build that wrote its ``jobs`` row started writing each
table.

Each version's manifest records those starting rowids as *segments*: one per batch of the last full build
(its batches go from the oldest jobs to the newest, and it builds the per-job models one segment after
another too), then one per incremental build since. An incremental build finds the lowest ``jobs`` rowid
among its changed jobs, the segment it falls in, and from that the lowest rowid a changed job's row can
have in each table (:data:`pipelines.sql.CHANGED_ROWS_FROM`). Its deletes and its checks read each table
from there on, and DuckDB skips the row groups before it. A night changes mostly the newest jobs, so it
reads the newest segments' rows rather than whole tables.

The manifest also records each table's highest rowid and row count when the build ended. A table found
otherwise at the next build (changed by anything else: a vacuum would renumber its rows) is read whole,
and its old segments are forgotten.
"""

from __future__ import annotations

from typing import Any

import duckdb

from pipelines.normalization.flatten import PARENT_TABLE as JOBS
from pipelines.schemas import all_tables
from pipelines.sql import CHANGED_JOBS, CHANGED_ROWS_FROM, literal, qualified, run

SEGMENTS = "row_segments"  # manifest: [{"jobs_from": rowid, "rows_from": {table: rowid}}], oldest first
TABLE_ENDS = "table_ends"  # manifest: {table: [highest rowid (-1: none), rows]} when the build ended


def per_job_tables() -> list[str]:
    """The tables an incremental build replaces job by job whose rows all belong to a job in ``jobs``."""
    return [name for name, declared in all_tables().items() if declared.per_job]


def table_ends(
    connection: duckdb.DuckDBPyConnection, catalog: str = "", names: list[str] | None = None
) -> dict[str, list[int]]:
    """Each per-job table's (or each of ``names``') highest rowid (-1 when empty) and row count: both come
    from DuckDB's metadata."""
    parts = [
        f"select {literal(name)}, coalesce(max(rowid), -1), count(*) from {qualified(name, catalog)}"
        for name in (names or per_job_tables())
    ]
    return {name: [int(last), int(rows)] for name, last, rows in run(connection, " union all ".join(parts))}


def stage_changed_rows_from(
    connection: duckdb.DuckDBPyConnection, catalog: str, published: dict[str, Any]
) -> list[dict[str, Any]]:
    """Before an incremental build changes any row: stage :data:`CHANGED_ROWS_FROM` for every per-job table,
    from the published version's manifest, and return the segments for this build's manifest (the trusted
    ones carried over, and this build's own)."""
    ends = table_ends(connection, catalog)
    recorded = published.get(TABLE_ENDS) or {}
    trusted = {name for name, end in ends.items() if recorded.get(name) == end}
    segments = [
        {"jobs_from": s["jobs_from"], "rows_from": {n: r for n, r in s["rows_from"].items() if n in trusted}}
        for s in published.get(SEGMENTS) or []
    ]
    (oldest,) = run(
        connection,
        f"select min(rowid) from {qualified(JOBS, catalog)} "
        f"semi join {qualified(CHANGED_JOBS, catalog)} using (training_job_arn)",
    )[0]
    own = _starting_after(ends)  # where this build's rows start
    if JOBS not in trusted:
        first = {}
    elif oldest is None:  # only new jobs: none has a row yet
        first = {name: own["rows_from"][name] for name in trusted}
    else:
        holding = [s for s in segments if s["jobs_from"] <= oldest]
        first = holding[-1]["rows_from"] if holding else {}
    target = qualified(CHANGED_ROWS_FROM, catalog)
    run(connection, f"create or replace table {target} (table_name varchar, first_rowid bigint)")
    if first:
        rows = ", ".join(f"({literal(name)}, {rowid})" for name, rowid in first.items())
        run(connection, f"insert into {target} values {rows}")
    return [*segments, own]


def segment_starting_now(connection: duckdb.DuckDBPyConnection, catalog: str, names: list[str]) -> dict[str, Any]:
    """A segment for rows about to be appended to the tables ``names`` (``jobs`` among them)."""
    return _starting_after(table_ends(connection, catalog, names))


def _starting_after(ends: dict[str, list[int]]) -> dict[str, Any]:
    """The segment of rows appended after the tables' ends (:func:`table_ends`)."""
    rows_from = {name: last + 1 for name, (last, _) in ends.items()}
    return {"jobs_from": rows_from[JOBS], "rows_from": rows_from}
