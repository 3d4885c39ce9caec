"""Publication: the staged, checked warehouse becomes current in one step."""

from datetime import timedelta

from dagster import (
    AssetCheckEvaluation,
    AssetExecutionContext,
    AssetKey,
    DagsterEventType,
    FreshnessPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)

from pipelines import progress
from pipelines.assets.models import REFERENCE_AND_MODEL_NAMES
from pipelines.assets.normalization import TABLE_NAMES
from pipelines.assets.resources import WAREHOUSE_WRITER_POOL, WarehouseConfig
from pipelines.report import report_preview, write_report
from pipelines.storage.layout import DATABASE, PARQUET
from pipelines.storage.locks import BUILD, writer
from pipelines.warehouse.build import Staging
from pipelines.warehouse.history import BUILD_HISTORY, stage_build_history
from pipelines.warehouse.publication import publish

# Publication writes build_history itself (this build's row appended to the published ones).
PUBLISHED_TABLES = [*TABLE_NAMES, *REFERENCE_AND_MODEL_NAMES, BUILD_HISTORY]


def failed_checks_of_this_run(context: AssetExecutionContext) -> list[str]:
    """The checks that failed earlier in this run (only warnings can have: a failed blocking check stops the
    run before publication), as 'asset.check: reason'."""
    records = context.instance.get_records_for_run(
        context.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    failed = []
    for record in records:
        event = record.event_log_entry.dagster_event
        evaluation = event.event_specific_data if event else None
        if isinstance(evaluation, AssetCheckEvaluation) and not evaluation.passed:
            reason = evaluation.description or ""
            failed.append(f"{evaluation.asset_key.to_user_string()}.{evaluation.check_name}: {reason}".strip())
    return failed


@asset(
    deps=[AssetKey(name) for name in PUBLISHED_TABLES if name != BUILD_HISTORY],
    group_name="warehouse",
    kinds={"duckdb", "parquet"},
    description="Makes the staged tables and models current, only after every blocking check passed: the "
    "DuckDB file and the Parquet tables become current together, in one atomic step, with build_history (what "
    "this build changed and which checks warned) appended.",
    pool=WAREHOUSE_WRITER_POOL,
    # Nightly runs keep it under a day old; past 36 hours a night was missed and Dagster flags it.
    freshness_policy=FreshnessPolicy.time_window(fail_window=timedelta(hours=36)),
)
def published_warehouse(context: AssetExecutionContext, warehouse_config: WarehouseConfig) -> MaterializeResult:
    settings = warehouse_config.settings()
    staging = Staging(settings.warehouse, context.run_id)
    progress.stage("build", "checking and publishing")
    with writer(settings.warehouse, BUILD, context.log.info):
        stage_build_history(staging, failed_checks_of_this_run(context))
        paths = publish(staging, PUBLISHED_TABLES)
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
    progress.stage("build", "writing the cost report")
    with writer(warehouse, BUILD, context.log.info):  # for an s3:// warehouse, the report is sent there too
        report = write_report(warehouse)
    progress.finish("build", "published")
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
