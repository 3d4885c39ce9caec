"""Raw compaction: the raw layer's small files merged month by month, on its own schedule."""

from contextlib import AbstractContextManager

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, asset

from pipelines.assets.resources import WAREHOUSE_WRITER_POOL, WarehouseConfig
from pipelines.storage.locks import BUILD, extraction_lock_name, writer
from pipelines.storage.raw import RAW_JOBS
from pipelines.warehouse.compaction import compact_raw


@asset(
    deps=[AssetKey(RAW_JOBS)],
    group_name="raw",
    kinds={"parquet"},
    description="The raw layer compacted: per table, account, region and month, its small files merged into "
    "one (verified row for row before the small files are removed), so that reading it stays a few files "
    "per account and region after years of nights. Job files are merged once the published version has "
    "read them, so the next build stays incremental.",
    pool=WAREHOUSE_WRITER_POOL,
)
def compacted_raw_layer(context: AssetExecutionContext, warehouse_config: WarehouseConfig) -> MaterializeResult:
    warehouse = warehouse_config.settings().warehouse
    # No build meanwhile (it reads the raw layer), and no extraction of the account and region being merged.

    def hold_partition(account: str, region: str) -> AbstractContextManager[None]:
        return writer(warehouse, extraction_lock_name(account, region), context.log.info)

    with writer(warehouse, BUILD, context.log.info):
        done = compact_raw(warehouse, hold_partition)
    for merged in done:
        context.log.info(f"merged {merged.replaced} raw files ({merged.rows} rows) into {merged.path}")
    return MaterializeResult(
        metadata={
            "files_merged": sum(merged.replaced for merged in done),
            "files_written": len(done),
            "rows": sum(merged.rows for merged in done),
        }
    )
