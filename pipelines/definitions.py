"""The Dagster code location: every asset, resource, check and schedule of the warehouse.

``dagster dev`` loads this module (see workspace.yaml); the CLI and the tests materialize the same
objects in-process.
"""

from __future__ import annotations

from dagster import AssetSelection, DefaultScheduleStatus, Definitions, ScheduleDefinition, define_asset_job

from pipelines.assets.extraction import raw_training_jobs
from pipelines.assets.models import models
from pipelines.assets.normalization import normalized
from pipelines.assets.publication import published_warehouse
from pipelines.assets.resources import WarehouseConfig
from pipelines.config import Settings, load_settings

ALL_ASSETS = [raw_training_jobs, normalized, models, published_warehouse]


def build_resources(
    config_file: str | None = None, warehouse: str | None = None, prices_file: str | None = None
) -> dict[str, object]:
    return {"warehouse_config": WarehouseConfig(config_file=config_file, warehouse=warehouse, prices_file=prices_file)}


SETTINGS = load_settings()  # $SMW_CONFIG; a malformed file stops the code location with its one-line reason

# The whole graph: extract, flatten, model, check, publish.
warehouse_job = define_asset_job("nightly_warehouse", selection=AssetSelection.all(), description=__doc__)


def build_schedule(settings: Settings) -> ScheduleDefinition:
    return ScheduleDefinition(
        name="nightly_warehouse_schedule",
        job=warehouse_job,
        cron_schedule=settings.schedule.cron,
        execution_timezone=settings.schedule.timezone,
        default_status=DefaultScheduleStatus.RUNNING,  # running as soon as dagster-daemon is
    )


def build_full_refresh_schedule(settings: Settings) -> ScheduleDefinition:
    """Incremental runs never re-read an old, finished job; its tags can still change. A weekly full
    refresh picks such changes up (and stores only what differs)."""
    return ScheduleDefinition(
        name="weekly_full_refresh_schedule",
        job=warehouse_job,
        cron_schedule=settings.schedule.full_refresh_cron,
        execution_timezone=settings.schedule.timezone,
        run_config={"ops": {"raw_training_jobs": {"config": {"full_refresh": True}}}},
        default_status=DefaultScheduleStatus.RUNNING,
    )


defs = Definitions(
    assets=ALL_ASSETS,
    jobs=[warehouse_job],
    schedules=[build_schedule(SETTINGS), build_full_refresh_schedule(SETTINGS)],
    resources=build_resources(),
)
