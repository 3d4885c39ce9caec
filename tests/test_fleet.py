"""The demo fleet: valid under botocore's model, deterministic, streamable, and as varied as a real fleet."""

from __future__ import annotations

import itertools
from collections import Counter

from pipelines.aws_model import validation_errors
from pipelines.demo.fleet import SECRET_ENVIRONMENT_KEYS, FleetSpec, generate_fleet, generate_job
from tests.conftest import FLEET_END

DEMO = FleetSpec(jobs=2000, seed=7, end=FLEET_END)


def test_every_record_validates_against_botocore_describe_training_job_output_shape() -> None:
    problems = {r["TrainingJobName"]: validation_errors(r) for r in generate_fleet(DEMO)}
    invalid = {name: report for name, report in problems.items() if report}
    assert not invalid, next(iter(invalid.items()))


def test_validation_catches_a_record_that_does_not_fit_the_shape() -> None:
    record = generate_job(DEMO, 0)
    del record["CreationTime"]
    record["ResourceConfig"]["InstanceCount"] = "four"
    report = validation_errors(record)
    assert "CreationTime" in report and "InstanceCount" in report


def test_same_spec_gives_the_same_fleet_and_another_seed_another() -> None:
    spec = FleetSpec(jobs=50, seed=3, end=FLEET_END)
    assert list(generate_fleet(spec)) == list(generate_fleet(spec))
    other = FleetSpec(jobs=50, seed=4, end=FLEET_END)
    assert [r["TrainingJobName"] for r in generate_fleet(spec)] != [r["TrainingJobName"] for r in generate_fleet(other)]


def test_fleet_streams_and_any_job_can_be_rebuilt_alone() -> None:
    million = FleetSpec(jobs=1_000_000, seed=7, end=FLEET_END)
    first = list(itertools.islice(generate_fleet(million), 5))
    assert first == [generate_job(million, i) for i in range(5)]
    last = generate_job(million, 999_999)
    assert first[0]["CreationTime"] < last["CreationTime"] <= FLEET_END
    assert last["TrainingJobName"] != first[0]["TrainingJobName"]


def test_names_are_unique_and_creation_times_increase_within_the_window() -> None:
    records = list(generate_fleet(DEMO))
    assert len({r["TrainingJobArn"] for r in records}) == len(records)
    times = [r["CreationTime"] for r in records]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert DEMO.start <= times[0] and times[-1] <= FLEET_END


def test_fleet_has_the_mix_a_platform_team_sees() -> None:
    records = list(generate_fleet(DEMO))
    statuses = Counter((r["TrainingJobStatus"], r["SecondaryStatus"]) for r in records)
    for expected in [
        ("Completed", "Completed"),
        ("Failed", "Failed"),
        ("Stopped", "Stopped"),
        ("Stopped", "MaxRuntimeExceeded"),
    ]:
        assert statuses[expected] >= 20, statuses
    running = [r for r in records if r["TrainingJobStatus"] == "InProgress"]
    assert running and all("TrainingEndTime" not in r and "BillableTimeInSeconds" not in r for r in running)

    failed_early = [r for r in records if r["TrainingJobStatus"] == "Failed" and "TrainingStartTime" not in r]
    assert failed_early and all(r["FailureReason"] and "BillableTimeInSeconds" not in r for r in failed_early)

    resources = [r.get("ResourceConfig", {}) for r in records]
    instance_types = Counter(c.get("InstanceType") for c in resources)
    for family in ("ml.m5", "ml.c5", "ml.g5", "ml.p4d", "ml.p5", "ml.trn1"):
        assert any(t and t.startswith(family) for t in instance_types), family
    assert max(c.get("InstanceCount", 0) for c in resources) == 16
    heterogeneous = [c for c in resources if "InstanceGroups" in c]
    assert heterogeneous and all("InstanceType" not in c for c in heterogeneous)
    flexible = [c for c in resources if "InstancePreferences" in c]
    assert flexible and all(
        (c["SelectedInstanceType"], c["SelectedInstanceCount"])
        in {(p["InstanceType"], p["InstanceCount"]) for p in c["InstancePreferences"]}
        for c in flexible
    )
    assert any("TrainingPlanArn" in c for c in resources)

    spot = [r for r in records if r["EnableManagedSpotTraining"] and "BillableTimeInSeconds" in r]
    interrupted = [r for r in spot if any(t["Status"] == "Interrupted" for t in r["SecondaryStatusTransitions"])]
    assert interrupted and all(r["BillableTimeInSeconds"] < r["TrainingTimeInSeconds"] for r in interrupted)
    # AWS's rule: savings = 1 - billable / training time. Every demo spot job saves, interrupted or not; the
    # 60-90% range is the demo's own choice (typical of published spot discounts).
    savings = [1 - r["BillableTimeInSeconds"] / r["TrainingTimeInSeconds"] for r in spot if r["TrainingTimeInSeconds"]]
    uninterrupted = [r for r in spot if r not in interrupted and r["TrainingTimeInSeconds"] > 100]
    assert uninterrupted and all(r["BillableTimeInSeconds"] < 0.41 * r["TrainingTimeInSeconds"] for r in uninterrupted)
    assert min(savings) >= 0.6 and max(savings) < 1

    pools = Counter(r["WarmPoolStatus"]["Status"] for r in records if "WarmPoolStatus" in r)
    assert {"Available", "Reused", "Terminated"} <= set(pools), pools
    assert any(r.get("TuningJobArn") for r in records)
    assert any(r.get("BillableTokenCount") for r in records)

    channels = [c for r in records for c in r["InputDataConfig"]]
    assert any("S3DataSource" in c["DataSource"] for c in channels)
    assert any("FileSystemDataSource" in c["DataSource"] for c in channels)
    assert any("VpcConfig" in r for r in records)
    assert any("CheckpointConfig" in r for r in records)
    assert any("DebugRuleEvaluationStatuses" in r for r in records)
    assert any(m["MetricName"] == "validation:auc" for r in records for m in r.get("FinalMetricDataList", []))
    assert any("learning_rate" in r.get("HyperParameters", {}) for r in records)


def test_fleet_is_tagged_by_team_project_and_studio_with_some_untagged_jobs() -> None:
    records = list(generate_fleet(DEMO))
    keys = Counter(tag["Key"] for r in records for tag in r["Tags"])
    assert {"team", "project", "sagemaker:user-profile-arn", "sagemaker:domain-arn"} <= set(keys)
    assert 0 < len(records) - keys["team"] < len(records) / 4
    regions = Counter(r["TrainingJobArn"].split(":")[3] for r in records)
    assert set(regions) == {"us-east-1", "eu-west-1"}


def test_environment_maps_carry_secret_looking_values() -> None:
    records = list(generate_fleet(DEMO))
    secrets = [
        value for r in records for key, value in r.get("Environment", {}).items() if key in SECRET_ENVIRONMENT_KEYS
    ]
    assert len(secrets) > 100
    assert len(set(secrets)) == len(secrets) and all(len(s) > 30 for s in secrets)
