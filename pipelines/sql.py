"""Running SQL in DuckDB and building schema-checked tables: the one place for quoting and for
``CREATE TABLE`` from a declaration, shared by normalization, the models and the warehouse build.

``sql/`` holds one ``select`` per table (``sql/normalized/``) or model (``sql/models/``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from pipelines.resources import resource_dir
from pipelines.schemas import TableSchema, table

SQL_DIR = resource_dir("sql")


class SchemaMismatch(RuntimeError):
    """A table's SQL does not produce the columns its schema declares."""


@dataclass(frozen=True)
class CheckOutcome:
    """The result of a data-quality check query; the Dagster assets turn it into an asset check."""

    name: str
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def run(connection: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    """Execute ``sql`` and drain its result (DuckDB 2 wants every result consumed before the next)."""
    return connection.execute(sql).fetchall()


def literal(value: str | Path) -> str:
    """``value`` as a SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def read_parquet_files(paths: Sequence[str | Path], filename: bool = False) -> str:
    """``read_parquet`` of the files at ``paths`` (with ``filename``, each row's file in a column of that name)."""
    return f"read_parquet([{', '.join(literal(path) for path in paths)}]{', filename = true' if filename else ''})"


def table_sql(name: str, folder: str = "normalized") -> str:
    return (SQL_DIR / folder / f"{name}.sql").read_text()


def build_table(connection: duckdb.DuckDBPyConnection, declared: TableSchema, sql: str, catalog: str = "") -> int:
    """Create ``declared`` from ``sql``. Rows keep the order of ``latest_records`` (by ARN, then list
    position), so equal inputs give equal tables without sorting each one."""
    check_columns(connection, declared, sql)
    target = qualified(declared.name, catalog)
    run(connection, f"drop table if exists {target}")
    run(connection, declared.duckdb_ddl(enforce_not_null=False).replace(f'"{declared.name}"', target, 1))
    # The declared descriptions travel with the table, so BI tools and `describe` show them.
    run(connection, f"comment on table {target} is {literal(declared.description)}")
    for column in declared.columns:
        run(connection, f"comment on column {target}.{identifier(column.name)} is {literal(column.description)}")
    insert_rows(connection, declared, sql, catalog)
    return int(run(connection, f"select count(*) from {target}")[0][0])


def check_columns(connection: duckdb.DuckDBPyConnection, declared: TableSchema, sql: str) -> None:
    """Refuse ``sql`` unless it produces exactly the declared columns, in order."""
    produced = [row[0] for row in run(connection, f"describe ({sql})")]
    if produced != declared.column_names:
        raise SchemaMismatch(
            f"{declared.name}: the SQL produces columns {produced} but schemas/ declares {declared.column_names}"
        )


def typed_rows(declared: TableSchema, sql: str) -> str:
    """The rows of ``sql`` cast to ``declared``'s column types."""
    casts = ", ".join(f'cast("{c.name}" as {c.duckdb_type}) as "{c.name}"' for c in declared.columns)
    return f"select {casts} from ({sql})"


def insert_rows(connection: duckdb.DuckDBPyConnection, declared: TableSchema, sql: str, catalog: str = "") -> None:
    """Append the rows of ``sql`` to the existing table ``declared``, cast to the declared types."""
    run(connection, f"insert into {qualified(declared.name, catalog)} {typed_rows(declared, sql)}")


def stage_replacement_rows(
    connection: duckdb.DuckDBPyConnection, declared: TableSchema, sql: str, catalog: str = ""
) -> str:
    """The rows ``sql`` makes for the jobs an incremental build replaces in ``declared``, typed, in the
    staging-only table :func:`replacement_rows` names (returned, qualified). They stay there until
    publication, which writes the Parquet files of the weeks they fall in from them rather than from the
    whole table."""
    new_rows = qualified(replacement_rows(declared.name), catalog)
    run(connection, f"create or replace table {new_rows} as {typed_rows(declared, sql)}")
    return new_rows


def replace_rows(
    connection: duckdb.DuckDBPyConnection,
    declared: TableSchema,
    jobs: str,
    catalog: str = "",
    keep_previous: bool = False,
) -> None:
    """Replace the rows of the jobs in the relation ``jobs`` (ARNs) with the staged replacement rows (see
    :func:`stage_replacement_rows`): the incremental build of a per-job table. With ``keep_previous``, the
    rows replaced are kept in the staging-only table :func:`previous_rows` names."""
    target = qualified(declared.name, catalog)
    of_changed = of_changed_jobs(connection, declared, jobs, catalog)
    if keep_previous:
        previous = qualified(previous_rows(declared.name), catalog)
        run(connection, f"create or replace table {previous} as select * from {target} where {of_changed}")
    run(connection, f"delete from {target} where {of_changed}")
    run(connection, f"insert into {target} select * from {qualified(replacement_rows(declared.name), catalog)}")
    replaced = qualified(REPLACED_TABLES, catalog)
    run(connection, f"create table if not exists {replaced} (table_name varchar)")
    run(connection, f"insert into {replaced} values ({literal(declared.name)})")


def qualified(name: str, catalog: str = "") -> str:
    """``name`` in ``catalog`` (default: the connection's own), quoted."""
    return f"{identifier(catalog)}.{identifier(name)}" if catalog else identifier(name)


# -- contracts: what a table's declaration in schemas/ promises, checked on every normalized table and model

# Staging only: the jobs an incremental build replaced, and the tables in which it replaced only their rows
# (the models are built whole when the cost inputs changed). A check of such a table looks at the
# changed jobs' rows alone; every other job's rows are those of the published version, checked when it was built.
CHANGED_JOBS = "_changed_jobs"
REPLACED_TABLES = "_tables_replaced_by_job"
# Staging only: for each table rebuilt per job, the lowest rowid a changed job's row can have (see
# pipelines.warehouse.segments); the rows before it are read by none of the build's deletes and checks.
CHANGED_ROWS_FROM = "_changed_rows_from"


def of_jobs(declared: TableSchema, jobs: str) -> str:
    """SQL condition: a row of ``declared`` belongs to a job in the relation ``jobs`` (ARNs); regardless of case
    in a by-job model, where an ARN may come from the bill."""
    if declared.per_job:
        return f"training_job_arn in (select training_job_arn from {jobs})"
    return f"lower(training_job_arn) in (select lower(training_job_arn) from {jobs})"


def changed_rows_from(connection: duckdb.DuckDBPyConnection, name: str, catalog: str = "") -> int:
    """The lowest rowid a changed job's row can have in table ``name``: 0 (read it all) unless the build
    worked it out (:mod:`pipelines.warehouse.segments`)."""
    try:
        found = run(
            connection,
            f"select first_rowid from {qualified(CHANGED_ROWS_FROM, catalog)} where table_name = {literal(name)}",
        )
    except duckdb.CatalogException:
        return 0
    return int(found[0][0]) if found else 0


def of_changed_jobs(connection: duckdb.DuckDBPyConnection, declared: TableSchema, jobs: str, catalog: str = "") -> str:
    """SQL condition on a row of the table ``declared``: it belongs to a job in the relation ``jobs``, looked
    for only from the rowid where such a job's rows can start, which spares DuckDB reading the row groups
    before it (for a night's changes, most of the table)."""
    first = changed_rows_from(connection, declared.name, catalog)
    return (f"rowid >= {first} and " if first else "") + of_jobs(declared, jobs)


def changed_jobs_in_jobs(connection: duckdb.DuckDBPyConnection) -> str:
    """A query: the ARNs of the changed jobs that have a row in ``jobs``."""
    return f"select training_job_arn from jobs where {of_changed_jobs(connection, table('jobs'), CHANGED_JOBS)}"


def replacement_rows(name: str) -> str:
    """Staging only: the table holding the rows an incremental build put into table ``name``."""
    return f"_replacement_rows_{name}"


def previous_rows(name: str) -> str:
    """Staging only: the table holding the rows an incremental build took out of table ``name``."""
    return f"_previous_rows_{name}"


def has_table(connection: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the connection holds a table ``name`` (a staging-only one the build may have made). Asked by
    trying to read it: a look-up in DuckDB's catalog views costs ten times as much in a large database, and
    the checks ask often."""
    try:
        run(connection, f"select 1 from {identifier(name)} limit 0")
    except duckdb.CatalogException:
        return False
    return True


def temp_table_once(connection: duckdb.DuckDBPyConnection, name: str, sql: str) -> str:
    """The temporary table ``name`` holding the rows of ``sql``, made the first time a connection asks for it
    (checks of several tables share it); returns its quoted name."""
    if not has_table(connection, name):
        run(connection, f"create temp table {identifier(name)} as {sql}")
    return identifier(name)


def is_incremental(connection: duckdb.DuckDBPyConnection) -> bool:
    """Whether the connection holds an incremental build (a staged list of changed jobs)."""
    return has_table(connection, CHANGED_JOBS)


def replaced_by_job(connection: duckdb.DuckDBPyConnection) -> set[str]:
    """The tables in which an incremental build replaced only the changed jobs' rows."""
    if not has_table(connection, REPLACED_TABLES):
        return set()
    return {name for (name,) in run(connection, f"select table_name from {REPLACED_TABLES}")}


def only_changed_rows(connection: duckdb.DuckDBPyConnection, table: TableSchema) -> bool:
    """Whether the checks of ``table`` read only the changed jobs' rows (see :func:`rows_to_check`)."""
    return table.rebuilt_by_job and table.name in replaced_by_job(connection)


def rows_to_check(connection: duckdb.DuckDBPyConnection, table: TableSchema) -> str:
    """The relation a check of ``table`` reads: the whole table, or the changed jobs' rows where an incremental
    build replaced only those (a key starts with the job, so a duplicate or a null can only be there). The
    changed rows' key and required columns are picked out of the table once per connection, into a temporary
    table that every check of it reads: one scan of a large table, not one per check."""
    if not only_changed_rows(connection, table):
        return identifier(table.name)
    wanted = ["training_job_arn", *table.key, *(c.name for c in table.columns if not c.nullable)]
    columns = ", ".join(map(identifier, dict.fromkeys(wanted)))
    of_changed = of_changed_jobs(connection, table, CHANGED_JOBS)
    changed_rows = f"select {columns} from {identifier(table.name)} where {of_changed}"
    return temp_table_once(connection, f"_changed_rows_{table.name}", changed_rows)


def unique_key(connection: duckdb.DuckDBPyConnection, table: TableSchema) -> CheckOutcome:
    """no two rows share the declared key."""
    # Rows beyond the first of each key, counted with count(distinct): on 52M transitions (10M jobs) grouping
    # by the key ran out of DuckDB's 1 GB where the distinct count did not. row() keeps a null part of a key
    # a value like any other, as a group would.
    key = ", ".join(map(identifier, table.key))
    surplus = f"select count(*) - count(distinct row({key})) from {rows_to_check(connection, table)}"
    duplicates = run(connection, surplus)[0][0]
    return CheckOutcome(
        "unique_key",
        duplicates == 0,
        f"{duplicates} rows repeat a key of ({', '.join(table.key)})" if duplicates else "key is unique",
        {"duplicate_keys": int(duplicates)},
    )


def required_columns_not_null(connection: duckdb.DuckDBPyConnection, table: TableSchema) -> CheckOutcome:
    """no column declared not nullable holds a null."""
    required = [c.name for c in table.columns if not c.nullable]
    counts = run(
        connection,
        "select "
        + ", ".join(f"count(*) filter ({identifier(c)} is null)" for c in required)
        + f" from {rows_to_check(connection, table)}",
    )[0]
    nulls = {column: int(n) for column, n in zip(required, counts, strict=True) if n}
    return CheckOutcome(
        "required_columns_not_null",
        not nulls,
        f"nulls in required columns: {nulls}" if nulls else f"no nulls in {len(required)} required columns",
        {"null_counts": nulls},
    )


CONTRACT_CHECKS = (unique_key, required_columns_not_null)
