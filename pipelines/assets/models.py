"""The SQL models (costs, durations, rollups) and the reference tables (instance types, prices), built into the
staged warehouse."""

from functools import cache

from dagster import (
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetsDefinition,
    AssetSpec,
    MaterializeResult,
    multi_asset,
)

from pipelines import progress
from pipelines.assets.billing import RAW_BILLING_ASSET
from pipelines.assets.metadata import check_result, column_schema
from pipelines.assets.normalization import TABLE_NAMES
from pipelines.assets.resources import WAREHOUSE_WRITER_POOL, WarehouseConfig
from pipelines.models import checks
from pipelines.models.build import (
    BILLING_LINE_ITEMS,
    PARAMETER_TABLES,
    REFERENCE_TABLES,
    build_order,
    model_dependencies,
    model_names,
)
from pipelines.schemas import table
from pipelines.storage.locks import BUILD, writer
from pipelines.warehouse.build import Staging, stage_models

REFERENCE_AND_MODEL_NAMES = [*REFERENCE_TABLES, *model_names()]
_KNOWN_ASSETS = {*TABLE_NAMES, *REFERENCE_AND_MODEL_NAMES}


def _spec(name: str) -> AssetSpec:
    # A model depends on exactly the tables its SQL reads (run parameters are not assets).
    if name == BILLING_LINE_ITEMS:
        deps = [RAW_BILLING_ASSET]
    elif name in REFERENCE_TABLES:
        deps = []
    else:
        deps = sorted((model_dependencies(name) - set(PARAMETER_TABLES)) & _KNOWN_ASSETS)
    return AssetSpec(
        key=name,
        description=table(name).description,
        deps=deps,
        group_name="billing" if name == BILLING_LINE_ITEMS else "reference" if name in REFERENCE_TABLES else "models",
        kinds={"duckdb", "sql"},
        metadata={"dagster/column_schema": column_schema(name)},
    )


@cache
def models_asset() -> AssetsDefinition:
    """The models' asset. Built on first use, not at import: each model's dependencies come from parsing
    its SQL."""
    # Dagster wants a multi-asset's outputs in dependency order.
    in_build_order = [*REFERENCE_TABLES, *build_order()]

    @multi_asset(
        specs=[_spec(name) for name in in_build_order],
        check_specs=[
            AssetCheckSpec(check.name, asset=check.asset, blocking=check.blocking, description=check.description)
            for check in checks.MODEL_CHECKS
        ],
        pool=WAREHOUSE_WRITER_POOL,
    )
    def models(context: AssetExecutionContext, warehouse_config: WarehouseConfig):  # type: ignore[no-untyped-def]
        """Build the reference tables and every model in sql/models/ into the staging database."""
        settings = warehouse_config.settings()
        staging = Staging(settings.warehouse, context.run_id)
        progress.stage("build", "building the models")
        with writer(settings.warehouse, BUILD, context.log.info):
            counts = stage_models(staging, settings.costs)
        context.log.info(f"built {len(counts)} model tables: {counts}")
        for name in in_build_order:
            yield MaterializeResult(asset_key=name, metadata={"dagster/row_count": counts[name]})
        with staging.connect(read_only=True) as connection:
            for check in checks.MODEL_CHECKS:
                severity = AssetCheckSeverity.ERROR if check.blocking else AssetCheckSeverity.WARN
                yield check_result(check.asset, check(connection), severity)

    return models
