"""Normalized tables: lossless flattening of anything botocore's model allows, correct tables on the demo
fleet, honest checks, and atomic publication."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from botocore.model import Shape
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.aws_model import describe_training_job_shape
from pipelines.cli import materialize_all
from pipelines.config import CostSettings, Settings
from pipelines.demo.endpoint import LocalSageMaker
from pipelines.demo.fleet import arn_account_and_region
from pipelines.extraction.run import extract
from pipelines.models.build import build_models
from pipelines.normalization import checks
from pipelines.normalization.flatten import normalized_tables
from pipelines.schemas import table
from pipelines.sql import SchemaMismatch, build_table, table_sql
from pipelines.storage.layout import DATABASE
from pipelines.warehouse.build import stage_normalized_tables
from pipelines.warehouse.publication import publish
from tests.conftest import FETCHED, REGIONS, copy_of, normalize, renamed


def count_by_job(connection: duckdb.DuckDBPyConnection, name: str) -> dict[str, int]:
    return dict(connection.execute(f'select training_job_arn, count(*) from "{name}" group by all').fetchall())


def source_length(record: dict[str, Any], path: str) -> int:
    value: Any = record
    for part in path.removeprefix("$.").split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return len(value or [])


# -- property: anything valid under botocore's shape flattens without loss -------------------------


def from_shape(shape: Shape) -> st.SearchStrategy[Any]:
    kind = shape.type_name
    if kind == "structure":
        members = {name: from_shape(member) for name, member in shape.members.items()}
        required = set(shape.required_members)
        return st.fixed_dictionaries(
            {k: v for k, v in members.items() if k in required},
            optional={k: v for k, v in members.items() if k not in required},
        )
    if kind == "list":
        return st.lists(from_shape(shape.member), max_size=3)
    if kind == "map":
        return st.dictionaries(st.text(min_size=1, max_size=8), from_shape(shape.value), max_size=3)
    if kind == "string":
        text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
        return st.one_of(st.sampled_from(shape.enum), text) if shape.enum else text
    if kind == "integer":
        return st.integers(-(2**31), 2**31 - 1)
    if kind == "long":
        return st.integers(-(2**63), 2**63 - 1)
    if kind in ("float", "double"):
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "timestamp":
        return st.datetimes(datetime(1990, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)).map(
            lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)
        )
    raise AssertionError(f"no strategy for {kind}")


RESPONSES = st.lists(
    st.tuples(
        from_shape(describe_training_job_shape()),
        st.lists(st.fixed_dictionaries({"Key": st.text(max_size=8), "Value": st.text(max_size=8)}), max_size=3),
    ),
    min_size=1,
    max_size=3,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(RESPONSES)
def test_flattening_never_fails_and_loses_no_list_element(responses: list) -> None:
    records = []
    for position, (response, tags) in enumerate(responses):
        # Distinct ARNs: each generated response is a different job.
        record = {
            **response,
            "Tags": tags,
            "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/j{position}",
        }
        records.append(record)
    connection = normalize(records)
    assert connection.execute("select count(*) from jobs").fetchone()[0] == len(records)
    left_out = {
        (table_name, arn): rows
        for table_name, arn, rows in connection.execute(
            "select table_name, training_job_arn, sum(rows_left_out) from _rows_left_out group by all"
        ).fetchall()
    }
    for declared in normalized_tables():
        counts = count_by_job(connection, declared.name)
        for record in records:
            arn = record["TrainingJobArn"]
            expected = sum(
                1 if kind == "one_per_job" else source_length(record, path)
                for kind, paths in declared.rows_from
                for path in paths
            )
            # Every element is a row, or is counted among the rows left out for breaking the contract.
            assert counts.get(arn, 0) + left_out.get((declared.name, arn), 0) == expected, (declared.name, arn)
        # A tag is left out exactly when its key repeats an earlier one.
    for record in records:
        keys = [tag["Key"] for tag in record["Tags"]]
        assert left_out.get(("tags", record["TrainingJobArn"]), 0) == len(keys) - len(set(keys))


# -- the demo fleet ---------------------------------------------------------------------------------


@pytest.fixture
def demo_tables(fleet: list[dict]) -> duckdb.DuckDBPyConnection:
    return normalize(fleet)


def test_jobs_flatten_what_ran(fleet: list[dict], demo_tables: duckdb.DuckDBPyConnection) -> None:
    jobs = {row["training_job_arn"]: row for row in demo_tables.sql("select * from jobs").to_arrow_table().to_pylist()}
    assert len(jobs) == len(fleet)
    for record in fleet:
        job = jobs[record["TrainingJobArn"]]
        resources = record.get("ResourceConfig", {})
        assert job["training_job_name"] == record["TrainingJobName"]
        assert (job["account_id"], job["region"]) == arn_account_and_region(record["TrainingJobArn"])
        assert job["creation_time"] == record["CreationTime"]
        assert job["billable_time_in_seconds"] == record.get("BillableTimeInSeconds")
        if "InstanceGroups" in resources:
            assert job["is_heterogeneous_cluster"] and job["instance_type"] is None and job["instance_count"] is None
        elif "SelectedInstanceType" in resources:
            assert (job["instance_type"], job["instance_count"]) == (
                resources["SelectedInstanceType"],
                resources["SelectedInstanceCount"],
            )
        else:
            assert (job["instance_type"], job["instance_count"]) == (
                resources.get("InstanceType"),
                resources.get("InstanceCount"),
            )
        assert job["warm_pool_status"] == record.get("WarmPoolStatus", {}).get("Status")
        assert job["enable_managed_spot_training"] == record["EnableManagedSpotTraining"]


def test_child_tables_keep_order_and_values(fleet: list[dict], demo_tables: duckdb.DuckDBPyConnection) -> None:
    spot = next(r for r in fleet if any(t["Status"] == "Interrupted" for t in r["SecondaryStatusTransitions"]))
    rows = demo_tables.execute(
        "select status, start_time, end_time from transitions where training_job_arn = ? order by transition_index",
        [spot["TrainingJobArn"]],
    ).fetchall()
    assert rows == [(t["Status"], t["StartTime"], t.get("EndTime")) for t in spot["SecondaryStatusTransitions"]]

    hyper = dict(
        demo_tables.execute(
            "select name, numeric_value from hyperparameters where name in ('eta', 'sagemaker_program', 'lr')"
        ).fetchall()
    )
    assert hyper["sagemaker_program"] is None and isinstance(hyper.get("eta", hyper.get("lr")), float)
    # Framework estimators JSON-quote their values; the demo fleet has none, so one job says it here.
    quoted_job = {**fleet[0], "HyperParameters": {"lr": '"0.001"', "epochs": "3", "sagemaker_program": '"train.py"'}}
    numbers = dict(normalize([quoted_job]).execute("select name, numeric_value from hyperparameters").fetchall())
    assert numbers == {"lr": 0.001, "epochs": 3.0, "sagemaker_program": None}

    env = demo_tables.execute("select name from environment_variables").fetchall()
    assert env and {"WANDB_API_KEY", "NCCL_DEBUG"} & {name for (name,) in env}
    columns = [row[0] for row in demo_tables.execute("describe environment_variables").fetchall()]
    assert columns == ["training_job_arn", "name"]  # no value column, ever


def test_checks_pass_on_the_demo_fleet(demo_tables: duckdb.DuckDBPyConnection) -> None:
    outcomes = [o for t in normalized_tables() for o in checks.table_checks(demo_tables, t)]
    assert len(outcomes) >= 35 and all(o.passed for o in outcomes), [o for o in outcomes if not o.passed]
    assert checks.unknown_members(demo_tables).passed


def test_checks_fail_on_bad_tables(fleet: list[dict]) -> None:
    bad = copy.deepcopy(fleet)
    bad[0]["Tags"].append(dict(bad[0]["Tags"][0]) if bad[0]["Tags"] else {"Key": "k", "Value": "v"})
    bad[0]["Tags"].append(bad[0]["Tags"][-1])
    bad[1]["QuantumConfig"] = {"Qubits": 4}
    bad[1]["ResourceConfig"] = {**bad[1]["ResourceConfig"], "FutureKnob": True}
    bad[2]["ResourceConfig"] = {**bad[2]["ResourceConfig"], "FutureKnob": False}
    connection = normalize(bad)
    tags = table("tags")
    # The repeated tag key was left out in the build (named by a warning), so the key holds ...
    left_out = checks.rows_left_out(connection, tags)
    assert not left_out.passed and left_out.metadata["jobs"] == [bad[0]["TrainingJobArn"]]
    assert left_out.metadata["rows_left_out"] == 2
    assert checks.unique_key(connection, tags).passed and checks.row_count_matches_raw(connection, tags).passed
    # ... and a duplicate that gets past the build still fails the blocking check.
    connection.execute("insert into tags select * from tags limit 1")
    assert not checks.unique_key(connection, tags).passed
    assert not checks.row_count_matches_raw(connection, tags).passed
    connection.execute("insert into transitions (training_job_arn, transition_index, status) values ('nope', 0, 'x')")
    transitions = table("transitions")
    assert not checks.references_jobs(connection, transitions).passed
    assert not checks.row_count_matches_raw(connection, transitions).passed
    connection.execute("update jobs set account_id = null where training_job_arn = ?", [bad[2]["TrainingJobArn"]])
    assert checks.required_columns_not_null(connection, table("jobs")).metadata["null_counts"] == {"account_id": 1}
    unknown = checks.unknown_members(connection)
    assert not unknown.passed
    assert unknown.metadata["unknown_members"] == {"QuantumConfig": 1, "ResourceConfig.FutureKnob": 2}


def test_a_table_whose_sql_drifts_from_its_schema_is_refused(demo_tables: duckdb.DuckDBPyConnection) -> None:
    drifted = table_sql("tags").replace("tag.Value as value", "tag.Value as tag_value")
    with pytest.raises(SchemaMismatch, match=r"tags: the SQL produces columns .*tag_value"):
        build_table(demo_tables, table("tags"), drifted)


def test_readme_queries_answer_on_the_demo_fleet(demo_tables: duckdb.DuckDBPyConnection) -> None:
    build_models(demo_tables, CostSettings())
    root = Path(__file__).resolve().parent.parent
    readme = "\n".join(path.read_text() for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))])
    queries = [block.split("```")[0] for block in readme.split("```sql\n")[1:]]
    table_queries = [q for q in queries if "read_parquet" not in q]
    assert len(table_queries) >= 8
    for query in table_queries:
        assert demo_tables.execute(query).fetchall(), query


# -- staging and publication ------------------------------------------------------------------------


# A BI tool in another process: it holds a read-only connection open across a publication.
READER = textwrap.dedent("""
    import duckdb, json, select, sys, time
    connection = duckdb.connect(sys.argv[1], read_only=True)
    print("ready", flush=True)
    counts = set()
    published = False
    while not published:  # query the open connection until the test says the new version is published
        counts.add(connection.execute("select count(*) from jobs join tags using (training_job_arn)").fetchone()[0])
        published = bool(select.select([sys.stdin], [], [], 0.05)[0]) and sys.stdin.readline().strip() == "published"
    counts.add(connection.execute("select count(*) from jobs join tags using (training_job_arn)").fetchone()[0])
    connection.close()
    fresh = duckdb.connect(sys.argv[1], read_only=True)
    jobs = fresh.execute("select count(*) from jobs").fetchone()[0]
    print(json.dumps({"counts_while_open": sorted(counts), "jobs_after_reconnect": jobs}), flush=True)
""")


def published_counts(warehouse: Path) -> dict[str, int]:
    with duckdb.connect(str(warehouse / DATABASE), read_only=True) as connection:
        return {
            t.name: connection.execute(f'select count(*) from "{t.name}"').fetchone()[0] for t in normalized_tables()
        }


def test_rerunning_on_the_same_raw_data_publishes_identical_tables(fleet: list[dict], settings: Settings) -> None:
    extract(settings)
    names = [t.name for t in normalized_tables()]
    snapshots = []
    for run_id in ("run-a", "run-b"):
        staging, _ = stage_normalized_tables(settings.warehouse, run_id)
        publish(staging, names)
        with duckdb.connect(str(settings.warehouse / DATABASE), read_only=True) as connection:
            snapshots.append({n: connection.sql(f'select * from "{n}"').to_arrow_table() for n in names})
        parquet = pa.concat_tables(
            [pa.parquet.read_table(p) for p in (settings.warehouse / "parquet" / "jobs").glob("*")]
        )
        assert parquet.num_rows == len(fleet)
    assert all(snapshots[0][n].equals(snapshots[1][n]) for n in names)
    assert snapshots[0]["jobs"].num_rows == len(fleet)


def test_unpublished_staging_leaves_the_previous_version_in_place(
    fleet: list[dict], settings: Settings, aws: LocalSageMaker
) -> None:
    extract(settings)
    names = [t.name for t in normalized_tables()]
    publish(stage_normalized_tables(settings.warehouse, "first")[0], names)
    before = published_counts(settings.warehouse)
    aws.upsert_jobs([renamed(fleet[0], "late-arrival")])
    extract(settings)
    _, staged = stage_normalized_tables(settings.warehouse, "crashed-before-publish")  # the run dies here
    assert staged["jobs"] == before["jobs"] + 1
    assert published_counts(settings.warehouse) == before


def test_one_record_that_breaks_a_contract_does_not_block_publication(
    demo_warehouse: Path, fleet: list[dict], aws: LocalSageMaker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMW_REGIONS", ",".join(REGIONS))
    warehouse = str(copy_of(demo_warehouse, tmp_path / "published"))  # the demo fleet, published
    newest = next(r for r in reversed(fleet) if r["TrainingJobStatus"] != "InProgress")
    broken = copy.deepcopy(newest)  # recent, so the incremental listing sees its change
    broken["Tags"] = [{"Key": "team", "Value": "a"}, {"Key": "team", "Value": "b"}]  # a duplicate key
    broken["LastModifiedTime"] = FETCHED
    aws.upsert_jobs([broken])
    result = materialize_all(warehouse=warehouse)
    failed = [c for c in result.get_asset_check_evaluations() if not c.passed]
    # The demo's prices are the unchecked snapshot (a warning of its own).
    failed = [c for c in failed if c.check_name not in ("unpriced_instance_types", "unverified_price_share")]
    assert [(c.asset_key.path[-1], c.check_name, c.severity.value) for c in failed] == [
        ("tags", "rows_left_out", "WARN")
    ]
    assert broken["TrainingJobArn"] in failed[0].description
    published = any(
        e.asset_key and e.asset_key.path[-1] == "published_warehouse" for e in result.get_asset_materialization_events()
    )
    assert published
    with duckdb.connect(str(Path(warehouse) / DATABASE), read_only=True) as connection:
        tags = connection.execute(
            "select key, value from tags where training_job_arn = ?", [broken["TrainingJobArn"]]
        ).fetchall()
        assert tags == [("team", "a")]  # the first of the repeated key; the raw record keeps both
        assert connection.execute("select count(*) from jobs").fetchone()[0] == len(fleet)
        tables = {row[0] for row in connection.execute("show tables").fetchall()}
        assert "_rows_left_out" not in tables


def test_a_reader_with_an_open_connection_keeps_working_during_publication(
    fleet: list[dict], settings: Settings, aws: LocalSageMaker
) -> None:
    extract(settings)
    names = [t.name for t in normalized_tables()]
    publish(stage_normalized_tables(settings.warehouse, "v1")[0], names)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(settings.warehouse / DATABASE)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout.readline().strip() == "ready"
    arrivals = [renamed(r, f"new-{i}") for i, r in enumerate(fleet[:5])]
    aws.upsert_jobs(arrivals)
    extract(settings)
    publish(stage_normalized_tables(settings.warehouse, "v2")[0], names)
    out, err = reader.communicate("published\n", timeout=60)
    assert reader.returncode == 0, err
    report = json.loads(out)
    assert len(report["counts_while_open"]) == 1  # one consistent version, the whole time
    assert report["jobs_after_reconnect"] == len(fleet) + 5


def test_a_lost_job_is_never_excused_by_a_namesake_elsewhere(tmp_path: Path) -> None:
    """Names are unique only within one account and region: us-east-1's lost `foo` is not excused by
    eu-west-1's `foo`, nor by a 'not found' answered for `foo` in another region."""
    arn = "arn:aws:sagemaker:{}:123456789012:training-job/foo"
    published = tmp_path / "jobs.parquet"
    rows = [("123456789012", region, arn.format(region), "foo") for region in ("us-east-1", "eu-west-1")]
    connection = duckdb.connect()
    connection.execute(
        "create table published "
        "(account_id varchar, region varchar, training_job_arn varchar, training_job_name varchar)"
    )
    connection.executemany("insert into published values (?, ?, ?, ?)", rows)
    connection.execute(f"copy published to '{published}' (format parquet)")
    connection.execute("create table jobs as select training_job_arn from published where region = 'eu-west-1'")
    kept = checks.published_jobs_kept(connection, [published])  # no record of deleted jobs at all
    assert (
        not kept.passed and kept.metadata["lost_jobs"] == 1 and kept.metadata["examples"] == [arn.format("us-east-1")]
    )
    connection.execute(
        f"create table {checks.GONE_FROM_SAGEMAKER} as "
        "select '123456789012' as account_id, 'ap-south-1' as region, 'foo' as training_job_name"
    )
    assert not checks.published_jobs_kept(connection, [published]).passed
    connection.execute(f"insert into {checks.GONE_FROM_SAGEMAKER} values ('123456789012', 'us-east-1', 'foo')")
    confirmed = checks.published_jobs_kept(connection, [published])
    assert confirmed.passed and confirmed.metadata["deleted_in_sagemaker"] == 1
