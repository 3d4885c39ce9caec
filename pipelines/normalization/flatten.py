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
from collections.abc import Sequence
from pathlib import Path

import duckdb

from pipelines.aws_model import duckdb_json_structure
from pipelines.schemas import TableSchema, all_tables

SQL_DIR = Path(__file__).resolve().parent.parent.parent / "sql"
NORMALIZED_LAYER = "tables"


class SchemaMismatch(RuntimeError):
    """A table's SQL does not produce the columns its schema declares."""


def run(connection: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    """Execute ``sql`` and drain its result (DuckDB 2 wants every result consumed before the next)."""
    return connection.execute(sql).fetchall()


def members_read_by_sql() -> frozenset[str]:
    """Every identifier in the normalized tables' SQL: a superset of the response members they read, so
    ``json_transform`` parses those and skips the rest."""
    text = "\n".join(table_sql(t.name) for t in normalized_tables())
    return frozenset(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))


def normalized_tables() -> list[TableSchema]:
    return [t for t in all_tables().values() if t.layer == NORMALIZED_LAYER]


def table_sql(name: str, folder: str = "normalized") -> str:
    return (SQL_DIR / folder / f"{name}.sql").read_text()


RECORDS = "latest_records"
RAW_JSON = "latest_raw_json"
_LATEST = """
with fetches as (
    select account_id, region, training_job_arn, fetched_at, run_id, response_json
    from {source}
),
latest_fetch as (
    -- Keys first: the newest fetch of each job, found without moving the large JSON column around.
    -- The run breaks a tie, so a job stored twice at the same instant (say by two runs that overlapped
    -- before the writer lock existed) still yields one record.
    select training_job_arn, max(fetched_at) as fetched_at, arg_max(run_id, fetched_at) as run_id
    from fetches
    group by training_job_arn
)
select {columns}
from fetches
join latest_fetch using (training_job_arn, fetched_at, run_id)
"""


def load_latest_records(connection: duckdb.DuckDBPyConnection, source: str, view_catalog: str = "") -> int:
    """Create ``latest_records``: the newest fetch of every job in ``source`` (a relation with the raw
    columns), its response parsed into one typed STRUCT column ``job``, ordered by ARN so that every
    table built from it comes out in the same order for the same input. Also creates the view
    ``latest_raw_json`` (ARN and stored JSON text) for the checks, in ``view_catalog`` if given.
    Returns the job count."""
    structure = json.dumps(duckdb_json_structure(wanted=members_read_by_sql())).replace("'", "''")
    columns = f"account_id, region, fetched_at, json_transform(response_json, '{structure}') as job"
    run(
        connection,
        f"create or replace table {RECORDS} as {_LATEST.format(source=source, columns=columns)}"
        " order by training_job_arn",
    )
    view = f'"{view_catalog}".main.{RAW_JSON}' if view_catalog else RAW_JSON
    run(
        connection,
        f"create or replace view {view} as " + _LATEST.format(source=source, columns="training_job_arn, response_json"),
    )
    return int(run(connection, f"select count(*) from {RECORDS}")[0][0])


def raw_source(files: Sequence[str]) -> str:
    """A ``read_parquet`` over raw files, as a relation ``load_latest_records`` accepts."""
    quoted = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    return f"read_parquet([{quoted}])"


def build_table(connection: duckdb.DuckDBPyConnection, declared: TableSchema, sql: str, catalog: str = "") -> int:
    """Create ``declared`` from ``sql``. Rows keep the order of ``latest_records`` (by ARN, then list
    position), so equal inputs give equal tables without sorting each one."""
    produced = [row[0] for row in run(connection, f"describe ({sql})")]
    if produced != declared.column_names:
        raise SchemaMismatch(
            f"{declared.name}: the SQL produces columns {produced} but schemas/ declares {declared.column_names}"
        )
    target = f'"{catalog}"."{declared.name}"' if catalog else f'"{declared.name}"'
    run(connection, f"drop table if exists {target}")
    run(connection, declared.duckdb_ddl(enforce_not_null=False).replace(f'"{declared.name}"', target, 1))
    casts = ", ".join(f'cast("{c.name}" as {c.duckdb_type}) as "{c.name}"' for c in declared.columns)
    run(connection, f"insert into {target} select {casts} from ({sql})")
    return int(run(connection, f"select count(*) from {target}")[0][0])


def build_normalized_tables(connection: duckdb.DuckDBPyConnection, catalog: str = "") -> dict[str, int]:
    """Every normalized table from ``latest_records``, created in ``catalog`` (default: the connection's
    own); returns row counts by table."""
    return {t.name: build_table(connection, t, table_sql(t.name), catalog) for t in normalized_tables()}
