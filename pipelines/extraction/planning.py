"""Deciding what to fetch: pure functions of what is stored and what ListTrainingJobs or Search returned.

Incremental by default. The listing starts at the newest stored creation time minus an overlap (never at
``LastModifiedTimeAfter``, which is reported to page slowly and throttle), or earlier, at a job that can
still change, when that costs fewer calls than describing it. A listed job is fetched when it is new or
its summary changed (status, a running job's secondary status, ``LastModifiedTime``, warm-pool status);
a listed job whose summary did not change is not, even one that can still change (what its record says
between two changes of its summary is not read; see docs/extraction.md). Stored jobs that can still
change (not yet terminal, or holding a warm pool) and that the listing does not reach, jobs whose last
fetch failed, and published jobs whose raw record was lost (a damaged file moved to quarantine) are
fetched again.

Search mode (:func:`choose_mode`) reads whole records, 100 a call, modified after the newest stored
modification time minus the same overlap; a record that matches the stored one (compared without the
members only Describe returns) is not stored again, and :func:`describe_needed` says which records
still need DescribeTrainingJob.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pipelines.storage.raw import StoredJob, TargetState, search_view_sha256


@dataclass(frozen=True)
class JobToFetch:
    name: str
    creation_time: datetime | None
    reason: str  # new, changed, can-change, retry, lost, full-refresh
    found: dict[str, Any] | None = field(default=None, compare=False)  # the record Search returned, if any
    describe_for: str | None = None  # why a Search record still needs DescribeTrainingJob


def choose_mode(configured: str, state: TargetState, full_refresh: bool) -> str:
    """How a target's run starts, before any call: ``describe`` (list, then DescribeTrainingJob and
    ListTags, two calls a job) or ``search`` (Search, one call per 100 jobs). ``auto`` searches a full
    load (nothing stored yet) and a full refresh, and starts every other night in Describe mode (see
    :func:`fetch_by_search` for a large night)."""
    if configured != "auto":
        return configured
    return "search" if full_refresh or not state.jobs else "describe"


def fetch_by_search(configured: str, planned: int, search_above_jobs: int) -> bool:
    """Whether a listed night's planned jobs are read with Search (20 names a call) instead of
    Describe: always in Search mode; in ``auto`` when there are more than ``search_above_jobs`` of them.
    Below that, Describe costs at most 2 x search_above_jobs calls and keeps every member."""
    return configured == "search" or (configured == "auto" and planned > search_above_jobs)


def search_start(state: TargetState, overlap: timedelta, full_refresh: bool) -> datetime | None:
    """The ``LastModifiedTime`` after which a Search-mode run reads jobs; None reads every job. It is
    the watermark of the last Search read that ran to its end, not the newest stored record: a read
    that was stopped or failed half-way stored jobs in its own order, and what it never reached may be
    older than what it stored."""
    if full_refresh or state.search_watermark is None:
        return None
    return state.search_watermark - overlap


_INSTANCE_MEMBERS = ("InstanceType", "SelectedInstanceType", "InstanceGroups", "InstancePreferences")


def describe_needed(record: dict[str, Any], describe_profiled_jobs: bool = False) -> str | None:
    """Why a Search record must be completed with DescribeTrainingJob, or None. A record that names no
    instances is a serverless job (or one whose resources only Describe knows): it is billed per token,
    and BillableTokenCount and ServerlessJobConfig come only from Describe. With
    ``describe_profiled_jobs``, a job with an enabled profiler too, for its profiler rule results."""
    resources = record.get("ResourceConfig") or {}
    if not any(
        resources.get(k) for k in ("InstanceType", "SelectedInstanceType", "InstanceGroups", "InstancePreferences")
    ):
        return "no-instances"
    profiler = record.get("ProfilerConfig") or {}
    if describe_profiled_jobs and profiler and not profiler.get("DisableProfiler"):
        return "profiler"
    return None


def plan_found(
    record: dict[str, Any],
    stored: StoredJob | None,
    reason: str,
    describe_profiled_jobs: bool = False,
    view_sha256: str | None = None,
) -> JobToFetch | None:
    """What to do with a record Search returned: nothing when it matches the stored record without the
    members only Describe returns (so a fuller Describe record is never replaced by a Search record of
    the same state) or when it is older than the stored record; else store it, completed with Describe
    when :func:`describe_needed` says so. ``view_sha256``: the record's search-view hash, if the caller
    has it already."""
    if stored is not None:
        if stored.search_view_sha256 == (view_sha256 or search_view_sha256(record)):
            return None
        modified, stored_modified = record.get("LastModifiedTime"), stored.last_modified_time
        if modified is not None and stored_modified is not None and modified < stored_modified:
            return None  # an older state than the stored one (a lagging search index): keep the newer
    return JobToFetch(
        record["TrainingJobName"],
        record.get("CreationTime"),
        reason,
        found=record,
        describe_for=describe_needed(record, describe_profiled_jobs),
    )


LISTING_PAGE = 100  # summaries per ListTrainingJobs call


def describe_calls(jobs: int) -> float:
    """Calls to read ``jobs`` jobs with DescribeTrainingJob and ListTags."""
    return 2.0 * jobs


def listing_start(
    state: TargetState,
    overlap: timedelta,
    full_refresh: bool,
    fetch_calls: Callable[[int], float] = describe_calls,
) -> datetime | None:
    """The ``CreationTimeAfter`` for this run's listing; None lists everything. It starts ``overlap``
    before the newest stored job, or earlier, at a job that can still change, when listing back to it
    costs fewer calls than fetching the changing jobs it would reach (``fetch_calls``: two calls a job
    with Describe, one per 20 with Search): a job the listing returns unchanged is not fetched (see
    :func:`plan_fetches`). The stored jobs created in between stand for the listing's extra pages."""
    newest = state.newest_creation_time
    if full_refresh or newest is None:
        return None
    start = newest - overlap
    created = sorted(job.creation_time for job in state.jobs.values() if job.creation_time <= start)
    behind = sorted(
        job.creation_time
        for job in state.jobs.values()
        if job.can_change and job.creation_time <= start and job.name not in state.gone_names
    )
    best, cost = start, fetch_calls(len(behind))  # list the window only, fetch every changing job before it
    for fetched, moment in enumerate(behind):  # or list back to the changing job ``behind[fetched]``
        pages = (len(created) - bisect_left(created, moment)) / LISTING_PAGE
        if pages + fetch_calls(fetched) < cost:
            best, cost = moment - timedelta(seconds=1), pages + fetch_calls(fetched)
    return best


def plan_fetches(summaries: Iterable[dict[str, Any]], state: TargetState, full_refresh: bool) -> list[JobToFetch]:
    """The jobs to describe, oldest first, each once. A running job or a live warm pool the listing
    returns unchanged is left alone: on a night without changes only the listing is called."""
    plan: dict[str, JobToFetch] = {}
    unchanged: set[str] = set()
    for summary in summaries:
        name = summary["TrainingJobName"]
        stored = state.jobs.get(summary["TrainingJobArn"])
        if full_refresh:
            reason = "full-refresh"
        elif stored is None:
            reason = "new"
        elif _summary_changed(summary, stored):
            reason = "changed"
        elif name in state.failed_names:
            reason = "retry"
        elif name in state.lost_names:
            reason = "lost"
        else:
            unchanged.add(name)
            continue
        plan[name] = JobToFetch(name, summary.get("CreationTime"), reason)
    plan.update(refetches(state, plan.keys() | unchanged))
    return sorted(plan.values(), key=lambda job: (job.creation_time is None, job.creation_time or 0, job.name))


def refetches(state: TargetState, seen: Collection[str]) -> dict[str, JobToFetch]:
    """Stored jobs that must be read again although the listing (or Search) did not return them
    (``seen``: the names it returned): ones that can still change, ones whose last fetch failed, and ones
    whose raw record was lost."""
    seen = set(seen)
    again: dict[str, JobToFetch] = {}
    for stored in state.jobs.values():
        # A job deleted while it could still change: SageMaker said 'not found'; asking again is pointless.
        if stored.name not in seen and stored.can_change and stored.name not in state.gone_names:
            again[stored.name] = JobToFetch(stored.name, stored.creation_time, "can-change")
    for name in sorted(state.failed_names - again.keys() - seen):
        again[name] = JobToFetch(name, None, "retry")
    for name in sorted(state.lost_names - again.keys() - seen):
        again[name] = JobToFetch(name, None, "lost")
    return again


def _summary_changed(summary: dict[str, Any], stored: StoredJob) -> bool:
    warm_pool = (summary.get("WarmPoolStatus") or {}).get("Status")
    secondary = summary.get("SecondaryStatus")
    return (
        summary.get("TrainingJobStatus") != stored.status
        or summary.get("LastModifiedTime") != stored.last_modified_time
        or (warm_pool is not None and warm_pool != stored.warm_pool_status)
        or (secondary is not None and stored.secondary_status is not None and secondary != stored.secondary_status)
    )
