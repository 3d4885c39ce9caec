"""The Dagster definitions load, describe their tables from schemas/, and materialize end to end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
from dagster import AssetCheckKey, AssetKey, Definitions, build_schedule_context, instance_for_test

from pipelines.assets.extraction import TARGET_PARTITIONS
from pipelines.assets.resources import WAREHOUSE_WRITER_POOL
from pipelines.cli import EXIT_FAILED, main, materialize_all
from pipelines.config import load_settings
from pipelines.definitions import all_assets, build_job, build_resources, build_schedules, extract_job
from pipelines.definitions import defs as load_defs
from pipelines.demo.endpoint import LocalSageMaker
from pipelines.docs import DATA_DICTIONARY, render
from pipelines.extraction.planning import describe_needed
from pipelines.normalization.flatten import normalized_tables
from pipelines.schemas import all_tables, table
from pipelines.storage.raw import RAW_JOBS


def test_definitions_load_with_every_asset_check_and_resource() -> None:
    job = load_defs().resolve_implicit_global_asset_job_def()
    graph = job.asset_layer.asset_graph
    tables = [t.name for t in normalized_tables()]
    assert {AssetKey(RAW_JOBS), AssetKey("published_warehouse"), *map(AssetKey, tables)} <= graph.get_all_asset_keys()
    assert "warehouse_config" in load_defs().resources
    check_keys = graph.asset_check_keys
    for name in tables:
        assert AssetCheckKey(AssetKey(name), "unique_key") in check_keys
        assert AssetCheckKey(AssetKey(name), "row_count_matches_raw") in check_keys
    assert AssetCheckKey(AssetKey("tags"), "references_jobs") in check_keys
    assert AssetCheckKey(AssetKey("jobs"), "unknown_members") in check_keys
    # Model dependencies come from the tables each model's SQL reads.
    assert graph.get(AssetKey("job_costs")).parent_keys == set(
        map(AssetKey, ["jobs", "instance_groups", "instance_prices", "instance_types", "job_durations"])
    )
    assert graph.get(AssetKey("cost_daily")).parent_keys == set(
        map(AssetKey, ["job_cost_days_tagged", "billed_cost_days_tagged", "bill_coverage"])
    )
    assert graph.get(AssetKey("billing_line_items")).parent_keys == {AssetKey("raw_billing_line_items")}
    tagged = graph.get(AssetKey("job_cost_days_tagged")).parent_keys
    assert tagged == set(map(AssetKey, ["job_cost_days", "job_costs", "jobs", "tags"]))
    assert AssetCheckKey(AssetKey("cost_daily"), "total_matches_job_costs") in check_keys
    # The publication waits for every table and model, so a failed blocking check keeps it from running.
    published = graph.get(AssetKey("published_warehouse")).parent_keys
    assert set(map(AssetKey, tables)) | {AssetKey("job_costs"), AssetKey("instance_prices")} <= published


def test_asset_column_metadata_comes_from_the_schema_declaration() -> None:
    spec = load_defs().resolve_assets_def(AssetKey(RAW_JOBS)).specs_by_key[AssetKey(RAW_JOBS)]
    columns = spec.metadata["dagster/column_schema"].columns
    assert [c.name for c in columns] == table(RAW_JOBS).column_names
    assert all(c.description for c in columns)


def test_every_declared_table_has_typed_described_columns_and_a_key() -> None:
    for declared in all_tables().values():
        assert declared.description and declared.key
        assert set(declared.key) <= set(declared.column_names)
        # The DDL builds, in DuckDB, the columns, types and NOT NULLs the declaration says.
        with duckdb.connect() as connection:
            connection.execute(declared.duckdb_ddl())
            built = connection.execute(
                "select column_name, data_type, is_nullable from duckdb_columns() where table_name = ?",
                [declared.name],
            ).fetchall()
        spelled = {"TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE"}  # how DuckDB names it back
        expected = [(c.name, spelled.get(c.duckdb_type, c.duckdb_type), c.nullable) for c in declared.columns]
        assert built == expected, declared.name
        assert [(f.name, f.nullable) for f in declared.arrow_schema()] == [
            (c.name, c.nullable) for c in declared.columns
        ]


def test_materializing_the_graph_fills_the_warehouse(fleet: list[dict], tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SMW_REGIONS", "us-east-1,eu-west-1")
    result = materialize_all(warehouse=str(tmp_path / "warehouse"))
    assert result.success
    partitions = result.materializations(RAW_JOBS)  # one per account/region
    assert sorted(m.partition for m in partitions) == ["default/eu-west-1", "default/us-east-1"]
    assert sum(m.metadata["jobs_fetched"].value for m in partitions) == len(fleet)
    assert all(m.metadata["jobs_failed"].value == 0 for m in partitions)
    # A first load reads with Search: one call per 100 jobs, Describe only for the jobs naming no instances.
    calls = [m.metadata["api_calls"].value for m in partitions]
    assert [set(c) for c in calls] == [{"Search", "DescribeTrainingJob"}] * 2
    assert sum(c["DescribeTrainingJob"] for c in calls) == sum(describe_needed(r) is not None for r in fleet)
    assert all(m.metadata["api_calls_per_job_listed"].value < 0.1 for m in partitions)
    assert len(result.materializations("published_warehouse")) == 1
    # The report's materialization previews the spend; its numbers are the models' (and plotted across builds).
    (report,) = result.materializations("cost_report")
    with duckdb.connect(str(tmp_path / "warehouse" / "sagemaker.duckdb"), read_only=True) as connection:
        total, top = connection.execute(
            "select sum(total_cost_usd), arg_max(training_job_arn, total_cost_usd) from job_costs"
        ).fetchone()
    assert report.metadata["total_cost_usd"].value == round(total, 2)
    preview = report.metadata["preview"].value
    assert f"| all time | ${total:,.2f} |" in preview and top.rsplit("/", 1)[1] in preview.lower()


def test_a_failing_region_is_reported_while_the_healthy_one_is_published_and_caught_up_next_run(
    fleet: list[dict], aws: LocalSageMaker, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("SMW_REGIONS", "us-east-1,eu-west-1")
    aws.set_faults(fail_regions=["eu-west-1"])
    config = tmp_path / "c.yaml"
    config.write_text("extraction: {max_attempts: 2}\n")
    warehouse = tmp_path / "warehouse"
    assert main(["run", "--config", str(config), "--warehouse", str(warehouse)]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "error: check raw_training_jobs.every_target_read failed: Could not read default/eu-west-1" in err

    def published_regions() -> dict[str, int]:
        with duckdb.connect(str(warehouse / "sagemaker.duckdb"), read_only=True) as connection:
            return dict(connection.execute("select region, count(*) from jobs group by region").fetchall())

    regional = {
        region: sum(f":{region}:" in r["TrainingJobArn"] for r in fleet) for region in ("us-east-1", "eu-west-1")
    }
    assert published_regions() == {"us-east-1": regional["us-east-1"]}

    aws.set_faults()
    assert main(["run", "--config", str(config), "--warehouse", str(warehouse)]) == 0
    assert published_regions() == regional


def test_demo_command_runs_the_whole_product(tmp_path: Path) -> None:
    # A broken AWS profile on the machine must not reach the demo's own endpoint or credentials.
    completed = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "demo", "--jobs", "60", "--warehouse", str(tmp_path / "wh")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "AWS_PROFILE": "nope"},
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "jobs 60," in completed.stdout
    assert re.search(r"API calls: DescribeTrainingJob \d, Search 2 \(0\.0\d\d a job\)", completed.stdout)
    assert "ListTags" not in completed.stdout


def test_readme_data_dictionary_matches_the_schemas() -> None:
    readme = DATA_DICTIONARY.read_text()
    assert render(readme) == readme, "run `python -m pipelines.docs` to regenerate docs/data-dictionary.md"
    for name in all_tables():
        assert f"`{name}`" in readme


def test_workspace_file_loads_in_dagster() -> None:
    root = Path(__file__).resolve().parent.parent
    dagster = Path(sys.executable).with_name("dagster")
    completed = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "All code locations passed validation" in completed.stderr + completed.stdout


def test_schedules_partitions_pools_retries_and_freshness_target_what_they_should() -> None:
    extraction = load_defs().resolve_assets_def(AssetKey(RAW_JOBS))
    assert extraction.partitions_def == TARGET_PARTITIONS
    extract = load_defs().resolve_job_def("extract_training_jobs")
    assert extract.asset_layer.executable_asset_keys == {AssetKey(RAW_JOBS)}
    build = load_defs().resolve_job_def("build_warehouse")
    built = build.asset_layer.executable_asset_keys
    assert {AssetKey("jobs"), AssetKey("cost_daily"), AssetKey("published_warehouse")} <= built
    assert AssetKey(RAW_JOBS) not in built and AssetKey("compacted_raw_layer") not in built
    compact = load_defs().resolve_job_def("compact_raw_layer")
    assert compact.asset_layer.executable_asset_keys == {AssetKey("compacted_raw_layer")}

    nightly = load_defs().resolve_schedule_def("nightly_extraction_schedule")
    assert (nightly.cron_schedule, nightly.execution_timezone, nightly.job_name) == (
        "0 2 * * *",
        "UTC",
        "extract_training_jobs",
    )
    build_schedule = load_defs().resolve_schedule_def("nightly_build_schedule")
    assert (build_schedule.cron_schedule, build_schedule.job_name) == ("0 3 * * *", "build_warehouse")
    compaction = load_defs().resolve_schedule_def("weekly_compaction_schedule")
    assert (compaction.cron_schedule, compaction.job_name) == ("0 1 * * 0", "compact_raw_layer")

    assert extraction.op.retry_policy is not None and extraction.op.retry_policy.max_retries >= 1
    defs = load_defs()
    writers = [
        defs.resolve_assets_def(AssetKey(name)).op
        for name in ("jobs", "job_costs", "published_warehouse", "compacted_raw_layer")
    ]
    assert {op.pool for op in writers} == {WAREHOUSE_WRITER_POOL}
    assert extraction.op.pool is None  # extraction only appends raw files: it may overlap a writer
    published = defs.resolve_assets_def(AssetKey("published_warehouse")).specs_by_key[AssetKey("published_warehouse")]
    assert published.freshness_policy.fail_window.to_timedelta() == timedelta(hours=36)


def test_nightly_extraction_registers_and_requests_one_run_per_account_and_region(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "regions: [us-east-1, eu-west-1]\n"
        "accounts: [{name: main}, {name: research, role_arn: 'arn:aws:iam::210987654321:role/Reader'}]\n"
    )
    schedules = {s.name: s for s in build_schedules(load_settings(config, environ={}))}
    repository = Definitions(
        assets=all_assets(),
        jobs=[extract_job, build_job],
        schedules=list(schedules.values()),
        resources=build_resources(),
    ).get_repository_def()
    with instance_for_test() as instance:
        context = build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(2026, 11, 2, 2, tzinfo=UTC), repository_def=repository
        )
        requests = schedules["nightly_extraction_schedule"].evaluate_tick(context).run_requests
        expected = ["main/us-east-1", "main/eu-west-1", "research/us-east-1", "research/eu-west-1"]
        assert [r.partition_key for r in requests] == expected
        assert set(instance.get_dynamic_partitions(TARGET_PARTITIONS.name)) == set(expected)
        assert all(r.run_config["ops"]["raw_training_jobs"]["config"]["full_refresh"] is False for r in requests)
        weekly = schedules["weekly_full_refresh_schedule"].evaluate_tick(context).run_requests
        assert len(weekly) == 4 and all(
            r.run_config["ops"]["raw_training_jobs"]["config"]["full_refresh"] for r in weekly
        )


def test_schedule_comes_from_the_config(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "schedule: {cron: '30 4 * * 1-5', build_cron: '30 5 * * 1-5', compaction_cron: '0 6 1 * *', "
        "timezone: Europe/Paris}\n"
    )
    schedules = {s.name: s for s in build_schedules(load_settings(config, environ={}))}
    assert schedules["nightly_extraction_schedule"].cron_schedule == "30 4 * * 1-5"
    assert schedules["nightly_build_schedule"].cron_schedule == "30 5 * * 1-5"
    assert schedules["weekly_compaction_schedule"].cron_schedule == "0 6 1 * *"
    assert {s.execution_timezone for s in schedules.values()} == {"Europe/Paris"}


def test_a_configuration_problem_inside_dagster_fails_once_with_its_sentence(
    aws: LocalSageMaker, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("SMW_REGIONS", "us-east-1")
    result = materialize_all(warehouse=str(tmp_path / "w"))
    failures = [e for e in result.all_events if e.is_step_failure]
    assert [e.step_key for e in failures] == ["raw_training_jobs"]
    description = failures[0].step_failure_data.user_failure_data.description
    assert description.startswith("No AWS credentials were found; set AWS_PROFILE")
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)


def test_every_description_is_a_whole_sentence_and_reaches_dagster_whole() -> None:
    """A description cut at an unquoted comma (YAML flow mappings) would end mid-sentence."""
    from pipelines.assets.metadata import column_schema

    for declared in all_tables().values():
        assert declared.description.endswith("."), declared.name
        for column in declared.columns:
            assert column.description.endswith("."), (declared.name, column.name, column.description)
        shown = {c.name: c.description for c in column_schema(declared.name).columns}
        assert shown == {c.name: c.description for c in declared.columns}
    failure = next(c for c in all_tables()["jobs"].columns if c.name == "failure_reason")
    assert failure.description == "Why the job failed, when it failed."


def test_every_job_check_schedule_and_asset_says_what_it_is_in_dagster() -> None:
    definitions = load_defs()
    graph = definitions.resolve_asset_graph()
    for key in graph.asset_check_keys:
        description = graph.get_check_spec(key).description or ""
        assert description.endswith("."), key
    for key in graph.get_all_asset_keys():
        assert (graph.get(key).description or "").endswith("."), key
    jobs = [job for job in definitions.resolve_all_job_defs() if not job.name.startswith("__")]
    assert {job.name for job in jobs} == {"extract_training_jobs", "build_warehouse", "compact_raw_layer"}
    for job in jobs:
        assert (job.description or "").endswith("."), job.name
    for schedule in definitions.schedules:
        assert (schedule.description or "").endswith("."), schedule.name


def test_importing_the_code_location_reads_no_settings(tmp_path: Path) -> None:
    """The CLI imports definitions.py with its own --config: a broken $SMW_CONFIG must not be read then,
    only when Dagster loads the code location."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("extraction: {max_workers: .nan}\n")
    environment = {**os.environ, "SMW_CONFIG": str(broken)}
    imported = subprocess.run([sys.executable, "-c", "import pipelines.definitions"], env=environment)
    assert imported.returncode == 0
    loaded = subprocess.run(
        [sys.executable, "-c", "from pipelines.definitions import defs; defs()"],
        env=environment,
        capture_output=True,
        text=True,
    )
    assert loaded.returncode != 0 and "max_workers must be a whole number" in loaded.stderr
