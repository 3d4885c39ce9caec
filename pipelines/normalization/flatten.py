"""Flattening: the raw records become typed, normalized tables, by SQL that DuckDB runs.

The raw JSON is parsed once, in C++, into typed STRUCTs and LISTs by ``json_transform`` with a structure
derived from botocore's model (:func:`pipelines.aws_model.duckdb_json_structure`). Each table is then a
plain ``select`` in ``sql/normalized/<table>.sql`` over ``latest_records``, and its columns must match the
declaration in ``schemas/tables/<table>.yaml`` exactly (names, order and types).

Everything here takes a DuckDB connection and reads and writes only inside it, so the same functions run
on an in-memory database in the tests and on the staging database file in the pipeline.
"""

from __future__ import annotations

import json
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


def normalized_tables() -> list[TableSchema]:
    return [t for t in all_tables().values() if t.layer == NORMALIZED_LAYER]


def table_sql(name: str, folder: str = "normalized") -> str:
    return (SQL_DIR / folder / f"{name}.sql").read_text()


RECORDS = "latest_records"
_LATEST_RECORDS = """
create or replace table latest_records as
with fetches as (
    select account_id, region, training_job_arn, fetched_at, response_json
    from {source}
),
latest as (
    select * from fetches
    qualify row_number() over (partition by training_job_arn order by fetched_at desc, response_json) = 1
)
select account_id, region, fetched_at, json_transform(response_json, {structure}) as job, response_json
from latest
"""


def load_latest_records(connection: duckdb.DuckDBPyConnection, source: str) -> int:
    """Create ``latest_records``: the newest fetch of every job in ``source`` (a relation with the raw
    columns), its response parsed into one typed STRUCT column ``job`` and kept as text in
    ``response_json`` (for the checks). Returns the job count."""
    structure = json.dumps(duckdb_json_structure()).replace("'", "''")
    run(connection, _LATEST_RECORDS.format(source=source, structure=f"'{structure}'"))
    return int(run(connection, "select count(*) from latest_records")[0][0])


def raw_source(files: Sequence[str]) -> str:
    """A ``read_parquet`` over raw files, as a relation ``load_latest_records`` accepts."""
    quoted = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    return f"read_parquet([{quoted}])"


def build_table(connection: duckdb.DuckDBPyConnection, declared: TableSchema, sql: str) -> int:
    """Create ``declared`` from ``sql``, rows ordered by the key so that equal inputs give equal tables."""
    produced = [row[0] for row in run(connection, f"describe ({sql})")]
    if produced != declared.column_names:
        raise SchemaMismatch(
            f"{declared.name}: the SQL produces columns {produced} but schemas/ declares {declared.column_names}"
        )
    run(connection, f'drop table if exists "{declared.name}"')
    run(connection, declared.duckdb_ddl(enforce_not_null=False))
    casts = ", ".join(f'cast("{c.name}" as {c.duckdb_type}) as "{c.name}"' for c in declared.columns)
    order = ", ".join(f'"{k}"' for k in declared.key)
    run(connection, f'insert into "{declared.name}" select {casts} from ({sql}) order by {order}')
    return int(run(connection, f'select count(*) from "{declared.name}"')[0][0])


def build_normalized_tables(connection: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Every normalized table from ``latest_records``; returns row counts by table."""
    return {t.name: build_table(connection, t, table_sql(t.name)) for t in normalized_tables()}
