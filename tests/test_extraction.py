"""Extraction against the local endpoint: complete, incremental, throttle-safe, crash-safe, lossless,
and without a secret reaching disk or logs."""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.aws_model import dumps
from pipelines.config import Account, Settings
from pipelines.demo.endpoint import LocalSageMaker
from pipelines.demo.fleet import SECRET_ENVIRONMENT_KEYS, FleetSpec, generate_fleet
from pipelines.extraction.redaction import REDACTED, redact
from pipelines.extraction.run import extract
from pipelines.storage.raw import RAW_ERRORS, RAW_JOBS, TERMINAL_STATUSES, parquet_files
from tests.conftest import FLEET_END


def stored_rows(warehouse: Path, table: str = RAW_JOBS) -> list[dict]:
    files = parquet_files(warehouse, table)
    if not files:
        return []
    return pa.concat_tables([pq.read_table(path) for path in files]).to_pylist()


def can_change(record: dict) -> bool:
    pool = record.get("WarmPoolStatus", {}).get("Status")
    return record["TrainingJobStatus"] not in TERMINAL_STATUSES or pool in ("Available", "InUse")


def completed_version(record: dict) -> dict:
    """The same job, finished an hour after its last transition began."""
    done = copy.deepcopy(record)
    end = record["SecondaryStatusTransitions"][-1]["StartTime"] + timedelta(hours=1)
    start = done.get("TrainingStartTime", done["CreationTime"])
    done["SecondaryStatusTransitions"][-1]["EndTime"] = end
    done["SecondaryStatusTransitions"].append({"Status": "Completed", "StartTime": end, "EndTime": end})
    seconds = int((end - start).total_seconds())
    done.update(
        TrainingJobStatus="Completed",
        SecondaryStatus="Completed",
        TrainingStartTime=start,
        TrainingEndTime=end,
        LastModifiedTime=end,
        TrainingTimeInSeconds=seconds,
        BillableTimeInSeconds=seconds,
    )
    return done


def describe_mode(settings: Settings, **extraction: object) -> Settings:
    """``settings`` reading every job with DescribeTrainingJob and ListTags (the default reads a first load
    with Search)."""
    return replace(settings, extraction=replace(settings.extraction, mode="describe", **extraction))


def test_first_run_stores_every_job_exactly_once_as_aws_returned_it(fleet: list[dict], settings: Settings) -> None:
    report = extract(describe_mode(settings))
    rows = stored_rows(settings.warehouse)
    assert report.failed == 0 and report.stored == len(fleet) == len(rows)
    by_arn = {row["training_job_arn"]: row for row in rows}
    assert len(by_arn) == len(fleet)
    for record in fleet:
        row = by_arn[record["TrainingJobArn"]]
        assert row["response_json"] == dumps(redact(record))
        assert (row["account_id"], row["region"]) == tuple(reversed(record["TrainingJobArn"].split(":")[3:5]))
        assert row["training_job_status"] == record["TrainingJobStatus"]
        assert row["creation_time"] == record["CreationTime"]


def test_a_night_without_changes_only_lists(settings: Settings, aws: LocalSageMaker) -> None:
    spec = FleetSpec(jobs=80, seed=1, days=1, end=FLEET_END)  # a busy day: 40 jobs still running or pooled
    aws.load_fleet(spec)
    fleet = list(generate_fleet(spec))
    overlap = timedelta(hours=12)
    settings = describe_mode(settings, overlap_hours=overlap.total_seconds() / 3600)
    extract(settings)
    aws.reset_stats()
    report = extract(settings)
    # Most changing jobs were created before the 12-hour window; the listing reaches back to them (one page
    # per region, not two calls a job) and returns each with the summary it had: none is described again.
    newest = {}
    for record in fleet:
        region = record["TrainingJobArn"].split(":")[3]
        newest[region] = max(newest.get(region, record["CreationTime"]), record["CreationTime"])
    changing = [r for r in fleet if can_change(r)]
    assert len([r for r in changing if r["CreationTime"] <= newest[r["TrainingJobArn"].split(":")[3]] - overlap]) > 10
    assert aws.stats()["calls"] == {"ListTrainingJobs": 2}
    assert report.stored == 0 and report.planned == 0 and sum(t.listed for t in report.targets) > 40
    assert len(stored_rows(settings.warehouse)) == len(fleet)


def test_next_run_stores_exactly_the_new_jobs_and_the_job_that_completed(
    fleet: list[dict], settings: Settings, aws: LocalSageMaker
) -> None:
    extract(settings)
    running = next(r for r in fleet if r["TrainingJobStatus"] == "InProgress")
    arrivals = list(generate_fleet(FleetSpec(jobs=6, seed=99, days=1, end=FLEET_END + timedelta(hours=6))))
    aws.upsert_jobs([*arrivals, completed_version(running)])
    report = extract(settings)
    new_rows = [row for row in stored_rows(settings.warehouse) if row["run_id"] == report.run_id]
    assert sorted(row["training_job_name"] for row in new_rows) == sorted(
        [r["TrainingJobName"] for r in arrivals] + [running["TrainingJobName"]]
    )
    finished = next(row for row in new_rows if row["training_job_name"] == running["TrainingJobName"])
    assert finished["training_job_status"] == "Completed"


def test_full_refresh_describes_everything_but_stores_nothing_unchanged(
    fleet: list[dict], settings: Settings, aws: LocalSageMaker
) -> None:
    extract(describe_mode(settings))
    aws.reset_stats()
    report = extract(describe_mode(settings), full_refresh=True)
    assert aws.stats()["calls"]["DescribeTrainingJob"] == len(fleet)
    assert report.stored == 0 and len(stored_rows(settings.warehouse)) == len(fleet)


def test_thirty_percent_throttling_loses_nothing(settings: Settings, aws: LocalSageMaker) -> None:
    spec = FleetSpec(jobs=120, seed=12, end=FLEET_END)
    aws.load_fleet(spec)
    fleet = list(generate_fleet(spec))
    aws.set_faults(throttle_rate=0.3, seed=3)
    # Real backoff sleeps, capped short so that the test stays quick; the retry decisions are botocore's.
    report = extract(describe_mode(settings, max_backoff_seconds=0.2))
    assert aws.stats()["injected"]["ThrottlingException"] > 40
    assert report.failed == 0 and not stored_rows(settings.warehouse, RAW_ERRORS)
    assert {row["training_job_arn"] for row in stored_rows(settings.warehouse)} == {r["TrainingJobArn"] for r in fleet}
    assert report.stats.throttles == aws.stats()["injected"]["ThrottlingException"]
    assert report.stats.retries >= report.stats.throttles


def test_a_job_that_always_fails_is_recorded_and_fetched_on_the_next_run(
    fleet: list[dict], settings: Settings, aws: LocalSageMaker
) -> None:
    broken = fleet[10]  # an old job: the next incremental listing will not reach it
    aws.set_faults(fail_describe=[broken["TrainingJobName"]])
    report = extract(describe_mode(settings, max_attempts=2))
    assert report.failed == 1 and report.stored == len(fleet) - 1
    errors = stored_rows(settings.warehouse, RAW_ERRORS)
    # A 5xx looks transient: the job is tried in the run's second round too, and each failure is recorded.
    assert [(e["training_job_name"], e["operation"], e["error_code"]) for e in errors] == [
        (broken["TrainingJobName"], "DescribeTrainingJob", "InternalFailure")
    ] * 2

    aws.set_faults()
    retry = extract(settings)
    assert retry.failed == 0 and retry.stored == 1
    assert sum(t.reasons.get("retry", 0) for t in retry.targets) == 1
    assert {row["training_job_arn"] for row in stored_rows(settings.warehouse)} == {r["TrainingJobArn"] for r in fleet}

    aws.reset_stats()
    extract(settings)  # resolved: not retried again (and the fleet's changing jobs are listed unchanged)
    assert aws.stats()["calls"].get("DescribeTrainingJob", 0) == 0


def test_a_crash_mid_run_loses_nothing_and_the_rerun_duplicates_nothing(fleet: list[dict], settings: Settings) -> None:
    class CrashAfterFirstBatch:
        def info(self, message: str) -> None:
            if message.endswith("fetched"):
                raise KeyboardInterrupt("power cut")

        warning = error = info

    with pytest.raises(KeyboardInterrupt):
        extract(settings, log=CrashAfterFirstBatch())
    assert len(stored_rows(settings.warehouse)) == settings.extraction.batch_size
    leftover = Path(parquet_files(settings.warehouse, RAW_JOBS)[0] + ".tmp-999")
    leftover.write_bytes(b"half a parquet file")  # what a crash mid-write leaves behind

    extract(settings)
    rows = stored_rows(settings.warehouse)
    assert len(rows) == len(fleet) == len({row["training_job_arn"] for row in rows})
    assert not leftover.exists()


@pytest.mark.parametrize("mode", ["search", "describe"])
def test_no_secret_reaches_the_warehouse_or_the_logs(
    mode: str,
    fleet: list[dict],
    settings: Settings,
    aws: LocalSageMaker,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # A new member AWS might add, with its own environment map, must be redacted too.
    extra_secret = "sk-live-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
    target = fleet[5]["TrainingJobName"]
    aws.set_faults(extra_members={target: {"SidecarConfig": {"Environment": {"API_KEY": extra_secret}}}})
    secrets = [v for r in fleet for k, v in r.get("Environment", {}).items() if k in SECRET_ENVIRONMENT_KEYS]
    secrets.append(extra_secret)
    with caplog.at_level(logging.DEBUG):  # the root logger at DEBUG, restored afterwards
        extract(replace(settings, extraction=replace(settings.extraction, mode=mode)))
    output = caplog.text + "".join(capfd.readouterr())

    written = []
    for path in settings.warehouse.rglob("*"):
        if path.is_file():
            written.append(path.read_bytes().decode("latin-1"))
            if path.suffix == ".parquet":  # compressed on disk: also search the decoded values
                written.append(json.dumps(pq.read_table(path).to_pylist(), default=str))
    everything = "\n".join(written) + output
    leaked = [s for s in secrets if s in everything]
    assert len(secrets) > 50 and not leaked
    stored = {row["training_job_name"]: json.loads(row["response_json"]) for row in stored_rows(settings.warehouse)}
    assert stored[target]["SidecarConfig"]["Environment"] == {"API_KEY": REDACTED}
    assert set(stored[target]["Environment"]) == set(fleet[5]["Environment"])  # the names stay


@pytest.mark.parametrize("mode", ["search", "describe"])
def test_members_botocore_does_not_know_are_kept(
    mode: str, fleet: list[dict], settings: Settings, aws: LocalSageMaker
) -> None:
    record = fleet[7]
    extra = {"FutureCostInsights": {"Score": 0.93}, "ResourceConfig": {"FutureNestedMember": "kept"}}
    aws.set_faults(extra_members={record["TrainingJobName"]: extra})
    extract(replace(settings, extraction=replace(settings.extraction, mode=mode)))
    stored = next(r for r in stored_rows(settings.warehouse) if r["training_job_name"] == record["TrainingJobName"])
    document = json.loads(stored["response_json"])
    assert document["FutureCostInsights"] == {"Score": 0.93}
    assert document["ResourceConfig"]["FutureNestedMember"] == "kept"
    assert document["ResourceConfig"]["VolumeSizeInGB"] == record["ResourceConfig"]["VolumeSizeInGB"]


def test_accounts_reached_through_assumed_roles(aws: LocalSageMaker, settings: Settings) -> None:
    spec = FleetSpec(jobs=60, seed=5, end=FLEET_END, accounts=("123456789012", "210987654321"), regions=("us-east-1",))
    aws.load_fleet(spec)
    research = Account(name="research", role_arn="arn:aws:iam::210987654321:role/WarehouseReader")
    report = extract(replace(settings, accounts=(Account(name="main"), research), regions=("us-east-1",)))
    assert [t.label for t in report.targets] == ["main/us-east-1", "research/us-east-1"]
    rows = stored_rows(settings.warehouse)
    assert len(rows) == 60
    assert all(row["account_id"] == row["training_job_arn"].split(":")[4] for row in rows)
    assert {row["account_id"] for row in rows} == {"123456789012", "210987654321"}


def test_an_unreadable_region_is_recorded_and_the_others_are_stored(
    fleet: list[dict], settings: Settings, aws: LocalSageMaker
) -> None:
    aws.set_faults(fail_regions=["eu-west-1"])
    report = extract(replace(settings, extraction=replace(settings.extraction, max_attempts=2)))
    assert [t.label for t in report.failed_targets] == ["default/eu-west-1"]
    assert report.stored == len([r for r in fleet if ":us-east-1:" in r["TrainingJobArn"]])
    errors = stored_rows(settings.warehouse, RAW_ERRORS)
    assert [(e["region"], e["operation"], e["training_job_name"]) for e in errors] == [
        ("eu-west-1", "Search", None)  # a first load reads with Search
    ]
    aws.set_faults()
    assert extract(settings).stored == len([r for r in fleet if ":eu-west-1:" in r["TrainingJobArn"]])


def test_a_permanent_error_is_not_tried_again_in_the_same_run(
    fleet: list[dict], settings: Settings, aws: LocalSageMaker
) -> None:
    aws.set_faults(deny_operations=["DescribeTrainingJob"])
    report = extract(describe_mode(settings))
    assert report.failed == len(fleet) and report.stored == 0
    assert [t.failed_codes for t in report.targets] == [{"AccessDeniedException": t.planned} for t in report.targets]
    # AccessDenied is neither retried by botocore nor given the second round that transient errors get.
    assert aws.stats()["calls"]["DescribeTrainingJob"] == len(fleet)


def test_sessions_share_botocore_data_but_not_credentials(
    aws: LocalSageMaker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A run makes a session per account and thread: botocore's data files are parsed once per process (one
    loader per AWS_DATA_PATH), while each session still reads its own credentials from the environment."""
    import boto3

    from pipelines.extraction.aws import base_session

    first = base_session()
    first.client("sagemaker", region_name="us-east-1")
    first_key = first.get_credentials().access_key  # read now, from the environment as it is
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSECONDSESSION")
    second = base_session()
    loader = first._session.get_component("data_loader")
    assert second._session.get_component("data_loader") is loader
    assert len(loader.search_paths) == len(set(loader.search_paths))  # boto3 adds its folder once, not per session
    assert second.get_credentials().access_key == "AKIDSECONDSESSION" != first_key
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))  # a user's own models: another loader, searching there
    own = boto3.Session()._session.get_component("data_loader")
    assert own is not loader and str(tmp_path) in own.search_paths
