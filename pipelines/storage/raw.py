"""The raw layer: immutable, append-only Parquet files under ``<warehouse>/raw/``.

Layout: ``raw/<table>/<account_id>/<region>/<run_id>-<batch>.parquet``. Files appear atomically (written
to a temporary name, flushed, then renamed), and readers only ever open ``*.parquet``, so a crash leaves
nothing half-written in view.

Compaction (:mod:`pipelines.warehouse.compaction`) merges small files into ``compacted-<month>-<id>.parquet``
whose footer names the files it replaces; readers skip a replaced file that is still there (a compaction
stopped before it removed them), so a row is never read twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.aws_model import describe_only_members, dumps
from pipelines.schemas import table
from pipelines.sql import literal

# Deleting: DeleteTrainingJob accepts only finished jobs; the job changes no more, it only disappears.
TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Stopped", "Deleting"})
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
    search_view_sha256: str | None = None  # None: stored before Search mode existed
    secondary_status: str | None = None  # read for jobs still running only (None: not read)

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
    gone_names: frozenset[str] = frozenset()  # SageMaker answered 'not found' since their last fetch (deleted)
    # The newest LastModifiedTime of the last Search read that ran to its end (None: none did): every job
    # modified up to it is stored, so the next Search read starts there (less the overlap).
    search_watermark: datetime | None = None

    @property
    def newest_creation_time(self) -> datetime | None:
        return max((job.creation_time for job in self.jobs.values()), default=None)


# Which calls produced a stored record (raw_training_jobs.fetched_with).
DESCRIBED = "DescribeTrainingJob+ListTags"
SEARCHED = "Search"
SEARCHED_AND_DESCRIBED = "Search+DescribeTrainingJob"

RAW_JOBS = "raw_training_jobs"
RAW_ERRORS = "raw_extraction_errors"
_DIRS = {RAW_JOBS: "training_jobs", RAW_ERRORS: "extraction_errors"}
TEMP_MARKER = ".tmp-"


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def table_dir(warehouse: Path, table_name: str, account_id: str | None = None, region: str | None = None) -> Path:
    path = warehouse / "raw" / _DIRS[table_name]
    if account_id:
        path = path / account_id
        if region:
            path = path / region
    return path


COMPACTED_PREFIX = "compacted-"
# A compacted file's footer: the files it merged, each with the files it had merged in turn (null for a file
# written by extraction), so that a file merged twice still names every file whose rows it holds.
REPLACES_KEY = b"sagemaker_warehouse.merged"


def merge_tree(path: Path) -> dict[str, Any] | None:
    """The files a compacted file merged (see :data:`REPLACES_KEY`); None when its footer cannot be read."""
    try:
        tree = json.loads((pq.read_schema(path).metadata or {}).get(REPLACES_KEY, b"{}"))
    except (OSError, pa.ArrowException, ValueError):
        return None
    return tree if isinstance(tree, dict) else None


def merged_names(tree: dict[str, Any]) -> set[str]:
    """Every file name in a merge tree, at any depth."""
    return {name for name, inner in tree.items() for name in {name, *(merged_names(inner) if inner else ())}}


def replaced_by_compaction(files: Iterable[Path]) -> dict[Path, frozenset[Path]]:
    """Each compacted file among ``files`` and the files (in its folder) whose rows it holds. An unreadable
    compacted file replaces nothing: quarantine moves it aside and its jobs are fetched again. Of two
    compacted files in one folder, one whose files the other holds too (two writers that merged a month
    from different views of it) is replaced by the other, so no row is read twice."""
    replaced: dict[Path, frozenset[Path]] = {}
    by_folder: dict[Path, list[Path]] = {}
    for path in files:
        if path.name.startswith(COMPACTED_PREFIX) and (tree := merge_tree(path)) is not None:
            replaced[path] = frozenset(path.parent / name for name in merged_names(tree))
            by_folder.setdefault(path.parent, []).append(path)
    covered = {
        path: other
        for folder in by_folder.values()
        for path in folder
        for other in folder
        if replaced[path] < replaced[other] or (replaced[path] == replaced[other] and path.name < other.name)
    }
    for path, other in covered.items():
        replaced[other] = replaced[other] | {path}
    return replaced


def parquet_files(
    warehouse: Path, table_name: str, account_id: str | None = None, region: str | None = None
) -> list[str]:
    """The raw files of a table (of one account, or one account and region) that hold its rows: files a
    compacted file replaces are left out."""
    directory = table_dir(warehouse, table_name, account_id, region)
    if not directory.exists():
        return []
    files = sorted(directory.rglob("*.parquet"))
    replaced = set().union(*replaced_by_compaction(files).values())
    return [str(p) for p in files if p not in replaced]


def replaced_raw_files(warehouse: Path, compacted: Iterable[Path] | None = None) -> set[str]:
    """Every raw file (relative to the warehouse) that a compacted file present (or one of ``compacted``)
    replaces."""
    files = sorted((warehouse / "raw").rglob(f"{COMPACTED_PREFIX}*.parquet")) if compacted is None else compacted
    return {p.relative_to(warehouse).as_posix() for sources in replaced_by_compaction(files).values() for p in sources}


def write_parquet_atomically(data: pa.Table, path: Path) -> Path:
    """Write ``data`` to ``path`` so that readers see either no file or the whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}{TEMP_MARKER}{os.getpid()}")
    pq.write_table(data, temporary, compression="zstd")
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return path


def remove_stale_temporaries(warehouse: Path, account_id: str, region: str) -> int:
    """Delete temporary files a crashed run left behind for one account and region (one extraction
    writes a given account and region at a time; others may be writing theirs)."""
    removed = 0
    for table_name in (RAW_JOBS, RAW_ERRORS):
        directory = table_dir(warehouse, table_name, account_id, region)
        if directory.exists():
            for leftover in directory.glob(f"*{TEMP_MARKER}*"):
                leftover.unlink(missing_ok=True)
                removed += 1
    return removed


def write_rows(
    warehouse: Path, table_name: str, rows: Sequence[dict[str, Any]], account_id: str, region: str, file_stem: str
) -> Path | None:
    if not rows:
        return None
    schema = table(table_name).arrow_schema()
    data = pa.Table.from_pylist(list(rows), schema=schema)
    return write_parquet_atomically(data, table_dir(warehouse, table_name, account_id, region) / f"{file_stem}.parquet")


def search_view_sha256(record: dict[str, Any]) -> str:
    """SHA-256 of ``record`` without the members only DescribeTrainingJob returns: equal for a Search
    record and a Describe record of the same unchanged job."""
    hidden = describe_only_members()
    return hashlib.sha256(dumps({k: v for k, v in record.items() if k not in hidden}).encode()).hexdigest()


def raw_job_row(
    account_id: str,
    region: str,
    record: dict[str, Any],
    fetched_at: datetime,
    run_id: str,
    fetched_with: str = DESCRIBED,
) -> dict[str, Any]:
    """One ``raw_training_jobs`` row for a fetched (already redacted) record."""
    document = dumps(record)
    return {
        "account_id": account_id,
        "region": region,
        "training_job_arn": record["TrainingJobArn"],
        "training_job_name": record["TrainingJobName"],
        "creation_time": record["CreationTime"],
        "last_modified_time": record.get("LastModifiedTime"),
        "training_job_status": record["TrainingJobStatus"],
        "warm_pool_status": (record.get("WarmPoolStatus") or {}).get("Status"),
        "fetched_at": fetched_at,
        "run_id": run_id,
        "fetched_with": fetched_with,
        "search_view_sha256": search_view_sha256(record),
        "response_sha256": hashlib.sha256(document.encode()).hexdigest(),
        "response_json": document,
    }


def raw_jobs_source(connection: duckdb.DuckDBPyConnection, files: Sequence[str]) -> str:
    """A relation over raw job files with every declared column, in any order: files written before a
    column existed (``added_later`` in the schema) read it as null."""
    relation = f"read_parquet([{', '.join(literal(f) for f in files)}], union_by_name = true)"
    present = {column[0] for column in connection.execute(f"select * from {relation} limit 0").description}
    missing = [c for c in table(RAW_JOBS).columns if c.name not in present]
    if not missing:
        return relation
    filled = ", ".join(f'null::{c.duckdb_type} as "{c.name}"' for c in missing)
    return f"(select *, {filled} from {relation})"


def _search_watermark_path(warehouse: Path, account_id: str, region: str) -> Path:
    return warehouse / "raw" / "state" / account_id / region / "search_watermark.json"


def read_search_watermark(warehouse: Path, account_id: str, region: str) -> datetime | None:
    path = _search_watermark_path(warehouse, account_id, region)
    try:
        return datetime.fromisoformat(json.loads(path.read_text())["newest_modified"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None  # none yet, or unreadable: the next Search read reads everything, which is safe


def write_search_watermark(
    warehouse: Path, account_id: str, region: str, newest_modified: datetime, run_id: str
) -> None:
    """Record, atomically, that a Search read that ran to its end stored every job modified up to
    ``newest_modified``. Written only after the read's last batch is on disk."""
    path = _search_watermark_path(warehouse, account_id, region)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}{TEMP_MARKER}{os.getpid()}")
    temporary.write_text(json.dumps({"newest_modified": newest_modified.isoformat(), "run_id": run_id}))
    os.replace(temporary, path)


def with_search_view_hashes(warehouse: Path, account_id: str, region: str, state: TargetState) -> TargetState:
    """``state`` with the search-view hash of every stored record that was written before the hash
    existed, computed from its stored JSON, so that a Search read compares it like any other record
    instead of replacing it. Done only for runs that read with Search (about 0.1 ms a record)."""
    missing = {arn for arn, job in state.jobs.items() if job.search_view_sha256 is None}
    files = parquet_files(warehouse, RAW_JOBS, account_id, region)
    if not missing or not files:
        return state
    with duckdb.connect() as connection:
        rows = connection.execute(
            f"""
            select training_job_arn, response_json
            from {raw_jobs_source(connection, files)}
            where search_view_sha256 is null
            qualify row_number() over (partition by training_job_arn order by fetched_at desc) = 1
            """
        ).fetchall()
    hashes = {arn: search_view_sha256(json.loads(text)) for arn, text in rows if arn in missing}
    jobs = {arn: replace(job, search_view_sha256=hashes.get(arn)) for arn, job in state.jobs.items()}
    return replace(state, jobs=jobs)


QUARANTINE = "quarantine"
# The error code stored for a job SageMaker says does not exist (DeleteTrainingJob removed it): it is
# not retried, and it may leave the published warehouse (see checks.published_jobs_kept).
NOT_FOUND = "NotFound"


def quarantine_unreadable(
    warehouse: Path, account_id: str | None = None, region: str | None = None, deep: bool = False
) -> list[Path]:
    """Move raw files that cannot be read (truncated, overwritten, not Parquet, not the declared
    columns) to ``<warehouse>/quarantine/``, record each as an extraction error, and return where they
    went. The jobs such a file held are then no longer stored: the next extraction of that account and
    region fetches them again by name (they are still in the published warehouse, which never loses a
    job). Reads each file's footer; with ``deep``, every page."""
    moved = []
    for table_name in (RAW_JOBS, RAW_ERRORS):
        expected = {c.name for c in table(table_name).columns if not c.added_later}
        for name in parquet_files(warehouse, table_name, account_id, region):
            path = Path(name)
            try:
                columns = set(pq.read_schema(path).names)
                if deep:
                    pq.read_table(path)
                problem = None if expected <= columns else f"missing columns {sorted(expected - columns)}"
            except (OSError, pa.ArrowException) as error:
                problem = str(error).splitlines()[0][:500]
            if problem is None:
                continue
            relative = path.relative_to(warehouse)
            target = warehouse / QUARANTINE / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(path, target)
            except FileNotFoundError:
                continue  # another writer (an extraction, a build) moved it aside first
            moved.append(target)
            owner_account, owner_region = relative.parts[2], relative.parts[3]
            error_row = {
                "account_id": owner_account,
                "region": owner_region,
                "training_job_name": None,
                "operation": "ReadRawFile",
                "error_code": "UnreadableRawFile",
                "error_message": f"{relative} could not be read ({problem}); moved to {QUARANTINE}/{relative}",
                "occurred_at": datetime.now(UTC),
                "run_id": relative.stem,
            }
            stem = f"quarantine-{uuid.uuid4().hex}"
            write_rows(warehouse, RAW_ERRORS, [error_row], owner_account, owner_region, stem)
    return moved


def load_target_state(
    warehouse: Path, account_id: str, region: str, published_jobs: Sequence[Path] = ()
) -> TargetState:
    """The latest fetch of every stored job in one account and region, the jobs whose latest fetch
    attempt failed, and the jobs of this account and region that ``published_jobs`` (the published
    ``jobs`` table's Parquet files) holds but the raw layer no longer does."""
    job_files = parquet_files(warehouse, RAW_JOBS, account_id, region)
    error_files = parquet_files(warehouse, RAW_ERRORS, account_id, region)
    published = [str(path) for path in published_jobs]
    if not job_files and not error_files and not published:
        return TargetState()
    connection = duckdb.connect()
    try:
        jobs: dict[str, StoredJob] = {}
        last_fetch: dict[str, datetime] = {}
        if job_files:
            rows = connection.execute(
                f"""
                select training_job_arn, training_job_name, creation_time, last_modified_time,
                       training_job_status, warm_pool_status, response_sha256, search_view_sha256, fetched_at
                from {raw_jobs_source(connection, job_files)}
                qualify row_number() over (partition by training_job_arn order by fetched_at desc) = 1
                """
            ).fetchall()
            for arn, name, created, modified, status, warm_pool, sha256, view_sha256, fetched in rows:
                jobs[arn] = StoredJob(arn, name, created, modified, status, warm_pool, sha256, view_sha256)
                last_fetch[name] = fetched
            # The secondary status of the jobs still running, which a listing's summary is compared with:
            # only their rows' JSON is parsed (a fraction of a second for a million stored jobs).
            terminal = ", ".join(literal(status) for status in sorted(TERMINAL_STATUSES))
            rows = connection.execute(
                f"""
                select training_job_arn, json_extract_string(response_json, '$.SecondaryStatus')
                from {raw_jobs_source(connection, job_files)}
                where training_job_status not in ({terminal})
                qualify row_number() over (partition by training_job_arn order by fetched_at desc) = 1
                """
            ).fetchall()
            for arn, secondary in rows:
                if jobs[arn].status not in TERMINAL_STATUSES:  # its latest record is the running one
                    jobs[arn] = replace(jobs[arn], secondary_status=secondary)
        failed: set[str] = set()
        gone: set[str] = set()
        if error_files:
            rows = connection.execute(
                """
                select training_job_name, max(occurred_at), arg_max(error_code, occurred_at)
                from read_parquet(?)
                where training_job_name is not null
                group by training_job_name
                """,
                [error_files],
            ).fetchall()
            since_last_fetch = [
                (name, code) for name, occurred, code in rows if name not in last_fetch or last_fetch[name] < occurred
            ]
            failed = {name for name, code in since_last_fetch if code != NOT_FOUND}
            gone = {name for name, code in since_last_fetch if code == NOT_FOUND}
        lost: set[str] = set()
        if published:
            rows = connection.execute(
                "select training_job_arn, training_job_name from read_parquet(?) where account_id = ? and region = ?",
                [published, account_id, region],
            ).fetchall()
            lost = {name for arn, name in rows if arn not in jobs}
        return TargetState(
            jobs=jobs,
            failed_names=frozenset(failed),
            lost_names=frozenset(lost),
            gone_names=frozenset(gone),
            search_watermark=read_search_watermark(warehouse, account_id, region),
        )
    finally:
        connection.close()
