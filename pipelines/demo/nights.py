"""Nights of a fleet, written straight into a raw layer: what extraction would store after each night
(new jobs, and new records of jobs that changed). The nightly benchmark and the incremental-build tests
use it to build large warehouses without an endpoint in between."""

from __future__ import annotations

import copy
import json
import random
import resource
import time
from collections import defaultdict
from collections.abc import Collection, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from pipelines.aws_model import parse_timestamps
from pipelines.config import CostSettings
from pipelines.extraction.redaction import redact
from pipelines.models import checks as model_checks
from pipelines.models.build import REFERENCE_TABLES, model_names
from pipelines.normalization import checks
from pipelines.normalization.flatten import normalized_tables
from pipelines.schemas import all_tables, table
from pipelines.sql import identifier, literal
from pipelines.storage.raw import RAW_JOBS, parquet_files, raw_job_row, table_dir, write_parquet_atomically
from pipelines.warehouse.build import stage_from_raw, stage_models
from pipelines.warehouse.history import BUILD_HISTORY, stage_build_history
from pipelines.warehouse.publication import publish

FILE_ROWS = 20_000  # records per raw file, as extraction's batches


def write_records(warehouse: Path, records: Iterable[dict[str, Any]], run_id: str, fetched_at: datetime) -> int:
    """Store ``records`` (DescribeTrainingJob responses) as one extraction run would: redacted, in files of
    at most :data:`FILE_ROWS` per account and region. Returns how many were written."""
    schema = table(RAW_JOBS).arrow_schema()
    batches: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    written = 0

    def flush(account: str, region: str) -> None:
        rows = batches.pop((account, region), [])
        if rows:
            folder = table_dir(warehouse, RAW_JOBS, account, region)
            batch = len(list(folder.glob(f"{run_id}-*.parquet"))) if folder.exists() else 0
            write_parquet_atomically(
                pa.Table.from_pylist(rows, schema=schema), folder / f"{run_id}-{batch:05d}.parquet"
            )

    for record in records:
        _, _, _, region, account, _ = record["TrainingJobArn"].split(":", 5)
        batches[(account, region)].append(raw_job_row(account, region, redact(record), fetched_at, run_id))
        written += 1
        if len(batches[(account, region)]) >= FILE_ROWS:
            flush(account, region)
    for account, region in list(batches):
        flush(account, region)
    return written


def renamed(record: dict[str, Any], suffix: str, shift: timedelta) -> dict[str, Any]:
    """A new job like ``record``: another name and ARN, its times moved by ``shift`` (keep them before the
    fetch time: a running job runs until it was fetched)."""
    job = moved(record, shift)
    name = f"{record['TrainingJobName'][: 63 - len(suffix) - 1]}-{suffix}"
    job["TrainingJobName"] = name
    job["TrainingJobArn"] = record["TrainingJobArn"].rsplit("/", 1)[0] + "/" + name
    return job


def moved(record: dict[str, Any], shift: timedelta) -> dict[str, Any]:
    """``record`` with every time moved by ``shift``: the same name and ARN, as for a job deleted and
    created again under its name."""
    job = copy.deepcopy(record)
    _shift_times(job, shift)
    return job


def _shift_times(node: Any, shift: timedelta) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, datetime):
                node[key] = value + shift
            else:
                _shift_times(value, shift)
    elif isinstance(node, list):
        for value in node:
            _shift_times(value, shift)


def changed(record: dict[str, Any], at: datetime, night: int) -> dict[str, Any]:
    """A later record of the same job: a running job finishes; any job gets a new final metric value and
    a tag the night sets (tags change on finished jobs too)."""
    job = copy.deepcopy(record)
    if job["TrainingJobStatus"] in ("InProgress", "Stopping"):
        start = job.get("TrainingStartTime") or job["CreationTime"]
        end = max(at, start + timedelta(minutes=1))
        job.update(TrainingJobStatus="Completed", SecondaryStatus="Completed", TrainingEndTime=end)
        seconds = int((end - start).total_seconds())
        job.update(TrainingTimeInSeconds=seconds, BillableTimeInSeconds=seconds)
        transitions = job.setdefault("SecondaryStatusTransitions", [])
        if transitions:
            transitions[-1]["EndTime"] = end
        transitions.append({"Status": "Completed", "StartTime": end, "EndTime": end, "StatusMessage": "Done"})
    job["LastModifiedTime"] = max(at, job.get("LastModifiedTime") or at)
    job["FinalMetricDataList"] = [
        *[m for m in job.get("FinalMetricDataList", []) if m.get("MetricName") != "night_score"],
        {"MetricName": "night_score", "Value": float(night), "Timestamp": at},
    ]
    job["Tags"] = [
        *[t for t in job.get("Tags", []) if t.get("Key") != "reviewed"],
        {"Key": "reviewed", "Value": f"n{night}"},
    ]
    return job


def pick(records: list[dict[str, Any]], count: int, seed: int, recent: bool) -> list[dict[str, Any]]:
    """``count`` of ``records``: the most recently created ones (as a night's changes mostly are: running
    jobs finishing, warm pools ending), or a random sample."""
    if recent:
        return sorted(records, key=lambda r: r["CreationTime"])[-count:]
    return random.Random(seed).sample(records, min(count, len(records)))


def stored_records(warehouse: Path, newest: int = 0, sample: int = 0, seed: int = 0) -> list[dict[str, Any]]:
    """Stored records read back from the raw layer (the latest of each job): the ``newest`` by creation
    time, or a random ``sample``."""
    files = parquet_files(warehouse, RAW_JOBS)
    latest = f"""
        select response_json, creation_time from read_parquet({files!r})
        qualify row_number() over (partition by training_job_arn order by fetched_at desc, run_id desc) = 1
    """
    if newest:
        query = f"select response_json from ({latest}) order by creation_time desc limit {int(newest)}"
    else:
        query = f"select response_json from ({latest}) using sample reservoir({int(sample)} rows) repeatable ({seed})"
    with duckdb.connect() as connection:
        return [parse_timestamps(json.loads(text)) for (text,) in connection.execute(query).fetchall()]


def differing_rows(
    database: Path, other: Path, tables: Iterable[str], ignoring: Collection[str] = ()
) -> dict[str, int]:
    """Rows that differ between the same tables of two DuckDB files, by table (none: identical), in every
    column but those named in ``ignoring``. Rows are matched on the table's declared key; doubles may differ
    by 1e-9 of their size, since a sum of doubles depends on the order rows are added in, which differs
    between two builds of the same rows."""
    found = {}
    with duckdb.connect() as connection:
        connection.execute(f"attach {literal(database)} as a (read_only)")
        connection.execute(f"attach {literal(other)} as b (read_only)")
        for name in tables:
            declared = all_tables()[name]
            same = " and ".join(
                f"(x.{c} is not distinct from y.{c} or abs(x.{c} - y.{c}) <= 1e-9 * greatest(abs(x.{c}), 1))"
                if column.type == "float64"
                else f"x.{c} is not distinct from y.{c}"
                for column in declared.columns
                if column.name not in ignoring
                for c in [identifier(column.name)]
            )
            key = " and ".join(f"x.{identifier(k)} is not distinct from y.{identifier(k)}" for k in declared.key)
            differing = connection.execute(
                f"select count(*) from a.main.{identifier(name)} x full join b.main.{identifier(name)} y "
                f"on {key} where not ({same})"
            ).fetchall()[0][0]
            if differing:
                found[name] = int(differing)
    return found


# Checks that warn about the demo's data (an instance without a price, no bill loaded), not about the build.
WARNINGS = {"unknown_members", "rows_left_out", "unpriced_instance_types", "unverified_price_share"}


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB since it started its program: Linux's ``VmHWM``. Not
    ``ru_maxrss``, which also holds the memory of the parent a child was forked from, kept across its exec:
    a benchmark's child would report its parent's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(warehouse: Path, full: bool = False, costs: CostSettings | None = None) -> dict[str, Any]:
    """One build the way the build job runs it, without Dagster: stage, check the tables, build the models,
    check them, add the build history, publish. Returns what it did, seconds by stage, the checks that
    failed (warnings aside) and the process's peak RSS."""
    laps = [time.perf_counter()]
    staged = stage_from_raw(warehouse, f"night-{time.time_ns()}", full=full)
    laps.append(time.perf_counter())
    with staged.staging.connect(read_only=True) as connection:
        outcomes = [o for declared in normalized_tables() for o in checks.table_checks(connection, declared)]
        outcomes.append(checks.unknown_members(connection))
    laps.append(time.perf_counter())
    stage_models(staged.staging, costs or CostSettings())
    laps.append(time.perf_counter())
    with staged.staging.connect(read_only=True) as connection:
        outcomes += [check(connection) for check in model_checks.MODEL_CHECKS]
    laps.append(time.perf_counter())
    stage_build_history(staged.staging, [])
    tables = [t.name for t in normalized_tables()] + [*REFERENCE_TABLES, *model_names(), BUILD_HISTORY]
    publish(staged.staging, tables)
    laps.append(time.perf_counter())
    stages = ("stage", "checks", "models", "model_checks", "publish")
    return {
        "mode": staged.plan.mode,
        "reason": staged.plan.reason,
        "jobs_rebuilt": staged.changed_jobs,
        "jobs": staged.counts["jobs"],
        "raw_files_read": len(staged.plan.new_files),
        "seconds": laps[-1] - laps[0],
        **{name: laps[i + 1] - laps[i] for i, name in enumerate(stages)},
        "failed_checks": [f"{o.name}: {o.description}" for o in outcomes if not o.passed and o.name not in WARNINGS],
        "peak_rss_mb": peak_rss_mb(),
    }
