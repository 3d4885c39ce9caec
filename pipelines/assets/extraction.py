"""The extraction asset: every training job, listed and fetched into the raw layer."""

from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, MetadataValue, asset

from pipelines.assets.metadata import column_schema
from pipelines.assets.resources import WarehouseConfig
from pipelines.extraction.run import extract
from pipelines.schemas import table
from pipelines.storage.raw import RAW_JOBS


class ExtractionConfig(Config):
    full_refresh: bool = False  # re-list and re-describe every job instead of only new and changed ones


@asset(
    name=RAW_JOBS,
    group_name="raw",
    description=table(RAW_JOBS).description,
    kinds={"parquet", "sagemaker"},
    metadata={"dagster/column_schema": column_schema(RAW_JOBS)},
)
def raw_training_jobs(
    context: AssetExecutionContext, config: ExtractionConfig, warehouse_config: WarehouseConfig
) -> MaterializeResult:
    settings = warehouse_config.settings()
    report = extract(settings, full_refresh=config.full_refresh, log=context.log)
    stats = report.stats.snapshot()
    metadata = {
        "run_id": report.run_id,
        "jobs_listed": sum(t.listed for t in report.targets),
        "jobs_fetched": report.stored,
        "jobs_failed": report.failed,
        "targets": MetadataValue.md(
            "| account/region | listed | fetched | failed | error |\n|---|---|---|---|---|\n"
            + "\n".join(
                f"| {t.label} | {t.listed} | {t.stored} | {t.failed} | {t.target_error or ''} |" for t in report.targets
            )
        ),
        "api_calls": MetadataValue.json(stats["calls"]),
        "api_errors_absorbed_or_final": MetadataValue.json(stats["errors"]),
        "retries": stats["retries"],
        "throttles": report.stats.throttles,
        "seconds": round(report.seconds, 2),
        "dagster/row_count": report.stored,
    }
    if report.failed_targets:
        # Everything readable was stored; fail loudly so the broken account/region gets attention.
        raise Failure(
            description="Could not read "
            + "; ".join(f"{t.label} ({t.target_error})" for t in report.failed_targets)
            + ". The other targets were stored; the failed ones are retried on the next run.",
            metadata=metadata,
        )
    return MaterializeResult(metadata=metadata)
