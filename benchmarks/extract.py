"""Extraction benchmark: a backfill in Search mode, in Describe mode and by a naive loop, under AWS-like
per-operation rate limits, printed side by side.

All three read the same generated fleet from the local SageMaker endpoint over HTTP, with the same
injected latency and the same requests-per-second limits per operation (AWS publishes none for
SageMaker; ListTrainingJobs is reported at about 2/s). Calls past a limit are answered with
ThrottlingException, as AWS does, and each tool retries them its own way.

- Search mode: ``extraction.mode: search``, the warehouse's own extraction, Describe only for the jobs
  whose records name no instances.
- Describe mode: ``extraction.mode: describe``: ListTrainingJobs, then DescribeTrainingJob and ListTags
  for every job, on a thread pool.
- Naive loop: what a hand-written script does: list everything, then describe and tag one job at a time
  with boto3's default settings.

Describe mode and the naive loop need 2 calls a job at 10 calls a second: a 100,000-job backfill takes
them hours. By default they run on the first ``--sample`` jobs of the same fleet (same generator, same
limits) and their time is projected linearly to the full fleet: the limits keep their cost per job
constant. ``--sample 0`` runs everything at full size.

    python benchmarks/extract.py [--jobs 100000] [--sample 2000] [--latency-ms 50]
        [--list-rate 2] [--describe-rate 10] [--tags-rate 10] [--search-rate 5] [--workers 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import boto3
from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.config import ExtractionSettings, Settings
from pipelines.demo.endpoint import LocalSageMaker, aws_environment
from pipelines.demo.fleet import FleetSpec
from pipelines.extraction.run import extract

REGION = "us-east-1"


def naive_loop() -> int:
    """List everything, then describe and tag each job in turn, with boto3's default settings.
    A call that still fails after boto3's default retries loses that job, or the rest of the listing
    (counted, not raised: a script would stop there)."""
    client = boto3.client("sagemaker", region_name=REGION)
    names = []
    try:
        for page in client.get_paginator("list_training_jobs").paginate():
            names.extend(summary["TrainingJobName"] for summary in page["TrainingJobSummaries"])
    except ClientError as error:
        print(f"naive loop: the listing stopped after {len(names)} jobs: {error}", flush=True)
    fetched = 0
    for name in names:
        try:
            job = client.describe_training_job(TrainingJobName=name)
            client.list_tags(ResourceArn=job["TrainingJobArn"])
            fetched += 1
        except ClientError:
            pass
    return fetched


def warehouse_settings(mode: str, workers: int, scratch: str) -> Settings:
    return Settings(
        warehouse=Path(scratch) / f"warehouse-{mode}",
        regions=(REGION,),
        extraction=replace(ExtractionSettings(), mode=mode, max_workers=workers),
    )


def warehouse_run(mode: str, workers: int, scratch: str) -> Callable[[], int]:
    settings = warehouse_settings(mode, workers, scratch)
    return lambda: extract(settings).stored


def quiet_night(endpoint: LocalSageMaker, workers: int, scratch: str) -> str:
    """The next night after the Search backfill, nothing changed in SageMaker, in ``auto`` mode (the
    nightly default): what it calls. Running jobs and live warm pools that the listing returns unchanged
    are not described again."""
    backfilled = warehouse_settings("search", workers, scratch)
    settings = replace(backfilled, extraction=replace(backfilled.extraction, mode="auto"))
    endpoint.reset_stats()
    started = time.perf_counter()
    report = extract(settings)
    seconds = time.perf_counter() - started
    calls = endpoint.stats()["calls"]
    return (
        f"a night without changes after the Search backfill (auto mode): {sum(calls.values()):,} calls "
        f"{dict(calls)} in {seconds:.1f} s, {report.stored} jobs stored"
    )


def measure(endpoint: LocalSageMaker, spec: FleetSpec, tool: str, run: Callable[[], int], full: int) -> dict:
    endpoint.load_fleet(spec)
    endpoint.reset_stats()
    started = time.perf_counter()
    jobs = run()
    seconds = time.perf_counter() - started
    stats = endpoint.stats()
    print(f"{tool}: {jobs:,} of {spec.jobs:,} jobs in {seconds:.1f} s, requests {stats['calls']}", flush=True)
    return {
        "tool": tool,
        "measured_jobs": spec.jobs,
        "seconds": seconds,
        "jobs": jobs,
        "calls": stats["calls"],
        "throttles": stats["injected"].get("ThrottlingException", 0),
        # Only a run that stored every job says how long the full fleet takes.
        "projected": seconds * full / spec.jobs if jobs == spec.jobs else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="the backfill's size (default 100000)")
    parser.add_argument(
        "--sample", type=int, default=2000, help="jobs Describe mode and the naive loop run on (0: all of them)"
    )
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--list-rate", type=float, default=2, help="ListTrainingJobs requests/s")
    parser.add_argument("--describe-rate", type=float, default=10, help="DescribeTrainingJob requests/s")
    parser.add_argument("--tags-rate", type=float, default=10, help="ListTags requests/s")
    parser.add_argument("--search-rate", type=float, default=5, help="Search requests/s")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--skip-naive", action="store_true", help="leave the naive loop out")
    args = parser.parse_args()

    end = datetime.now(UTC).replace(microsecond=0)
    full = FleetSpec(jobs=args.jobs, seed=21, end=end, regions=(REGION,))
    sample = replace(full, jobs=args.sample) if 0 < args.sample < args.jobs else full
    limits = {
        "ListTrainingJobs": args.list_rate,
        "DescribeTrainingJob": args.describe_rate,
        "ListTags": args.tags_rate,
        "Search": args.search_rate,
    }
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
                endpoint.set_faults(latency_ms=args.latency_ms, rate_limits=limits, seed=1)
                search_run = warehouse_run("search", args.workers, scratch)
                results.append(measure(endpoint, full, "Search mode", search_run, args.jobs))
                night = quiet_night(endpoint, args.workers, scratch)
                print(night, flush=True)
                runs = [("Describe mode", warehouse_run("describe", args.workers, scratch))]
                if not args.skip_naive:
                    runs.append(("naive loop", naive_loop))
                for tool, run in runs:
                    results.append(measure(endpoint, sample, tool, run, args.jobs))
        finally:
            endpoint.stop()

    print(
        f"\nlocal endpoint: {args.latency_ms:.0f} ms per call; requests/s: "
        + ", ".join(f"{op} {rate:g}" for op, rate in limits.items())
        + f"; warehouse: {args.workers} workers\n"
    )
    header = (
        f"{'tool':<14} {'jobs run':>9} {'stored':>8} {'wall s':>9} {'calls/job':>10} {'Search':>7} {'List':>6} "
        f"{'Describe':>9} {'ListTags':>9} {'throttles':>10} {f'{args.jobs:,} jobs, s':>16}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        calls = r["calls"]
        if r["projected"] is None:
            projected = f"{'did not finish':>16}: lost {r['measured_jobs'] - r['jobs']:,} jobs"
        else:
            projected = f"{r['projected']:>16,.0f}" + ("" if r["measured_jobs"] == args.jobs else " (projected)")
        print(
            f"{r['tool']:<14} {r['measured_jobs']:>9,} {r['jobs']:>8,} {r['seconds']:>9.1f} "
            f"{sum(calls.values()) / max(1, r['jobs']):>10.4f} {calls.get('Search', 0):>7} "
            f"{calls.get('ListTrainingJobs', 0):>6} {calls.get('DescribeTrainingJob', 0):>9} "
            f"{calls.get('ListTags', 0):>9} {r['throttles']:>10} {projected}"
        )
    print("\ncalls are HTTP requests, retries of throttled ones included")
    print(night)
    search = results[0]["projected"]
    for r in results[1:]:
        if r["projected"] is None or search is None:
            continue
        sampled = "" if r["measured_jobs"] == args.jobs else f" ({r['tool']} measured on {r['measured_jobs']:,} jobs)"
        print(f"Search mode is {r['projected'] / search:.1f}x faster than {r['tool']} on {args.jobs:,} jobs{sampled}")


if __name__ == "__main__":
    main()
