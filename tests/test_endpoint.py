"""The local SageMaker endpoint: the fleet round-trips unchanged over real HTTP, listing behaves like
AWS, and faults can be injected."""

from __future__ import annotations

import time
from datetime import timedelta

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from pipelines.aws_model import describe_only_members
from pipelines.demo.endpoint import LocalSageMaker
from pipelines.extraction.search import search_time
from tests.conftest import SMALL_FLEET


def client(region: str = "us-east-1", attempts: int = 1):
    # Plain boto3 with the standard settings the fixture put in the environment; retries off unless asked.
    config = Config(retries={"mode": "standard", "total_max_attempts": attempts})
    return boto3.client("sagemaker", region_name=region, config=config)


def regional(fleet: list[dict], region: str) -> list[dict]:
    return [r for r in fleet if r["TrainingJobArn"].split(":")[3] == region]


def test_describe_and_list_tags_return_the_generated_records_unchanged(fleet: list[dict]) -> None:
    for region in ("us-east-1", "eu-west-1"):
        sagemaker = client(region)
        for record in regional(fleet, region)[::17]:
            response = sagemaker.describe_training_job(TrainingJobName=record["TrainingJobName"])
            response.pop("ResponseMetadata")
            assert response == {k: v for k, v in record.items() if k != "Tags"}
            tags = sagemaker.list_tags(ResourceArn=record["TrainingJobArn"])["Tags"]
            assert tags == record["Tags"]


def test_listing_pages_through_every_job_of_the_region_oldest_first(fleet: list[dict]) -> None:
    pages = list(
        client("eu-west-1")
        .get_paginator("list_training_jobs")
        .paginate(SortBy="CreationTime", SortOrder="Ascending", PaginationConfig={"PageSize": 100})
    )
    names = [s["TrainingJobName"] for page in pages for s in page["TrainingJobSummaries"]]
    assert names == [r["TrainingJobName"] for r in regional(fleet, "eu-west-1")]
    assert len(pages) == -(-len(names) // 100)


def test_creation_time_filter_is_applied_before_paging(fleet: list[dict]) -> None:
    records = regional(fleet, "us-east-1")
    cutoff = records[-30]["CreationTime"] - timedelta(milliseconds=1)
    response = client().list_training_jobs(CreationTimeAfter=cutoff, MaxResults=100)
    assert [s["TrainingJobName"] for s in response["TrainingJobSummaries"]] == [
        r["TrainingJobName"] for r in records[-30:]
    ]
    assert "NextToken" not in response


def test_status_filter_is_applied_after_paging_so_pages_can_be_empty_with_a_token(fleet: list[dict]) -> None:
    sagemaker = client()
    response = sagemaker.list_training_jobs(StatusEquals="InProgress", MaxResults=10)
    assert response["TrainingJobSummaries"] == [] and response["NextToken"]
    summaries = [
        s
        for page in sagemaker.get_paginator("list_training_jobs").paginate(
            StatusEquals="InProgress", PaginationConfig={"PageSize": 10}
        )
        for s in page["TrainingJobSummaries"]
    ]
    expected = [r["TrainingJobName"] for r in regional(fleet, "us-east-1") if r["TrainingJobStatus"] == "InProgress"]
    assert expected and [s["TrainingJobName"] for s in summaries] == expected


def test_summaries_carry_warm_pool_status(fleet: list[dict]) -> None:
    pooled = {r["TrainingJobName"]: r["WarmPoolStatus"] for r in regional(fleet, "us-east-1") if "WarmPoolStatus" in r}
    summaries = {
        s["TrainingJobName"]: s
        for page in client().get_paginator("list_training_jobs").paginate(PaginationConfig={"PageSize": 100})
        for s in page["TrainingJobSummaries"]
    }
    assert pooled and all(summaries[name]["WarmPoolStatus"] == status for name, status in pooled.items())


def test_throttling_is_injected_as_throttling_exception(fleet: list[dict], aws: LocalSageMaker) -> None:
    aws.set_faults(throttle_rate=1.0)
    with pytest.raises(ClientError) as raised:
        client().describe_training_job(TrainingJobName=fleet[0]["TrainingJobName"])
    assert raised.value.response["Error"]["Code"] == "ThrottlingException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_server_errors_are_injected_and_botocore_retries_them(fleet: list[dict], aws: LocalSageMaker) -> None:
    aws.set_faults(error_rate=1.0)
    with pytest.raises(ClientError) as raised:
        client(attempts=3).list_training_jobs()
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert aws.stats()["calls"]["ListTrainingJobs"] == 3


def test_a_partial_throttle_rate_throttles_about_that_share(fleet: list[dict], aws: LocalSageMaker) -> None:
    aws.set_faults(throttle_rate=0.3, seed=5)
    sagemaker = client()
    outcomes = []
    for _ in range(200):
        try:
            sagemaker.list_training_jobs(MaxResults=1)
            outcomes.append(False)
        except ClientError:
            outcomes.append(True)
    assert 30 <= sum(outcomes) <= 90


def test_latency_is_added_to_every_call(fleet: list[dict], aws: LocalSageMaker) -> None:
    aws.set_faults(latency_ms=200)
    started = time.monotonic()
    client().list_training_jobs(MaxResults=1)
    assert time.monotonic() - started >= 0.2


def test_one_job_can_be_made_to_fail_and_one_region_to_go_dark(fleet: list[dict], aws: LocalSageMaker) -> None:
    broken, healthy = regional(fleet, "us-east-1")[:2]
    aws.set_faults(fail_describe=[broken["TrainingJobName"]], fail_regions=["eu-west-1"])
    with pytest.raises(ClientError):
        client().describe_training_job(TrainingJobName=broken["TrainingJobName"])
    assert client().describe_training_job(TrainingJobName=healthy["TrainingJobName"])["TrainingJobArn"]
    with pytest.raises(ClientError) as raised:
        client("eu-west-1").list_training_jobs()
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503


def test_members_unknown_to_botocore_can_be_added_to_the_wire(fleet: list[dict], aws: LocalSageMaker) -> None:
    record = regional(fleet, "us-east-1")[3]
    aws.set_faults(extra_members={record["TrainingJobName"]: {"QuantumConfig": {"Qubits": 8}}})
    sagemaker = client()
    captured = {}
    sagemaker.meta.events.register(
        "after-call.sagemaker.DescribeTrainingJob",
        lambda http_response, **_: captured.update(body=http_response.content),
    )
    parsed = sagemaker.describe_training_job(TrainingJobName=record["TrainingJobName"])
    assert b'"QuantumConfig": {"Qubits": 8}' in captured["body"]
    assert "QuantumConfig" not in parsed  # botocore drops what its model does not know


def test_load_replaces_the_fleet(aws: LocalSageMaker) -> None:
    aws.load_fleet(SMALL_FLEET)
    assert aws.load_fleet(type(SMALL_FLEET)(jobs=10, seed=1, end=SMALL_FLEET.end, regions=("us-east-1",))) == 10
    listed = client().list_training_jobs(MaxResults=100)["TrainingJobSummaries"]
    assert len(listed) == 10


# -- Search ---------------------------------------------------------------------------------------------


def searched(region: str = "us-east-1", **params: object) -> list[dict]:
    pages = client(region).get_paginator("search").paginate(Resource="TrainingJob", **params)
    return [result["TrainingJob"] for page in pages for result in page["Results"]]


def test_search_returns_whole_records_with_tags_and_without_the_describe_only_members(fleet: list[dict]) -> None:
    records = {r["TrainingJobName"]: r for r in searched("eu-west-1", PaginationConfig={"PageSize": 100})}
    expected = regional(fleet, "eu-west-1")
    assert sorted(records) == sorted(r["TrainingJobName"] for r in expected)
    hidden = describe_only_members()
    assert any(hidden & set(r) for r in expected), "the fleet should have members only Describe returns"
    for record in expected:
        assert records[record["TrainingJobName"]] == {k: v for k, v in record.items() if k not in hidden}


def test_search_filters_sorts_and_pages_like_the_api_reference(fleet: list[dict]) -> None:
    records = regional(fleet, "us-east-1")
    by_modification = sorted(records, key=lambda r: (r["LastModifiedTime"], r["TrainingJobArn"]))
    cutoff = by_modification[-25]["LastModifiedTime"].replace(microsecond=0)
    window = [r for r in by_modification if r["LastModifiedTime"] > cutoff]
    after = {"Filters": [{"Name": "LastModifiedTime", "Operator": "GreaterThan", "Value": search_time(cutoff)}]}
    found = searched(SearchExpression=after, SortBy="LastModifiedTime", SortOrder="Ascending", MaxResults=7)
    assert [r["TrainingJobName"] for r in found] == [r["TrainingJobName"] for r in window]
    # LessThan on a time, descending, and the default sort (LastModifiedTime, descending).
    before = {"Filters": [{"Name": "LastModifiedTime", "Operator": "LessThan", "Value": search_time(cutoff)}]}
    assert {r["TrainingJobName"] for r in searched(SearchExpression=before)} == {
        r["TrainingJobName"] for r in records if r["LastModifiedTime"] < cutoff
    }
    newest_first = searched(MaxResults=100)
    assert [r["TrainingJobName"] for r in newest_first] == [r["TrainingJobName"] for r in reversed(by_modification)]
    # Equals joined by Or: several jobs by name in one call; a tag and a nested member by dotted name.
    names = [r["TrainingJobName"] for r in records[:5]]
    either = {
        "Filters": [{"Name": "TrainingJobName", "Operator": "Equals", "Value": n} for n in names],
        "Operator": "Or",
    }
    assert sorted(r["TrainingJobName"] for r in searched(SearchExpression=either)) == sorted(names)
    team = next(t["Value"] for r in records for t in r["Tags"] if t["Key"] == "team")
    tagged = {"Filters": [{"Name": "Tags.team", "Operator": "Equals", "Value": team}]}
    assert {r["TrainingJobName"] for r in searched(SearchExpression=tagged)} == {
        r["TrainingJobName"] for r in records if {"Key": "team", "Value": team} in r["Tags"]
    }


def test_search_refuses_pages_past_100_and_more_than_20_filters(fleet: list[dict]) -> None:
    with pytest.raises(ClientError, match="MaxResults"):
        client().search(Resource="TrainingJob", MaxResults=101)
    many = {"Filters": [{"Name": "TrainingJobName", "Operator": "Equals", "Value": str(i)} for i in range(21)]}
    with pytest.raises(ClientError, match="at most 20"):
        client().search(Resource="TrainingJob", SearchExpression=many)


def test_per_operation_rate_limits_throttle_calls_past_the_rate(aws: LocalSageMaker) -> None:
    aws.set_faults(rate_limits={"Search": 1})
    outcomes = []
    for _ in range(6):  # back to back: the first passes, the next ones within the second are throttled
        try:
            client().search(Resource="TrainingJob", MaxResults=1)
            outcomes.append("ok")
        except ClientError as error:
            outcomes.append(error.response["Error"]["Code"])
    assert outcomes[0] == "ok" and "ThrottlingException" in outcomes[1:]
    client().list_training_jobs(MaxResults=1)  # other operations are not limited
    time.sleep(1.1)  # the bucket refills at 1 a second
    client().search(Resource="TrainingJob", MaxResults=1)
