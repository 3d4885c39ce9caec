"""Normalization benchmark: flatten and load N generated jobs, against dlt on the same records.

Writes a raw layer of N demo jobs (as extraction would), then times, each in a fresh process so that
peak memory is its own: the warehouse's normalization (staging DuckDB + Parquet publication) and dlt's
generic normalizer loading the same records into DuckDB.

    python benchmarks/normalize.py [--jobs 100000] [--dlt-jobs 5000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.demo.fleet import FleetSpec, generate_fleet
from pipelines.extraction.redaction import redact
from pipelines.schemas import table
from pipelines.storage.raw import RAW_JOBS, raw_job_row, table_dir, write_parquet_atomically

BATCH = 20_000


def write_raw_layer(warehouse: Path, jobs: int) -> float:
    """The raw layer extraction would have written for a fleet of ``jobs``; returns seconds taken."""
    started = time.perf_counter()
    schema = table(RAW_JOBS).arrow_schema()
    fetched = datetime.now(UTC)
    rows: list[dict] = []
    batch = 0

    def flush() -> None:
        nonlocal rows, batch
        if rows:
            path = table_dir(warehouse, RAW_JOBS, "123456789012", "mixed") / f"bench-{batch:05d}.parquet"
            write_parquet_atomically(pa.Table.from_pylist(rows, schema=schema), path)
            rows, batch = [], batch + 1

    for record in generate_fleet(FleetSpec(jobs=jobs, seed=5)):
        arn = record["TrainingJobArn"]
        rows.append(raw_job_row(arn.split(":")[4], arn.split(":")[3], redact(record), fetched, "bench"))
        if len(rows) >= BATCH:
            flush()
    flush()
    return time.perf_counter() - started


def run_warehouse(warehouse: str) -> dict:
    from pipelines.config import CostSettings
    from pipelines.models.build import PRICES, build_order
    from pipelines.normalization.flatten import normalized_tables
    from pipelines.warehouse.build import stage_models, stage_normalized_tables
    from pipelines.warehouse.publication import publish

    started = time.perf_counter()
    staging, counts = stage_normalized_tables(Path(warehouse), "bench")
    staged = time.perf_counter() - started
    publish(staging, [t.name for t in normalized_tables()])
    seconds = time.perf_counter() - started
    # The cost and duration models on the same jobs, timed on their own (not part of the comparison).
    staging, _ = stage_normalized_tables(Path(warehouse), "bench-models")
    models_started = time.perf_counter()
    model_counts = stage_models(staging, CostSettings())
    models_seconds = time.perf_counter() - models_started
    publish(staging, [t.name for t in normalized_tables()] + [PRICES, *build_order()])
    return {
        "seconds": seconds,
        "staged_seconds": staged,
        "rows": counts,
        "models_seconds": models_seconds,
        "model_rows": model_counts,
    }


def run_dlt(warehouse: str, jobs: int) -> dict:
    import dlt
    import duckdb

    from pipelines.storage.raw import parquet_files

    files = parquet_files(Path(warehouse), RAW_JOBS)
    documents = [
        json.loads(text)
        for (text,) in duckdb.execute(f"select response_json from read_parquet(?) limit {jobs}", [files]).fetchall()
    ]
    pipeline = dlt.pipeline(
        pipeline_name="bench",
        destination=dlt.destinations.duckdb(str(Path(warehouse) / "dlt.duckdb")),
        dataset_name="sagemaker",
        pipelines_dir=str(Path(warehouse) / ".dlt"),
    )
    started = time.perf_counter()
    info = pipeline.run(documents, table_name="training_jobs")
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "jobs": len(documents), "loads": len(info.loads_ids)}


def child(argv: list[str]) -> None:
    kind, warehouse, jobs = argv[0], argv[1], int(argv[2])
    result = run_warehouse(warehouse) if kind == "warehouse" else run_dlt(warehouse, jobs)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def measure(kind: str, warehouse: Path, jobs: int) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(warehouse), str(jobs)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--dlt-jobs", type=int, default=5_000, help="dlt is slow: it gets a prefix of the records")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    warehouse = Path(tempfile.mkdtemp(prefix="bench-normalize-"))
    generation = write_raw_layer(warehouse, args.jobs)
    raw_mb = sum(p.stat().st_size for p in (warehouse / "raw").rglob("*.parquet")) / 2**20
    print(f"raw layer: {args.jobs} jobs, {raw_mb:.0f} MB of Parquet, written in {generation:.1f}s (not timed below)")
    ours = measure("warehouse", warehouse, args.jobs)
    rows = sum(ours["rows"].values())
    print(f"\n{'tool':<36} {'jobs':>9} {'seconds':>9} {'jobs/s':>10} {'peak RSS MB':>12}")
    print(
        f"{'warehouse (DuckDB, 10 tables)':<36} {args.jobs:>9} {ours['seconds']:>9.2f} "
        f"{args.jobs / ours['seconds']:>10.0f} {ours['peak_rss_mb']:>12.0f}"
    )
    dlt_jobs = min(args.dlt_jobs, args.jobs)
    try:
        theirs = measure("dlt", warehouse, dlt_jobs)
        print(
            f"{'dlt 1.31 (generic normalizer)':<36} {theirs['jobs']:>9} {theirs['seconds']:>9.2f} "
            f"{theirs['jobs'] / theirs['seconds']:>10.0f} {theirs['peak_rss_mb']:>12.0f}"
        )
        ratio = (args.jobs / ours["seconds"]) / (theirs["jobs"] / theirs["seconds"])
        print(f"\nwarehouse vs dlt, jobs per second: {ratio:.0f}x")
    except subprocess.CalledProcessError as error:
        print(f"dlt run failed (install it with `pip install -e '.[bench]'`): {error.stderr.strip()[-300:]}")
    print(
        f"\nwarehouse rows by table: {ours['rows']} ({rows} rows; staging {ours['staged_seconds']:.2f}s, "
        f"Parquet export and publication {ours['seconds'] - ours['staged_seconds']:.2f}s)"
    )
    print(f"cost and duration models on the same jobs (not in the comparison): {ours['models_seconds']:.2f}s")


if __name__ == "__main__":
    main()
