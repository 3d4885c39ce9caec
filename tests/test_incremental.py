"""The incremental build: night after night it replaces only the changed jobs' rows, and its tables are the
ones a full build of the same raw layer makes (new, changed, stale, quarantined and re-fetched jobs, new
cost settings); checks of the changed rows still catch each kind of defect."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.billing.ingest import ingest_exports
from pipelines.config import CostSettings
from pipelines.demo.bill import demo_line_items, write_export
from pipelines.demo.fleet import FleetSpec, generate_fleet
from pipelines.demo.nights import build, changed, differing_rows, moved, pick, renamed, write_records
from pipelines.models.build import REFERENCE_TABLES, _check_partitioned, model_names
from pipelines.models.checks import MODEL_CHECKS
from pipelines.normalization import checks
from pipelines.normalization.flatten import normalized_tables
from pipelines.schemas import all_tables, table
from pipelines.sql import CHANGED_ROWS_FROM
from pipelines.storage.layout import CURRENT, DATABASE, PARQUET, RETIRED, VERSIONS
from pipelines.warehouse import build as warehouse_build
from pipelines.warehouse.build import RECYCLED, StagedBuild, stage_from_raw, stage_models
from pipelines.warehouse.changes import read_manifest
from pipelines.warehouse.history import BUILD_HISTORY, stage_build_history
from pipelines.warehouse.publication import PublicationRefused, built_on_published, publish
from pipelines.warehouse.segments import per_job_tables
from tests.conftest import FLEET_END, PUBLISHED, same_as_full_build

START = FLEET_END + timedelta(hours=1)


def _fleet() -> list[dict[str, Any]]:
    return list(generate_fleet(FleetSpec(jobs=240, seed=11, end=FLEET_END)))


def _store(warehouse: Path, records: list[dict[str, Any]], night: int, hours: float = 0) -> None:
    at = START + timedelta(days=night, hours=hours)
    write_records(warehouse, records, f"{at:%Y%m%dT%H%M%SZ}-night{night}", at)


def _night_one_staged(warehouse: Path, fleet: list[dict[str, Any]], run_id: str) -> StagedBuild:
    """``fleet`` built on night 0, then night 1's build of one changed job (``fleet[3]``), staged only."""
    _store(warehouse, fleet, night=0)
    build(warehouse)
    _store(warehouse, [changed(fleet[3], START + timedelta(days=1), 1)], night=1)
    return stage_from_raw(warehouse, run_id)


def _tag(warehouse: Path, arn: str, key: str) -> list[tuple]:
    with duckdb.connect(str(warehouse / "sagemaker.duckdb"), read_only=True) as connection:
        return connection.execute(
            "select value from tags where training_job_arn = ? and key = ?", [arn, key]
        ).fetchall()


def test_incremental_builds_match_a_full_build_night_after_night(tmp_path: Path) -> None:
    warehouse, scratch = tmp_path / "warehouse", tmp_path / "full"
    fleet = _fleet()
    _store(warehouse, fleet, night=0)
    first = build(warehouse)
    assert (first["mode"], first["reason"], first["failed_checks"]) == ("full", "nothing is published yet", [])

    # Night 1: 20 jobs change (one now repeats a tag key, a row the build leaves out) and 12 are new.
    newer = [changed(record, START + timedelta(days=1), 1) for record in pick(fleet, 20, seed=1, recent=False)]
    newer[0]["Tags"] = [*newer[0]["Tags"], {"Key": "reviewed", "Value": "twice"}]
    added = [renamed(record, "night1", timedelta(days=1)) for record in pick(fleet, 12, seed=2, recent=False)]
    _store(warehouse, newer + added, night=1)
    night = build(warehouse)
    assert (night["mode"], night["jobs_rebuilt"], night["jobs"]) == ("incremental", 32, 252)
    assert night["failed_checks"] == []
    assert _tag(warehouse, newer[1]["TrainingJobArn"], "reviewed") == [("n1",)]
    with duckdb.connect(str(warehouse / "sagemaker.duckdb"), read_only=True) as connection:
        history = "select jobs, new_jobs, changed_jobs from build_history order by built_at desc limit 1"
        assert connection.execute(history).fetchall() == [(252, 12, 20)]
        # The staging-only tables the incremental build kept (changed jobs, rows, rowids) are not published.
        published = {name for (name,) in connection.execute("select table_name from duckdb_tables()").fetchall()}
        assert published == {name for name, declared in all_tables().items() if declared.layer != "raw"}
    same_as_full_build(warehouse, scratch)

    # Night 2: a stale record arrives late (fetched before the published one): it changes nothing.
    stale = pick(fleet, 5, seed=3, recent=False)
    _store(warehouse, stale, night=0, hours=-2)
    _store(warehouse, [changed(newer[1], START + timedelta(days=2), 2)], night=2)
    night = build(warehouse)
    assert (night["mode"], night["jobs_rebuilt"]) == ("incremental", 1)
    assert _tag(warehouse, newer[1]["TrainingJobArn"], "reviewed") == [("n2",)]
    same_as_full_build(warehouse, scratch)

    # Night 3: nothing new. Nothing is rebuilt, and every per-job Parquet file is the previous version's. Night
    # 2's publication retired night 0's database, and night 3's staging recycled it.
    previous = (warehouse / CURRENT).resolve()
    assert not read_manifest(previous)[RECYCLED] and (warehouse / RETIRED / DATABASE).is_file()
    night = build(warehouse)
    assert (night["mode"], night["jobs_rebuilt"], night["raw_files_read"]) == ("incremental", 0, 0)
    assert read_manifest((warehouse / CURRENT).resolve())[RECYCLED]
    for name in ("jobs", "tags", "job_costs"):
        for path in (warehouse / PARQUET / name).glob("*.parquet"):
            assert os.stat(path).st_ino == os.stat(previous / PARQUET / name / path.name).st_ino, path

    # Night 4: a file of night 1 is damaged. The build runs in full and refuses to drop the new jobs only
    # that file held; once extraction fetches them again, a full build publishes, and the next night is incremental.
    night1 = next((warehouse / "raw").rglob("*night1-*.parquet"))
    night1.write_bytes(b"not parquet")
    only_there = sum(f":{night1.parent.name}:" in record["TrainingJobArn"] for record in added)
    with pytest.raises(PublicationRefused, match=f"Not published: {only_there} published jobs are missing"):
        build(warehouse)
    _store(warehouse, [changed(record, START + timedelta(days=4), 4) for record in newer + added], night=4)
    night = build(warehouse)
    assert night["mode"] == "full" and "gone" in night["reason"] and night["jobs"] == 252
    # Night 5: seven jobs change, and one more was deleted and created again under its name two weeks later
    # (same ARN, another week of creation: its old week's Parquet must lose it).
    recreated = moved(fleet[0], timedelta(days=14))
    newer5 = [changed(record, START + timedelta(days=5), 5) for record in pick(fleet[1:], 7, 5, False)]
    _store(warehouse, [*newer5, changed(recreated, START + timedelta(days=15), 5)], night=5, hours=10 * 24)
    night = build(warehouse)
    assert (night["mode"], night["jobs_rebuilt"]) == ("incremental", 8)
    assert read_manifest((warehouse / CURRENT).resolve())[RECYCLED]  # a database two builds old, made current
    same_as_full_build(warehouse, scratch)

    # Night 6: other cost settings. The tables stay incremental; the per-job models are built whole.
    costs = CostSettings(allocation_tags=("project", "team"), storage_usd_per_gb_month=0.2)
    _store(warehouse, [changed(added[0], START + timedelta(days=6), 6)], night=6)
    night = build(warehouse, costs=costs)
    assert (night["mode"], night["jobs_rebuilt"]) == ("incremental", 1)
    assert read_manifest((warehouse / CURRENT).resolve())["models"] == "full"
    same_as_full_build(warehouse, scratch, costs)
    assert len(list((warehouse / VERSIONS).iterdir())) == 2


def test_reconciliation_replaces_the_changed_jobs_rows_beside_an_unchanged_bill(tmp_path: Path) -> None:
    warehouse, scratch = tmp_path / "warehouse", tmp_path / "full"
    fleet = _fleet()
    rows = demo_line_items(fleet, FLEET_END)
    billed = sorted({row["line_item_resource_id"] for row in rows if row["line_item_resource_id"]})
    late = [r for r in fleet if r["TrainingJobArn"] in billed][:3]  # billed jobs whose records come later
    gone = len(set(billed) - {r["TrainingJobArn"] for r in fleet})  # the bill's deleted job
    assert gone == 1
    shouting = late[0]["TrainingJobArn"]  # the bill names one of them in capitals: matched regardless of case
    for row in rows:
        if row["line_item_resource_id"] == shouting:
            prefix, name = shouting.split("/", 1)
            row["line_item_resource_id"] = f"{prefix}/{name.upper()}"
    write_export(rows, str(tmp_path / "cur"))
    ingest_exports(warehouse, (str(tmp_path / "cur"),))
    _store(warehouse, [r for r in fleet if r not in late], night=0)
    assert not build(warehouse)["failed_checks"]
    with duckdb.connect(str(warehouse / "sagemaker.duckdb"), read_only=True) as connection:
        assert connection.execute(
            "select count(*) from cost_reconciliation where status = 'not_in_warehouse'"
        ).fetchall() == [(len(late) + gone,)]

    newer = [changed(record, START + timedelta(days=1), 1) for record in pick(fleet, 10, seed=3, recent=False)]
    _store(warehouse, late + [r for r in newer if r not in late], night=1)
    night = build(warehouse)
    assert (night["mode"], night["failed_checks"]) == ("incremental", [])
    assert read_manifest((warehouse / CURRENT).resolve())["models"] == "incremental"
    with duckdb.connect(str(warehouse / "sagemaker.duckdb"), read_only=True) as connection:
        assert connection.execute(
            "select count(*) from cost_reconciliation where status = 'not_in_warehouse'"
        ).fetchall() == [(gone,)]
        assert connection.execute(
            "select count(*) from cost_reconciliation where lower(training_job_arn) = lower(?)", [shouting]
        ).fetchall() == [(1,)]
    same_as_full_build(warehouse, scratch)


def test_a_full_rebuild_is_asked_for_or_due_weekly(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse"
    _store(warehouse, _fleet()[:40], night=0)
    assert build(warehouse)["mode"] == "full"
    assert build(warehouse)["mode"] == "incremental"
    assert build(warehouse, full=True)["reason"] == "a full rebuild was asked for"
    manifest_path = (warehouse / CURRENT).resolve() / "build.json"
    manifest = read_manifest(manifest_path.parent)
    assert manifest is not None
    manifest_path.write_text(
        manifest_path.read_text().replace(manifest["last_full_build"], "2026-01-01T00:00:00+00:00")
    )
    night = build(warehouse)
    assert night["mode"] == "full" and night["reason"].startswith("the last full build was")


Defect = Callable[[duckdb.DuckDBPyConnection, str], None]
DEFECTS: dict[str, tuple[str, str, Defect]] = {
    "repeated key": (
        "tags",
        "unique_key",
        lambda c, arn: c.execute("insert into tags select * from tags where training_job_arn = ? limit 1", [arn]),
    ),
    "null in a required column": (
        "jobs",
        "required_columns_not_null",
        lambda c, arn: c.execute("update jobs set region = null where training_job_arn = ?", [arn]),
    ),
    "row of no job": (
        "tags",
        "references_jobs",
        lambda c, arn: c.execute("delete from jobs where training_job_arn = ?", [arn]),
    ),
    "row lost": (
        "hyperparameters",
        "row_count_matches_raw",
        lambda c, arn: c.execute("delete from hyperparameters where training_job_arn = ?", [arn]),
    ),
}


@pytest.mark.parametrize("defect", DEFECTS)
def test_checks_of_an_incremental_build_catch_each_defect_in_changed_rows(tmp_path: Path, defect: str) -> None:
    warehouse = tmp_path / "warehouse"
    fleet = [r for r in _fleet() if r.get("HyperParameters") and r.get("Tags")][:30]
    _store(warehouse, fleet, night=0)
    build(warehouse)
    job = changed(fleet[3], START + timedelta(days=1), 1)
    _store(warehouse, [job], night=1)
    staged = stage_from_raw(warehouse, "planted")
    assert (staged.plan.mode, staged.changed_jobs) == ("incremental", 1)
    name, check, plant = DEFECTS[defect]
    declared = next(t for t in normalized_tables() if t.name == name)
    with staged.staging.connect(read_only=True) as connection:
        assert all(outcome.passed for outcome in checks.table_checks(connection, declared))
    with staged.staging.connect() as connection:
        plant(connection, job["TrainingJobArn"])
    with staged.staging.connect(read_only=True) as connection:
        failed = [outcome.name for outcome in checks.table_checks(connection, declared) if not outcome.passed]
    assert check in failed


COST_ROW_DEFECTS: dict[str, str] = {
    "job without a cost row": "delete from job_costs where training_job_arn = ?",
    "second cost row": "insert into job_costs select * from job_costs where training_job_arn = ?",
    "cost row of no job": "delete from jobs where training_job_arn = ?",
}


@pytest.mark.parametrize("defect", COST_ROW_DEFECTS)
def test_one_cost_row_per_job_looks_at_the_changed_jobs_and_catches_each_defect(tmp_path: Path, defect: str) -> None:
    warehouse = tmp_path / "warehouse"
    fleet = _fleet()[:30]
    _store(warehouse, fleet, night=0)
    build(warehouse)
    job = changed(fleet[3], START + timedelta(days=1), 1)
    _store(warehouse, [job], night=1)
    staged = stage_from_raw(warehouse, "planted")
    stage_models(staged.staging, CostSettings())
    one_row_per_job = next(check for check in MODEL_CHECKS if check.name == "one_row_per_job")
    with staged.staging.connect(read_only=True) as connection:
        assert read_manifest(staged.staging.root)["models"] == "incremental"
        assert one_row_per_job(connection).passed
    with staged.staging.connect() as connection:
        connection.execute(COST_ROW_DEFECTS[defect], [job["TrainingJobArn"]])
    with staged.staging.connect(read_only=True) as connection:
        assert not one_row_per_job(connection).passed


def test_a_full_build_in_batches_of_jobs_makes_the_same_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = _fleet()
    fleet[5]["Tags"] = [*fleet[5]["Tags"], fleet[5]["Tags"][0]]  # a repeated tag key, left out in either build
    # A job deleted and created again under its name two weeks later: its two records fall in different
    # batches' spans of creation time, and only the newer one may be built.
    recreated = moved(fleet[0], timedelta(days=14))
    for name in ("whole", "batches"):
        _store(tmp_path / name, fleet, night=0)
        _store(tmp_path / name, [recreated], night=1)
    assert build(tmp_path / "whole")["jobs"] == 240
    monkeypatch.setattr(warehouse_build, "BATCH_JOBS", 37)
    monkeypatch.setattr(warehouse_build, "NEWEST_BATCH_JOBS", 10)  # 7 batches of the oldest 230 jobs, then 10
    batched = build(tmp_path / "batches")
    assert (batched["jobs"], batched["failed_checks"]) == (240, [])
    assert len(read_manifest(tmp_path / "batches" / CURRENT)["row_segments"]) == 8
    # The table of each job's batch is the build's scaffolding, not published.
    assert not list((tmp_path / "batches" / CURRENT).glob(f"{warehouse_build.BATCHES_DATABASE}*"))
    assert (
        differing_rows(tmp_path / "whole" / "sagemaker.duckdb", tmp_path / "batches" / "sagemaker.duckdb", PUBLISHED)
        == {}
    )


def test_a_rollup_is_partitioned_only_by_columns_its_inputs_rebuilt_by_job_hold() -> None:
    with pytest.raises(ValueError, match="duration_rollup is partitioned by \\['month'\\], which job_durations lacks"):
        _check_partitioned(dataclasses.replace(table("duration_rollup"), partitioned_by=("month",)))
    with pytest.raises(ValueError, match="bill_coverage is partitioned but reads no table rebuilt by job"):
        _check_partitioned(dataclasses.replace(table("bill_coverage"), partitioned_by=("account_id",)))
    for name in ("cost_daily", "cost_monthly", "waste"):
        _check_partitioned(table(name))


def test_a_build_whose_base_version_was_removed_meanwhile_publishes_whole_parquet(tmp_path: Path) -> None:
    # A Dagster build stages from one version; two other builds publish before its last step, and the
    # version it started from is removed (two are kept). Its Parquet must still hold every job.
    warehouse = tmp_path / "warehouse"
    fleet = _fleet()
    waiting = _night_one_staged(warehouse, fleet, "waiting")
    for night in (2, 3):
        _store(warehouse, [changed(fleet[10 + night], START + timedelta(days=night), night)], night=night)
        assert build(warehouse)["mode"] == "incremental"
    assert not (warehouse / VERSIONS / str(waiting.plan.published_version)).exists()
    stage_models(waiting.staging, CostSettings())
    stage_build_history(waiting.staging, [])
    publish(waiting.staging, [*[t.name for t in normalized_tables()], *REFERENCE_TABLES, *model_names(), BUILD_HISTORY])
    with duckdb.connect(str(warehouse / "sagemaker.duckdb"), read_only=True) as connection:
        for name in ("jobs", "tags", "job_costs"):
            parquet = f"select count(*) from read_parquet('{warehouse}/{PARQUET}/{name}/*.parquet')"
            database = f"select count(*) from {name}"
            assert connection.execute(parquet).fetchall() == connection.execute(database).fetchall(), name


def _changed_rows_from(staged: StagedBuild) -> dict[str, int]:
    with staged.staging.connect(read_only=True) as connection:
        return dict(connection.execute(f"select table_name, first_rowid from {CHANGED_ROWS_FROM}").fetchall())


def _parquet_written(previous: Path, current: Path, name: str, arns: list[str]) -> tuple[set[str], set[str], set[str]]:
    """Of a table's Parquet files: those of version ``previous`` holding a row of ``arns``; those version
    ``current`` wrote (new, or not a link to the previous version's file); all of ``current``'s."""
    files = {path.name: path for path in (current / PARQUET / name).glob("*.parquet")}
    before = {path.name: path for path in (previous / PARQUET / name).glob("*.parquet")}
    with duckdb.connect() as connection:
        found = connection.execute(
            f"select distinct filename from read_parquet('{previous}/{PARQUET}/{name}/*.parquet', filename = true) "
            "where list_contains(?, training_job_arn)",
            [arns],
        ).fetchall()
    holding = {Path(f).name for (f,) in found}
    written = {n for n, path in files.items() if n not in before or path.stat().st_ino != before[n].stat().st_ino}
    return holding, written, set(files)


def test_a_night_reads_each_table_from_where_its_oldest_changed_job_was_written(tmp_path: Path) -> None:
    # Nights 1 and 2 add jobs; night 3 changes one of each. Its build reads every per-job table from the rowid
    # at which night 1 started writing it (after night 0's rows), and still replaces both jobs' rows.
    warehouse, scratch = tmp_path / "warehouse", tmp_path / "full"
    fleet = [r for r in _fleet() if r.get("Tags") and r.get("HyperParameters")]
    _store(warehouse, fleet, night=0)
    build(warehouse)
    with duckdb.connect(str(warehouse / "sagemaker.duckdb"), read_only=True) as connection:
        night0_rows = {
            name: connection.execute(f"select count(*) from {name}").fetchall()[0][0] for name in per_job_tables()
        }
    added = {
        night: [renamed(record, f"night{night}", timedelta(days=night)) for record in pick(fleet, 5, night, False)]
        for night in (1, 2)
    }
    for night in (1, 2):
        _store(warehouse, added[night], night=night)
        assert build(warehouse)["mode"] == "incremental"
    _store(warehouse, [changed(added[night][0], START + timedelta(days=3), 3) for night in (1, 2)], night=3)
    staged = stage_from_raw(warehouse, "night3")
    assert staged.changed_jobs == 2
    assert _changed_rows_from(staged) == night0_rows
    previous = (warehouse / CURRENT).resolve()
    night = build(warehouse)
    assert (night["mode"], night["jobs_rebuilt"], night["failed_checks"]) == ("incremental", 2, [])
    same_as_full_build(warehouse, scratch)
    # Its Parquet: only the files that held the two jobs are written again, beside the build's own files.
    current, arns = (warehouse / CURRENT).resolve(), [added[night][0]["TrainingJobArn"] for night in (1, 2)]
    for name in ("jobs", "tags", "job_costs"):
        holding, written, files = _parquet_written(previous, current, name, arns)
        assert 0 < len(holding) <= 2 < len(files)
        assert written == {n for n in files if n.endswith(f"_{current.name}.parquet")} | (holding & files), name

    # A table changed by something other than a build (here rewritten with night 1's job's rows first, as a
    # vacuum would renumber rows) is read whole: its old rows of that job are still found and replaced.
    moved_job = added[1][0]["TrainingJobArn"]
    with duckdb.connect(str(warehouse / "sagemaker.duckdb"), config={"max_vacuum_tasks": 0}) as connection:
        connection.execute(
            "create or replace table tags as select * from tags order by training_job_arn != ?, rowid", [moved_job]
        )
    _store(warehouse, [changed(added[1][0], START + timedelta(days=4), 4)], night=4)
    staged = stage_from_raw(warehouse, "night4")
    first_rowids = _changed_rows_from(staged)
    # Night 3 wrote that job last: the other tables are read from where night 3 started writing them.
    assert "tags" not in first_rowids and first_rowids["hyperparameters"] > night0_rows["hyperparameters"]
    night = build(warehouse)
    assert (night["mode"], night["jobs_rebuilt"], night["failed_checks"]) == ("incremental", 1, [])
    same_as_full_build(warehouse, scratch)


def test_the_night_after_a_full_build_reads_and_writes_only_its_newest_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full build of 240 jobs in batches of 37 goes from the oldest jobs to the newest, the per-job models
    # too, and its newest 10 jobs are a batch of their own: a night that changes the newest job reads every
    # per-job table from where that batch's rows start, and writes again only that batch's Parquet file of
    # the job's week; the week's other jobs' file is linked.
    warehouse, scratch = tmp_path / "warehouse", tmp_path / "full"
    monkeypatch.setattr(warehouse_build, "BATCH_JOBS", 37)
    monkeypatch.setattr(warehouse_build, "NEWEST_BATCH_JOBS", 10)
    fleet = _fleet()
    _store(warehouse, fleet, night=0)
    assert build(warehouse)["mode"] == "full"
    full = (warehouse / CURRENT).resolve()
    newest = max(fleet, key=lambda record: record["CreationTime"])
    _store(warehouse, [changed(newest, START + timedelta(days=1), 1)], night=1)
    staged = stage_from_raw(warehouse, "night1")
    first_rowids = _changed_rows_from(staged)
    assert set(first_rowids) == set(per_job_tables())
    assert first_rowids["jobs"] == first_rowids["job_costs"] == first_rowids["job_durations"] == 240 - 10
    night = build(warehouse)
    assert (night["mode"], night["jobs_rebuilt"], night["failed_checks"]) == ("incremental", 1, [])
    same_as_full_build(warehouse, scratch)
    current = (warehouse / CURRENT).resolve()
    for name in ("jobs", "tags", "job_costs"):
        holding, written, files = _parquet_written(full, current, name, [newest["TrainingJobArn"]])
        week = holding.pop().split("_")[0]  # the full build's file of its newest jobs of the week
        assert not holding and f"{week}.parquet" in files, name  # the week's other jobs are in another file
        assert written == {f"{week}_{full.name}.parquet", f"{week}_{current.name}.parquet"}, name


@pytest.mark.parametrize("lost", ["changed job", "unchanged job"])
def test_publication_refuses_an_incremental_build_that_lost_a_published_job(tmp_path: Path, lost: str) -> None:
    # Built on the version published now, the check counts the published jobs instead of reading them: a
    # job missing from the staged tables, changed or not, must still stop publication.
    warehouse = tmp_path / "warehouse"
    fleet = _fleet()
    staged = _night_one_staged(warehouse, fleet, "lost")
    assert built_on_published(staged.staging)
    stage_models(staged.staging, CostSettings())
    stage_build_history(staged.staging, [])
    missing = fleet[3 if lost == "changed job" else 10]["TrainingJobArn"]
    with staged.staging.connect() as connection:
        connection.execute("delete from jobs where training_job_arn = ?", [missing])
    tables = [*[t.name for t in normalized_tables()], *REFERENCE_TABLES, *model_names(), BUILD_HISTORY]
    with pytest.raises(PublicationRefused, match=f"1 published jobs are missing .*{missing}"):
        publish(staged.staging, tables)
