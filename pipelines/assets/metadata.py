"""Dagster metadata derived from ``schemas/``, and check outcomes as Dagster asset check results."""

from __future__ import annotations

from dagster import AssetCheckResult, AssetCheckSeverity, TableColumn, TableColumnConstraints
from dagster import TableSchema as DagsterTableSchema

from pipelines.schemas import table
from pipelines.sql import CheckOutcome


def column_schema(table_name: str) -> DagsterTableSchema:
    """The declared columns of ``table_name`` as Dagster's column schema."""
    declared = table(table_name)
    return DagsterTableSchema(
        columns=[
            TableColumn(
                name=column.name,
                type=column.type,
                description=column.description,
                constraints=TableColumnConstraints(nullable=column.nullable),
            )
            for column in declared.columns
        ]
    )


def check_result(
    asset: str, outcome: CheckOutcome, severity: AssetCheckSeverity = AssetCheckSeverity.ERROR
) -> AssetCheckResult:
    return AssetCheckResult(
        asset_key=asset,
        check_name=outcome.name,
        passed=outcome.passed,
        severity=severity,
        description=outcome.description,
        metadata=outcome.metadata,
    )
