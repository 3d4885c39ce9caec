"""The Dagster code location: every asset, resource, check and schedule of the warehouse.

``dagster dev`` loads this module (see workspace.yaml); the CLI and the tests materialize the same
objects in-process.
"""

from __future__ import annotations

from dagster import Definitions

from pipelines.assets.extraction import raw_training_jobs
from pipelines.assets.models import models
from pipelines.assets.normalization import normalized
from pipelines.assets.publication import published_warehouse
from pipelines.assets.resources import WarehouseConfig

ALL_ASSETS = [raw_training_jobs, normalized, models, published_warehouse]


def build_resources(
    config_file: str | None = None, warehouse: str | None = None, prices_file: str | None = None
) -> dict[str, object]:
    return {"warehouse_config": WarehouseConfig(config_file=config_file, warehouse=warehouse, prices_file=prices_file)}


defs = Definitions(assets=ALL_ASSETS, resources=build_resources())
