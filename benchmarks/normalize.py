"""Normalization benchmark: the warehouse against dlt, on the same records at the same sizes.

For each size, writes a raw layer of generated jobs (as extraction would), then times from that raw
layer to loaded tables, each run in a fresh process so that its peak memory is its own, repeated
(min / median / max):

- the warehouse: staging the 10 normalized tables, every check on them (the blocking ones that gate
  publication included), Parquet export and publication;
- dlt, reading and parsing the same records, then normalizing and loading them into DuckDB: with its
  default loader (INSERT statements), with its documented fast path for DuckDB
  (``loader_file_format="parquet"``), and with that plus two normalize workers and larger buffers.

    python benchmarks/normalize.py [--sizes 5000,100000] [--repeat 3] [--dlt-default-up-to 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.demo.fleet import FleetSpec, generate_fleet
from pipelines.demo.nights import peak_rss_mb
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
    """Our whole build of the normalized tables from the raw layer, as a nightly run does it: staging,
    every check on them (blocking ones included), Parquet export and publication."""
    from pipelines.normalization import checks
    from pipelines.normalization.flatten import normalized_tables
    from pipelines.warehouse.build import stage_from_raw
    from pipelines.warehouse.publication import publish

    tables = normalized_tables()
    started = time.perf_counter()
    build = stage_from_raw(Path(warehouse), f"bench-{time.time_ns()}", full=True)  # every run builds everything
    staged = time.perf_counter()
    with build.staging.connect(read_only=True) as connection:
        outcomes = [outcome for declared in tables for outcome in checks.table_checks(connection, declared)]
        outcomes += [checks.unknown_members(connection)]
        outcomes += [checks.rows_left_out(connection, declared) for declared in tables if declared.name != checks.JOBS]
    checked = time.perf_counter()
    publish(build.staging, [t.name for t in tables])
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "staging_seconds": staged - started,
        "check_seconds": checked - staged,
        "publish_seconds": seconds - (checked - started),
        "checks": len(outcomes),
        "rows": sum(build.counts.values()),
        "tables": len(build.counts),
    }


DLT_CONFIGURATIONS = {
    # dlt's default: INSERT statements into DuckDB.
    "dlt default (insert_values)": ({}, "insert_values"),
    # Its documented fast path for DuckDB: Parquet load files (pyarrow), loaded with DuckDB's reader.
    "dlt parquet": ({}, "parquet"),
    # The same with the normalize stage on both cores and bigger writer buffers (dlt's performance guide).
    "dlt parquet, 2 normalize workers": (
        {"NORMALIZE__WORKERS": "2", "DATA_WRITER__BUFFER_MAX_ITEMS": "20000"},
        "parquet",
    ),
}


def run_dlt(warehouse: str, configuration: str) -> dict:
    """dlt from the same raw layer: the records read and parsed, then normalized and loaded into DuckDB."""
    environment, file_format = DLT_CONFIGURATIONS[configuration]
    os.environ.update(environment)
    import dlt
    import duckdb

    from pipelines.storage.raw import parquet_files

    files = parquet_files(Path(warehouse), RAW_JOBS)
    target = Path(tempfile.mkdtemp(dir=warehouse, prefix="dlt-"))
    pipeline = dlt.pipeline(
        pipeline_name="bench",
        destination=dlt.destinations.duckdb(str(target / "dlt.duckdb")),
        dataset_name="sagemaker",
        pipelines_dir=str(target / ".dlt"),
    )
    started = time.perf_counter()
    documents = [
        json.loads(text) for (text,) in duckdb.execute("select response_json from read_parquet(?)", [files]).fetchall()
    ]
    info = pipeline.run(documents, table_name="training_jobs", loader_file_format=file_format)
    seconds = time.perf_counter() - started
    with duckdb.connect(str(target / "dlt.duckdb"), read_only=True) as connection:
        tables = [
            name
            for (name,) in connection.execute(
                "select table_name from information_schema.tables where table_schema = 'sagemaker'"
                " and table_name not like '_dlt%'"
            ).fetchall()
        ]
        rows = sum(connection.execute(f'select count(*) from sagemaker."{t}"').fetchone()[0] for t in tables)
    return {
        "seconds": seconds,
        "jobs": len(documents),
        "loads": len(info.loads_ids),
        "rows": rows,
        "tables": len(tables),
    }


def child(argv: list[str]) -> None:
    kind, warehouse = argv[0], argv[1]
    result = run_warehouse(warehouse) if kind == "warehouse" else run_dlt(warehouse, kind)
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def measure(kind: str, warehouse: Path) -> dict:
    """One run of ``kind`` in a fresh process, so that its peak memory is its own."""
    output = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(warehouse)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def spread(values: list[float], digits: int = 2) -> str:
    """min / median / max of repeated runs."""
    return " / ".join(f"{v:,.{digits}f}" for v in (min(values), statistics.median(values), max(values)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000,100000", help="comma-separated job counts (default 5000,100000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each tool at each size (default 3)")
    parser.add_argument(
        "--dlt-default-up-to", type=int, default=5000, help="largest size dlt's default loader runs at (it is slow)"
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    print(f"{'tool':<40} {'jobs':>8} {'seconds min / median / max':>28} {'jobs/s (median)':>16} {'peak RSS MB':>16}")
    for jobs in (int(size) for size in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench-normalize-") as folder:
            warehouse = Path(folder)
            generation = write_raw_layer(warehouse, jobs)
            raw_mb = sum(p.stat().st_size for p in (warehouse / "raw").rglob("*.parquet")) / 2**20
            print(f"-- {jobs:,} jobs: {raw_mb:.0f} MB of raw Parquet (written in {generation:.1f} s, not timed)")
            tools = [
                "warehouse",
                *(c for c in DLT_CONFIGURATIONS if "default" not in c or jobs <= args.dlt_default_up_to),
            ]
            medians = {}
            for tool in tools:
                try:
                    runs = [measure(tool, warehouse) for _ in range(args.repeat)]
                except subprocess.CalledProcessError as error:
                    print(
                        f"{tool}: failed (install dlt with `pip install -e '.[bench]'`): {error.stderr.strip()[-300:]}"
                    )
                    continue
                seconds = [r["seconds"] for r in runs]
                medians[tool] = statistics.median(seconds)
                label = "warehouse (10 tables, checks included)" if tool == "warehouse" else tool
                print(
                    f"{label:<40} {jobs:>8,} {spread(seconds):>28} {jobs / medians[tool]:>16,.0f} "
                    f"{spread([r['peak_rss_mb'] for r in runs], 0):>16}"
                )
                if tool == "warehouse":
                    last = runs[-1]
                    print(
                        f"{'':<4}(last run: staging {last['staging_seconds']:.2f} s, {last['checks']} checks "
                        f"{last['check_seconds']:.2f} s, Parquet and publication {last['publish_seconds']:.2f} s; "
                        f"{last['rows']:,} rows in {last['tables']} tables)"
                    )
                else:
                    print(f"{'':<4}({runs[-1]['rows']:,} rows in {runs[-1]['tables']} tables)")
            for tool, median in medians.items():
                if tool != "warehouse" and "warehouse" in medians:
                    print(f"{'':<4}warehouse vs {tool}: {median / medians['warehouse']:.1f}x (median seconds)")


if __name__ == "__main__":
    main()
