"""Deciding what to fetch: a pure function of what is stored and what ListTrainingJobs returned.

Incremental by default. The listing starts at the newest stored creation time minus an overlap (never at
``LastModifiedTimeAfter``, which is reported to page slowly and throttle). A listed job is fetched when it
is new or its summary changed; stored jobs that can still change (not yet terminal, or holding a warm
pool), jobs whose last fetch failed, and published jobs whose raw record was lost (a damaged file moved
to quarantine) are fetched again even when the listing no longer reaches them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pipelines.storage.raw import StoredJob, TargetState


@dataclass(frozen=True)
class JobToFetch:
    name: str
    creation_time: datetime | None
    reason: str  # new, changed, can-change, retry, lost, full-refresh


def listing_start(state: TargetState, overlap: timedelta, full_refresh: bool) -> datetime | None:
    """The ``CreationTimeAfter`` for this run's listing; None lists everything."""
    newest = state.newest_creation_time
    if full_refresh or newest is None:
        return None
    return newest - overlap


def plan_fetches(summaries: Iterable[dict[str, Any]], state: TargetState, full_refresh: bool) -> list[JobToFetch]:
    """The jobs to describe, oldest first, each once."""
    plan: dict[str, JobToFetch] = {}
    for summary in summaries:
        name = summary["TrainingJobName"]
        stored = state.jobs.get(summary["TrainingJobArn"])
        if full_refresh:
            reason = "full-refresh"
        elif stored is None:
            reason = "new"
        elif _summary_changed(summary, stored):
            reason = "changed"
        elif stored.can_change:
            reason = "can-change"
        elif name in state.failed_names:
            reason = "retry"
        else:
            continue
        plan[name] = JobToFetch(name, summary.get("CreationTime"), reason)
    for stored in state.jobs.values():
        # A job deleted while it could still change: SageMaker said 'not found'; asking again is pointless.
        if stored.name not in plan and stored.can_change and stored.name not in state.gone_names:
            plan[stored.name] = JobToFetch(stored.name, stored.creation_time, "can-change")
    for name in sorted(state.failed_names - plan.keys()):
        plan[name] = JobToFetch(name, None, "retry")
    for name in sorted(state.lost_names - plan.keys()):
        plan[name] = JobToFetch(name, None, "lost")
    return sorted(plan.values(), key=lambda job: (job.creation_time is None, job.creation_time or 0, job.name))


def _summary_changed(summary: dict[str, Any], stored: StoredJob) -> bool:
    warm_pool = (summary.get("WarmPoolStatus") or {}).get("Status")
    return (
        summary.get("TrainingJobStatus") != stored.status
        or summary.get("LastModifiedTime") != stored.last_modified_time
        or (warm_pool is not None and warm_pool != stored.warm_pool_status)
    )
