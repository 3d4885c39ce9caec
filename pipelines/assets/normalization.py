"""Normalized tables: flattened from the raw layer into the staging database, and checked."""

from dagster import (
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSpec,
    Config,
    MaterializeResult,
    multi_asset,
)

from pipelines import progress
from pipelines.assets.metadata import check_result, column_schema
from pipelines.assets.resources import WAREHOUSE_WRITER_POOL, WarehouseConfig
from pipelines.normalization import checks
from pipelines.normalization.flatten import normalized_tables
from pipelines.storage.layout import published_parquet
from pipelines.storage.locks import BUILD, writer
from pipelines.storage.raw import RAW_JOBS
from pipelines.warehouse.build import ABANDONED_AFTER_SECONDS, remove_abandoned_staging, stage_from_raw
from pipelines.warehouse.publication import built_on_published

TABLES = normalized_tables()


class BuildConfig(Config):
    full_rebuild: bool = False  # rebuild every job's rows, not only the changed jobs' (see warehouse.changes)


TABLE_NAMES = [t.name for t in TABLES]


def _check_specs() -> list[AssetCheckSpec]:
    specs = [
        AssetCheckSpec(name, asset=declared.name, blocking=True, description=checks.check_description(name))
        for declared in TABLES
        for name in checks.check_names(declared)
    ]
    specs.extend(
        AssetCheckSpec(
            "rows_left_out",
            asset=declared.name,
            blocking=False,
            description="Rows that broke the table's contract (a repeated key, a null required column) are "
            "left out so that one odd record cannot block everyone's publication; this names their jobs.",
        )
        for declared in TABLES
        if declared.name != checks.JOBS
    )
    specs.append(
        AssetCheckSpec(
            "no_published_job_lost",
            asset=checks.JOBS,
            blocking=True,
            description="Every job already published is still there: a job whose raw record was lost keeps "
            "the previous version published until the next extraction fetches it again.",
        )
    )
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
def normalized(context: AssetExecutionContext, config: BuildConfig, warehouse_config: WarehouseConfig):  # type: ignore[no-untyped-def]
    """Flatten the latest raw record of every changed job (or every job) into the normalized tables, in a
    staging database."""
    settings = warehouse_config.settings()
    progress.stage("build", "flattening the raw layer into the normalized tables")
    # The checks read the raw layer (latest_raw_json) too: they run under the lock, so that no compaction
    # removes a file they read meanwhile.
    with writer(settings.warehouse, BUILD, context.log.info):
        # By age only: a Dagster build between two of its steps holds no lock, so its staging area would
        # look abandoned to a CLI run that holds the warehouse.
        remove_abandoned_staging(settings.warehouse, context.run_id, ABANDONED_AFTER_SECONDS)
        build = stage_from_raw(settings.warehouse, context.run_id, full=config.full_rebuild)
        staging, counts = build.staging, build.counts
        for moved in build.quarantined:
            context.log.warning(f"raw file could not be read and was moved to {moved}; its jobs are fetched again")
        context.log.info(
            f"{build.plan.mode} build ({build.plan.reason}): {build.changed_jobs} jobs rebuilt, {counts['jobs']} "
            f"jobs in {len(counts)} tables at {staging.database}"
        )
        with staging.connect(read_only=True) as connection:
            for declared in TABLES:
                metadata = {
                    "dagster/row_count": counts[declared.name],
                    "build": build.plan.mode,
                    "jobs_rebuilt": build.changed_jobs,
                }
                yield MaterializeResult(asset_key=declared.name, metadata=metadata)
                for outcome in checks.table_checks(connection, declared):
                    yield check_result(declared.name, outcome)
                if declared.name != checks.JOBS:
                    yield check_result(
                        declared.name, checks.rows_left_out(connection, declared), AssetCheckSeverity.WARN
                    )
            yield check_result(checks.JOBS, checks.unknown_members(connection), AssetCheckSeverity.WARN)
            published = published_parquet(settings.warehouse, checks.JOBS)
            kept = checks.published_jobs_kept(connection, published, built_on_published(staging))
            yield check_result(checks.JOBS, kept)
