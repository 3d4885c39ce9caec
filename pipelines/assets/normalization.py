"""Normalized tables: flattened from the raw layer into the staging database, and checked."""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSpec,
    MaterializeResult,
    multi_asset,
)

from pipelines.assets.metadata import column_schema
from pipelines.assets.resources import WAREHOUSE_WRITER_POOL, WarehouseConfig
from pipelines.normalization import checks
from pipelines.normalization.flatten import normalized_tables
from pipelines.storage.raw import RAW_JOBS
from pipelines.storage.warehouse import remove_abandoned_staging, stage_normalized_tables

TABLES = normalized_tables()
TABLE_NAMES = [t.name for t in TABLES]


def _check_specs() -> list[AssetCheckSpec]:
    specs = [
        AssetCheckSpec(name, asset=declared.name, blocking=True)
        for declared in TABLES
        for name in checks.check_names(declared)
    ]
    specs.append(
        AssetCheckSpec(
            "unknown_members",
            asset=checks.JOBS,
            blocking=False,
            description="Members AWS returned that no table types yet (kept in raw).",
        )
    )
    return specs


@multi_asset(
    specs=[
        AssetSpec(
            key=declared.name,
            description=declared.description,
            deps=[RAW_JOBS],
            group_name="tables",
            kinds={"duckdb", "parquet"},
            metadata={"dagster/column_schema": column_schema(declared.name)},
        )
        for declared in TABLES
    ],
    check_specs=_check_specs(),
    pool=WAREHOUSE_WRITER_POOL,
)
def normalized(context: AssetExecutionContext, warehouse_config: WarehouseConfig):  # type: ignore[no-untyped-def]
    """Flatten the latest raw record of every job into the normalized tables, in a staging database."""
    settings = warehouse_config.settings()
    remove_abandoned_staging(settings.warehouse, context.run_id)
    staging, counts = stage_normalized_tables(settings.warehouse, context.run_id)
    context.log.info(f"staged {counts['jobs']} jobs into {len(counts)} tables at {staging.database}")
    with staging.connect(read_only=True) as connection:
        for declared in TABLES:
            yield MaterializeResult(asset_key=declared.name, metadata={"dagster/row_count": counts[declared.name]})
            for outcome in checks.table_checks(connection, declared):
                yield check_result(declared.name, outcome)
        yield check_result(checks.JOBS, checks.unknown_members(connection), AssetCheckSeverity.WARN)


def check_result(
    asset: str, outcome: checks.CheckOutcome, severity: AssetCheckSeverity = AssetCheckSeverity.ERROR
) -> AssetCheckResult:
    return AssetCheckResult(
        asset_key=asset,
        check_name=outcome.name,
        passed=outcome.passed,
        severity=severity,
        description=outcome.description,
        metadata=outcome.metadata,
    )
