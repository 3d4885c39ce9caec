"""The fault suite: what a run promises under throttling storms, concurrent runs, damaged files, crashes
and signals, over the local endpoint and real processes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipelines.cli import EXIT_FAILED, EXIT_OK, main
from pipelines.demo.endpoint import LocalSageMaker
from pipelines.demo.fleet import FleetSpec, generate_fleet
from pipelines.storage.warehouse import DATABASE, connect_reader
from tests.conftest import FLEET_END

STORM_FLEET = FleetSpec(jobs=1000, seed=21, end=FLEET_END)


def published_arns(warehouse: Path) -> list[str]:
    with connect_reader(warehouse / DATABASE) as connection:
        return [row[0] for row in connection.execute("select training_job_arn from jobs").fetchall()]


def write_config(tmp_path: Path, warehouse: Path, extraction: str = "") -> str:
    config = tmp_path / "config.yaml"
    config.write_text(f"warehouse: {warehouse}\nregions: [us-east-1, eu-west-1]\n{extraction}")
    return str(config)


def test_a_throttling_storm_never_ends_in_false_success_and_the_next_run_completes(
    aws: LocalSageMaker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """1,000 jobs, 60% of calls throttled and 5% HTTP 500. botocore's default retry quota would run dry
    after ~100 retries per client; the run either publishes every job (exit 0) or exits 1 naming how
    many are missing, with every fetched job published. The next, calm run publishes all 1,000."""
    aws.load_fleet(STORM_FLEET)
    expected = {record["TrainingJobArn"] for record in generate_fleet(STORM_FLEET)}
    warehouse = tmp_path / "warehouse"
    # Short backoff caps keep the test quick; the retry decisions are botocore's.
    config = write_config(tmp_path, warehouse, "extraction: {max_workers: 16, max_backoff_seconds: 0.05}\n")
    aws.set_faults(throttle_rate=0.6, error_rate=0.05, seed=5)

    code = main(["run", "--config", config])
    err = capsys.readouterr().err
    stats = aws.stats()
    assert stats["injected"]["ThrottlingException"] > 1500
    published = published_arns(warehouse)
    assert len(published) == len(set(published)) and set(published) <= expected
    if code == EXIT_OK:
        assert set(published) == expected
    else:
        assert code == EXIT_FAILED
        missing = len(expected) - len(published)
        assert missing > 0
        # One line per account/region partition, each naming its count.
        named = re.findall(r"every_job_fetched failed: (\d+) jobs could not be fetched", err)
        assert named and sum(map(int, named)) >= missing, err
    # Far more retries happened than botocore's default quota (500 units, 5 per throttle) allows a client.
    assert sum(stats["calls"].values()) - 2 * len(expected) > 2 * 100

    aws.set_faults()
    assert main(["run", "--config", config]) == EXIT_OK
    assert sorted(published_arns(warehouse)) == sorted(expected)
