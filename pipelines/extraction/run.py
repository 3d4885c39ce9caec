"""One extraction run: for every configured account and region, list, plan, fetch and append to raw.

This is the shell around the pure parts (planning, redaction) and the raw store; the Dagster asset and
the CLI both call :func:`extract`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, Protocol

import boto3
import botocore.exceptions

from pipelines import progress
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
from pipelines.extraction.describe import complete_with_describe, fetch_job, register_hooks
from pipelines.extraction.planning import (
    JobToFetch,
    choose_mode,
    describe_calls,
    fetch_by_search,
    listing_start,
    plan_fetches,
    plan_found,
    refetches,
    search_start,
)
from pipelines.extraction.retries import StopRequested
from pipelines.extraction.search import NAMES_PER_CALL, search_by_name, search_jobs
from pipelines.interrupts import RunInterrupted, unwatch, watch
from pipelines.storage.layout import published_parquet
from pipelines.storage.locks import extraction_lock_name, writer
from pipelines.storage.raw import (
    DESCRIBED,
    NOT_FOUND,
    RAW_ERRORS,
    RAW_JOBS,
    SEARCHED,
    SEARCHED_AND_DESCRIBED,
    StoredJob,
    TargetState,
    load_target_state,
    new_run_id,
    quarantine_unreadable,
    raw_job_row,
    remove_stale_temporaries,
    search_view_sha256,
    with_search_view_hashes,
    write_rows,
    write_search_watermark,
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
    mode: str = ""  # describe, search, or describe+search (listed, then read with Search by name)


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
            progress.finish(
                target.label,
                f"could not be read: {report.target_error.split(':')[0]}"
                if report.target_error
                else f"{report.stored:,} stored, {report.unchanged:,} unchanged, {report.failed:,} failed",
            )
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
    settings, full_refresh, log = run.settings, run.full_refresh, run.log
    extraction = settings.extraction
    for moved in quarantine_unreadable(settings.warehouse, target.account_id, target.region):
        log.warning(f"{target.label}: unreadable raw file moved to {moved}; its jobs are fetched again")
    published = published_parquet(settings.warehouse, "jobs")
    state = load_target_state(settings.warehouse, target.account_id, target.region, published)
    overlap = timedelta(hours=extraction.overlap_hours)
    report.mode = choose_mode(extraction.mode, state, full_refresh)
    if report.mode == "search":
        state = with_search_view_hashes(settings.warehouse, target.account_id, target.region, state)
        window = _Window(search_start(state, overlap, full_refresh))
        log.info(f"{target.label}: searching jobs modified after {window.modified_after or 'the beginning'}")
        progress.update(target.label, 0, None, "searching")
        _fetch_and_store(
            client, target, report, run, state, _searched(client, state, report, run, window), by_search=True
        )
        if window.complete and window.newest_modified is not None:
            write_search_watermark(
                settings.warehouse, target.account_id, target.region, window.newest_modified, run.run_id
            )
        return

    def fetch_calls(jobs: int) -> float:  # what reading ``jobs`` changing jobs the listing misses costs
        by_search = fetch_by_search(extraction.mode, jobs, extraction.search_above_jobs)
        return jobs / NAMES_PER_CALL if by_search else describe_calls(jobs)

    start = listing_start(state, overlap, full_refresh, fetch_calls)
    summaries = list(_list_summaries(client, start))
    report.listed = len(summaries)
    plan = plan_fetches(summaries, state, full_refresh)
    by_search = fetch_by_search(extraction.mode, len(plan), extraction.search_above_jobs)
    log.info(
        f"{target.label}: listed {len(summaries)} jobs created after {start or 'the beginning'}; "
        f"fetching {len(plan)} {'with Search' if by_search else 'with Describe'} "
        f"({_reasons(plan) or 'nothing new'})"
    )
    progress.update(target.label, 0, len(plan), f"listed {len(summaries):,}")
    if by_search:
        report.mode = "describe+search"
        state = with_search_view_hashes(settings.warehouse, target.account_id, target.region, state)
    _fetch_and_store(client, target, report, run, state, plan, by_search=by_search, total=len(plan))


@dataclass
class _Window:
    """One Search read: where it starts, how far it got, and whether it ran to its end."""

    modified_after: datetime | None
    newest_modified: datetime | None = None
    complete: bool = False


def _searched(
    client: Any, state: TargetState, report: TargetReport, run: _Run, window: _Window
) -> Iterator[JobToFetch]:
    """Search mode's work, streamed: every record Search returns for the window that differs from the
    stored one, then the stored jobs that must be read again and the window did not return (looked up
    by name when they are fetched). ``window`` records how far the read got."""
    describe_profiled = run.settings.extraction.describe_profiled_jobs
    window.newest_modified = state.search_watermark
    seen: dict[str, str] = {}  # name -> search view hash: a job changed while paging comes back again
    for record in search_jobs(client, window.modified_after):
        if run.stop.is_set():
            return  # the read is not complete: its watermark is not moved
        name, stored = record["TrainingJobName"], state.jobs.get(record["TrainingJobArn"])
        report.listed += name not in seen
        modified = record.get("LastModifiedTime")
        if modified is not None and (window.newest_modified is None or modified > window.newest_modified):
            window.newest_modified = modified
        reason = "full-refresh" if run.full_refresh and stored else "changed" if stored else "new"
        view = search_view_sha256(record)
        job = plan_found(record, stored, reason, describe_profiled, view_sha256=view)
        if job is None or seen.get(name) == view:
            report.unchanged += name not in seen
        else:
            yield job
        seen[name] = view
    yield from refetches(state, seen).values()
    window.complete = True


def _reasons(jobs: Iterable[JobToFetch]) -> dict[str, int]:
    return dict(Counter(job.reason for job in jobs))


def _fetch_and_store(
    client: Any,
    target: Target,
    report: TargetReport,
    run: _Run,
    state: TargetState,
    jobs: Iterable[JobToFetch],
    by_search: bool,
    total: int | None = None,
) -> None:
    """Fetch ``jobs`` (a list, or a stream from Search) batch by batch and append each batch to the raw
    layer as it completes. With ``by_search``, jobs without a record are first looked up with Search,
    20 names a call; the rest (and any record that needs it) go to DescribeTrainingJob."""
    settings, run_id, log, stop = run.settings, run.run_id, run.log, run.stop
    failures: dict[str, tuple[JobToFetch, str, BaseException]] = {}  # name -> job, operation, last error
    written: dict[str, StoredJob] = {}  # by ARN: what this run stored, so that a job read twice is stored once
    batch_number = 0
    with ThreadPoolExecutor(
        max_workers=settings.extraction.max_workers, thread_name_prefix=f"fetch-{target.region}"
    ) as pool:
        # A second round, once every job had its turn, for the jobs whose calls ran out of retries on a
        # transient error (a throttling storm): it makes a miss need 2 x max_attempts failed attempts.
        for round_number in (1, 2):
            if round_number == 2:
                jobs = [job for job, _, error in failures.values() if _transient(error)]
                if not jobs:
                    break
                log.info(f"{target.label}: fetching {len(jobs)} jobs once more after transient failures")
            for batch in batched(jobs, settings.extraction.batch_size):
                batch = list({job.name: job for job in batch}.values())  # one fetch per job and file
                if round_number == 1:
                    report.planned += len(batch)
                    for reason, count in _reasons(batch).items():
                        report.reasons[reason] = report.reasons.get(reason, 0) + count
                    if by_search:
                        batch = _looked_up(client, batch, state, report, settings.extraction.describe_profiled_jobs)
                results = _fetch_all(pool, client, batch, stop)
                fetched_at = datetime.now(UTC)
                rows, errors = [], []
                for job, outcome in zip(batch, results, strict=True):
                    if isinstance(outcome, Fetched):
                        failures.pop(job.name, None)
                        row = raw_job_row(
                            target.account_id, target.region, outcome.record, fetched_at, run_id, outcome.fetched_with
                        )
                        arn = row["training_job_arn"]
                        if _unchanged(row, written.get(arn) or state.jobs.get(arn)):
                            report.unchanged += 1  # fetched again, same record: nothing new to store
                        else:
                            rows.append(row)
                            written[arn] = _as_stored(row)
                    elif _not_found(outcome[1]):
                        # Deleted in SageMaker (DeleteTrainingJob): recorded, never retried, not a failure.
                        failures.pop(job.name, None)
                        report.gone += 1
                        errors.append({**_error_row(target, job.name, *outcome, run_id), "error_code": NOT_FOUND})
                    else:
                        failures[job.name] = (job, *outcome)
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
                        f"{total or report.planned} jobs; they are stored, and the next run fetches the rest."
                    )
                done = report.stored + report.unchanged + len(failures)
                log.info(
                    f"{target.label}: {done}/{total} fetched" if total else f"{target.label}: so far {done} fetched"
                )
                progress.update(target.label, done, total, "fetched")
    report.failed = len(failures)
    for name, (_, operation, error) in sorted(failures.items()):
        code = error_code(error)
        report.failed_codes[code] = report.failed_codes.get(code, 0) + 1
        log.warning(f"{target.label}: {name}: {operation} failed: {code}; retried next run")


def _looked_up(
    client: Any, batch: Sequence[JobToFetch], state: TargetState, report: TargetReport, describe_profiled: bool
) -> list[JobToFetch]:
    """``batch`` with Search's records for the jobs that have none yet (20 names a call). A job whose
    record matches the stored one is dropped (counted as unchanged); one Search does not return, or
    one whose Search call failed, is left to DescribeTrainingJob, which also says when a job is gone."""
    names = [job.name for job in batch if job.found is None]
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(names), NAMES_PER_CALL):
        try:
            found.update(search_by_name(client, names[start : start + NAMES_PER_CALL]))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            continue  # these names are left to Describe
    looked_up = []
    for job in batch:
        record = found.get(job.name)
        if record is None:
            looked_up.append(job)
            continue
        planned = plan_found(record, state.jobs.get(record["TrainingJobArn"]), job.reason, describe_profiled)
        if planned is None:
            report.unchanged += 1
        else:
            looked_up.append(planned)
    return looked_up


def _as_stored(row: dict[str, Any]) -> StoredJob:
    return StoredJob(
        row["training_job_arn"],
        row["training_job_name"],
        row["creation_time"],
        row["last_modified_time"],
        row["training_job_status"],
        row["warm_pool_status"],
        row["response_sha256"],
        row["search_view_sha256"],
    )


def _unchanged(row: dict[str, Any], stored: StoredJob | None) -> bool:
    """Whether a fetched record adds nothing to the stored one: a Search record is compared without the
    members only Describe returns, so it never replaces a fuller Describe record of the same state."""
    if stored is None:
        return False
    if row["fetched_with"] == SEARCHED:
        return stored.search_view_sha256 == row["search_view_sha256"]
    return stored.response_sha256 == row["response_sha256"]


@dataclass(frozen=True)
class Fetched:
    record: dict[str, Any]
    fetched_with: str  # DESCRIBED, SEARCHED or SEARCHED_AND_DESCRIBED


def _fetch_all(
    pool: ThreadPoolExecutor, client: Any, batch: Sequence[JobToFetch], stop: StopRequested
) -> list[Fetched | tuple[str, BaseException]]:
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


def _transient(error: BaseException) -> bool:
    """Whether a failed call may succeed if tried again later: throttling, a 5xx, a connection problem."""
    if isinstance(error, botocore.exceptions.ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = error_code(error)
        return status >= 500 or status == 429 or "Throttl" in code or code == "TooManyRequestsException"
    return isinstance(error, botocore.exceptions.BotoCoreError)


def batched(items: Iterable[JobToFetch], size: int) -> Iterator[Sequence[JobToFetch]]:
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


def _fetch(client: Any, job: JobToFetch, stop: StopRequested) -> Fetched | tuple[str, BaseException]:
    if job.found is not None and job.describe_for is None:
        return Fetched(job.found, SEARCHED)  # Search returned the whole record: no call
    if stop.is_set():  # queued before the stop: no call, so no burst past the rate cap
        return "DescribeTrainingJob", RunInterrupted("not fetched: the run was stopped")
    try:
        if job.found is not None:
            return Fetched(complete_with_describe(client, job.found), SEARCHED_AND_DESCRIBED)
        return Fetched(fetch_job(client, job.name), DESCRIBED)
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
