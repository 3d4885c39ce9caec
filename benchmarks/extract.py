"""Extraction benchmark: the warehouse's concurrent, incremental extraction against a naive sequential loop.

Both read the same fleet from the local SageMaker endpoint with the same injected latency and
throttling. The naive loop is what a hand-written script (or a full-sync tool) does: list every job,
then DescribeTrainingJob and ListTags one job at a time, every run.

    python benchmarks/extract.py [--jobs 500] [--latency-ms 50] [--throttle 0.05] [--workers 8]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.config import ExtractionSettings, Settings
from pipelines.demo.endpoint import LocalSageMaker, aws_environment
from pipelines.demo.fleet import FleetSpec, generate_fleet
from pipelines.extraction.run import extract

REGION = "us-east-1"


def naive_loop() -> int:
    """List everything, then describe and tag each job in turn, with boto3's default settings.
    A call that still fails after boto3's default retries loses that job (counted, not raised)."""
    client = boto3.client("sagemaker", region_name=REGION)
    names = [
        summary["TrainingJobName"]
        for page in client.get_paginator("list_training_jobs").paginate()
        for summary in page["TrainingJobSummaries"]
    ]
    fetched = 0
    for name in names:
        try:
            job = client.describe_training_job(TrainingJobName=name)
            client.list_tags(ResourceArn=job["TrainingJobArn"])
            fetched += 1
        except ClientError:
            pass
    return fetched


def measure(endpoint: LocalSageMaker, label: str, tool: str, run: callable) -> dict:  # type: ignore[valid-type]
    endpoint.reset_stats()
    started = time.perf_counter()
    jobs = run()
    seconds = time.perf_counter() - started
    stats = endpoint.stats()
    return {
        "scenario": label,
        "tool": tool,
        "seconds": seconds,
        "jobs": jobs,
        "calls": stats["calls"],
        "throttles": stats["injected"].get("ThrottlingException", 0),
    }


def finish(record: dict) -> dict:
    done = copy.deepcopy(record)
    end = record["SecondaryStatusTransitions"][-1]["StartTime"] + timedelta(minutes=30)
    done["SecondaryStatusTransitions"][-1]["EndTime"] = end
    done["SecondaryStatusTransitions"].append({"Status": "Completed", "StartTime": end, "EndTime": end})
    done.update(TrainingJobStatus="Completed", SecondaryStatus="Completed", TrainingEndTime=end, LastModifiedTime=end)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--throttle", type=float, default=0.05, help="fraction of calls answered with throttling")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--new-jobs", type=int, default=10, help="jobs that appear before the incremental run")
    args = parser.parse_args()

    end = datetime.now(UTC).replace(microsecond=0)
    spec = FleetSpec(jobs=args.jobs, seed=21, end=end, regions=(REGION,))
    fleet = list(generate_fleet(spec))
    settings = Settings(
        warehouse=Path(tempfile.mkdtemp(prefix="bench-warehouse-")),
        regions=(REGION,),
        extraction=replace(ExtractionSettings(), max_workers=args.workers),
    )
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        endpoint = LocalSageMaker.start()
        try:
            environment = {
                **endpoint.environment(REGION),
                "AWS_CONFIG_FILE": os.path.join(scratch, "none"),
                "AWS_SHARED_CREDENTIALS_FILE": os.path.join(scratch, "none"),
            }
            with aws_environment(environment):
                endpoint.load_fleet(spec)
                endpoint.set_faults(latency_ms=args.latency_ms, throttle_rate=args.throttle, seed=1)
                backfill = f"backfill of {args.jobs} jobs"
                results.append(measure(endpoint, backfill, "warehouse", lambda: extract(settings).stored))
                results.append(measure(endpoint, backfill, "naive loop", naive_loop))

                running = [r for r in fleet if r["TrainingJobStatus"] == "InProgress"][:1]
                arrivals = list(
                    generate_fleet(
                        FleetSpec(jobs=args.new_jobs, seed=22, days=1, end=end + timedelta(hours=2), regions=(REGION,))
                    )
                )
                endpoint.upsert_jobs([*arrivals, *(finish(r) for r in running)])
                incremental = f"incremental: {len(arrivals)} new, {len(running)} finished"
                results.append(measure(endpoint, incremental, "warehouse", lambda: extract(settings).stored))
                results.append(measure(endpoint, incremental, "naive loop", naive_loop))
        finally:
            endpoint.stop()

    print(
        f"\nlocal endpoint: {args.latency_ms:.0f} ms per call, {args.throttle:.0%} of calls throttled; "
        f"warehouse: {args.workers} workers, retry mode {settings.extraction.retry_mode}\n"
    )
    header = (
        f"{'scenario':<32} {'tool':<11} {'wall s':>8} {'jobs':>6} {'jobs/s':>8} {'List':>6} {'Describe':>9} "
        f"{'ListTags':>9} {'throttles':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        calls = r["calls"]
        print(
            f"{r['scenario']:<32} {r['tool']:<11} {r['seconds']:>8.2f} {r['jobs']:>6} {r['jobs'] / r['seconds']:>8.1f} "
            f"{calls.get('ListTrainingJobs', 0):>6} {calls.get('DescribeTrainingJob', 0):>9} "
            f"{calls.get('ListTags', 0):>9} {r['throttles']:>10}"
        )
    backfill_speedup = results[1]["seconds"] / results[0]["seconds"]
    incremental_speedup = results[3]["seconds"] / results[2]["seconds"]
    print(f"\nbackfill speed-up over the naive loop: {backfill_speedup:.1f}x (thread pool: {args.workers})")
    print(f"incremental speed-up over the naive loop: {incremental_speedup:.1f}x")


if __name__ == "__main__":
    main()
