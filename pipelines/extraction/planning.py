"""Deciding what to fetch: a pure function of what is stored and what ListTrainingJobs returned.

Incremental by default. The listing starts at the newest stored creation time minus an overlap (never at
``LastModifiedTimeAfter``, which is reported to page slowly and throttle). A listed job is fetched when it
is new or its summary changed; stored jobs that can still change (not yet terminal, or holding a warm
pool), jobs whose last fetch failed, and published jobs whose raw record was lost (a damaged file moved
to quarantine) are fetched again even when the listing no longer reaches them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Stopped"})
SETTLED_WARM_POOL_STATUSES = frozenset({"Terminated", "Reused"})


@dataclass(frozen=True)
class StoredJob:
    """What the raw layer knows of a job as of its latest fetch."""

    arn: str
    name: str
    creation_time: datetime
    last_modified_time: datetime | None
    status: str
    warm_pool_status: str | None
    response_sha256: str = ""

    @property
    def can_change(self) -> bool:
        """Still running, or still retaining (and billing) a warm pool."""
        if self.status not in TERMINAL_STATUSES:
            return True
        return self.warm_pool_status is not None and self.warm_pool_status not in SETTLED_WARM_POOL_STATUSES


@dataclass(frozen=True)
class TargetState:
    """The stored state of one account and region."""

    jobs: dict[str, StoredJob] = field(default_factory=dict)  # by ARN
    failed_names: frozenset[str] = frozenset()  # jobs whose latest fetch attempt failed
    lost_names: frozenset[str] = frozenset()  # published jobs whose raw records are gone (a damaged file)

    @property
    def newest_creation_time(self) -> datetime | None:
        return max((job.creation_time for job in self.jobs.values()), default=None)


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
        if stored.name not in plan and stored.can_change:
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
