"""Nightly build benchmark: what a night's build costs as the warehouse ages, incremental against full.

Night 0 writes a raw layer of ``--jobs`` generated jobs and builds the warehouse (full). Each following
night writes what extraction would store after a night in which ``--change`` of the jobs changed (70% new
jobs, 30% new records of the most recently created jobs: running jobs finishing, a tag set), then times
the build the pipeline runs: staging, every check on the tables, the models, their checks, the build
history and publication. Each build runs in a fresh process, so its peak RSS is its own. With
``--full-every N`` (and always on the last night) a full build of the same raw layer runs in a copy of it,
is timed the same way, and its tables are compared with the incremental warehouse's. With
``--compact-every N`` the raw layer is compacted after every Nth night's build (timed, with the raw files
before and after); the next night's build shows whether it stayed incremental. With ``--copies K``, night 0
generates ``--jobs``/K jobs and stores their records K times, under other names and with the same times:
a 10M-job raw layer in minutes, where generating it takes over an hour.

    python benchmarks/nightly.py --jobs 100000 --nights 30 [--change 0.01] [--full-every 10]
        [--compact-every 7] [--copies 10] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.demo.fleet import FleetSpec, generate_fleet
from pipelines.demo.nights import build, changed, differing_rows, renamed, stored_records, write_records
from pipelines.sql import literal
from pipelines.storage.raw import RAW_ERRORS, RAW_JOBS, parquet_files, write_parquet_atomically
from pipelines.warehouse.compaction import compact_raw


def measure(warehouse: Path, full: bool) -> dict[str, object]:
    """A build in a fresh process."""
    command = [sys.executable, __file__, "--child", str(warehouse), *(["--full"] if full else [])]
    # The build's log and errors go to this process's stderr: a failed build says why.
    output = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def night(warehouse: Path, number: int, jobs: int, change: float, at: datetime) -> int:
    """Store one night's records: new jobs (copies of stored ones under new names) and later records of the
    newest jobs. Returns how many records were written."""
    count = max(1, round(jobs * change))
    newer = [changed(record, at, number) for record in stored_records(warehouse, newest=count - count * 7 // 10)]
    added = [
        renamed(record, f"n{number:03d}-{i}", at - record["LastModifiedTime"] - timedelta(minutes=1))
        for i, record in enumerate(stored_records(warehouse, sample=count * 7 // 10, seed=number))
    ]
    return write_records(warehouse, newer + added, f"{at:%Y%m%dT%H%M%SZ}-night{number:03d}", at)


def store_copies(warehouse: Path, copies: int) -> None:
    """Store the raw layer's job records ``copies - 1`` more times, each job under another name (``c<k>-``
    before its name's last 59 characters, so within SageMaker's 63) and with the same times, through the raw
    layer's own writer. The names' ends (a counter) keep them apart; the ARNs are counted to be sure."""
    sources = [Path(path) for path in parquet_files(warehouse, RAW_JOBS)]
    with duckdb.connect() as connection:
        for copy in range(1, copies):
            name = f"'c{copy}-' || right(training_job_name, 59)"
            for source in sources:
                data = connection.execute(
                    f"""
                    select * exclude (new_name, new_json) replace (
                        replace(training_job_arn, training_job_name, new_name) as training_job_arn,
                        new_name as training_job_name, sha256(new_json) as response_sha256, new_json as response_json)
                    from (
                        select *, {name} as new_name, replace(response_json, training_job_name, {name}) as new_json
                        from read_parquet({literal(source)})
                    )
                    """
                ).to_arrow_table()
                write_parquet_atomically(data.cast(pq.read_schema(source)), source.with_stem(f"{source.stem}-c{copy}"))
        files = ", ".join(literal(path) for path in parquet_files(warehouse, RAW_JOBS))
        stored, distinct = connection.execute(
            f"select count(*), count(distinct training_job_arn) from read_parquet([{files}])"
        ).fetchone()
    if stored != distinct:
        raise SystemExit(f"the copies' names collide: {stored:,} records, {distinct:,} ARNs")


def compacted(warehouse: Path) -> str:
    """Compact the raw layer (as the weekly job does) and say what it did."""
    before = len(parquet_files(warehouse, RAW_JOBS)) + len(parquet_files(warehouse, RAW_ERRORS))
    started = time.perf_counter()
    done = compact_raw(warehouse)
    seconds = time.perf_counter() - started
    after = len(parquet_files(warehouse, RAW_JOBS)) + len(parquet_files(warehouse, RAW_ERRORS))
    rows = sum(merged.rows for merged in done)
    return f"-- compaction: {before} raw files -> {after} ({rows:,} rows rewritten) in {seconds:.2f} s"


def line(label: str, result: dict[str, object]) -> str:
    failed = result["failed_checks"]
    return (
        f"{label:<12} {result['mode']:<12} {result['jobs']:>10,} {result['jobs_rebuilt']:>9,} "
        f"{result['raw_files_read']:>6} {result['seconds']:>8.2f} {result['stage']:>7.2f} {result['checks']:>7.2f} "
        f"{result['models']:>7.2f} {result['model_checks']:>7.2f} {result['publish']:>8.2f} "
        f"{result['peak_rss_mb']:>9,.0f}" + (f"  FAILED: {failed}" if failed else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs on night 0 (default 100000)")
    parser.add_argument("--nights", type=int, default=30, help="nights after night 0 (default 30)")
    parser.add_argument("--change", type=float, default=0.01, help="share of the jobs that change a night")
    parser.add_argument("--full-every", type=int, default=0, help="also time a full build every N nights")
    parser.add_argument("--compact-every", type=int, default=0, help="compact the raw layer every N nights")
    parser.add_argument("--copies", type=int, default=1, help="night 0 stores --jobs/K jobs K times, renamed")
    parser.add_argument("--keep", help="build here and keep it; a night-0 raw layer already there is reused")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--full", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(build(Path(args.child), args.full)))
        return
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-nightly-"))
    warehouse = folder / "warehouse"
    start = datetime.now(UTC).replace(microsecond=0)
    if not (warehouse / "raw").exists():
        started = time.perf_counter()
        generated = args.jobs // args.copies
        fleet = generate_fleet(FleetSpec(jobs=generated, seed=5))
        write_records(warehouse, fleet, f"{start:%Y%m%dT%H%M%SZ}-night000", start)
        store_copies(warehouse, args.copies)
        copies = f", stored {args.copies} times under other names" if args.copies > 1 else ""
        print(f"-- night 0: {generated:,} jobs generated{copies} in {time.perf_counter() - started:.0f} s (not timed)")
    for stale in ("current", "sagemaker.duckdb", "parquet", ".versions", ".staging", ".retired"):  # nothing published
        path = warehouse / stale
        path.unlink() if path.is_symlink() else shutil.rmtree(path, ignore_errors=True)
    print(
        f"{'night':<12} {'build':<12} {'jobs':>10} {'rebuilt':>9} {'files':>6} {'seconds':>8} {'stage':>7} "
        f"{'checks':>7} {'models':>7} {'m.check':>7} {'publish':>8} {'peak MB':>9}"
    )
    print(line("0", measure(warehouse, full=True)), flush=True)
    for number in range(1, args.nights + 1):
        written = night(warehouse, number, args.jobs, args.change, start + timedelta(days=number, hours=1))
        result = measure(warehouse, full=False)
        print(line(f"{number} (+{written:,})", result), flush=True)
        if number == args.nights or (args.full_every and number % args.full_every == 0):
            copy = folder / "full"
            shutil.rmtree(copy, ignore_errors=True)
            copy.mkdir()
            shutil.copytree(warehouse / "raw", copy / "raw")
            full = measure(copy, full=True)
            from pipelines.schemas import all_tables

            tables = [name for name, table in all_tables().items() if table.layer not in ("raw", "history")]
            differing = differing_rows(warehouse / "sagemaker.duckdb", copy / "sagemaker.duckdb", tables)
            verdict = "identical tables" if not differing else f"DIFFERENT: {differing}"
            print(line(f"{number} full", full) + f"  {verdict}", flush=True)
            shutil.rmtree(copy, ignore_errors=True)
        if args.compact_every and number % args.compact_every == 0:
            print(compacted(warehouse), flush=True)
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
