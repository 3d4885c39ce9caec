"""The extraction asset: every training job, listed and fetched into the raw layer."""

from collections.abc import Iterator

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    Backoff,
    Config,
    DynamicPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    asset,
)

from pipelines.assets.metadata import column_schema
from pipelines.assets.resources import WarehouseConfig
from pipelines.config import ConfigError
from pipelines.extraction.run import extract
from pipelines.interrupts import RunInterrupted
from pipelines.schemas import table
from pipelines.storage.raw import RAW_JOBS

# One partition per account and region ("default/us-east-1"): each is extracted in its own run, fails and
# retries on its own, and can be backfilled alone. Keys are registered from the config at run time.
TARGET_PARTITIONS = DynamicPartitionsDefinition(name="account_region")


class ExtractionConfig(Config):
    full_refresh: bool = False  # re-list and re-describe every job instead of only new and changed ones


@asset(
    name=RAW_JOBS,
    group_name="raw",
    description=table(RAW_JOBS).description,
    kinds={"parquet", "sagemaker"},
    metadata={"dagster/column_schema": column_schema(RAW_JOBS)},
    partitions_def=TARGET_PARTITIONS,
    # Whole-step retries for what botocore's own retries could not absorb (an expired session, a network
    # outage); a re-run only fetches what is still missing.
    retry_policy=RetryPolicy(max_retries=2, delay=60, backoff=Backoff.EXPONENTIAL),
    check_specs=[
        AssetCheckSpec(
            "every_target_read",
            asset=RAW_JOBS,
            description="The partition's account and region could be listed. A failed one is retried next run; "
            "the others are published meanwhile.",
        ),
        AssetCheckSpec(
            "every_job_fetched",
            asset=RAW_JOBS,
            description="Every job the plan called for was described after botocore's retries. A job that "
            "was not is missing (or stale) in the warehouse until the next run fetches it; everything fetched "
            "is stored and published meanwhile.",
        ),
    ],
)
def raw_training_jobs(
    context: AssetExecutionContext, config: ExtractionConfig, warehouse_config: WarehouseConfig
) -> Iterator[MaterializeResult | AssetCheckResult]:
    try:
        settings = warehouse_config.settings()
        report = extract(settings, full_refresh=config.full_refresh, only=context.partition_key, log=context.log)
    except (ConfigError, RunInterrupted) as error:
        # A configuration or credentials problem does not heal by waiting, and a stop was asked for: no
        # step retry, one sentence.
        raise Failure(description=str(error), allow_retries=False) from None
    stats = report.stats.snapshot()
    metadata = {
        "run_id": report.run_id,
        "jobs_listed": sum(t.listed for t in report.targets),
        "jobs_fetched": report.stored,
        "jobs_failed": report.failed,
        "jobs_deleted_in_sagemaker": sum(t.gone for t in report.targets),
        "targets": MetadataValue.md(
            "| account/region | mode | listed | fetched | failed | error |\n|---|---|---|---|---|---|\n"
            + "\n".join(
                f"| {t.label} | {t.mode} | {t.listed} | {t.stored} | {t.failed} | {t.target_error or ''} |"
                for t in report.targets
            )
        ),
        "api_calls": MetadataValue.json(stats["calls"]),
        "api_calls_per_job_listed": round(
            sum(stats["calls"].values()) / max(1, sum(t.listed for t in report.targets)), 4
        ),
        "api_errors_absorbed_or_final": MetadataValue.json(stats["errors"]),
        "retries": stats["retries"],
        "throttles": report.stats.throttles,
        "seconds": round(report.seconds, 2),
        "dagster/row_count": report.stored,
    }
    yield MaterializeResult(metadata=metadata)
    failed = report.failed_targets
    # Not blocking: the healthy accounts and regions are published; this check makes the broken one loud.
    yield AssetCheckResult(
        check_name="every_target_read",
        passed=not failed,
        description=(
            "Could not read "
            + "; ".join(f"{t.label} ({t.target_error})" for t in failed)
            + ". The others were stored and are published; the failed ones are retried on the next run."
            if failed
            else f"all {len(report.targets)} account/region targets read"
        ),
        metadata={"failed_targets": [t.label for t in failed]},
    )

    unfetched = report.targets_with_failed_jobs
    yield AssetCheckResult(
        check_name="every_job_fetched",
        passed=not unfetched,
        description=(
            f"{report.failed} jobs could not be fetched after {settings.extraction.max_attempts} "
            "attempts per call ("
            + "; ".join(
                f"{t.label}: {t.failed} ({', '.join(f'{c} x{n}' for c, n in t.failed_codes.items())})"
                for t in unfetched
            )
            + "). They are missing or stale in the warehouse until the next run fetches them; see "
            "raw_extraction_errors."
            if unfetched
            else f"all {report.planned} planned jobs fetched"
        ),
        metadata={"jobs_not_fetched": report.failed, "by_target": {t.label: t.failed for t in unfetched}},
    )
