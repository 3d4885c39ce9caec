"""A Cost and Usage Report 2.0 export for the demo fleet, delivered as AWS Data Exports delivers one.

The bill is worked from each job's record by AWS's billing rules, independently of the cost models (it
never calls them), so that reconciling it with the estimates checks both:

- instances bill per second from training start to end, at most ``BillableTimeInSeconds`` per instance
  (managed spot bills fewer seconds than it ran), spread over the hours the job ran, one line item per
  hour, usage type ``<REGION>-Train:<instance type>``; warm-pool retention bills after the end at the same
  rate and usage type;
- the ML storage volume bills per GB-month, ``<REGION>-Train:VolumeUsage.gp2``, prorated by the hours of
  the calendar month (not a 730-hour month), on instances without local NVMe;
- jobs on a training plan bill no instance hours (prepaid); their warm-pool retention is billed on demand,
  the choice docs/costs.md makes where AWS documents no rule (the demo bill cannot settle it, a real one
  does); serverless jobs bill per token, which has no public price, so they are left out of the demo bill;
- the public rate is the bundled list price when it was checked against a bill; where the bundled price
  is an estimate, the "true" rate is 3% above it; types with no bundled price get a demo rate;
- the nlp team's us-east-1 instance usage is covered by a SageMaker Savings Plan (40% off) from the second
  billing month on: ``SavingsPlanCoveredUsage`` rows at the effective rate plus ``SavingsPlanNegation``
  rows cancelling their on-demand charge;
- a refund of one failed job, an account-level credit that names no job, a job the API no longer returns,
  and other services' line items (EC2, S3) the ingestion must leave out;
- usage of the last two days is missing: exports lag usage.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs

from pipelines.demo.fleet import FleetSpec, generate_fleet
from pipelines.pricing.prices import BUNDLED, BUNDLED_STORAGE

EXPORT_NAME = "smw-demo-cur"
LAG = timedelta(days=2)
SAVINGS_PLAN_DISCOUNT = 0.40
SAVINGS_PLAN_TEAM, SAVINGS_PLAN_REGION = "nlp", "us-east-1"
ESTIMATED_PRICE_UPLIFT = 1.03  # the demo's "true" list price where the bundled one is an estimate
DEMO_RATES = {"ml.trn1.2xlarge": 1.5, "ml.trn1.32xlarge": 24.72}  # types the bundled snapshot lacks
CREDIT_USD = -250.0
GONE_JOB = "deleted-experiment-2026"
REGION_CODES = {
    "us-east-1": "USE1",
    "us-east-2": "USE2",
    "us-west-2": "USW2",
    "eu-west-1": "EU",
    "eu-central-1": "EUC1",
}
HOUR = timedelta(hours=1)


def _rates() -> tuple[dict[tuple[str, str], float], dict[str, float], set[str]]:
    with BUNDLED.open(newline="") as handle:
        instance = {
            (row["region"], row["instance_type"]): float(row["usd_per_hour"])
            * (1 if row["verified"] == "true" else ESTIMATED_PRICE_UPLIFT)
            for row in csv.DictReader(handle)
        }
    with BUNDLED_STORAGE.open(newline="") as handle:
        storage = {row["region"]: float(row["usd_per_gb_month"]) for row in csv.DictReader(handle)}
    with (BUNDLED.parent / "instance_types.csv").open(newline="") as handle:
        nvme = {row["instance_type"] for row in csv.DictReader(handle) if row["has_local_nvme"] == "true"}
    return instance, storage, nvme


def _instances(record: dict[str, Any]) -> list[tuple[str, int]]:
    config = record.get("ResourceConfig") or {}
    if config.get("InstanceGroups"):
        return [(g["InstanceType"], int(g["InstanceCount"])) for g in config["InstanceGroups"]]
    kind = config.get("SelectedInstanceType") or config.get("InstanceType")
    count = config.get("SelectedInstanceCount") or config.get("InstanceCount")
    return [(kind, int(count))] if kind and count else []


def _hours(start: datetime, end: datetime) -> Iterable[tuple[datetime, float]]:
    """Each clock hour [start, end) touches, with the seconds of it inside."""
    hour = start.replace(minute=0, second=0, microsecond=0)
    while hour < end:
        inside = (min(end, hour + HOUR) - max(start, hour)).total_seconds()
        if inside > 0:
            yield hour, inside
        hour += HOUR


def _hours_in_month(moment: datetime) -> float:
    first = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (first + timedelta(days=32)).replace(day=1)
    return (following - first).total_seconds() / 3600


def demo_line_items(records: Iterable[dict[str, Any]], fleet_end: datetime) -> list[dict[str, Any]]:
    """The CUR 2.0 rows of the demo bill for ``records`` (DescribeTrainingJob responses with Tags)."""
    instance_rates, storage_rates, nvme = _rates()
    cutoff = fleet_end - LAG
    first_period: datetime | None = None
    rows: list[dict[str, Any]] = []
    refunded = False
    for record in sorted(records, key=lambda r: r["CreationTime"]):
        arn, start = record["TrainingJobArn"], record.get("TrainingStartTime")
        instances = _instances(record)
        if not instances or start is None:
            continue  # serverless (per token) or never started: no instance usage
        first_period = first_period or start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        account, region = arn.split(":")[4], arn.split(":")[3]
        tags = {f"user_{t['Key']}": t["Value"] for t in record.get("Tags", []) if ":" not in t["Key"]}
        end = record.get("TrainingEndTime") or fleet_end
        wall = max((end - start).total_seconds(), 0.0)
        billable = min(float(record.get("BillableTimeInSeconds") or wall), wall)
        retained = float((record.get("WarmPoolStatus") or {}).get("ResourceRetainedBillableTimeInSeconds") or 0)
        prepaid = bool((record.get("ResourceConfig") or {}).get("TrainingPlanArn"))
        covered_by_plan = tags.get("user_team") == SAVINGS_PLAN_TEAM and region == SAVINGS_PLAN_REGION
        job = {"account": account, "region": region, "arn": arn, "tags": tags}
        volume_gb = float((record.get("ResourceConfig") or {}).get("VolumeSizeInGB") or 0)
        for instance_type, count in instances:
            rate = instance_rates.get((region, instance_type), DEMO_RATES.get(instance_type, 1.0))
            usage_type = f"{REGION_CODES[region]}-Train:{instance_type}"
            if not prepaid and wall > 0:
                for hour, seconds in _hours(start, end):
                    hours = billable * (seconds / wall) * count / 3600
                    plan = covered_by_plan and hour >= _next_month(first_period)
                    rows += _usage(job, usage_type, instance_type, hour, hours, rate, "Hrs", plan)
            if retained:
                for hour, seconds in _hours(end, end + timedelta(seconds=retained)):
                    rows += _usage(job, usage_type, instance_type, hour, seconds * count / 3600, rate, "Hrs", False)
            if volume_gb and instance_type not in nvme:
                storage_type = f"{REGION_CODES[region]}-Train:VolumeUsage.gp2"
                storage_rate = storage_rates.get(region, storage_rates["*"])
                for hour, seconds in _hours(start, end + timedelta(seconds=retained)):
                    gb_months = volume_gb * count * seconds / 3600 / _hours_in_month(hour)
                    rows += _usage(job, storage_type, None, hour, gb_months, storage_rate, "GB-Mo", False)
        if not refunded and record["TrainingJobStatus"] == "Failed" and billable > 3600 and not prepaid:
            refunded = True  # AWS refunded one failed job's instance hours in full
            spent = sum(r["line_item_unblended_cost"] for r in rows if r["line_item_resource_id"] == arn)
            rows.append(_line(job, "Refund", f"{REGION_CODES[region]}-Train:{instances[0][0]}", end, 0, -spent, None))
    if first_period is None:
        return []
    gone = {"account": "123456789012", "region": "us-east-1", "arn": "", "tags": {"user_team": "vision"}}
    gone["arn"] = f"arn:aws:sagemaker:us-east-1:{gone['account']}:training-job/{GONE_JOB}"
    gone_start = _next_month(first_period) + timedelta(days=3, hours=9)
    for hour, seconds in _hours(gone_start, gone_start + timedelta(hours=3, minutes=20)):
        rate = instance_rates[("us-east-1", "ml.g5.2xlarge")]
        rows += _usage(gone, "USE1-Train:ml.g5.2xlarge", "ml.g5.2xlarge", hour, seconds / 3600, rate, "Hrs", False)
    credit_at = _next_month(first_period)
    unclaimed = {"account": "123456789012", "region": "us-east-1", "arn": None, "tags": {}}
    rows.append(_line(unclaimed, "Credit", "USE1-Train:ml.p4d.24xlarge", credit_at, 0, CREDIT_USD, None))
    for day in range(0, (fleet_end - first_period).days, 7):  # other services: the ingestion keeps none of these
        moment = first_period + timedelta(days=day)
        rows.append(_line(unclaimed, "Usage", "BoxUsage:m5.large", moment, 24, 2.304, 0.096, product="AmazonEC2"))
        rows.append(_line(unclaimed, "Usage", "TimedStorage-ByteHrs", moment, 500, 11.5, 0.023, product="AmazonS3"))
    return _one_line_per_hour([row for row in rows if row["line_item_usage_start_date"] < cutoff])


ADDED_UP = (
    "line_item_usage_amount",
    "line_item_unblended_cost",
    "line_item_net_unblended_cost",
    "pricing_public_on_demand_cost",
    "savings_plan_savings_plan_effective_cost",
)


def _one_line_per_hour(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The bill has one line item per resource, usage type, line type and hour: the last training hour and
    the first warm-pool hour of a job, say, are one line."""
    merged: dict[str, dict[str, Any]] = {}
    for row in rows:
        kept = merged.setdefault(row["identity_line_item_id"], row)
        if kept is not row:
            for column in ADDED_UP:
                if row[column] is not None:
                    kept[column] = (kept[column] or 0.0) + row[column]
    return list(merged.values())


def _next_month(moment: datetime) -> datetime:
    return (moment.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _usage(
    job: dict[str, Any],
    usage_type: str,
    instance_type: str | None,
    hour: datetime,
    amount: float,
    rate: float,
    unit: str,
    covered_by_plan: bool,
) -> list[dict[str, Any]]:
    cost = amount * rate
    if not covered_by_plan:
        return [_line(job, "Usage", usage_type, hour, amount, cost, rate, instance_type, unit)]
    plan = f"arn:aws:savingsplans::{job['account']}:savingsplan/demo-sagemaker-sp"
    covered = _line(job, "SavingsPlanCoveredUsage", usage_type, hour, amount, cost, rate, instance_type, unit)
    covered["savings_plan_savings_plan_effective_cost"] = cost * (1 - SAVINGS_PLAN_DISCOUNT)
    covered["savings_plan_savings_plan_a_r_n"] = plan
    negation = _line(job, "SavingsPlanNegation", usage_type, hour, 0, -cost, None, instance_type, unit)
    negation["savings_plan_savings_plan_a_r_n"] = plan
    return [covered, negation]


def _line(
    job: dict[str, Any],
    line_type: str,
    usage_type: str,
    start: datetime,
    amount: float,
    cost: float,
    rate: float | None,
    instance_type: str | None = None,
    unit: str | None = None,
    product: str = "AmazonSageMaker",
) -> dict[str, Any]:
    end = start + HOUR
    identity = hashlib.sha256(f"{job['arn']}|{usage_type}|{line_type}|{start.isoformat()}".encode()).hexdigest()
    return {
        "identity_line_item_id": identity[:40],
        "identity_time_interval": f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}",
        "bill_billing_period_start_date": start.replace(day=1, hour=0, minute=0, second=0, microsecond=0),
        "bill_payer_account_id": job["account"],
        "line_item_usage_account_id": job["account"],
        "line_item_line_item_type": line_type,
        "line_item_product_code": product,
        "line_item_usage_type": usage_type,
        "line_item_operation": "RunInstance" if instance_type else None,
        "line_item_resource_id": job["arn"],
        "line_item_usage_start_date": start,
        "line_item_usage_end_date": end,
        "line_item_usage_amount": amount,
        "line_item_currency_code": "USD",
        "line_item_unblended_rate": None if rate is None else f"{rate:.10f}",
        "line_item_unblended_cost": cost,
        "line_item_net_unblended_cost": cost,
        "line_item_line_item_description": f"{line_type} {usage_type}",
        "pricing_unit": unit,
        "pricing_public_on_demand_rate": None if rate is None else f"{rate:.10f}",
        "pricing_public_on_demand_cost": amount * rate
        if rate is not None and line_type != "SavingsPlanNegation"
        else 0.0,
        "savings_plan_savings_plan_effective_cost": None,
        "savings_plan_savings_plan_a_r_n": None,
        "product_region_code": job["region"],
        "product_instance_type": instance_type,
        "product_product_family": "ML Instance" if instance_type else None,
        "resource_tags": list(job["tags"].items()),
    }


_TIMESTAMP = pa.timestamp("ms", tz="UTC")
SCHEMA = pa.schema(
    [
        ("identity_line_item_id", pa.string()),
        ("identity_time_interval", pa.string()),
        ("bill_billing_period_start_date", _TIMESTAMP),
        ("bill_payer_account_id", pa.string()),
        ("line_item_usage_account_id", pa.string()),
        ("line_item_line_item_type", pa.string()),
        ("line_item_product_code", pa.string()),
        ("line_item_usage_type", pa.string()),
        ("line_item_operation", pa.string()),
        ("line_item_resource_id", pa.string()),
        ("line_item_usage_start_date", _TIMESTAMP),
        ("line_item_usage_end_date", _TIMESTAMP),
        ("line_item_usage_amount", pa.float64()),
        ("line_item_currency_code", pa.string()),
        ("line_item_unblended_rate", pa.string()),
        ("line_item_unblended_cost", pa.float64()),
        ("line_item_net_unblended_cost", pa.float64()),
        ("line_item_line_item_description", pa.string()),
        ("pricing_unit", pa.string()),
        ("pricing_public_on_demand_rate", pa.string()),
        ("pricing_public_on_demand_cost", pa.float64()),
        ("savings_plan_savings_plan_effective_cost", pa.float64()),
        ("savings_plan_savings_plan_a_r_n", pa.string()),
        ("product_region_code", pa.string()),
        ("product_instance_type", pa.string()),
        ("product_product_family", pa.string()),
        ("resource_tags", pa.map_(pa.string(), pa.string())),
    ]
)


def write_export(rows: list[dict[str, Any]], destination: str, export_name: str = EXPORT_NAME) -> list[str]:
    """Deliver ``rows`` to ``destination`` (a folder or ``s3://bucket/prefix``) in the Data Exports layout:
    one Parquet data file and one manifest per billing period. Returns the periods written."""
    if destination.startswith("s3://"):
        filesystem, root = fs.FileSystem.from_uri(destination)
        uri_root = destination.rstrip("/")
    else:
        filesystem, root = fs.LocalFileSystem(), str(Path(destination).resolve())
        uri_root = f"s3://demo-billing-bucket/{Path(destination).name}"  # where AWS would have delivered it
    periods: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        periods.setdefault(f"{row['bill_billing_period_start_date']:%Y-%m}", []).append(row)
    for period, period_rows in sorted(periods.items()):
        partition = f"BILLING_PERIOD={period}"
        data_name = f"{export_name}/data/{partition}/{export_name}-00001.snappy.parquet"
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(period_rows, schema=SCHEMA), buffer, compression="snappy")
        filesystem.create_dir(f"{root}/{export_name}/data/{partition}", recursive=True)
        with filesystem.open_output_stream(f"{root}/{data_name}") as handle:
            handle.write(buffer.getvalue())
        manifest = {
            "executionId": hashlib.sha256(buffer.getvalue()).hexdigest()[:32],
            "exportArn": f"arn:aws:bcm-data-exports:us-east-1:123456789012:export/{export_name}",
            "billingPeriod": period,
            "columns": [{"name": field.name, "type": str(field.type)} for field in SCHEMA],
            "dataFiles": [f"{uri_root}/{data_name}"],
        }
        metadata = f"{root}/{export_name}/metadata/{partition}"
        filesystem.create_dir(metadata, recursive=True)
        with filesystem.open_output_stream(f"{metadata}/{export_name}-Manifest.json") as handle:
            handle.write(json.dumps(manifest, indent=2).encode())
    return sorted(periods)


DEMO_BILLING_EXPORT = "s3://smw-demo-billing/cur2"


def deliver_demo_bill(spec: FleetSpec, destination: str = DEMO_BILLING_EXPORT) -> list[str]:
    """Write the demo fleet's bill to ``destination``; an ``s3://`` bucket is created first (through the
    standard AWS settings: the local endpoint in the demo)."""
    if destination.startswith("s3://"):
        import boto3

        bucket = destination.removeprefix("s3://").split("/", 1)[0]
        boto3.client("s3").create_bucket(Bucket=bucket)
    return write_export(demo_line_items(generate_fleet(spec), spec.end), destination)
