"""Cost and duration models against hand-computed cases, to the cent."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.cli import main
from pipelines.config import ConfigError, CostSettings
from pipelines.demo.endpoint import LocalSageMaker
from pipelines.models import checks
from pipelines.models.build import REFERENCE_TABLES, build_models, model_names
from pipelines.pricing.prices import PriceFileError, effective_prices, read_price_file
from pipelines.pricing.refresh import SOURCE, refreshed_prices_file
from tests.conftest import FETCHED, normalize, record

# Round numbers, so that every expected figure below can be checked by hand.
PRICES_CSV = """region,instance_type,usd_per_hour
us-east-1,ml.m5.xlarge,1.00
us-east-1,ml.g5.xlarge,2.00
us-east-1,ml.p4d.24xlarge,30.00
us-east-1,ml.c5.18xlarge,3.00
"""
STORAGE_RATE = 0.10  # USD per GB-month; a month is 730 hours


def flexible(name: str, plan: str | None = None) -> dict[str, Any]:
    """Flexible instance selection that picked its second preference, 2 x ml.g5.xlarge, for 15 minutes;
    ``plan`` on that preference puts it on a training plan's capacity."""
    selected: dict[str, Any] = {"InstanceType": "ml.g5.xlarge", "InstanceCount": 2}
    if plan:
        selected["TrainingPlanArns"] = [plan]
    resources = {
        "VolumeSizeInGB": 50,
        "SelectedInstanceType": "ml.g5.xlarge",
        "SelectedInstanceCount": 2,
        "InstancePreferences": [{"InstanceType": "ml.p4d.24xlarge", "InstanceCount": 1}, selected],
    }
    return record(name, seconds=900, resources=resources)


CASES = [
    record("plain", resources={"InstanceType": "ml.m5.xlarge", "InstanceCount": 2, "VolumeSizeInGB": 30}),
    record(
        "spot",
        seconds=7200,
        billable=1800,
        EnableManagedSpotTraining=True,
        resources={"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
    ),
    record(
        "warm-pool",
        resources={
            "InstanceType": "ml.m5.xlarge",
            "InstanceCount": 1,
            "VolumeSizeInGB": 30,
            "KeepAlivePeriodInSeconds": 1800,
        },
        WarmPoolStatus={"Status": "Terminated", "ResourceRetainedBillableTimeInSeconds": 1800},
    ),
    record(
        "heterogeneous",
        seconds=1800,
        resources={
            "VolumeSizeInGB": 100,
            "InstanceGroups": [
                {"InstanceGroupName": "gpu", "InstanceType": "ml.p4d.24xlarge", "InstanceCount": 2},
                {"InstanceGroupName": "data", "InstanceType": "ml.c5.18xlarge", "InstanceCount": 4},
            ],
        },
    ),
    flexible("flexible"),
    record(
        "midnight",
        start=datetime(2026, 10, 20, 23, 0, tzinfo=UTC),
        seconds=7200,
        resources={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 0},
    ),
    record("failed-before-start", start=None, status="Failed", FailureReason="CapacityError: no capacity"),
    record("running", start=FETCHED - timedelta(hours=1), status="InProgress"),
    record(
        "training-plan",
        resources={
            "InstanceType": "ml.p4d.24xlarge",
            "InstanceCount": 1,
            "VolumeSizeInGB": 100,
            "TrainingPlanArn": "arn:aws:sagemaker:us-east-1:123456789012:training-plan/reserved",
        },
    ),
    flexible("flexible-on-a-plan", plan="arn:aws:sagemaker:us-east-1:123456789012:training-plan/g5-reserved"),
    {
        member: value
        for member, value in record(
            "completed-without-billable-time",
            resources={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 0},
        ).items()
        if member != "BillableTimeInSeconds"
    },
    {
        member: value
        for member, value in record(
            "finished-without-end-time",
            seconds=1800,
            resources={"InstanceType": "ml.c5.18xlarge", "InstanceCount": 1, "VolumeSizeInGB": 0},
        ).items()
        if member != "TrainingEndTime"
    },
    record(
        "warm-pool-reused",
        resources={
            "InstanceType": "ml.m5.xlarge",
            "InstanceCount": 1,
            "VolumeSizeInGB": 0,
            "KeepAlivePeriodInSeconds": 1800,
        },
        WarmPoolStatus={
            "Status": "Reused",
            "ResourceRetainedBillableTimeInSeconds": 1800,
            "ReusedByJob": "the-next-experiment",
        },
    ),
    record(
        "spot-max-wait",
        seconds=3600,
        billable=1200,
        status="Stopped",
        SecondaryStatus="MaxWaitTimeExceeded",
        EnableManagedSpotTraining=True,
        resources={"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
    ),
    record("unpriced", resources={"InstanceType": "ml.c6i.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30}),
    record("unpriced-gpu", resources={"InstanceType": "ml.g6.12xlarge", "InstanceCount": 2, "VolumeSizeInGB": 30}),
    record(
        "failed-midway",
        seconds=1800,
        status="Failed",
        FailureReason="AlgorithmError: boom\nTraceback ...",
        resources={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 0},
    ),
    record(
        "stopped", status="Stopped", resources={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 0}
    ),
]


def storage(gb: float, instances: int, seconds: float) -> float:
    return gb * instances * STORAGE_RATE * seconds / (730 * 3600)


# Every priced job's cost, worked by hand from the rates above (compute, then storage below).
EXPECTED_TOTAL = (
    2.00  # plain: 2 instances x 1 h x $1
    + 1.00  # spot: 0.5 billable h x $2
    + 1.50  # warm-pool: 1 h x $1, plus 0.5 h retained x $1
    + 36.00  # heterogeneous: (2 x $30 + 4 x $3) x 0.5 h
    + 1.00  # flexible: 2 x g5.xlarge x 0.25 h x $2
    + 2.00  # midnight: 2 h x $1
    + 1.00  # running: 1 h so far x $1
    + 0.50  # failed-midway: 0.5 h x $1
    + 1.00  # stopped: 1 h x $1
    + 1.50  # finished-without-end-time: 0.5 h x $3
    + 1.50  # warm-pool-reused: 1 h x $1, plus 0.5 h retained x $1
    + 2.00 / 3  # spot-max-wait: 1,200 billable s x $2 an hour (g5: NVMe, no volume)
    # storage: plain, warm-pool (training and retention), heterogeneous (the 4 c5 instances), running
    + (storage(30, 2, 3600) + storage(30, 1, 5400) + storage(100, 4, 1800) + storage(30, 1, 3600))
)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    prices = tmp_path_factory.mktemp("prices") / "rates.csv"
    prices.write_text(PRICES_CSV)
    connection = normalize(CASES)
    settings = CostSettings(
        allocation_tags=("team", "project"), storage_usd_per_gb_month=STORAGE_RATE, prices_file=prices
    )
    build_models(connection, settings)
    return connection


def costs(connection: duckdb.DuckDBPyConnection, name: str) -> dict[str, Any]:
    relation = connection.sql(f"select * from job_costs where training_job_arn like '%/{name}'")
    [row] = relation.fetchall()
    return dict(zip(relation.columns, row, strict=True))


@pytest.mark.parametrize(
    ("name", "compute", "warm_pool", "storage_usd", "spot_savings", "basis"),
    [
        # 2 instances x 1 h x $1
        ("plain", 2.00, 0.0, storage(30, 2, 3600), 0.0, "on-demand"),
        # billable 0.5 h x $2; savings (2 h - 0.5 h) x $2; g5 has local NVMe: no volume
        ("spot", 1.00, 0.0, 0.0, 3.00, "managed spot"),
        # 1 h x $1, plus 0.5 h of retained warm pool; the volume is kept for both
        ("warm-pool", 1.00, 0.50, storage(30, 1, 5400), 0.0, "on-demand"),
        # (2 x $30 + 4 x $3) x 0.5 h; only the 4 c5 instances carry a volume
        ("heterogeneous", 36.00, 0.0, storage(100, 4, 1800), 0.0, "on-demand"),
        # what ran is the selected pair: 2 x g5.xlarge x 0.25 h x $2
        ("flexible", 1.00, 0.0, 0.0, 0.0, "on-demand"),
        ("midnight", 2.00, 0.0, 0.0, 0.0, "on-demand"),
        ("failed-before-start", 0.0, 0.0, 0.0, 0.0, "on-demand"),
        # running: estimated from training start to the last fetch (1 h)
        ("running", 1.00, 0.0, storage(30, 1, 3600), 0.0, "on-demand"),
        # prepaid capacity: no on-demand compute; p4d has local NVMe
        ("training-plan", 0.0, 0.0, 0.0, 0.0, "training plan (prepaid compute)"),
        # flexible selection: the selected preference (2 x g5.xlarge) ran on its plan's prepaid capacity
        ("flexible-on-a-plan", 0.0, 0.0, 0.0, 0.0, "training plan (prepaid compute)"),
    ],
)
def test_job_costs_match_hand_computed_figures(
    warehouse: duckdb.DuckDBPyConnection,
    name: str,
    compute: float,
    warm_pool: float,
    storage_usd: float,
    spot_savings: float,
    basis: str,
) -> None:
    row = costs(warehouse, name)
    assert row["is_priced"] and row["cost_basis"] == basis
    assert round(row["compute_cost_usd"], 2) == round(compute, 2)
    assert round(row["warm_pool_cost_usd"], 2) == round(warm_pool, 2)
    assert row["storage_cost_usd"] == pytest.approx(storage_usd, abs=1e-9)
    assert round(row["total_cost_usd"], 2) == round(compute + warm_pool + storage_usd, 2)
    assert round(row["spot_savings_usd"], 2) == round(spot_savings, 2)


def test_heterogeneous_cluster_rate_is_summed_over_groups(warehouse: duckdb.DuckDBPyConnection) -> None:
    row = costs(warehouse, "heterogeneous")
    assert (row["instance_type"], row["instance_count"], row["usd_per_hour"]) == ("heterogeneous", 6, 72.0)
    assert row["accelerator_hours"] == pytest.approx(2 * 8 * 0.5)  # p4d: 8 GPUs each; c5: none


def test_an_instance_type_without_a_price_is_null_never_zero(warehouse: duckdb.DuckDBPyConnection) -> None:
    row = costs(warehouse, "unpriced")
    assert not row["is_priced"] and row["cost_basis"] == "unpriced"
    assert row["compute_cost_usd"] is None and row["total_cost_usd"] is None
    assert row["unpriced_instance_types"] == "ml.c6i.xlarge"
    outcome = checks.unpriced_instance_types(warehouse)
    assert not outcome.passed and outcome.metadata["unpriced"] == {
        "us-east-1 ml.c6i.xlarge": 1,
        "us-east-1 ml.g6.12xlarge": 1,
    }


def test_a_finished_job_without_billable_time_has_no_cost_never_zero(warehouse: duckdb.DuckDBPyConnection) -> None:
    """It trained for an hour, so AWS billed it; without BillableTimeInSeconds the bill is unknown."""
    row = costs(warehouse, "completed-without-billable-time")
    assert row["cost_basis"] == "no billable time reported" and not row["is_priced"]
    assert row["compute_cost_usd"] is None and row["total_cost_usd"] is None
    assert row["usd_per_hour"] == 1.00  # the price is known; the billed seconds are not
    assert row["billable_seconds"] is None and row["instance_hours"] is None  # nor is the usage


def test_a_job_that_never_started_costs_nothing_and_a_serverless_one_is_not_guessed(tmp_path: Path) -> None:
    """Flexible instance selection found no capacity for any preference: no instance ever ran, so AWS
    billed nothing ($0, not unknown). A serverless job is billed per token, which has no public price."""
    no_capacity = record(
        "no-capacity",
        start=None,
        status="Failed",
        FailureReason="CapacityError: no capacity for any instance preference",
        resources={
            "VolumeSizeInGB": 50,
            "InstancePreferences": [
                {"InstanceType": "ml.p5.48xlarge", "InstanceCount": 1},
                {"InstanceType": "ml.p4d.24xlarge", "InstanceCount": 1},
            ],
        },
    )
    serverless = record("fine-tune", resources={"VolumeSizeInGB": 0}, BillableTokenCount=12_000_000)
    serverless["ServerlessJobConfig"] = {"JobType": "FineTuning"}
    connection = normalize([no_capacity, serverless])
    build_models(connection, CostSettings())
    rows = {
        name: (basis, priced, total)
        for name, basis, priced, total in connection.execute(
            "select regexp_extract(training_job_arn, '[^/]+$'), cost_basis, is_priced, total_cost_usd from job_costs"
        ).fetchall()
    }
    assert rows["no-capacity"] == ("never started (no charge)", True, 0.0)
    assert rows["fine-tune"] == ("serverless (billed per token; no public price)", False, None)


def test_usage_is_counted_whether_or_not_a_price_exists(warehouse: duckdb.DuckDBPyConnection) -> None:
    """ml.g6.12xlarge has 4 NVIDIA L4 GPUs (EC2's specification) and no price here: 2 instances x 1 h."""
    row = costs(warehouse, "unpriced-gpu")
    assert not row["is_priced"] and row["total_cost_usd"] is None
    assert row["instance_hours"] == pytest.approx(2.0)
    assert row["accelerator_hours"] == pytest.approx(4 * 2 * 1.0)


def test_every_training_instance_type_botocore_knows_has_a_spec() -> None:
    from pipelines.aws_model import training_instance_types
    from pipelines.pricing.instances import instance_specs

    specs = {spec.instance_type: spec for spec in instance_specs()}
    assert len(specs) == len(instance_specs())  # one row per type
    assert set(training_instance_types()) <= set(specs)
    for spec in specs.values():
        assert spec.source, spec
        if spec.accelerator_kind == "none":
            assert spec.accelerator_count == 0, spec
        elif spec.accelerator_count is None:  # unknown only where the row says it is not confirmed
            assert spec.source.startswith("not confirmed"), spec
        else:
            assert spec.accelerator_kind in ("gpu", "trainium") and spec.accelerator_count > 0, spec
    # Facts checked by hand against EC2's published specifications, across the families.
    hand_checked = {
        "ml.c5n.18xlarge": (72, 192, 0, False),
        "ml.c4.8xlarge": (36, 60, 0, False),
        "ml.g4dn.12xlarge": (48, 192, 4, True),
        "ml.g5.16xlarge": (64, 256, 1, True),
        "ml.g6e.48xlarge": (192, 1536, 8, True),
        "ml.p3.16xlarge": (64, 488, 8, False),
        "ml.p4de.24xlarge": (96, 1152, 8, True),
        "ml.p5.48xlarge": (192, 2048, 8, True),
        "ml.trn1.2xlarge": (8, 32, 1, True),
        "ml.r5d.4xlarge": (16, 128, 0, True),
        "ml.t3.medium": (2, 4, 0, False),
    }
    for name, expected in hand_checked.items():
        spec = specs[name]
        assert (spec.vcpus, spec.memory_gib, spec.accelerator_count, spec.has_local_nvme) == expected, name
    assert (specs["ml.p4d.24xlarge"].accelerator_count, specs["ml.p4d.24xlarge"].has_local_nvme) == (8, True)
    assert (specs["ml.g5.12xlarge"].accelerator_count, specs["ml.g5.12xlarge"].vcpus) == (4, 48)
    assert (specs["ml.trn1.32xlarge"].accelerator_kind, specs["ml.trn1.32xlarge"].accelerator_count) == ("trainium", 16)
    assert (specs["ml.m5.xlarge"].has_local_nvme, specs["ml.m5.xlarge"].memory_gib) == (False, 16)


def test_final_means_the_same_status_set_in_extraction_and_in_the_models(tmp_path: Path) -> None:
    """A status AWS adds later is not final: extraction keeps re-reading the job, and the models treat it
    as running (estimated up to its last fetch), not as finished."""
    from pipelines.storage.raw import TERMINAL_STATUSES

    started = FETCHED - timedelta(hours=2)
    unknown = record("new-status", start=started, status="InProgress")
    unknown["TrainingJobStatus"] = "Pausing"  # still running as far as anyone can tell: no end, no billable time
    stopping = record("stopping", start=started, status="InProgress")
    stopping["TrainingJobStatus"] = "Stopping"
    connection = normalize([unknown, stopping, record("done"), record("being-deleted", status="Deleting")])
    build_models(connection, CostSettings())
    finality = dict(connection.execute("select training_job_status, is_final from job_costs").fetchall())
    assert finality == {"Pausing": False, "Stopping": False, "Completed": True, "Deleting": True}
    assert {"Completed", "Failed", "Stopped", "Deleting"} == TERMINAL_STATUSES  # what extraction stops re-reading
    assert dict(connection.execute("select training_job_status, is_final from job_durations").fetchall()) == finality
    # Not final: estimated from its training start to its last fetch, 2 hours.
    seconds = dict(connection.execute("select training_job_status, billable_seconds from job_costs").fetchall())
    assert (seconds["Pausing"], seconds["Stopping"]) == (7200, 7200)


def test_cost_coverage_says_how_much_rests_on_unchecked_prices(tmp_path: Path) -> None:
    """One hour on one ml.m5.2xlarge in us-east-1: the bundled row ($0.461) was transcribed by hand, so all
    of the $0.461 rests on an unchecked price; with your own rate the same job is verified."""
    jobs = [
        record("on-the-snapshot", resources={"InstanceType": "ml.m5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 0})
    ]
    connection = normalize(jobs)
    build_models(connection, CostSettings())
    assert connection.execute("select total_cost_usd, price_verified from job_costs").fetchall() == [(0.461, False)]
    coverage = connection.execute(
        "select region, instance_type, jobs, priced_jobs, priced_instance_hours, unverified_cost_usd from cost_coverage"
    ).fetchall()
    assert coverage == [("us-east-1", "ml.m5.2xlarge", 1, 1, 1.0, 0.461)]
    outcome = checks.unverified_price_share(connection)
    assert not outcome.passed and outcome.metadata == {"unverified_cost_usd": 0.46, "share": 1.0}

    rates = tmp_path / "rates.csv"
    rates.write_text("region,instance_type,usd_per_hour\nus-east-1,ml.m5.2xlarge,0.40\n")
    connection = normalize(jobs)
    build_models(connection, CostSettings(prices_file=rates))
    assert connection.execute("select total_cost_usd, price_verified from job_costs").fetchall() == [(0.40, True)]
    assert checks.unverified_price_share(connection).passed


def test_storage_is_billed_at_the_rate_of_the_jobs_region() -> None:
    """30 GB on one ml.m5.xlarge for 1 h: $0.154/GB-month in eu-west-1 (a published bill), $0.14 in
    us-east-1, and a 730-hour month."""
    here = record("in-us-east-1")
    there = record("in-eu-west-1")
    there["TrainingJobArn"] = there["TrainingJobArn"].replace("us-east-1", "eu-west-1")
    connection = normalize([here, there])
    build_models(connection, CostSettings())
    storage = dict(connection.execute("select region, storage_cost_usd from job_costs").fetchall())
    assert storage == {"us-east-1": pytest.approx(30 * 0.14 / 730), "eu-west-1": pytest.approx(30 * 0.154 / 730)}
    build_models(connection, CostSettings(storage_usd_per_gb_month=0.10))  # your one rate, every region
    storage = dict(connection.execute("select region, storage_cost_usd from job_costs").fetchall())
    assert storage == {"us-east-1": pytest.approx(30 * 0.10 / 730), "eu-west-1": pytest.approx(30 * 0.10 / 730)}


def test_a_running_spot_job_is_not_billed_for_its_interruption(tmp_path: Path) -> None:
    """Running on one ml.g5.xlarge ($2/h) for 2 h at the fetch, interrupted for 30 minutes of them: billed
    so far 1.5 h = $3.00 at most (its spot discount shows when it ends); the 30 minutes saved $1.00."""
    start = FETCHED - timedelta(hours=2)
    running = record(
        "running-spot",
        start=start,
        status="InProgress",
        EnableManagedSpotTraining=True,
        resources={"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 0},
    )
    running["SecondaryStatusTransitions"] = [
        {"Status": "Training", "StartTime": start, "EndTime": start + timedelta(minutes=30)},
        {"Status": "Interrupted", "StartTime": start + timedelta(minutes=30), "EndTime": start + timedelta(hours=1)},
        {"Status": "Training", "StartTime": start + timedelta(hours=1)},
    ]
    prices = tmp_path / "rates.csv"
    prices.write_text(PRICES_CSV)
    connection = normalize([running])
    build_models(connection, CostSettings(prices_file=prices))
    row = costs(connection, "running-spot")
    assert not row["is_final"] and row["billable_seconds"] == 5400
    assert (round(row["compute_cost_usd"], 2), round(row["spot_savings_usd"], 2)) == (3.00, 1.00)


def test_running_jobs_are_estimates_and_say_so(warehouse: duckdb.DuckDBPyConnection) -> None:
    assert not costs(warehouse, "running")["is_final"]
    assert costs(warehouse, "plain")["is_final"]


def test_cost_daily_spreads_a_job_over_the_days_it_ran(warehouse: duckdb.DuckDBPyConnection) -> None:
    rows = warehouse.execute(
        "select day, compute_cost_usd, instance_hours from job_cost_days where training_job_arn like '%/midnight' "
        "order by day"
    ).fetchall()
    assert [(str(day), round(cost, 2), round(hours, 2)) for day, cost, hours in rows] == [
        ("2026-10-20", 1.00, 1.0),
        ("2026-10-21", 1.00, 1.0),
    ]
    # Finished, no TrainingEndTime: the run ends 30 minutes after its start (TrainingTimeInSeconds), not
    # at the fetch two weeks later: 0.5 h x $3, all on its start day.
    rows = warehouse.execute(
        "select day, compute_cost_usd from job_cost_days where training_job_arn like '%/finished-without-end-time'"
    ).fetchall()
    assert [(str(day), round(cost, 2)) for day, cost in rows] == [("2026-10-20", 1.50)]
    warm = warehouse.execute(
        "select sum(warm_pool_cost_usd) from job_cost_days where training_job_arn like '%/warm-pool'"
    ).fetchall()[0][0]
    assert round(warm, 2) == 0.50


def test_cost_daily_total_equals_job_costs_to_the_cent(warehouse: duckdb.DuckDBPyConnection) -> None:
    outcome = checks.daily_total_matches_job_costs(warehouse)
    assert outcome.passed, outcome.description
    expected = EXPECTED_TOTAL
    assert outcome.metadata["job_costs_total_usd"] == round(expected, 2)
    by_team = warehouse.execute(
        "select allocation_tag_key, allocation_tag_value, sum(total_cost_usd) from cost_daily group by all"
    ).fetchall()
    assert [(k, v, round(total, 2)) for k, v, total in by_team] == [("team", "search", round(expected, 2))]


def test_cost_monthly_carries_the_full_cost_under_every_allocation_tag(warehouse: duckdb.DuckDBPyConnection) -> None:
    rows = warehouse.execute(
        "select allocation_tag_key, allocation_tag_value, round(sum(total_cost_usd), 2) from cost_monthly "
        "group by all order by all"
    ).fetchall()
    assert rows == [("project", "(untagged)", round(EXPECTED_TOTAL, 2)), ("team", "search", round(EXPECTED_TOTAL, 2))]
    months = warehouse.execute(
        "select month, sum(jobs) from cost_monthly where allocation_tag_key = 'team' group by month order by month"
    ).fetchall()
    assert [(str(m), n) for m, n in months] == [("2026-10-01", 17), ("2026-11-01", 1)]  # the running job is in November


def test_waste_counts_failed_stopped_and_idle_warm_pool_cost(warehouse: duckdb.DuckDBPyConnection) -> None:
    relation = warehouse.sql("select * from waste where allocation_tag_key = 'team' and month = '2026-10-01'")
    row = dict(zip(relation.columns, relation.fetchall()[0], strict=True))
    assert row["failed_jobs"] == 2  # one failed before starting (no cost), one midway
    assert (round(row["failed_cost_usd"], 2), round(row["stopped_cost_usd"], 2)) == (0.50, 1.00)
    assert row["max_runtime_exceeded_cost_usd"] == 0
    assert round(row["max_wait_time_exceeded_cost_usd"], 2) == round(1200 * 2.00 / 3600, 2)
    # warm-pool: 0.5 h retained at $1, no one reused it; warm-pool-reused: the same, picked up by a job
    assert (round(row["idle_warm_pool_cost_usd"], 2), round(row["reused_warm_pool_cost_usd"], 2)) == (0.50, 0.50)
    # failed + stopped + max wait + idle
    assert round(row["wasted_cost_usd"], 2) == round(0.50 + 1.00 + 1200 * 2.00 / 3600 + 0.50, 2)
    assert row["top_failure_reasons"] == "AlgorithmError: boom (1); CapacityError: no capacity (1)"


def test_duration_rollup_quantiles(warehouse: duckdb.DuckDBPyConnection) -> None:
    rows = warehouse.execute(
        "select jobs, p50_startup_seconds, p50_training_seconds, share_not_training from duration_rollup "
        "where instance_type = 'ml.m5.xlarge' and training_job_status = 'Completed'"
    ).fetchall()
    # plain, warm-pool, warm-pool-reused, completed-without-billable-time (1 h each), midnight (2 h): each
    # started 5 minutes after creation
    assert rows == [(5, 300.0, 3600.0, pytest.approx(1 - (4 * 3600 + 7200) / (4 * 3900 + 7500)))]


def test_model_checks_pass_and_catch_problems(warehouse: duckdb.DuckDBPyConnection) -> None:
    assert checks.one_cost_row_per_job(warehouse).passed
    assert checks.no_negative_cost(warehouse).passed
    copy = duckdb.connect()
    for name in ("jobs", "job_costs"):
        copy.register(f"source_{name}", warehouse.sql(f"select * from {name}").to_arrow_table())
        copy.execute(f"create table {name} as select * from source_{name}")
    copy.execute("update job_costs set warm_pool_cost_usd = -1 where training_job_arn like '%/plain'")
    copy.execute("delete from job_costs where training_job_arn like '%/spot'")
    assert not checks.no_negative_cost(copy).passed
    assert checks.one_cost_row_per_job(copy).metadata["jobs_without_cost"] == 1


def test_every_model_and_reference_table_has_blocking_contract_checks(warehouse: duckdb.DuckDBPyConnection) -> None:
    contracts = {
        (c.asset, c.name): c for c in checks.MODEL_CHECKS if c.name in ("unique_key", "required_columns_not_null")
    }
    for name in [*REFERENCE_TABLES, *model_names()]:
        for contract in ("unique_key", "required_columns_not_null"):
            assert contracts[(name, contract)].blocking, (name, contract)
            assert contracts[(name, contract)](warehouse).passed, (name, contract)
    # Broken on purpose: a repeated key, and a null where the declaration says never.
    copy = duckdb.connect()
    copy.register("source", warehouse.sql("select * from job_durations").to_arrow_table())
    copy.execute(
        "create table job_durations as select * from source "
        "union all select * from source where training_job_arn like '%/spot'"
    )
    assert contracts[("job_durations", "unique_key")](copy).metadata["duplicate_keys"] == 1
    copy.execute("update job_durations set training_job_status = null where training_job_arn like '%/plain'")
    outcome = contracts[("job_durations", "required_columns_not_null")](copy)
    assert not outcome.passed and outcome.metadata["null_counts"] == {"training_job_status": 1}


def test_job_durations_sum_the_transitions(warehouse: duckdb.DuckDBPyConnection) -> None:
    relation = warehouse.sql("select * from job_durations where training_job_arn like '%/plain'")
    row = dict(zip(relation.columns, relation.fetchall()[0], strict=True))
    assert (row["starting_seconds"], row["training_seconds"], row["startup_seconds"], row["wall_seconds"]) == (
        300.0,
        3600.0,
        300.0,
        3900.0,
    )
    running = warehouse.sql(
        "select training_seconds, is_final from job_durations where training_job_arn like '%/running'"
    )
    # Its Training transition is still open: by hand, training start to the last fetch is one hour.
    assert running.fetchall() == [(3600.0, False)]


# -- price files -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("region,instance_type\nus-east-1,ml.m5.xlarge\n", "line 1: the header lacks usd_per_hour"),
        (
            "region,instance_type,usd_per_hour\nus-east-1,ml.m5.xlarge,cheap\n",
            "line 2: usd_per_hour 'cheap' is not a number",
        ),
        (
            "region,instance_type,usd_per_hour\nus-east-1,ml.m5.xlarge,1\nus-east-1,m5.xlarge,1\n",
            "line 3: instance_type 'm5.xlarge' is not a SageMaker type",
        ),
        (
            "region,instance_type,usd_per_hour\nUS East,ml.m5.xlarge,1\n",
            "line 2: region 'US East' is not an AWS region",
        ),
        (
            "region,instance_type,usd_per_hour\nus-esat-1,ml.m5.xlarge,1\n",
            "line 2: region 'us-esat-1' is not a region SageMaker is offered in",
        ),
        ("region,instance_type,usd_per_hour\nus-east-1,ml.m5.xlarge,-2\n", "line 2: usd_per_hour '-2' must be"),
        (
            "region,instance_type,usd_per_hour\nus-east-1,ml.m5.xlarge,1\nus-east-1,ml.m5.xlarge,2\n",
            "line 3: ml.m5.xlarge in us-east-1 is priced twice",
        ),
    ],
)
def test_a_bad_price_row_names_file_line_and_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rates.csv"
    path.write_text(text)
    with pytest.raises(PriceFileError) as raised:
        read_price_file(path)
    assert str(raised.value).startswith(f"{path} ") and message in str(raised.value)


@pytest.mark.parametrize(("encoding", "accepted"), [("utf-8-sig", True), ("latin-1", False), ("utf-16", False)])
def test_a_price_file_is_read_as_utf8_with_or_without_excels_byte_order_mark(
    tmp_path: Path, encoding: str, accepted: bool
) -> None:
    path = tmp_path / "rates.csv"
    path.write_text("region,instance_type,usd_per_hour,source\nus-east-1,ml.m5.xlarge,1,négocié\n", encoding=encoding)
    if accepted:
        assert [(p.region, p.source) for p in read_price_file(path)] == [("us-east-1", "négocié")]
        return
    with pytest.raises(ConfigError, match=f"^Price file {re.escape(str(path))} is not UTF-8 text .*; save it as UTF-8"):
        read_price_file(path)


def test_user_rates_override_the_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "rates.csv"
    path.write_text("region,instance_type,usd_per_hour\nus-east-1,ml.p4d.24xlarge,20.5\n")
    prices = {(p.region, p.instance_type): p for p in effective_prices(path)}
    p4d = prices[("us-east-1", "ml.p4d.24xlarge")]
    assert p4d.usd_per_hour == 20.5
    assert p4d.source == "user rates (rates.csv)"
    assert all(p.source for p in prices.values())


def test_bundled_snapshot_names_a_source_and_date_for_every_price() -> None:
    bundled = effective_prices()
    assert len(bundled) >= 20
    assert all(p.source and p.as_of and p.usd_per_hour > 0 for p in bundled)
    assert {p.verified for p in bundled} == {True, False}  # says which figures were checked against a bill


# -- refresh from the Price List API (served by the local endpoint) ----------------------------------


def test_prices_refresh_reads_the_price_list_api_and_overrides_the_snapshot(
    aws: LocalSageMaker, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    aws.set_price_list(
        [
            {"region": "us-east-1", "instance_type": "ml.m5.xlarge", "usd_per_hour": 0.25},
            {"region": "us-east-1", "instance_type": "ml.m5.xlarge", "usd_per_hour": 0.25, "kind": "Hosting"},
            {"region": "us-east-1", "instance_type": "ml.g5.xlarge", "usd_per_hour": 9.99, "kind": "SpotTraining"},
            {"region": "eu-west-1", "instance_type": "ml.c5.2xlarge", "usd_per_hour": 0.457},
            *(
                {"region": "us-east-1", "instance_type": f"ml.r5.{n}xlarge", "usd_per_hour": n * 0.3}
                for n in range(2, 160)
            ),
        ]
    )
    monkeypatch.setenv("SMW_REGIONS", "us-east-1,eu-west-1")
    warehouse = tmp_path / "warehouse"
    assert main(["prices", "refresh", "--warehouse", str(warehouse)]) == 0
    assert "Wrote 160 training prices" in capsys.readouterr().out
    assert aws.stats()["calls"]["GetProducts"] >= 3  # two regions, and us-east-1 needs two pages

    refreshed = refreshed_prices_file(warehouse)
    prices = {(p.region, p.instance_type): p for p in effective_prices(refreshed_file=refreshed)}
    m5 = prices[("us-east-1", "ml.m5.xlarge")]
    assert (m5.usd_per_hour, m5.source) == (0.25, SOURCE)
    assert prices[("eu-west-1", "ml.c5.2xlarge")].usd_per_hour == 0.457  # a type the snapshot lacked there
    assert prices[("us-east-1", "ml.g5.xlarge")].usd_per_hour == 1.408  # spot prices are not training prices

    rates = tmp_path / "rates.csv"
    rates.write_text("region,instance_type,usd_per_hour\nus-east-1,ml.m5.xlarge,0.20\n")
    mine = {(p.region, p.instance_type): p for p in effective_prices(rates, refreshed)}
    assert mine[("us-east-1", "ml.m5.xlarge")].usd_per_hour == 0.20  # your rates win


def test_prices_refresh_with_an_empty_price_list_writes_nothing(
    aws: LocalSageMaker, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    aws.set_price_list([])
    monkeypatch.setenv("SMW_REGIONS", "us-east-1")
    assert main(["prices", "refresh", "--warehouse", str(tmp_path / "w")]) == 1
    assert "returned no SageMaker training prices" in capsys.readouterr().err
    assert refreshed_prices_file(tmp_path / "w") is None
