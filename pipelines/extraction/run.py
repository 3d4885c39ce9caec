"""One extraction run: for every configured account and region, list, plan, fetch and append to raw.

This is the shell around the pure parts (planning, redaction) and the raw store; the Dagster asset and
the CLI both call :func:`extract`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, Protocol

import boto3
import botocore.exceptions

from pipelines.config import ConfigError, Settings
from pipelines.extraction.aws import (
    ApiCallStats,
    Target,
    account_session,
    base_session,
    caller_account_id,
    error_code,
    resolve_regions,
    sagemaker_client,
)
from pipelines.extraction.describe import fetch_job, register_hooks
from pipelines.extraction.planning import JobToFetch, listing_start, plan_fetches
from pipelines.extraction.retries import StopRequested
from pipelines.interrupts import RunInterrupted, unwatch, watch
from pipelines.storage.layout import published_parquet
from pipelines.storage.locks import extraction_lock_name, writer
from pipelines.storage.raw import (
    NOT_FOUND,
    RAW_ERRORS,
    RAW_JOBS,
    load_target_state,
    new_run_id,
    quarantine_unreadable,
    raw_job_row,
    remove_stale_temporaries,
    write_rows,
)

logger = logging.getLogger(__name__)


class Log(Protocol):
    def info(self, msg: str) -> Any: ...
    def warning(self, msg: str) -> Any: ...
    def error(self, msg: str) -> Any: ...


@dataclass
class TargetReport:
    label: str
    account_id: str
    region: str
    listed: int = 0
    planned: int = 0
    stored: int = 0  # fetched and new or changed: appended to raw
    unchanged: int = 0  # fetched, identical to the stored record: not appended
    failed: int = 0  # planned but not fetched after every retry: missing or stale until the next run
    failed_codes: dict[str, int] = field(default_factory=dict)
    gone: int = 0  # planned, but SageMaker says the job no longer exists (deleted)
    reasons: dict[str, int] = field(default_factory=dict)
    target_error: str | None = None  # the whole account/region could not be read


@dataclass
class ExtractionReport:
    run_id: str
    targets: list[TargetReport]
    stats: ApiCallStats
    seconds: float

    @property
    def stored(self) -> int:
        return sum(t.stored for t in self.targets)

    @property
    def failed(self) -> int:
        return sum(t.failed for t in self.targets)

    @property
    def planned(self) -> int:
        return sum(t.planned for t in self.targets)

    @property
    def failed_targets(self) -> list[TargetReport]:
        return [t for t in self.targets if t.target_error]

    @property
    def targets_with_failed_jobs(self) -> list[TargetReport]:
        return [t for t in self.targets if t.failed]


def target_labels(settings: Settings, session: boto3.Session | None = None) -> list[str]:
    """The ``account/region`` labels the settings name, without calling AWS (Dagster's partition keys)."""
    default_region = (session or base_session()).region_name
    regions = settings.regions or ((default_region,) if default_region else ())
    return [f"{account.name}/{region}" for account in settings.accounts for region in regions]


def resolve_targets(settings: Settings, session: boto3.Session | None = None) -> list[Target]:
    """Validate credentials and regions up front; every account in ``settings`` times every region."""
    session = session or base_session()
    regions = resolve_regions(session, settings.regions)
    own_account = caller_account_id(session, regions[0])
    targets = []
    for account in settings.accounts:
        account_id = account.role_arn.split(":")[4] if account.role_arn else own_account
        targets.extend(Target(account, account_id, region) for region in regions)
    return targets


def extract(
    settings: Settings,
    *,
    full_refresh: bool = False,
    targets: Sequence[Target] | None = None,
    only: str | None = None,
    log: Log = logger,
) -> ExtractionReport:
    """Extract every target (or only the one labelled ``only``, e.g. ``default/us-east-1``)."""
    started = datetime.now(UTC)
    run_id = new_run_id(started)
    session = base_session()
    targets = list(targets) if targets is not None else resolve_targets(settings, session)
    if only is not None:
        labels = [t.label for t in targets]
        targets = [t for t in targets if t.label == only]
        if not targets:
            raise ConfigError(
                f"{only!r} is not a configured account/region (the config has {', '.join(labels)}); "
                "fix the config or drop that partition."
            )
    run = _Run(settings, run_id, full_refresh, log, ApiCallStats(), StopRequested())
    watch(run.stop)  # SIGINT/SIGTERM in the CLI end retry waits and stop after the current batch
    reports = []
    try:
        for target in targets:
            report = TargetReport(target.label, target.account_id, target.region)
            reports.append(report)
            with writer(settings.warehouse, extraction_lock_name(target.account_id, target.region), log.info):
                _extract_target_or_record(session, target, report, run)
    finally:
        unwatch(run.stop)
    return ExtractionReport(run_id, reports, run.stats, (datetime.now(UTC) - started).total_seconds())


@dataclass(frozen=True)
class _Run:
    """What every target of one extraction run shares."""

    settings: Settings
    run_id: str
    full_refresh: bool
    log: Log
    stats: ApiCallStats
    stop: StopRequested


def _extract_target_or_record(session: boto3.Session, target: Target, report: TargetReport, run: _Run) -> None:
    """Extract one target while holding its writer lock; a target that cannot be read is recorded."""
    settings, run_id, log, stop = run.settings, run.run_id, run.log, run.stop
    remove_stale_temporaries(settings.warehouse, target.account_id, target.region)
    phase = "AssumeRole"
    try:
        target_session = account_session(session, target.account, target.region)
        phase = "ListTrainingJobs"
        client = sagemaker_client(target_session, target.region, settings.extraction, run.stats, stop)
        register_hooks(client)
        _extract_target(client, target, report, run)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        if stop.is_set():  # the call gave up because a stop was asked for: not a failure of the target
            raise RunInterrupted(f"{target.label}: stopped by a signal; the next run reads it.") from None
        # The whole target failed (listing or role assumption): record it and go on with the others.
        operation = getattr(error, "operation_name", None) or phase
        report.target_error = f"{operation}: {error_code(error)}: {error}"
        log.error(f"{target.label}: could not be read ({report.target_error}); it is retried on the next run.")
        write_rows(
            settings.warehouse,
            RAW_ERRORS,
            [_error_row(target, None, operation, error, run_id)],
            target.account_id,
            target.region,
            f"{run_id}-target",
        )


def _extract_target(client: Any, target: Target, report: TargetReport, run: _Run) -> None:
    settings, run_id, full_refresh, log, stop = run.settings, run.run_id, run.full_refresh, run.log, run.stop
    for moved in quarantine_unreadable(settings.warehouse, target.account_id, target.region):
        log.warning(f"{target.label}: unreadable raw file moved to {moved}; its jobs are fetched again")
    published = published_parquet(settings.warehouse, "jobs")
    state = load_target_state(settings.warehouse, target.account_id, target.region, published)
    start = listing_start(state, timedelta(hours=settings.extraction.overlap_hours), full_refresh)
    summaries = list(_list_summaries(client, start))
    report.listed = len(summaries)
    plan = plan_fetches(summaries, state, full_refresh)
    report.planned = len(plan)
    for job in plan:
        report.reasons[job.reason] = report.reasons.get(job.reason, 0) + 1
    log.info(
        f"{target.label}: listed {len(summaries)} jobs created after {start or 'the beginning'}; "
        f"fetching {len(plan)} ({report.reasons or 'nothing new'})"
    )
    workers = settings.extraction.max_workers
    failures: dict[str, tuple[str, BaseException]] = {}  # job name -> (operation, error) of its last attempt
    batch_number = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"fetch-{target.region}") as pool:
        # A second round, once every job had its turn, for the jobs whose calls ran out of retries on a
        # transient error (a throttling storm): it makes a miss need 2 x max_attempts failed attempts.
        for round_number in (1, 2):
            pending = plan if round_number == 1 else [j for j in plan if _transient(failures.get(j.name))]
            if round_number == 2 and pending:
                log.info(f"{target.label}: fetching {len(pending)} jobs once more after transient failures")
            for batch in batched(pending, settings.extraction.batch_size):
                results = _fetch_all(pool, client, batch, stop)
                fetched_at = datetime.now(UTC)
                rows, errors = [], []
                for job, outcome in zip(batch, results, strict=True):
                    if isinstance(outcome, dict):
                        failures.pop(job.name, None)
                        row = raw_job_row(target.account_id, target.region, outcome, fetched_at, run_id)
                        stored = state.jobs.get(row["training_job_arn"])
                        if stored is not None and stored.response_sha256 == row["response_sha256"]:
                            report.unchanged += 1  # fetched again, same record: nothing new to store
                        else:
                            rows.append(row)
                    elif _not_found(outcome[1]):
                        # Deleted in SageMaker (DeleteTrainingJob): recorded, never retried, not a failure.
                        failures.pop(job.name, None)
                        report.gone += 1
                        errors.append({**_error_row(target, job.name, *outcome, run_id), "error_code": NOT_FOUND})
                    else:
                        failures[job.name] = outcome
                        errors.append(_error_row(target, job.name, *outcome, run_id))
                stem = f"{run_id}-{batch_number:05d}"
                batch_number += 1
                # Errors first: if the run dies between the two writes, the failed jobs are still known.
                write_rows(settings.warehouse, RAW_ERRORS, errors, target.account_id, target.region, stem)
                write_rows(settings.warehouse, RAW_JOBS, rows, target.account_id, target.region, stem)
                report.stored += len(rows)
                if stop.is_set():
                    raise RunInterrupted(
                        f"{target.label}: stopped by a signal after {report.stored + report.unchanged} of "
                        f"{len(plan)} jobs; they are stored, and the next run fetches the rest."
                    )
                done = report.stored + report.unchanged + len(failures)
                log.info(f"{target.label}: {done}/{len(plan)} fetched")
    report.failed = len(failures)
    for name, (operation, error) in sorted(failures.items()):
        code = error_code(error)
        report.failed_codes[code] = report.failed_codes.get(code, 0) + 1
        log.warning(f"{target.label}: {name}: {operation} failed: {code}; retried next run")


def _fetch_all(
    pool: ThreadPoolExecutor, client: Any, batch: Sequence[JobToFetch], stop: StopRequested
) -> list[dict[str, Any] | tuple[str, BaseException]]:
    futures = [pool.submit(_fetch, client, job, stop) for job in batch]
    try:
        return [future.result() for future in futures]
    except BaseException:
        # Interrupted (SIGINT/SIGTERM, Dagster's termination): end the workers' retry waits and drop the
        # queued calls, so the run stops within seconds. This batch is not written; every earlier one is
        # whole on disk, and the next run fetches the rest.
        stop.set()
        for future in futures:
            future.cancel()
        raise


def _not_found(error: BaseException) -> bool:
    """SageMaker's answer for a job that does not exist (any more)."""
    if not isinstance(error, botocore.exceptions.ClientError):
        return False
    code, message = error_code(error), str(error).lower()
    return code in ("ResourceNotFound", "ResourceNotFoundException") or (
        code == "ValidationException" and ("not found" in message or "could not find" in message)
    )


def _transient(failure: tuple[str, BaseException] | None) -> bool:
    """Whether a failed call may succeed if tried again later: throttling, a 5xx, a connection problem."""
    if failure is None:
        return False
    error = failure[1]
    if isinstance(error, botocore.exceptions.ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = error_code(error)
        return status >= 500 or status == 429 or "Throttl" in code or code == "TooManyRequestsException"
    return isinstance(error, botocore.exceptions.BotoCoreError)


def batched(items: Sequence[JobToFetch], size: int) -> Iterator[Sequence[JobToFetch]]:
    """itertools.batched arrived in Python 3.12; this project supports 3.11."""
    iterator = iter(items)
    while chunk := tuple(islice(iterator, size)):
        yield chunk


def _list_summaries(client: Any, created_after: datetime | None) -> Iterator[dict[str, Any]]:
    params: dict[str, Any] = {"SortBy": "CreationTime", "SortOrder": "Ascending"}
    if created_after is not None:
        params["CreationTimeAfter"] = created_after
    # The paginator follows NextToken through empty pages; 100 is the largest page the API allows.
    for page in client.get_paginator("list_training_jobs").paginate(**params, PaginationConfig={"PageSize": 100}):
        yield from page.get("TrainingJobSummaries", [])


def _fetch(client: Any, job: JobToFetch, stop: StopRequested) -> dict[str, Any] | tuple[str, BaseException]:
    if stop.is_set():  # queued before the stop: no call, so no burst past the rate cap
        return "DescribeTrainingJob", RunInterrupted("not fetched: the run was stopped")
    try:
        return fetch_job(client, job.name)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        return getattr(error, "operation_name", None) or "DescribeTrainingJob", error


def _error_row(target: Target, name: str | None, operation: str, error: BaseException, run_id: str) -> dict[str, Any]:
    return {
        "account_id": target.account_id,
        "region": target.region,
        "training_job_name": name,
        "operation": operation,
        "error_code": error_code(error),
        "error_message": str(error)[:2000],
        "occurred_at": datetime.now(UTC),
        "run_id": run_id,
    }


__all__ = ["ConfigError", "ExtractionReport", "TargetReport", "extract", "resolve_targets"]
