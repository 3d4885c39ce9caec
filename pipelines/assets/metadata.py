"""Dagster metadata derived from ``schemas/``."""

from __future__ import annotations

from dagster import TableColumn, TableColumnConstraints
from dagster import TableSchema as DagsterTableSchema

from pipelines.schemas import table


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
