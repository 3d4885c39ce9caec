"""Athena and Trino table definitions for the published Parquet, generated from schemas/: parsed by a real
SQL parser (sqlglot), checked against what publication really wrote, and registered in Glue over HTTP."""

from __future__ import annotations

from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from sqlglot import exp

from pipelines.cli import EXIT_CONFIG, EXIT_OK, main
from pipelines.demo.endpoint import LocalSageMaker
from pipelines.warehouse.ddl import ddl, published_tables

LOCATION = "s3://analytics-bucket/sagemaker"
# What each engine's type must be for each Arrow type publication writes.
EXPECTED = {
    "athena": {"string": "STRING", "int64": "BIGINT", "double": "DOUBLE", "bool": "BOOLEAN", "date32[day]": "DATE"},
    "trino": {"string": "VARCHAR", "int64": "BIGINT", "double": "DOUBLE", "bool": "BOOLEAN", "date32[day]": "DATE"},
}


def parsed(statement: str, dialect: str) -> exp.Create:
    tree = sqlglot.parse_one(statement, read=dialect)
    assert isinstance(tree, exp.Create) and tree.kind == "TABLE"
    return tree


@pytest.mark.parametrize("dialect", ["athena", "trino"])
def test_every_published_table_is_defined_as_publication_wrote_it(demo_warehouse: Path, dialect: str) -> None:
    container, *statements = ddl(dialect, LOCATION)
    assert sqlglot.parse_one(container, read=dialect).kind in ("DATABASE", "SCHEMA")  # made before its tables
    published = {folder.name: min(folder.glob("*.parquet")) for folder in (demo_warehouse / "parquet").iterdir()}
    assert len(statements) == len(published) == len(published_tables())
    for statement in statements:
        tree = parsed(statement, dialect)
        name = tree.this.this.name
        columns = {c.name: c.args["kind"] for c in tree.find_all(exp.ColumnDef)}
        written = pq.read_schema(published[name])
        assert list(columns) == written.names, name  # every column, in order
        quote = "`" if dialect == "athena" else '"'
        for field in written:
            assert columns[field.name] is not None, (name, field.name)  # the parser found its type
            # The type as written, in the dialect's own spelling (Athena's DDL is Hive's: STRING, not VARCHAR).
            [declared_type] = [
                line.split()[1] for line in statement.splitlines() if line.startswith(f"  {quote}{field.name}{quote} ")
            ]
            if pa.types.is_timestamp(field.type):
                assert declared_type == ("TIMESTAMP" if dialect == "athena" else "TIMESTAMP(3)"), (name, field.name)
            else:
                assert declared_type == EXPECTED[dialect][str(field.type)], (name, field.name, declared_type)
        assert f"{LOCATION}/{name}/" in statement


def test_ddl_command_prints_statements_and_refuses_a_location_that_is_not_s3(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["ddl", "--dialect", "trino", "--location", LOCATION, "--database", "ml"]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.count('CREATE TABLE IF NOT EXISTS "ml".') == len(published_tables())
    assert main(["ddl", "--dialect", "athena", "--location", "./warehouse/parquet"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "is not an S3 URI" in err and "Traceback" not in err


def test_tables_are_registered_in_glue(aws: LocalSageMaker, capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(2):  # the second run updates what the first created
        assert main(["ddl", "--dialect", "athena", "--location", LOCATION, "--glue-database", "ml_costs"]) == EXIT_OK
    assert "registered" in capsys.readouterr().err
    glue = boto3.client("glue")
    tables = {
        t["Name"]: t
        for page in glue.get_paginator("get_tables").paginate(DatabaseName="ml_costs")
        for t in page["TableList"]
    }
    assert set(tables) == {t.name for t in published_tables()}
    reconciliation = tables["cost_reconciliation"]["StorageDescriptor"]
    assert reconciliation["Location"] == f"{LOCATION}/cost_reconciliation/"
    assert [c["Name"] for c in reconciliation["Columns"]][:2] == ["training_job_arn", "account_id"]
    assert main(["ddl", "--dialect", "athena", "--location", LOCATION, "--glue-database", "Bad-Name"]) == EXIT_CONFIG
