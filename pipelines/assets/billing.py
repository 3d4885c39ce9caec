"""The bill: a CUR 2.0 export's SageMaker training line items, loaded into the raw layer."""

from dagster import AssetExecutionContext, MaterializeResult, asset

from pipelines import progress
from pipelines.assets.resources import WAREHOUSE_WRITER_POOL, WarehouseConfig
from pipelines.billing.ingest import ingest_exports
from pipelines.storage.locks import BUILD, writer

RAW_BILLING_ASSET = "raw_billing_line_items"


@asset(
    name=RAW_BILLING_ASSET,
    group_name="raw",
    kinds={"parquet", "s3"},
    description="The SageMaker training line items of the Cost and Usage Report 2.0 exports in billing.exports "
    "(local folders or s3:// prefixes), one raw Parquet file per export and billing period; a period is read "
    "again only when AWS re-delivered it.",
    pool=WAREHOUSE_WRITER_POOL,
)
def raw_billing_line_items(context: AssetExecutionContext, warehouse_config: WarehouseConfig) -> MaterializeResult:
    settings = warehouse_config.settings()
    if not settings.billing.exports:
        context.log.info("no billing export configured (billing.exports): estimates only, nothing to reconcile")
    progress.stage("build", "loading the bill")
    with writer(settings.warehouse, BUILD, context.log.info):
        report = ingest_exports(settings.warehouse, settings.billing.exports)
    if settings.billing.exports:
        context.log.info(
            f"bill: {len(report.periods_loaded)} billing periods loaded ({report.rows_kept:,} training line items of "
            f"{report.rows_read:,}), {len(report.periods_unchanged)} unchanged"
        )
    return MaterializeResult(
        metadata={
            "exports": len(settings.billing.exports),
            "periods_loaded": len(report.periods_loaded),
            "periods_unchanged": len(report.periods_unchanged),
            "line_items_read": report.rows_read,
            "training_line_items_kept": report.rows_kept,
        }
    )
