"""The bill: a CUR 2.0 export's training line items, ingested and reconciled with the estimates.

The expected figures come from the line items written here, worked by hand: never from the SQL."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.billing.exports import BillingExportError, find_deliveries
from pipelines.billing.ingest import ingest_exports, raw_billing_files
from pipelines.cli import EXIT_CONFIG, main
from pipelines.config import ConfigError, CostSettings, parse_settings
from pipelines.demo.bill import SCHEMA, write_export
from pipelines.demo.endpoint import LocalSageMaker
from pipelines.models import checks
from pipelines.models.build import build_models
from pipelines.summary import run_summary
from tests.conftest import T0, normalize, record

ACCOUNT = "123456789012"
STORAGE_RATE = 0.10  # USD per GB-month, with a 730-hour month


def arn(name: str) -> str:
    return f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:training-job/{name}"


def line(
    name: str | None,
    usage_type: str,
    amount: float,
    cost: float,
    *,
    line_type: str = "Usage",
    rate: float | None = None,
    hour: int = 0,
    product: str = "AmazonSageMaker",
    **columns: Any,
) -> dict[str, Any]:
    """One CUR 2.0 line item, at hour ``hour`` after T0's hour."""
    start = T0 + timedelta(hours=hour)
    row = {field.name: None for field in SCHEMA}
    row.update(
        identity_line_item_id=f"{name}-{usage_type}-{line_type}-{hour}",
        bill_billing_period_start_date=start.replace(day=1, hour=0),
        line_item_usage_account_id=ACCOUNT,
        line_item_line_item_type=line_type,
        line_item_product_code=product,
        line_item_usage_type=usage_type,
        line_item_resource_id=arn(name) if name else None,
        line_item_usage_start_date=start,
        line_item_usage_end_date=start + timedelta(hours=1),
        line_item_usage_amount=amount,
        line_item_unblended_cost=cost,
        pricing_public_on_demand_rate=None if rate is None else str(rate),
        pricing_public_on_demand_cost=amount * rate if rate is not None else 0.0,
        product_region_code="us-east-1",
        resource_tags=[],
    )
    row.update(columns)
    return row


M5, G5, VOLUME = "USE1-Train:ml.m5.xlarge", "USE1-Train:ml.g5.xlarge", "USE1-Train:VolumeUsage.gp2"
STORAGE_GB_MONTHS = 30 * 2 / 730  # on-demand: 30 GB on 2 instances for 1 of 730 hours
BILL = [
    # on-demand: 2 x m5.xlarge for 1 h at $0.25, and its volume
    line("on-demand", M5, 2.0, 0.50, rate=0.25),
    line("on-demand", VOLUME, STORAGE_GB_MONTHS, STORAGE_GB_MONTHS * 0.10, rate=0.10, pricing_unit="GB-Mo"),
    # savings-plan: 2 h covered by a Savings Plan that charges $0.15/h, and the negation of the on-demand charge
    line(
        "savings-plan",
        M5,
        2.0,
        0.50,
        line_type="SavingsPlanCoveredUsage",
        rate=0.25,
        savings_plan_savings_plan_effective_cost=0.30,
    ),
    line("savings-plan", M5, 0.0, -0.50, line_type="SavingsPlanNegation"),
    # refunded: 1 h, refunded in full
    line("refunded", M5, 1.0, 0.25, rate=0.25),
    line("refunded", M5, 0.0, -0.25, line_type="Refund", hour=1),
    # running: its first hour
    line("running", M5, 1.0, 0.25, rate=0.25),
    # longer-than-estimated: the bill charges 1.5 h of g5.xlarge at $1 for a 1 h job
    line("longer-than-estimated", G5, 1.5, 1.50, rate=1.00),
    # a job the API no longer returns
    line("deleted-job", M5, 1.0, 0.25, rate=0.25, hour=1),
    # a credit no job claims, and lines the ingestion leaves out: another service, and tax
    line(None, M5, 0.0, -1.00, line_type="Credit", hour=1),
    line(None, "BoxUsage:m5.large", 24.0, 2.30, rate=0.096, product="AmazonEC2"),
    line(None, "Tax", 0.0, 0.40, line_type="Tax"),
]
EXPECTED_BILLED = 0.50 + STORAGE_GB_MONTHS * 0.10 + 0.30 + 0.0 + 0.25 + 1.50 + 0.25 - 1.00

JOBS = [
    record("on-demand", resources={"InstanceType": "ml.m5.xlarge", "InstanceCount": 2, "VolumeSizeInGB": 30}),
    record("savings-plan", seconds=7200, resources={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1}),
    record("refunded", status="Failed", resources={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1}),
    record("running", status="InProgress", resources={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1}),
    record("longer-than-estimated", resources={"InstanceType": "ml.g5.xlarge", "InstanceCount": 1}),
    record("not-billed", resources={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1}),
]


def export(folder: Path, rows: list[dict[str, Any]] = BILL) -> str:
    write_export(rows, str(folder))
    return str(folder)


def reconciled(tmp_path: Path, costs: CostSettings | None = None) -> duckdb.DuckDBPyConnection:
    warehouse = tmp_path / "warehouse"
    ingest_exports(warehouse, (export(tmp_path / "cur"),))
    connection = normalize(JOBS)
    settings = costs or CostSettings(storage_usd_per_gb_month=STORAGE_RATE)
    build_models(connection, settings, billing_files=raw_billing_files(warehouse))
    return connection


def rows(connection: duckdb.DuckDBPyConnection, sql: str) -> dict[str, tuple]:
    """The first column of each row (a job's name) to the rest."""
    return {row[0]: tuple(row[1:]) for row in connection.execute(sql).fetchall()}


def test_only_sagemaker_training_line_items_are_kept_with_every_column(tmp_path: Path) -> None:
    report = ingest_exports(tmp_path / "warehouse", (export(tmp_path / "cur"),))
    assert (report.rows_read, report.rows_kept) == (len(BILL), len(BILL) - 2)  # not the EC2 line nor the tax
    [raw] = raw_billing_files(tmp_path / "warehouse")
    kept = pq.read_table(raw)
    assert set(SCHEMA.names) <= set(kept.column_names)  # every column of a kept row, those no model reads too
    assert "AmazonEC2" not in kept["line_item_product_code"].to_pylist()


def test_job_billed_costs_are_the_bills_own_figures(tmp_path: Path) -> None:
    connection = reconciled(tmp_path)
    billed = rows(
        connection,
        "select regexp_extract(training_job_arn, '[^/]+$'), billed_usage_hours, unblended_cost_usd, "
        "effective_cost_usd, public_on_demand_cost_usd, compute_cost_usd, storage_cost_usd, credits_usd "
        "from job_billed_costs",
    )
    assert set(billed) == {"on-demand", "savings-plan", "refunded", "running", "longer-than-estimated", "deleted-job"}
    storage = STORAGE_GB_MONTHS * 0.10
    expected = {
        "on-demand": (2.0, 0.50 + storage, 0.50 + storage, 0.50 + storage, 0.50, storage, 0.0),
        # unblended: the covered usage's $0.50 and its negation; effective: the plan's $0.30
        "savings-plan": (2.0, 0.0, 0.30, 0.50, 0.30, 0.0, 0.0),
        "refunded": (1.0, 0.0, 0.0, 0.25, 0.25, 0.0, -0.25),
    }
    for name, figures in expected.items():
        assert billed[name] == pytest.approx(figures), name


def test_reconciliation_says_why_each_job_differs(tmp_path: Path) -> None:
    connection = reconciled(tmp_path)
    found = rows(
        connection,
        "select coalesce(regexp_extract(training_job_arn, '[^/]+$'), usage_type || ' ' || line_item_type), "
        "status, estimated_total_cost_usd, effective_cost_usd, difference_usd from cost_reconciliation",
    )
    storage = 30 * 2 * STORAGE_RATE / 730  # the estimate's volume: 30 GB x 2 instances x 1 h of 730
    assert found["on-demand"] == pytest.approx(("matched", 0.50 + storage, 0.50 + storage, 0.0))
    # the list-price side agrees ($0.25/h x 2 h); the plan made it cheaper
    assert found["savings-plan"] == pytest.approx(("discounted", 0.50, 0.30, -0.20))
    assert found["refunded"] == pytest.approx(("discounted", 0.25, 0.0, -0.25))
    assert found["running"][0] == "not_yet_billed"
    # $1/h learned from the bill: 1 h estimated, 1.5 h billed
    assert found["longer-than-estimated"] == pytest.approx(("price_differs", 1.00, 1.50, 0.50))
    assert found["not-billed"] == pytest.approx(("not_in_bill", 0.25, 0.0, -0.25))
    assert found["deleted-job"] == pytest.approx(("not_in_warehouse", None, 0.25, None))
    assert found[f"{M5} Credit"] == pytest.approx(("unattributed", None, -1.00, None))
    total = connection.execute("select sum(effective_cost_usd) from cost_reconciliation").fetchone()[0]
    assert total == pytest.approx(EXPECTED_BILLED)
    assert checks.reconciles_to_bill(connection).passed
    explained = checks.billed_cost_explained(connection)
    # matched and discounted: $0.508 + $0.30 + $0 of the $2.308 billed to finished, estimated jobs
    assert not explained.passed
    assert explained.metadata["share"] == pytest.approx((0.50 + storage + 0.30) / (0.50 + storage + 0.30 + 1.50))


def test_daily_and_monthly_rollups_set_the_bill_beside_the_estimates(tmp_path: Path) -> None:
    connection = reconciled(tmp_path)
    by_status = rows(
        connection,
        "select training_job_status, sum(billed_effective_cost_usd), sum(total_cost_usd), bool_or(bill_covers_day) "
        "from cost_daily group by all",
    )
    # every line bills 2026-10-20, whose end the bill (usage up to 12:00) does not reach yet
    assert by_status["(no job)"] == pytest.approx((-1.00, None, False))  # the credit, on a row of its own
    assert by_status["(not in warehouse)"] == pytest.approx((0.25, None, False))
    assert sum(billed for billed, _, _ in by_status.values()) == pytest.approx(EXPECTED_BILLED)
    [(monthly,)] = connection.execute(
        "select sum(billed_effective_cost_usd) from cost_monthly where allocation_tag_key = 'team'"
    ).fetchall()
    assert monthly == pytest.approx(EXPECTED_BILLED)
    assert checks.reconciles_to_bill(connection).passed
    assert checks.daily_total_matches_job_costs(connection).passed  # the estimates' total is unchanged


def test_a_dollar_on_no_row_fails_the_blocking_check(tmp_path: Path) -> None:
    connection = reconciled(tmp_path)
    connection.execute("delete from cost_reconciliation where status = 'unattributed'")
    outcome = checks.reconciles_to_bill(connection)
    assert not outcome.passed and outcome.metadata["billed_usd"] - outcome.metadata["reconciled_usd"] == -1.00


def test_rates_are_learned_from_the_bill_below_your_own(tmp_path: Path) -> None:
    connection = reconciled(tmp_path)
    [(rate, source)] = connection.execute(
        "select usd_per_hour, source from instance_prices where region = 'us-east-1' and instance_type = 'ml.m5.xlarge'"
    ).fetchall()
    assert (rate, source) == (0.25, "bill (public rate, 2026-10)")
    # effective: what was paid per instance-hour of usage: ($0.50 + $0.30 + $0.25 + $0.25 + $0.25) / 7 h
    effective = reconciled(tmp_path / "effective", CostSettings(estimate_with="effective"))
    [(rate,)] = effective.execute(
        "select usd_per_hour from instance_prices where region = 'us-east-1' and instance_type = 'ml.m5.xlarge'"
    ).fetchall()
    assert rate == pytest.approx(1.55 / 7)
    ours = tmp_path / "rates.csv"
    ours.write_text("region,instance_type,usd_per_hour\nus-east-1,ml.m5.xlarge,0.20\n")
    yours = reconciled(tmp_path / "yours", CostSettings(prices_file=ours))
    [(rate,)] = yours.execute(
        "select usd_per_hour from instance_prices where region = 'us-east-1' and instance_type = 'ml.m5.xlarge'"
    ).fetchall()
    assert rate == 0.20


def test_focus_rows_carry_the_bills_figures(tmp_path: Path) -> None:
    connection = reconciled(tmp_path)
    billed, effective, listed = connection.execute(
        'select sum("BilledCost"), sum("EffectiveCost"), sum("ListCost") from focus_training_costs'
    ).fetchone()
    assert effective == pytest.approx(EXPECTED_BILLED)
    assert billed == pytest.approx(EXPECTED_BILLED - 0.30)  # the plan's commitment is not billed by SageMaker
    assert listed == pytest.approx(0.50 + STORAGE_GB_MONTHS * 0.10 + 0.50 + 0.25 + 0.25 + 1.50 + 0.25)
    categories = dict(
        connection.execute('select "x_LineItemType", "ChargeCategory" from focus_training_costs').fetchall()
    )
    assert categories["Credit"] == "Credit" and categories["Refund"] == "Adjustment"


def test_an_unchanged_period_is_not_read_again_and_a_redelivery_replaces_it(tmp_path: Path) -> None:
    warehouse, folder = tmp_path / "warehouse", tmp_path / "cur"
    first = ingest_exports(warehouse, (export(folder, BILL[:3]),))
    again = ingest_exports(warehouse, (str(folder),))
    assert first.periods_loaded == ["123456789012-smw-demo-cur/2026-10"] and again.periods_loaded == []
    assert again.periods_unchanged == ["123456789012-smw-demo-cur/2026-10"] and again.rows_read == 0
    redelivered = ingest_exports(warehouse, (export(folder, BILL),))  # AWS refreshed the period
    assert redelivered.periods_loaded == ["123456789012-smw-demo-cur/2026-10"]
    [raw] = raw_billing_files(warehouse)
    assert pq.read_metadata(raw).num_rows == len(BILL) - 2  # replaced, not appended


def test_a_newer_manifest_of_the_same_period_wins(tmp_path: Path) -> None:
    folder = tmp_path / "cur"
    export(folder, BILL[:3])
    older = folder / "smw-demo-cur" / "metadata" / "BILLING_PERIOD=2026-10" / "smw-demo-cur-Manifest.json"
    # "create new report" delivery: each execution under its own folder; a later one adds a data file
    newer = older.parent / "20261021T0300Z" / older.name
    newer.parent.mkdir()
    data = folder / "smw-demo-cur" / "data" / "BILLING_PERIOD=2026-10" / "smw-demo-cur-00002.snappy.parquet"
    pq.write_table(pa.Table.from_pylist(BILL[3:5], schema=SCHEMA), data)
    document = json.loads(older.read_text())
    document["dataFiles"].append(document["dataFiles"][0].replace("00001", "00002"))
    newer.write_text(json.dumps(document))
    os.utime(older, (1, 1))
    [delivery] = find_deliveries(str(folder))
    assert delivery.manifest == str(newer.resolve()) and len(delivery.data_files) == 2
    assert ingest_exports(tmp_path / "warehouse", (str(folder),)).rows_kept == 5


def test_two_accounts_exports_of_the_same_name_are_both_kept(tmp_path: Path) -> None:
    first, second = export(tmp_path / "payer-a", BILL[:3]), export(tmp_path / "payer-b", BILL[3:5])
    manifest = next(Path(second).rglob("*Manifest.json"))
    manifest.write_text(manifest.read_text().replace(ACCOUNT, "210987654321"))
    report = ingest_exports(tmp_path / "warehouse", (first, second))
    assert sorted(report.periods_loaded) == ["123456789012-smw-demo-cur/2026-10", "210987654321-smw-demo-cur/2026-10"]
    assert report.rows_kept == 5 and len(raw_billing_files(tmp_path / "warehouse")) == 2


def test_a_line_item_id_repeated_in_another_file_is_still_two_lines(tmp_path: Path) -> None:
    """AWS promises identity_line_item_id unique only within a partition: two files may repeat one."""
    folder = tmp_path / "cur"
    export(folder, BILL[:3])
    [manifest] = folder.rglob("*Manifest.json")
    [data] = folder.rglob("*.parquet")
    pq.write_table(pq.read_table(data), data.with_name("smw-demo-cur-00002.snappy.parquet"))  # same ids
    document = json.loads(manifest.read_text())
    document["dataFiles"].append(document["dataFiles"][0].replace("00001", "00002"))
    manifest.write_text(json.dumps(document))
    ingest_exports(tmp_path / "warehouse", (str(folder),))
    connection = normalize(JOBS)
    build_models(connection, CostSettings(), billing_files=raw_billing_files(tmp_path / "warehouse"))
    lines, distinct_ids = connection.execute(
        "select count(*), count(distinct line_item_id) from billing_line_items"
    ).fetchone()
    assert (lines, distinct_ids) == (6, 3)
    assert all(check(connection).passed for check in checks.MODEL_CHECKS if check.asset == "billing_line_items")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("no-column", "smw-demo-cur-00001.snappy.parquet has no column line_item_unblended_cost"),
        ("bad-type", "column line_item_usage_amount holds string values that are not double"),
        ("not-json", "smw-demo-cur-Manifest.json is not a Data Exports manifest"),
        ("missing-file", "but the export has no such file"),
        ("not-parquet", "is not a readable Parquet file"),
    ],
)
def test_a_malformed_export_names_the_file_and_the_problem(tmp_path: Path, damage: str, message: str) -> None:
    folder = Path(export(tmp_path / "cur"))
    data = next(folder.rglob("*.parquet"))
    manifest = next(folder.rglob("*Manifest.json"))
    original = pq.read_table(data)
    if damage == "no-column":
        pq.write_table(original.drop_columns(["line_item_unblended_cost"]), data)
    elif damage == "bad-type":
        amounts = pa.array(["2.0"] + ["lots"] * (original.num_rows - 1))
        pq.write_table(
            original.set_column(
                original.column_names.index("line_item_usage_amount"), "line_item_usage_amount", amounts
            ),
            data,
        )
    elif damage == "not-json":
        manifest.write_text("{not json")
    elif damage == "missing-file":
        data.unlink()
    else:
        data.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(BillingExportError, match=message.replace("(", r"\(")) as raised:
        ingest_exports(tmp_path / "warehouse", (str(folder),))
    assert "\n" not in str(raised.value)
    assert raw_billing_files(tmp_path / "warehouse") == []  # nothing half-loaded


def test_a_wrong_billing_location_is_one_sentence_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "--warehouse", str(tmp_path / "w"), "--billing", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert code == EXIT_CONFIG and "is not a folder" in err and "Traceback" not in err
    assert not (tmp_path / "w" / "raw").exists()
    with pytest.raises(ConfigError, match="not an S3 URI"):
        parse_settings({"billing": {"exports": ["s3://Bad_Bucket"]}})
    with pytest.raises(ConfigError, match=r"costs\.estimate_with"):
        parse_settings({"costs": {"estimate_with": "cheapest"}})


def test_an_export_on_s3_is_read_through_the_standard_aws_settings(aws: LocalSageMaker, tmp_path: Path) -> None:
    import boto3

    boto3.client("s3").create_bucket(Bucket="test-billing")
    write_export(BILL, "s3://test-billing/exports")
    report = ingest_exports(tmp_path / "warehouse", ("s3://test-billing/exports",))
    assert report.periods_loaded == ["123456789012-smw-demo-cur/2026-10"] and report.rows_kept == len(BILL) - 2
    assert ingest_exports(tmp_path / "warehouse", ("s3://test-billing/exports",)).periods_unchanged


def test_the_demo_bill_reconciles_to_the_cent(demo_warehouse: Path) -> None:
    """The demo fleet's bill, written from the records by AWS's rules (never by the cost SQL): every billed
    dollar is on a job or on an unattributed row, and the causes the demo bill holds are each named."""
    # The export's training total by the amortized-cost rule, worked over the raw rows in Python.
    billed = sum(
        (r["savings_plan_savings_plan_effective_cost"] or 0.0)
        if r["line_item_line_item_type"] == "SavingsPlanCoveredUsage"
        else 0.0
        if r["line_item_line_item_type"] == "SavingsPlanNegation"
        else r["line_item_unblended_cost"]
        for path in raw_billing_files(demo_warehouse)
        for r in pq.read_table(path).to_pylist()
    )
    assert billed > 0
    with duckdb.connect(str(demo_warehouse / "sagemaker.duckdb"), read_only=True) as connection:
        total = connection.execute("select sum(effective_cost_usd) from cost_reconciliation").fetchone()[0]
        assert round(total, 2) == round(billed, 2)
        statuses = dict(connection.execute("select status, count(*) from cost_reconciliation group by all").fetchall())
        assert {"matched", "discounted", "not_yet_billed", "not_in_warehouse", "unattributed"} <= set(statuses)
        covered = connection.execute(
            """
            select count(*), count(*) filter (where r.effective_cost_usd < r.public_on_demand_cost_usd)
            from cost_reconciliation r
            where r.training_job_arn in (
                select training_job_arn from billing_line_items where line_item_type = 'SavingsPlanCoveredUsage'
            )
            """
        ).fetchone()
        assert covered[0] > 0 and covered[0] == covered[1]
        worst = connection.execute(
            "select max(abs(difference_usd) / greatest(0.01, 0.01 * greatest(abs(estimated_total_cost_usd), "
            "abs(effective_cost_usd)))) from cost_reconciliation where status = 'matched'"
        ).fetchone()[0]
        assert worst <= 1.0
        covered, uncovered = connection.execute(
            "select count(*) filter (where bill_covers_day and billed_effective_cost_usd is not null), "
            "count(*) filter (where not bill_covers_day and billed_effective_cost_usd is null and total_cost_usd > 0) "
            "from cost_daily"
        ).fetchone()
        assert covered > 0 and uncovered > 0  # days billed, and the lag's days not billed yet
    summary = run_summary(demo_warehouse)  # what `run` prints at its end
    assert summary is not None and summary["billed_usd"] == round(billed, 2)
    assert summary["billed_by_status_usd"]["unattributed"] == -250.00  # the demo's credit on no job


def test_check_reads_the_configured_exports(
    aws: LocalSageMaker, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMW_REGIONS", "us-east-1")
    config = tmp_path / "warehouse.yaml"
    config.write_text(f"billing:\n  exports: [{export(tmp_path / 'cur')}]\n")
    assert main(["check", "--config", str(config)]) == 0
    assert "1 billing period delivered (2026-10 to 2026-10)" in capsys.readouterr().out
    next((tmp_path / "cur").rglob("*Manifest.json")).write_text("[]")
    assert main(["check", "--config", str(config)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "is not a Data Exports manifest" in err and "Traceback" not in err


def test_the_export_folder_itself_is_the_same_export_as_its_prefix(tmp_path: Path) -> None:
    prefix = export(tmp_path / "cur")
    [from_prefix] = find_deliveries(prefix)
    [from_folder] = find_deliveries(str(Path(prefix) / "smw-demo-cur"))
    assert from_folder.export_key == from_prefix.export_key == "123456789012-smw-demo-cur"
    assert from_folder.data_files == from_prefix.data_files


def test_one_months_bill_from_two_exports_blocks_instead_of_counting_twice(tmp_path: Path) -> None:
    """An export recreated under a new name keeps delivering the same account's months."""
    first = export(tmp_path / "old", BILL[:3])
    second = tmp_path / "new"
    write_export(BILL[:3], str(second), export_name="cur-v2")
    ingest_exports(tmp_path / "warehouse", (first, str(second)))
    connection = normalize(JOBS)
    build_models(connection, CostSettings(), billing_files=raw_billing_files(tmp_path / "warehouse"))
    outcome = checks.one_export_per_account_and_period(connection)
    assert not outcome.passed
    assert outcome.metadata["overlaps"] == {"123456789012 2026-10": "123456789012-cur-v2, 123456789012-smw-demo-cur"}


def test_covered_usage_without_its_effective_cost_is_refused_not_dropped(tmp_path: Path) -> None:
    rows = [dict(r, savings_plan_savings_plan_effective_cost=None) for r in BILL]
    with pytest.raises(BillingExportError, match="SavingsPlanCoveredUsage lines without savings_plan_"):
        ingest_exports(tmp_path / "warehouse", (export(tmp_path / "cur", rows),))


def test_an_export_without_resource_ids_fails_the_explained_share(tmp_path: Path) -> None:
    rows = [dict(r, line_item_resource_id=None) for r in BILL]
    ingest_exports(tmp_path / "warehouse", (export(tmp_path / "cur", rows),))
    connection = normalize(JOBS)
    build_models(connection, CostSettings(), billing_files=raw_billing_files(tmp_path / "warehouse"))
    outcome = checks.billed_cost_explained(connection)
    assert not outcome.passed and "resource IDs" in outcome.description
    assert checks.reconciles_to_bill(connection).passed  # every dollar still on an unattributed row


def test_two_exports_of_one_name_under_one_prefix_are_two_deliveries(tmp_path: Path) -> None:
    export(tmp_path / "all" / "payer-a", BILL[:3])
    export(tmp_path / "all" / "payer-b", BILL[3:5])
    manifest = next((tmp_path / "all" / "payer-b").rglob("*Manifest.json"))
    manifest.write_text(manifest.read_text().replace(ACCOUNT, "210987654321"))
    keys = sorted(d.export_key for d in find_deliveries(str(tmp_path / "all")))
    assert keys == ["123456789012-smw-demo-cur", "210987654321-smw-demo-cur"]
