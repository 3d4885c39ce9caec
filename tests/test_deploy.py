"""As a deployment runs it: Dagster reads deploy/dagster.yaml, and account/region partitions extract side by
side in separate processes (Dagster's CLI, as run workers launch them), each storing its own jobs once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from dagster import DagsterInstance

from pipelines.config import load_settings
from pipelines.definitions import register_partitions
from pipelines.demo.endpoint import LocalSageMaker
from pipelines.demo.fleet import FleetSpec, arn_account_and_region, generate_fleet
from pipelines.storage.raw import RAW_JOBS, parquet_files
from tests.conftest import FLEET_END

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
FOUR_REGIONS = ("us-east-1", "eu-west-1", "us-west-2", "ap-northeast-1")


def test_partitions_extract_side_by_side_and_each_stores_its_own_jobs_once(
    aws: LocalSageMaker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = FleetSpec(jobs=240, seed=21, end=FLEET_END, regions=FOUR_REGIONS)
    aws.load_fleet(spec)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    warehouse = tmp_path / "warehouse"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("SMW_WAREHOUSE", str(warehouse))
    monkeypatch.setenv("SMW_REGIONS", ",".join(FOUR_REGIONS))

    with DagsterInstance.get() as instance:  # reads deploy/dagster.yaml: a bad key fails here
        labels = register_partitions(instance, load_settings())
    assert labels == [f"default/{region}" for region in FOUR_REGIONS]

    # Two of the four side by side: each run is two processes (the run and its step), and two already
    # share the endpoint and the warehouse; the two left out must stay empty.
    side_by_side = labels[:2]
    dagster = str(Path(sys.executable).parent / "dagster")
    runs = [
        subprocess.Popen(
            [dagster, "asset", "materialize", "-m", "pipelines.definitions", "--select", "raw_training_jobs",
             "--partition", label],
            env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for label in side_by_side
    ]  # fmt: skip
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs

    expected: dict[str, set[str]] = {region: set() for region in FOUR_REGIONS}
    for record in generate_fleet(spec):
        expected[arn_account_and_region(record["TrainingJobArn"])[1]].add(record["TrainingJobArn"])
    assert all(expected.values()), "every region has jobs"
    with duckdb.connect() as connection:
        for region in FOUR_REGIONS:
            files = parquet_files(warehouse, RAW_JOBS, "123456789012", region)
            if f"default/{region}" not in side_by_side:
                assert files == [], f"{region}: no run asked for it"
                continue
            arns = [
                row[0] for row in connection.execute("select training_job_arn from read_parquet(?)", [files]).fetchall()
            ]
            assert sorted(arns) == sorted(expected[region]), f"{region}: each of its jobs once, no other region's"
