"""The Dagster code location: every asset, resource, check and schedule of the warehouse.

``dagster dev`` loads this module (see workspace.yaml); the CLI and the tests materialize the same
objects in-process.
"""

from typing import Any

from dagster import (
    AssetsDefinition,
    AssetSelection,
    DagsterInstance,
    DefaultScheduleStatus,
    Definitions,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    define_asset_job,
    definitions,
    schedule,
)

from pipelines.assets.billing import raw_billing_line_items
from pipelines.assets.compaction import compacted_raw_layer
from pipelines.assets.extraction import TARGET_PARTITIONS, raw_training_jobs
from pipelines.assets.models import models_asset
from pipelines.assets.normalization import normalized
from pipelines.assets.publication import cost_report, published_warehouse
from pipelines.assets.resources import WarehouseConfig
from pipelines.config import Settings, load_settings
from pipelines.extraction.run import target_labels


def all_assets() -> list[AssetsDefinition]:
    return [
        raw_training_jobs,
        raw_billing_line_items,
        normalized,
        models_asset(),
        published_warehouse,
        cost_report,
        compacted_raw_layer,
    ]


def build_resources(
    config_file: str | None = None,
    warehouse: str | None = None,
    prices_file: str | None = None,
    billing: str | None = None,
) -> dict[str, object]:
    return {
        "warehouse_config": WarehouseConfig(
            config_file=config_file, warehouse=warehouse, prices_file=prices_file, billing=billing
        )
    }


# Extraction runs once per account/region partition; the build (flatten, model, check, publish) runs once
# over everything stored. The CLI runs these same two jobs, in-process, in that order (and `compact` the third).
EXTRACT_JOB, BUILD_JOB, COMPACT_JOB = "extract_training_jobs", "build_warehouse", "compact_raw_layer"
extract_job = define_asset_job(
    EXTRACT_JOB,
    selection=AssetSelection.assets(raw_training_jobs),
    partitions_def=TARGET_PARTITIONS,
    description="Lists and describes the training jobs of one account and region (a partition) into the raw "
    "layer: new and changed jobs, or every job with full_refresh.",
)
build_job = define_asset_job(
    BUILD_JOB,
    selection=AssetSelection.all() - AssetSelection.assets(raw_training_jobs, compacted_raw_layer),
    description="Loads the bill's new billing periods (if billing.exports names any), then builds the warehouse "
    "from the raw layer: flattens the normalized tables, builds the reference "
    "tables and models, runs their checks and publishes them in one step if every blocking check passed.",
)

compact_job = define_asset_job(
    COMPACT_JOB,
    selection=AssetSelection.assets(compacted_raw_layer),
    description="Merges the raw layer's small files, per table, account, region and month, into one file each "
    "(row for row verified before the small files are removed).",
)


def extraction_run_config(full_refresh: bool) -> dict[str, Any]:
    """The run config of one extraction run: incremental, or a full refresh."""
    return {"ops": {"raw_training_jobs": {"config": {"full_refresh": full_refresh}}}}


def build_run_config(full_rebuild: bool) -> dict[str, Any]:
    """The run config of one build: incremental where the published version allows it, or everything."""
    return {"ops": {"normalized": {"config": {"full_rebuild": full_rebuild}}}}


def register_partitions(instance: DagsterInstance, settings: Settings) -> list[str]:
    """Register the configured account/region partitions with ``instance``; returns their keys."""
    labels = target_labels(settings)
    instance.add_dynamic_partitions(TARGET_PARTITIONS.name, labels)
    return labels


def extraction_requests(context: ScheduleEvaluationContext, settings: Settings, full_refresh: bool) -> list[RunRequest]:
    """Register the configured account/region partitions, then ask for one extraction run per partition."""
    labels = register_partitions(context.instance, settings)
    stamp = context.scheduled_execution_time.strftime("%Y%m%dT%H%M") if context.scheduled_execution_time else "now"
    run_config = extraction_run_config(full_refresh)
    return [RunRequest(run_key=f"{stamp}-{label}", partition_key=label, run_config=run_config) for label in labels]


def _extraction_schedule(name: str, cron: str, settings: Settings, full_refresh: bool) -> ScheduleDefinition:
    what = "every job again (full refresh)" if full_refresh else "new and changed jobs"

    @schedule(
        name=name,
        description=f"One extraction run per configured account and region, reading {what} ({cron}, "
        f"{settings.schedule.timezone}).",
        job=extract_job,
        cron_schedule=cron,
        execution_timezone=settings.schedule.timezone,
        default_status=DefaultScheduleStatus.RUNNING,  # on as soon as dagster-daemon runs
    )
    def extraction(context: ScheduleEvaluationContext) -> list[RunRequest]:
        return extraction_requests(context, settings, full_refresh)

    return extraction


def build_schedules(settings: Settings) -> list[ScheduleDefinition]:
    return [
        _extraction_schedule("nightly_extraction_schedule", settings.schedule.cron, settings, full_refresh=False),
        # Incremental runs never re-read an old, finished job, whose tags can still change.
        _extraction_schedule(
            "weekly_full_refresh_schedule", settings.schedule.full_refresh_cron, settings, full_refresh=True
        ),
        ScheduleDefinition(
            name="nightly_build_schedule",
            description=f"The build after the night's extraction ({settings.schedule.build_cron}, "
            f"{settings.schedule.timezone}): flatten, model, check, publish.",
            job=build_job,
            cron_schedule=settings.schedule.build_cron,
            execution_timezone=settings.schedule.timezone,
            default_status=DefaultScheduleStatus.RUNNING,
        ),
        ScheduleDefinition(
            name="weekly_compaction_schedule",
            description=f"Raw compaction ({settings.schedule.compaction_cron}, {settings.schedule.timezone}): "
            "a month's small raw files merged into one per account and region.",
            job=compact_job,
            cron_schedule=settings.schedule.compaction_cron,
            execution_timezone=settings.schedule.timezone,
            default_status=DefaultScheduleStatus.RUNNING,
        ),
    ]


def make_definitions(settings: Settings, resources: dict[str, object]) -> Definitions:
    """The code location: what ``dagster dev`` loads, and what the CLI runs with its own resources."""
    return Definitions(
        assets=all_assets(),
        jobs=[extract_job, build_job, compact_job],
        schedules=build_schedules(settings),
        resources=resources,
    )


@definitions
def defs() -> Definitions:
    """The code location ``dagster dev`` loads, from ``$SMW_CONFIG``: loaded when Dagster asks for it, not
    when the module is imported (the CLI imports it with its own ``--config``). A malformed file stops the
    code location with its one-line reason."""
    return make_definitions(load_settings(), build_resources())
