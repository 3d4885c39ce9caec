"""The pure parts of extraction: what to fetch, what to redact, how fast to send."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from pipelines.extraction.aws import RateLimiter
from pipelines.extraction.planning import (
    JobToFetch,
    choose_mode,
    describe_calls,
    describe_needed,
    fetch_by_search,
    listing_start,
    plan_fetches,
    plan_found,
    search_start,
)
from pipelines.extraction.redaction import REDACTED, redact
from pipelines.storage.raw import StoredJob, TargetState, search_view_sha256

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def stored(name: str, status: str = "Completed", minutes: float = 0, pool: str | None = None) -> StoredJob:
    created = T0 + timedelta(minutes=minutes)
    secondary = "Training" if status == "InProgress" else None  # read for running jobs only
    return StoredJob(
        f"arn:{name}", name, created, created + timedelta(hours=1), status, pool, secondary_status=secondary
    )


def summary(job: StoredJob, **changes: object) -> dict:
    base = {
        "TrainingJobName": job.name,
        "TrainingJobArn": job.arn,
        "CreationTime": job.creation_time,
        "LastModifiedTime": job.last_modified_time,
        "TrainingJobStatus": job.status,
        "SecondaryStatus": job.secondary_status or job.status,
    }
    if job.warm_pool_status:
        base["WarmPoolStatus"] = {"Status": job.warm_pool_status}
    return {**base, **changes}


def test_listing_starts_an_overlap_before_the_newest_stored_job() -> None:
    state = TargetState(jobs={j.arn: j for j in (stored("a", minutes=0), stored("b", minutes=90))})
    assert listing_start(state, timedelta(hours=1), full_refresh=False) == T0 + timedelta(minutes=30)
    assert listing_start(state, timedelta(hours=1), full_refresh=True) is None
    assert listing_start(TargetState(), timedelta(hours=1), full_refresh=False) is None


def test_listing_reaches_back_to_a_job_still_running_when_that_costs_fewer_calls_than_describing_it() -> None:
    newest = stored("newest", minutes=10_000)
    day_long = stored("day-long", "InProgress", minutes=10_000 - 26 * 60)  # before a 24-hour window
    week_long = stored("week-long", "InProgress", minutes=10_000 - 7 * 24 * 60)
    window = T0 + timedelta(minutes=10_000 - 24 * 60)

    def start(*others: StoredJob, fetch_calls: Callable[[int], float] = describe_calls) -> datetime | None:
        state = TargetState(jobs={j.arn: j for j in (newest, day_long, week_long, *others)})
        return listing_start(state, timedelta(hours=24), full_refresh=False, fetch_calls=fetch_calls)

    # Few jobs between them: one page reaches both running jobs (instead of 2 x 2 calls).
    assert start() == week_long.creation_time - timedelta(seconds=1)
    # 150 jobs a day: listing back a week costs 9 pages, back to the day-long job 1 page plus 2 calls to
    # describe the week-long one.
    busy = [stored(f"done-{i}", minutes=10_000 - 7 * 24 * 60 + i * 9.6) for i in range(1_050)]
    assert start(*busy) == day_long.creation_time - timedelta(seconds=1)
    # Read with Search (20 jobs a call), the two jobs cost a tenth of a call: the listing keeps its window.
    assert start(*busy, fetch_calls=lambda jobs: jobs / 20) == window
    # 500 jobs in the two hours before the window: 5 pages or more to reach either; describing both is 4 calls.
    busier = [stored(f"done-{i}", minutes=10_000 - 26 * 60 + i * 0.2) for i in range(500)]
    assert start(*busier) == window


def test_plan_fetches_new_changed_unlisted_changing_and_failed_jobs_only() -> None:
    done = stored("done", minutes=1)
    running = stored("running", "InProgress", minutes=2)
    pooled = stored("pooled", minutes=3, pool="Available")
    settled_pool = stored("settled", minutes=4, pool="Terminated")
    status_changed = stored("stopping", "Stopping", minutes=5)
    old_running = stored("old-running", "InProgress", minutes=-10_000)  # outside the listing window
    weird = stored("weird", "Paused", minutes=6)  # a status string SageMaker may add some day
    progressed = stored("progressed", "InProgress", minutes=7)
    uploading = stored("uploading", "InProgress", minutes=7)
    pool_reused = stored("pool-reused", minutes=8, pool="Available")
    damaged = stored("damaged", minutes=9)
    state = TargetState(
        jobs={
            j.arn: j
            for j in (
                done,
                running,
                pooled,
                settled_pool,
                status_changed,
                old_running,
                weird,
                progressed,
                uploading,
                pool_reused,
                damaged,
            )
        },
        failed_names=frozenset({"lost-one"}),
        lost_names=frozenset({"damaged"}),
    )
    new = stored("new", minutes=10)
    listed = [
        summary(done),
        summary(running),  # still running, nothing moved: its record would come back the same
        summary(pooled),  # its pool still Available
        summary(settled_pool),
        summary(status_changed, TrainingJobStatus="Stopped"),
        summary(weird),
        summary(progressed, LastModifiedTime=T0 + timedelta(minutes=70)),  # modified since
        summary(uploading, SecondaryStatus="Uploading"),  # a new secondary status, even at the same time
        summary(pool_reused, WarmPoolStatus={"Status": "Reused"}),
        summary(damaged),  # unchanged in SageMaker, but its stored record was lost
        summary(new),
    ]
    plan = plan_fetches(listed, state, full_refresh=False)
    reasons = {job.name: job.reason for job in plan}
    assert reasons == {
        "old-running": "can-change",
        "stopping": "changed",
        "progressed": "changed",
        "uploading": "changed",
        "pool-reused": "changed",
        "damaged": "lost",
        "new": "new",
        "lost-one": "retry",
    }
    assert [job.name for job in plan][:2] == ["old-running", "stopping"]  # oldest first, retries last
    assert plan[-1].name == "lost-one"


def test_full_refresh_fetches_every_listed_job() -> None:
    jobs = [stored(str(i), minutes=i) for i in range(5)]
    state = TargetState(jobs={j.arn: j for j in jobs})
    plan = plan_fetches([summary(j) for j in jobs], state, full_refresh=True)
    assert [j.name for j in plan] == [str(i) for i in range(5)]


def test_redaction_keeps_names_and_replaces_values_at_any_depth() -> None:
    record = {
        "Environment": {"TOKEN": "s3cr3t", "DEBUG": "1"},
        "Nested": [{"Environment": {"KEY": "abc"}}],
        "HyperParameters": {"Environment": "not a map, left alone"},
    }
    assert redact(record) == {
        "Environment": {"TOKEN": REDACTED, "DEBUG": REDACTED},
        "Nested": [{"Environment": {"KEY": REDACTED}}],
        "HyperParameters": {"Environment": "not a map, left alone"},
    }
    assert record["Environment"]["TOKEN"] == "s3cr3t"  # the input is not modified


def test_rate_limiter_holds_the_average_rate() -> None:
    limiter = RateLimiter(rate=50)
    started = time.monotonic()
    for _ in range(100):
        limiter.acquire()
    # 50 tokens are available at once, the next 50 come at 50 per second: at least ~1 second.
    assert time.monotonic() - started >= 0.9


def test_lost_jobs_are_fetched_by_name_and_deleted_ones_are_not_asked_again() -> None:
    deleted_while_running = stored("deleted", "InProgress", minutes=-10_000)  # outside the listing window
    still_running = stored("running", "InProgress", minutes=-10_000)
    state = TargetState(
        jobs={j.arn: j for j in (deleted_while_running, still_running)},
        lost_names=frozenset({"raw-file-damaged"}),
        gone_names=frozenset({"deleted"}),
    )
    reasons = {job.name: job.reason for job in plan_fetches([], state, full_refresh=False)}
    assert reasons == {"running": "can-change", "raw-file-damaged": "lost"}


# -- Search mode ------------------------------------------------------------------------------------------


def search_record(name: str, **members: object) -> dict:
    base = {
        "TrainingJobName": name,
        "TrainingJobArn": f"arn:{name}",
        "CreationTime": T0,
        "LastModifiedTime": T0 + timedelta(hours=1),
        "TrainingJobStatus": "Completed",
        "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "Tags": [{"Key": "team", "Value": "fraud"}],
    }
    return {**base, **members}


def test_auto_searches_first_loads_and_full_refreshes_and_describes_small_nights() -> None:
    empty, some = TargetState(), TargetState(jobs={"arn:a": stored("a")})
    assert choose_mode("auto", empty, full_refresh=False) == "search"
    assert choose_mode("auto", some, full_refresh=True) == "search"
    assert choose_mode("auto", some, full_refresh=False) == "describe"
    assert choose_mode("describe", empty, full_refresh=True) == "describe"
    assert choose_mode("search", some, full_refresh=False) == "search"
    # A listed night switches to Search by name past the threshold; explicit modes do not depend on size.
    assert not fetch_by_search("auto", 100, 100) and fetch_by_search("auto", 101, 100)
    assert fetch_by_search("search", 0, 100) and not fetch_by_search("describe", 10**6, 100)


def test_search_starts_an_overlap_before_the_watermark_of_the_last_complete_read() -> None:
    jobs = {j.arn: j for j in (stored("a", minutes=0), stored("b", minutes=90))}
    # Stored jobs alone say nothing: a read that stopped half-way may have stored the newest changes only.
    assert search_start(TargetState(jobs=jobs), timedelta(hours=1), full_refresh=False) is None
    state = TargetState(jobs=jobs, search_watermark=T0 + timedelta(hours=5))
    assert search_start(state, timedelta(hours=1), full_refresh=False) == T0 + timedelta(hours=4)
    assert search_start(state, timedelta(hours=1), full_refresh=True) is None


def test_only_records_naming_no_instances_need_describe_unless_profiled_jobs_are_asked_for() -> None:
    assert describe_needed(search_record("gpu")) is None
    serverless = search_record("sft", ResourceConfig={"VolumeSizeInGB": 0})
    assert describe_needed(serverless) == "no-instances"
    assert describe_needed(search_record("none", ResourceConfig=None)) == "no-instances"
    groups = {"InstanceGroups": [{"InstanceType": "ml.p4d.24xlarge", "InstanceCount": 2, "InstanceGroupName": "a"}]}
    flexible = {"InstancePreferences": [{"InstanceType": "ml.p5.48xlarge", "InstanceCount": 1}]}
    assert describe_needed(search_record("hetero", ResourceConfig=groups)) is None
    assert describe_needed(search_record("flexible", ResourceConfig=flexible)) is None
    profiled = search_record("prof", ProfilerConfig={"S3OutputPath": "s3://b/p", "DisableProfiler": False})
    assert describe_needed(profiled) is None
    assert describe_needed(profiled, describe_profiled_jobs=True) == "profiler"
    disabled = search_record("off", ProfilerConfig={"DisableProfiler": True})
    assert describe_needed(disabled, describe_profiled_jobs=True) is None


def test_a_search_record_is_stored_unless_it_matches_the_stored_record_without_describe_only_members() -> None:
    record = search_record("a")
    described = {**record, "ProfilingStatus": "Enabled", "ProgressInfo": {"CurrentStep": 10}}
    as_stored = replace(stored("a"), search_view_sha256=search_view_sha256(described))
    assert plan_found(record, as_stored, "changed") is None  # the fuller Describe record stays
    changed = search_record("a", TrainingJobStatus="Stopped")
    assert plan_found(changed, as_stored, "changed") == JobToFetch("a", T0, "changed")
    assert plan_found(record, None, "new").found == record  # type: ignore[union-attr]
    # An older state than the stored one (a search index lagging behind Describe) is not stored.
    newer = replace(as_stored, last_modified_time=T0 + timedelta(hours=2))
    assert plan_found(changed, newer, "changed") is None
    serverless = search_record("b", ResourceConfig={"VolumeSizeInGB": 0})
    assert plan_found(serverless, None, "new").describe_for == "no-instances"  # type: ignore[union-attr]
