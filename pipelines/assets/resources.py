"""Dagster resources: thin wrappers that hand the pure code its settings."""

from dataclasses import replace
from pathlib import Path

from dagster import ConfigurableResource

from pipelines.config import (
    BillingSettings,
    Settings,
    export_location,
    load_settings,
    warehouse_location,
    warehouse_path,
)

# Steps that write the warehouse's DuckDB files run one at a time (set the pool's limit to 1 in dagster.yaml).
WAREHOUSE_WRITER_POOL = "sagemaker_warehouse_writer"


class WarehouseConfig(ConfigurableResource):
    """Where the settings come from: a YAML file (default ``$SMW_CONFIG``) and ``SMW_*`` overrides."""

    config_file: str | None = None
    warehouse: str | None = None  # overrides the file's and $SMW_WAREHOUSE's warehouse directory
    prices_file: str | None = None  # overrides costs.prices_file
    billing: str | None = None  # overrides billing.exports with this one export location

    def settings(self) -> Settings:
        settings = load_settings(self.config_file)
        if self.warehouse:
            settings = replace(settings, warehouse=warehouse_location(self.warehouse))
        if self.prices_file:
            settings = replace(settings, costs=replace(settings.costs, prices_file=Path(self.prices_file)))
        if self.billing:
            settings = replace(settings, billing=BillingSettings(exports=(export_location(self.billing, "--billing"),)))
        # The pipeline writes the warehouse: it must be a directory this user can write, or create.
        return replace(settings, warehouse=warehouse_path(settings.warehouse))
