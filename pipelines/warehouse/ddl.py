"""Table definitions for engines that read the published Parquet where it is copied on S3 (Athena, Trino's
Hive connector, the AWS Glue Data Catalog), generated from ``schemas/`` like everything else.

The published Parquet is one folder per table (``<warehouse>/parquet/<table>/*.parquet``); copied to
``s3://bucket/prefix/`` (``aws s3 sync warehouse/parquet s3://bucket/prefix``), table ``t`` lives under
``s3://bucket/prefix/t/``.
"""

from __future__ import annotations

import contextlib
from typing import Any

from pipelines.config import EXPORT_URI, ConfigError
from pipelines.models.build import REFERENCE_TABLES, model_names
from pipelines.normalization.flatten import normalized_tables
from pipelines.schemas import TableSchema, table
from pipelines.warehouse.history import BUILD_HISTORY

DIALECTS = ("athena", "trino")
_TYPES = {
    # Hive's names serve Athena and Glue; Trino's Hive connector reads Parquet timestamps as timestamp(3).
    "athena": {
        "string": "STRING",
        "int64": "BIGINT",
        "float64": "DOUBLE",
        "bool": "BOOLEAN",
        "timestamp": "TIMESTAMP",
        "date": "DATE",
    },
    "trino": {
        "string": "VARCHAR",
        "int64": "BIGINT",
        "float64": "DOUBLE",
        "bool": "BOOLEAN",
        "timestamp": "TIMESTAMP(3)",
        "date": "DATE",
    },
}


def published_tables() -> list[TableSchema]:
    """Every table publication writes, in the order a reader meets them: tables, reference, models."""
    names = (*REFERENCE_TABLES, *model_names(), BUILD_HISTORY)
    return [*normalized_tables(), *(table(name) for name in names)]


def parquet_location(location: str) -> str:
    """``location`` as the S3 prefix that holds the table folders, or a ConfigError."""
    if not EXPORT_URI.match(location):
        raise ConfigError(
            f"--location {location!r} is not an S3 URI such as s3://my-bucket/sagemaker-warehouse: Athena and Trino "
            "read the published Parquet where you copy it (aws s3 sync warehouse/parquet s3://...)."
        )
    return location.rstrip("/")


def _comment(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def create_statement(declared: TableSchema, dialect: str, location: str, database: str) -> str:
    types = _TYPES[dialect]
    where = f"{location}/{declared.name}/"
    if dialect == "athena":
        columns = ",\n".join(
            f"  `{c.name}` {types[c.type]} COMMENT {_comment(c.description)}" for c in declared.columns
        )
        return (
            f"CREATE EXTERNAL TABLE IF NOT EXISTS `{database}`.`{declared.name}` (\n{columns}\n)\n"
            f"COMMENT {_comment(declared.description)}\n"
            f"STORED AS PARQUET\nLOCATION '{where}'\nTBLPROPERTIES ('parquet.compression' = 'ZSTD')"
        )
    columns = ",\n".join(f'  "{c.name}" {types[c.type]} COMMENT {_sql_string(c.description)}' for c in declared.columns)
    return (
        f'CREATE TABLE IF NOT EXISTS "{database}"."{declared.name}" (\n{columns}\n)\n'
        f"COMMENT {_sql_string(declared.description)}\n"
        f"WITH (external_location = '{where}', format = 'PARQUET')"
    )


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def ddl(dialect: str, location: str, database: str = "sagemaker_warehouse") -> list[str]:
    """The database (Athena) or schema (Trino), then one ``CREATE`` statement per published table, for
    ``dialect`` (athena or trino)."""
    if dialect not in DIALECTS:
        raise ConfigError(f"--dialect must be one of {', '.join(DIALECTS)}, not {dialect!r}.")
    prefix = parquet_location(location)
    container = (
        f"CREATE DATABASE IF NOT EXISTS `{database}`"
        if dialect == "athena"
        else (f'CREATE SCHEMA IF NOT EXISTS "{database}"')
    )
    return [container, *(create_statement(declared, dialect, prefix, database) for declared in published_tables())]


def glue_table_input(declared: TableSchema, location: str) -> dict[str, Any]:
    """The AWS Glue ``TableInput`` of a published table: Hive types, Parquet SerDe, its S3 folder."""
    types = {k: v.lower() for k, v in _TYPES["athena"].items()}
    return {
        "Name": declared.name,
        "Description": declared.description[:2048],
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE"},
        "StorageDescriptor": {
            "Columns": [
                {"Name": c.name.lower(), "Type": types[c.type], "Comment": c.description[:255]}
                for c in declared.columns
            ],
            "Location": f"{location}/{declared.name}/",
            "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
            "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
            "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
        },
    }


def register_in_glue(glue: Any, database: str, location: str) -> list[str]:
    """Create (or update) every published table in the Glue database ``database``, creating the database
    if needed, with the given boto3 Glue client. Returns the table names."""
    prefix = parquet_location(location)
    with contextlib.suppress(glue.exceptions.AlreadyExistsException):
        glue.create_database(DatabaseInput={"Name": database, "Description": "SageMaker training-job warehouse"})
    names = []
    for declared in published_tables():
        table_input = glue_table_input(declared, prefix)
        try:
            glue.create_table(DatabaseName=database, TableInput=table_input)
        except glue.exceptions.AlreadyExistsException:
            glue.update_table(DatabaseName=database, TableInput=table_input)
        names.append(declared.name)
    return names
