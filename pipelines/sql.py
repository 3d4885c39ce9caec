"""Running SQL in DuckDB and building schema-checked tables: the one place for quoting and for
``CREATE TABLE`` from a declaration, shared by normalization, the models and the warehouse build.

``sql/`` holds one ``select`` per table (``sql/normalized/``) or model (``sql/models/``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from pipelines.resources import resource_dir
from pipelines.schemas import TableSchema

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


def table_sql(name: str, folder: str = "normalized") -> str:
    return (SQL_DIR / folder / f"{name}.sql").read_text()


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
    # The declared descriptions travel with the table, so BI tools and `describe` show them.
    run(connection, f"comment on table {target} is {literal(declared.description)}")
    for column in declared.columns:
        run(connection, f"comment on column {target}.{identifier(column.name)} is {literal(column.description)}")
    casts = ", ".join(f'cast("{c.name}" as {c.duckdb_type}) as "{c.name}"' for c in declared.columns)
    run(connection, f"insert into {target} select {casts} from ({sql})")
    return int(run(connection, f"select count(*) from {target}")[0][0])


# -- contracts: what a table's declaration in schemas/ promises, checked on every normalized table and model


def unique_key(connection: duckdb.DuckDBPyConnection, table: TableSchema) -> CheckOutcome:
    """no two rows share the declared key."""
    key = ", ".join(map(identifier, table.key))
    duplicates = run(
        connection,
        f"select count(*) from (select {key} from {identifier(table.name)} group by {key} having count(*) > 1)",
    )[0][0]
    return CheckOutcome(
        "unique_key",
        duplicates == 0,
        f"{duplicates} duplicate values of ({', '.join(table.key)})" if duplicates else "key is unique",
        {"duplicate_keys": int(duplicates)},
    )


def required_columns_not_null(connection: duckdb.DuckDBPyConnection, table: TableSchema) -> CheckOutcome:
    """no column declared not nullable holds a null."""
    required = [c.name for c in table.columns if not c.nullable]
    counts = run(
        connection,
        "select "
        + ", ".join(f"count(*) filter ({identifier(c)} is null)" for c in required)
        + f" from {identifier(table.name)}",
    )[0]
    nulls = {column: int(n) for column, n in zip(required, counts, strict=True) if n}
    return CheckOutcome(
        "required_columns_not_null",
        not nulls,
        f"nulls in required columns: {nulls}" if nulls else f"no nulls in {len(required)} required columns",
        {"null_counts": nulls},
    )


CONTRACT_CHECKS = (unique_key, required_columns_not_null)
