"""The SQL models (costs, durations, rollups) and the price table, built into the staged warehouse."""

from dagster import AssetCheckSeverity, AssetCheckSpec, AssetExecutionContext, AssetSpec, MaterializeResult, multi_asset

from pipelines.assets.metadata import column_schema
from pipelines.assets.normalization import TABLE_NAMES, check_result
from pipelines.assets.resources import WAREHOUSE_WRITER_POOL, WarehouseConfig
from pipelines.models import checks
from pipelines.models.build import PARAMETER_TABLES, PRICES, build_order, model_dependencies
from pipelines.schemas import table
from pipelines.storage.locks import BUILD, writer
from pipelines.storage.warehouse import Staging, stage_models

MODEL_NAMES = build_order()
PRICE_AND_MODEL_NAMES = [PRICES, *MODEL_NAMES]
_KNOWN_ASSETS = {*TABLE_NAMES, *PRICE_AND_MODEL_NAMES}


def _spec(name: str) -> AssetSpec:
    # A model depends on exactly the tables its SQL reads (run parameters are not assets).
    deps = [] if name == PRICES else sorted((model_dependencies(name) - set(PARAMETER_TABLES)) & _KNOWN_ASSETS)
    return AssetSpec(
        key=name,
        description=table(name).description,
        deps=deps,
        group_name="models" if name != PRICES else "reference",
        kinds={"duckdb", "sql"},
        metadata={"dagster/column_schema": column_schema(name)},
    )


@multi_asset(
    specs=[_spec(name) for name in PRICE_AND_MODEL_NAMES],
    check_specs=[
        AssetCheckSpec("one_row_per_job", asset="job_costs", blocking=True),
        AssetCheckSpec("no_negative_cost", asset="job_costs", blocking=True),
        AssetCheckSpec("total_matches_job_costs", asset="cost_daily", blocking=True),
        AssetCheckSpec(
            "unpriced_instance_types",
            asset="job_costs",
            blocking=False,
            description="Instance types with no price: their jobs' costs are null, never zero.",
        ),
    ],
    pool=WAREHOUSE_WRITER_POOL,
)
def models(context: AssetExecutionContext, warehouse_config: WarehouseConfig):  # type: ignore[no-untyped-def]
    """Build the price table and every model in sql/models/ into the staging database."""
    settings = warehouse_config.settings()
    staging = Staging(settings.warehouse, context.run_id)
    with writer(settings.warehouse, BUILD, context.log.info):
        counts = stage_models(staging, settings.costs)
    context.log.info(f"built {len(counts)} model tables: {counts}")
    for name in PRICE_AND_MODEL_NAMES:
        yield MaterializeResult(asset_key=name, metadata={"dagster/row_count": counts[name]})
    with staging.connect(read_only=True) as connection:
        yield check_result("job_costs", checks.one_cost_row_per_job(connection))
        yield check_result("job_costs", checks.no_negative_cost(connection))
        yield check_result("cost_daily", checks.daily_total_matches_job_costs(connection))
        yield check_result("job_costs", checks.unpriced_instance_types(connection), AssetCheckSeverity.WARN)
