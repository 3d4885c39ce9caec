"""Search mode against the local endpoint: a backfill at 100 records a call, Describe only where the
record lacks what matters, incremental by modification time, and the same warehouse as Describe mode."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from pipelines.aws_model import describe_only_members, dumps
from pipelines.cli import EXIT_OK, main
from pipelines.config import Settings
from pipelines.demo.endpoint import LocalSageMaker
from pipelines.demo.fleet import FleetSpec, generate_fleet
from pipelines.demo.nights import differing_rows
from pipelines.extraction.planning import describe_needed
from pipelines.extraction.redaction import redact
from pipelines.extraction.run import extract
from pipelines.schemas import all_tables
from pipelines.storage.layout import DATABASE
from pipelines.storage.raw import DESCRIBED, RAW_ERRORS, RAW_JOBS, SEARCHED, SEARCHED_AND_DESCRIBED, parquet_files
from tests.conftest import FLEET_END, REGIONS
from tests.test_extraction import can_change, completed_version, stored_rows


def mode(settings: Settings, name: str, **extraction: object) -> Settings:
    return replace(settings, extraction=replace(settings.extraction, mode=name, **extraction))


def regional(fleet: list[dict], region: str) -> list[dict]:
    return [r for r in fleet if f":{region}:" in r["TrainingJobArn"]]


def test_a_first_load_reads_every_job_with_search_and_describes_only_jobs_naming_no_instances(
    fleet: list[dict], settings: Settings, aws: LocalSageMaker
) -> None:
    report = extract(settings)  # the default, auto, searches a first load
    calls = aws.stats()["calls"]
    completed = [r for r in fleet if describe_needed(r) is not None]
    assert completed, "the fleet should have serverless jobs"
    pages = sum(-(-len(regional(fleet, region)) // 100) for region in REGIONS)
    assert calls == {"Search": pages, "DescribeTrainingJob": len(completed)}
    assert [t.mode for t in report.targets] == ["search", "search"] and report.failed == 0
    rows = {row["training_job_name"]: row for row in stored_rows(settings.warehouse)}
    assert len(rows) == len(fleet) == report.stored
    hidden = describe_only_members()
    for record in fleet:
        row = rows[record["TrainingJobName"]]
        if record in completed:  # Describe's whole record, with the tags Search returned
            assert row["fetched_with"] == SEARCHED_AND_DESCRIBED
            assert row["response_json"] == dumps(redact(record))
        else:
            assert row["fetched_with"] == SEARCHED
            assert row["response_json"] == dumps(redact({k: v for k, v in record.items() if k not in hidden}))


def test_a_search_refresh_keeps_fuller_describe_records_and_stores_only_real_changes(
    fleet: list[dict], settings: Settings, aws: LocalSageMaker
) -> None:
    extract(mode(settings, "describe"))
    running = next(r for r in fleet if r["TrainingJobStatus"] == "InProgress")
    aws.upsert_jobs([completed_version(running)])
    aws.reset_stats()
    report = extract(settings, full_refresh=True)  # auto searches a full refresh
    assert set(aws.stats()["calls"]) == {"Search"}  # the finished job names its instances: no Describe
    new_rows = [row for row in stored_rows(settings.warehouse) if row["run_id"] == report.run_id]
    assert [(row["training_job_name"], row["fetched_with"]) for row in new_rows] == [
        (running["TrainingJobName"], SEARCHED)
    ]
    assert sum(t.unchanged for t in report.targets) == len(fleet) - 1


def test_incremental_search_reads_jobs_modified_since_the_newest_stored_change(
    fleet: list[dict], settings: Settings, aws: LocalSageMaker
) -> None:
    extract(mode(settings, "search"))
    running = next(r for r in regional(fleet, "us-east-1") if r["TrainingJobStatus"] == "InProgress")
    arrivals = list(generate_fleet(FleetSpec(jobs=6, seed=99, days=1, end=FLEET_END + timedelta(hours=6))))
    aws.upsert_jobs([*arrivals, completed_version(running)])
    aws.reset_stats()
    report = extract(mode(settings, "search"))
    new_rows = [row for row in stored_rows(settings.warehouse) if row["run_id"] == report.run_id]
    assert sorted(row["training_job_name"] for row in new_rows) == sorted(
        [r["TrainingJobName"] for r in arrivals] + [running["TrainingJobName"]]
    )
    calls = aws.stats()["calls"]
    assert calls["Search"] == 2 and "ListTrainingJobs" not in calls  # one page a region: the recent window
    assert sum(t.listed for t in report.targets) < len(fleet) // 3


def test_auto_reads_a_large_listed_night_with_search_twenty_names_a_call(
    fleet: list[dict], settings: Settings, aws: LocalSageMaker
) -> None:
    extract(mode(settings, "describe"))
    arrivals = list(generate_fleet(FleetSpec(jobs=30, seed=98, days=1, end=FLEET_END + timedelta(hours=6))))
    aws.upsert_jobs(arrivals)
    aws.reset_stats()
    report = extract(mode(settings, "auto", search_above_jobs=5))
    assert [t.mode for t in report.targets] == ["describe+search"] * 2
    calls = aws.stats()["calls"]
    assert "ListTags" not in calls and calls.get("DescribeTrainingJob", 0) == sum(
        describe_needed(r) is not None for r in arrivals
    )
    assert calls["Search"] == sum(-(-t.planned // 20) for t in report.targets)
    new_rows = [row for row in stored_rows(settings.warehouse) if row["run_id"] == report.run_id]
    assert sorted(row["training_job_name"] for row in new_rows) == sorted(r["TrainingJobName"] for r in arrivals)


def test_throttled_and_rate_limited_search_loses_nothing(settings: Settings, aws: LocalSageMaker) -> None:
    spec = FleetSpec(jobs=300, seed=12, end=FLEET_END)
    aws.load_fleet(spec)
    fleet = list(generate_fleet(spec))
    aws.set_faults(throttle_rate=0.5, seed=5, rate_limits={"Search": 1, "DescribeTrainingJob": 1})
    # Backoff capped at 1 s (quick, and long enough for the buckets to refill); 20 attempts a call.
    report = extract(mode(settings, "search", max_backoff_seconds=1.0, max_attempts=20))
    assert aws.stats()["injected"]["ThrottlingException"] >= 4
    assert report.failed == 0 and not stored_rows(settings.warehouse, RAW_ERRORS)
    assert {row["training_job_arn"] for row in stored_rows(settings.warehouse)} == {r["TrainingJobArn"] for r in fleet}


def test_a_search_built_warehouse_equals_a_describe_built_one_but_for_the_documented_members(
    fleet: list[dict], aws: LocalSageMaker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only finished jobs: a running job's figures run to the moment its record was fetched, which two
    # runs cannot share.
    aws.clear()
    aws.upsert_jobs([r for r in fleet if not can_change(r)])
    monkeypatch.setenv("SMW_REGIONS", ",".join(REGIONS))
    warehouses = {}
    for name in ("search", "describe"):
        config = tmp_path / f"{name}.yaml"
        config.write_text(json.dumps({"extraction": {"mode": name}}))
        warehouses[name] = tmp_path / name
        assert main(["run", "--config", str(config), "--warehouse", str(warehouses[name]), "--quiet"]) == EXIT_OK

    with duckdb.connect(str(warehouses["search"] / DATABASE), read_only=True) as connection:
        connection.execute(f"attach '{warehouses['describe'] / DATABASE}' as described (read_only)")
        fetched_with = dict(connection.execute("select fetched_with, count(*) from jobs group by all").fetchall())
        assert set(fetched_with) == {SEARCHED, SEARCHED_AND_DESCRIBED}
        assert connection.execute("select distinct fetched_with from described.jobs").fetchall() == [(DESCRIBED,)]
        compared = [name for name, declared in all_tables().items() if declared.layer in ("tables", "models")]
        # The rollups' sums of doubles may differ in their last bits: rows are added in no fixed order.
        fetched = ("fetched_at", "fetched_with", "fetch_run_id")
        search, describe = (warehouses[name] / DATABASE for name in ("search", "describe"))
        assert differing_rows(search, describe, compared, ignoring=fetched) == {}
        assert {"jobs", "tags", "hyperparameters", "job_costs", "cost_daily", "waste"} <= set(compared)
        total = "select count(*), round(sum(total_cost_usd), 6) from {}.job_costs"
        assert (
            connection.execute(total.format("main")).fetchone()
            == connection.execute(total.format("described")).fetchone()
        )


def test_a_search_read_stopped_half_way_is_read_again_from_where_the_last_complete_read_ended(
    fleet: list[dict], settings: Settings, aws: LocalSageMaker
) -> None:
    # The oldest job changed lately: a read that stopped after its first batch (creation order) stored
    # that job's recent LastModifiedTime, and nothing newer than it was read.
    oldest = min(regional(fleet, "us-east-1"), key=lambda r: r["CreationTime"])
    aws.upsert_jobs([{**oldest, "LastModifiedTime": FLEET_END + timedelta(hours=1)}])

    class StopAfterFirstBatch:
        def info(self, message: str) -> None:
            if message.endswith("fetched"):
                raise KeyboardInterrupt("stopped")

        warning = error = info

    searching = mode(settings, "search")
    with pytest.raises(KeyboardInterrupt):
        extract(searching, log=StopAfterFirstBatch())
    assert 0 < len(stored_rows(settings.warehouse)) < len(fleet)
    report = extract(searching)
    assert report.failed == 0
    assert {row["training_job_arn"] for row in stored_rows(settings.warehouse)} == {r["TrainingJobArn"] for r in fleet}
    # That read ran to its end: the next one reads only the last day before its newest change.
    aws.reset_stats()
    extract(searching)
    assert aws.stats()["calls"] == {"Search": 2} and len(stored_rows(settings.warehouse)) == len(fleet)


def test_records_stored_before_search_mode_existed_are_not_replaced_by_search_records(
    fleet: list[dict], settings: Settings
) -> None:
    extract(mode(settings, "describe"))
    for name in parquet_files(settings.warehouse, RAW_JOBS):  # as an older version wrote them
        pq.write_table(pq.read_table(name).drop_columns(["fetched_with", "search_view_sha256"]), name)
    report = extract(settings, full_refresh=True)  # auto: a Search read
    assert [t.mode for t in report.targets] == ["search", "search"]
    assert report.stored == 0 and len(stored_rows(settings.warehouse)) == len(fleet)
