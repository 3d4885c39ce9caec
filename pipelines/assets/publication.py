"""Publication: the staged, checked warehouse becomes current in one step."""

from datetime import timedelta

from dagster import AssetExecutionContext, AssetKey, FreshnessPolicy, MaterializeResult, MetadataValue, asset

from pipelines.assets.models import REFERENCE_AND_MODEL_NAMES
from pipelines.assets.normalization import TABLE_NAMES
from pipelines.assets.resources import WAREHOUSE_WRITER_POOL, WarehouseConfig
from pipelines.report import report_preview, write_report
from pipelines.storage.layout import DATABASE, PARQUET
from pipelines.storage.locks import BUILD, writer
from pipelines.warehouse.build import Staging
from pipelines.warehouse.publication import publish

PUBLISHED_TABLES = [*TABLE_NAMES, *REFERENCE_AND_MODEL_NAMES]


@asset(
    deps=[AssetKey(name) for name in PUBLISHED_TABLES],
    group_name="warehouse",
    kinds={"duckdb", "parquet"},
    description="Makes the staged tables and models current, only after every blocking check passed: the "
    "DuckDB file and the Parquet tables become current together, in one atomic step.",
    pool=WAREHOUSE_WRITER_POOL,
    # Nightly runs keep it under a day old; past 36 hours a night was missed and Dagster flags it.
    freshness_policy=FreshnessPolicy.time_window(fail_window=timedelta(hours=36)),
)
def published_warehouse(context: AssetExecutionContext, warehouse_config: WarehouseConfig) -> MaterializeResult:
    settings = warehouse_config.settings()
    with writer(settings.warehouse, BUILD, context.log.info):
        paths = publish(Staging(settings.warehouse, context.run_id), PUBLISHED_TABLES)
    database = settings.warehouse / DATABASE
    context.log.info(f"published {len(paths)} tables: {database} and {settings.warehouse / PARQUET}")
    return MaterializeResult(metadata={"database": str(database.resolve()), "tables": len(paths)})


@asset(
    deps=[published_warehouse],
    group_name="warehouse",
    kinds={"html"},
    description="The cost report: one self-contained HTML file (works offline) with spend by day and team, "
    "month over month, the top jobs, waste, spot savings, accelerator-hours, unpriced usage and durations, "
    "every figure read from the published models.",
)
def cost_report(context: AssetExecutionContext, warehouse_config: WarehouseConfig) -> MaterializeResult:
    warehouse = warehouse_config.settings().warehouse
    report = write_report(warehouse)
    context.log.info(f"wrote the cost report: {report}")
    totals, preview = report_preview(warehouse)
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(str(report.resolve())),
            "preview": MetadataValue.md(preview),
            # Numbers: Dagster plots them across builds, a history of the spend in the UI.
            **{name: MetadataValue.float(round(value, 2)) for name, value in totals.items()},
        }
    )
