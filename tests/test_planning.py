"""The pure parts of extraction: what to fetch, what to redact, how fast to send."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from pipelines.extraction.aws import RateLimiter
from pipelines.extraction.planning import listing_start, plan_fetches
from pipelines.extraction.redaction import REDACTED, redact
from pipelines.storage.raw import StoredJob, TargetState

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def stored(name: str, status: str = "Completed", minutes: int = 0, pool: str | None = None) -> StoredJob:
    created = T0 + timedelta(minutes=minutes)
    return StoredJob(f"arn:{name}", name, created, created + timedelta(hours=1), status, pool)


def summary(job: StoredJob, **changes: object) -> dict:
    base = {
        "TrainingJobName": job.name,
        "TrainingJobArn": job.arn,
        "CreationTime": job.creation_time,
        "LastModifiedTime": job.last_modified_time,
        "TrainingJobStatus": job.status,
    }
    if job.warm_pool_status:
        base["WarmPoolStatus"] = {"Status": job.warm_pool_status}
    return {**base, **changes}


def test_listing_starts_an_overlap_before_the_newest_stored_job() -> None:
    state = TargetState(jobs={j.arn: j for j in (stored("a", minutes=0), stored("b", minutes=90))})
    assert listing_start(state, timedelta(hours=1), full_refresh=False) == T0 + timedelta(minutes=30)
    assert listing_start(state, timedelta(hours=1), full_refresh=True) is None
    assert listing_start(TargetState(), timedelta(hours=1), full_refresh=False) is None


def test_plan_fetches_new_changed_changing_and_failed_jobs_only() -> None:
    done = stored("done", minutes=1)
    running = stored("running", "InProgress", minutes=2)
    pooled = stored("pooled", minutes=3, pool="Available")
    settled_pool = stored("settled", minutes=4, pool="Terminated")
    status_changed = stored("stopping", "Stopping", minutes=5)
    old_running = stored("old-running", "InProgress", minutes=-10_000)  # outside the listing window
    weird = stored("weird", "Paused", minutes=6)  # a status string SageMaker may add some day
    state = TargetState(
        jobs={j.arn: j for j in (done, running, pooled, settled_pool, status_changed, old_running, weird)},
        failed_names=frozenset({"lost-one"}),
    )
    new = stored("new", minutes=9)
    listed = [
        summary(done),
        summary(running),
        summary(pooled),
        summary(settled_pool),
        summary(status_changed, TrainingJobStatus="Stopped"),
        summary(weird),
        summary(new),
    ]
    plan = plan_fetches(listed, state, full_refresh=False)
    reasons = {job.name: job.reason for job in plan}
    assert reasons == {
        "old-running": "can-change",
        "running": "can-change",
        "pooled": "can-change",
        "stopping": "changed",
        "weird": "can-change",
        "new": "new",
        "lost-one": "retry",
    }
    assert [job.name for job in plan][:2] == ["old-running", "running"]  # oldest first, retries last
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
