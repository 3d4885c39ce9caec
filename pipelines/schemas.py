"""Table declarations from ``schemas/``: the single source of truth for every table's columns and types.

Each YAML file declares one table (name, description, key, columns with type, nullability and
description). From it come the Arrow schema the code writes, the DuckDB DDL, the column metadata shown
in Dagster and the README's data dictionary.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pyarrow as pa
import yaml

from pipelines.resources import resource_dir

SCHEMAS_DIR = resource_dir("schemas")

_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
}
_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "int64": "BIGINT",
    "float64": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
    "date": "DATE",
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool
    description: str
    added_later: bool = False  # files written before the column existed lack it; readers fill in nulls

    @property
    def duckdb_type(self) -> str:
        return _DUCKDB_TYPES[self.type]


@dataclass(frozen=True)
class TableSchema:
    name: str
    description: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    layer: str
    # Where a normalized table's rows come from in the raw JSON: {one_per_job: true}, {lists: [paths]}
    # or {maps: [paths]}. The row-count check recounts them there, independently of the SQL.
    rows_from: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Each row belongs to one job and is computed from that job's rows alone (every normalized table, and
    # the models declared ``per_job: true``): an incremental build replaces only the changed jobs' rows.
    per_job: bool = False
    # A model whose rows of a job come from that job's rows and the cost inputs alone, and whose other rows
    # (of jobs only the bill knows, or of no job) from the cost inputs alone (``by_job: true``): an
    # incremental build with the same cost inputs replaces the changed jobs' rows, matching ARNs regardless
    # of case as the bill's resource IDs need. Unlike a per-job table, not every row has a job.
    by_job: bool = False
    # A rollup whose rows for one value of these columns (``partitioned_by: [month]``) come from its inputs'
    # rows with that value alone: an incremental build with the same cost inputs rebuilds only the values
    # that the changed jobs' rows held before the build or hold now.
    partitioned_by: tuple[str, ...] = ()

    @property
    def rebuilt_by_job(self) -> bool:
        """Whether an incremental build replaces only the changed jobs' rows of this table."""
        return self.per_job or self.by_job

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]

    def arrow_schema(self) -> pa.Schema:
        return pa.schema(
            [pa.field(c.name, _ARROW_TYPES[c.type], nullable=c.nullable) for c in self.columns],
            metadata={"table": self.name},
        )

    def duckdb_ddl(self, enforce_not_null: bool = True) -> str:
        """CREATE TABLE for this table. Without ``enforce_not_null`` nullability is left to the asset
        checks, which report a violation with counts instead of aborting the load."""
        columns = ",\n  ".join(
            f'"{c.name}" {c.duckdb_type}{" NOT NULL" if enforce_not_null and not c.nullable else ""}'
            for c in self.columns
        )
        return f'CREATE TABLE "{self.name}" (\n  {columns}\n)'


_TABLE_KEYS = {"name", "description", "key", "columns", "rows_from", "per_job", "by_job", "partitioned_by"}
_COLUMN_KEYS = {"name", "type", "nullable", "description", "added_later"}


# libyaml's parser when PyYAML was built with it (its wheels are): the same documents, several times faster.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse(path: Path, layer: str) -> TableSchema:
    document = yaml.load(path.read_text(), Loader=_YAML_LOADER)
    # An unquoted comma inside a {flow: mapping} ends the value and turns the rest into a key: a
    # description cut at its first comma shows up here as an unknown key.
    unknown = sorted(set(document) - _TABLE_KEYS) + sorted(
        f"{c.get('name')}: {key!r}" for c in document["columns"] for key in set(c) - _COLUMN_KEYS
    )
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}; quote a description that contains a comma")
    columns = tuple(
        Column(
            name=c["name"],
            type=c["type"],
            nullable=bool(c.get("nullable", True)),
            description=" ".join(str(c.get("description", "")).split()),
            added_later=bool(c.get("added_later", False)),
        )
        for c in document["columns"]
    )
    unknown = [c.type for c in columns if c.type not in _ARROW_TYPES]
    if unknown:
        raise ValueError(f"{path}: unknown column types {unknown}; use one of {sorted(_ARROW_TYPES)}")
    return TableSchema(
        name=document["name"],
        description=" ".join(str(document.get("description", "")).split()),
        key=tuple(document.get("key", ())),
        columns=columns,
        layer=layer,
        per_job=layer == "tables" or bool(document.get("per_job", False)),
        by_job=bool(document.get("by_job", False)),
        partitioned_by=tuple(document.get("partitioned_by", ())),
        rows_from=tuple(
            (kind, (paths,) if isinstance(paths, bool | str) else tuple(paths))  # type: ignore[misc]
            for kind, paths in (document.get("rows_from") or {}).items()
        ),
    )


@cache
def all_tables() -> dict[str, TableSchema]:
    """Every declared table by name; the layer is the sub-folder of ``schemas/`` it sits in."""
    tables = {}
    for path in sorted(SCHEMAS_DIR.glob("*/*.yaml")):
        table = _parse(path, layer=path.parent.name)
        tables[table.name] = table
    return tables


def table(name: str) -> TableSchema:
    return all_tables()[name]
