"""Raw compaction: a month of small files becomes one, no row is lost or doubled (even when it stops half
way), files the published version has not read are left alone, and the next build stays incremental."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.demo.fleet import FleetSpec, generate_fleet
from pipelines.demo.nights import build, changed, pick, write_records
from pipelines.schemas import table
from pipelines.storage.raw import RAW_ERRORS, RAW_JOBS, parquet_files, write_rows
from pipelines.warehouse import compaction
from pipelines.warehouse.changes import plan_build
from pipelines.warehouse.compaction import CompactionError, compact_raw, month_of
from tests.conftest import copy_of, same_as_full_build

START = datetime(2026, 10, 29, 2, tzinfo=UTC)  # nights 0-2 in October, 3-4 in November


def _night(warehouse: Path, records: list[dict[str, Any]], night: int) -> None:
    at = START + timedelta(days=night)
    write_records(warehouse, records, f"{at:%Y%m%dT%H%M%SZ}-night{night}", at)
    error = {
        "account_id": "123456789012",
        "region": "us-east-1",
        "training_job_name": f"flaky-{night}",
        "operation": "DescribeTrainingJob",
        "error_code": "InternalFailure",
        "error_message": "a 5xx",
        "occurred_at": at,
        "run_id": f"{at:%Y%m%dT%H%M%SZ}-night{night}",
    }
    write_rows(warehouse, RAW_ERRORS, [error], "123456789012", "us-east-1", f"{at:%Y%m%dT%H%M%SZ}-night{night}-e")


def _rows(warehouse: Path, table_name: str) -> list[tuple]:
    """Every stored row, as the readers see the raw layer (sorted, duplicates kept)."""
    with duckdb.connect() as connection:
        files = parquet_files(warehouse, table_name)
        return sorted(
            connection.execute(f"select * from read_parquet({files!r}, union_by_name = true)").fetchall(), key=repr
        )


def _files(warehouse: Path, table_name: str) -> list[str]:
    return sorted(Path(f).name for f in parquet_files(warehouse, table_name))


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four nights stored and built (October and November), a fifth stored but not built yet."""
    warehouse = tmp_path_factory.mktemp("nights") / "warehouse"
    fleet = list(generate_fleet(FleetSpec(jobs=200, seed=5, end=START - timedelta(hours=1))))
    _night(warehouse, fleet, 0)
    assert build(warehouse)["mode"] == "full"
    for night in (1, 2, 3):
        at = START + timedelta(days=night)
        _night(warehouse, [changed(r, at, night) for r in pick(fleet, 15, seed=night, recent=False)], night)
        assert build(warehouse)["mode"] == "incremental"
    _night(warehouse, [changed(r, START + timedelta(days=4), 4) for r in pick(fleet, 10, seed=4, recent=True)], 4)
    return warehouse


@pytest.fixture
def warehouse(nights: Path, tmp_path: Path) -> Path:
    """A private copy of those nights' warehouse."""
    return copy_of(nights, tmp_path / "warehouse")


def test_a_month_of_files_becomes_one_without_losing_a_row_and_the_next_build_stays_incremental(
    warehouse: Path, tmp_path: Path
) -> None:
    jobs_before, errors_before = _rows(warehouse, RAW_JOBS), _rows(warehouse, RAW_ERRORS)
    unread = [f for f in _files(warehouse, RAW_JOBS) if "night4" in f]
    assert unread and len(_files(warehouse, RAW_JOBS)) > 8

    done = compact_raw(warehouse)

    assert _rows(warehouse, RAW_JOBS) == jobs_before and _rows(warehouse, RAW_ERRORS) == errors_before
    run_id = [c.name for c in table(RAW_JOBS).columns].index("run_id")
    october_jobs = [row for row in jobs_before if row[run_id].startswith("202610")]
    assert sum(c.rows for c in done) == len(october_jobs) + len(errors_before)  # all errors, two months
    after = _files(warehouse, RAW_JOBS)
    # Per account and region: October's three nights in one file, November's night 3 alone (nothing to
    # merge), night 4 untouched because the published version has not read it.
    for name in unread:
        assert name in after
    compacted = [name for name in after if name.startswith("compacted-")]
    assert compacted and {month_of(Path(name)) for name in compacted} == {"202610"}
    for folder in {Path(f).parent for f in parquet_files(warehouse, RAW_JOBS)}:
        october = [p for p in folder.glob("*.parquet") if month_of(p) == "202610"]
        assert len(october) == 1, folder
    assert [month_of(Path(n)) for n in _files(warehouse, RAW_ERRORS)] == ["202610", "202611"]
    assert compact_raw(warehouse) == []  # nothing left to merge

    plan = plan_build(warehouse)
    assert plan.incremental and sorted(Path(f).name for f in plan.new_files) == unread
    night = build(warehouse)
    assert (night["mode"], night["jobs_rebuilt"], night["failed_checks"]) == ("incremental", 10, [])
    same_as_full_build(warehouse, tmp_path / "full")

    # Once the published version has read night 4, November's files merge too and a build is still incremental.
    assert {month_of(c.path) for c in compact_raw(warehouse)} == {"202611"}
    assert _rows(warehouse, RAW_JOBS) == jobs_before
    assert plan_build(warehouse).incremental and plan_build(warehouse).new_files == ()


def test_a_compaction_stopped_before_removing_what_it_merged_shows_no_row_twice(warehouse: Path) -> None:
    jobs_before = _rows(warehouse, RAW_JOBS)
    kept = {}
    for name in parquet_files(warehouse, RAW_JOBS):
        if month_of(Path(name)) == "202610":  # the files this compaction merges
            kept[name] = Path(name).read_bytes()
    compact_raw(warehouse)
    for name, content in kept.items():  # the merged files back, as if the removal never happened
        Path(name).write_bytes(content)

    assert _rows(warehouse, RAW_JOBS) == jobs_before  # readers skip what a compacted file replaces
    assert plan_build(warehouse).incremental
    assert compact_raw(warehouse) == [] and not any(Path(name).exists() for name in kept)  # removed now
    assert _rows(warehouse, RAW_JOBS) == jobs_before


def test_a_merge_that_does_not_hold_every_row_removes_nothing(warehouse: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files_before, jobs_before = _files(warehouse, RAW_JOBS), _rows(warehouse, RAW_JOBS)
    real_batches = compaction._batches

    def one_row_short(files: list[Path], schema: Any) -> Any:
        batches = list(real_batches(files, schema))
        return [batches[0].slice(1), *batches[1:]]

    monkeypatch.setattr(compaction, "_batches", one_row_short)
    with pytest.raises(CompactionError, match="nothing was removed"):
        compact_raw(warehouse)
    assert _files(warehouse, RAW_JOBS) == files_before and _rows(warehouse, RAW_JOBS) == jobs_before
    leftovers = [p for p in (warehouse / "raw").rglob("*") if p.is_file() and "compacted" in p.name]
    assert leftovers == [] and not any(".tmp-" in p.name for p in (warehouse / "raw").rglob("*"))
    assert os.listdir(warehouse / "raw")


def test_the_dagster_job_compacts_holding_the_build_and_each_partition_in_turn(warehouse: Path) -> None:
    """As Dagster runs it (no lock on the whole warehouse): the build's lock, then each account and region's."""
    from dagster import DagsterInstance

    from pipelines.config import load_settings
    from pipelines.definitions import COMPACT_JOB, build_resources, make_definitions

    jobs_before, files_before = _rows(warehouse, RAW_JOBS), _files(warehouse, RAW_JOBS)
    resources = build_resources(warehouse=str(warehouse))
    job = make_definitions(load_settings(None, environ={}), resources).resolve_job_def(COMPACT_JOB)
    with DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance)
    metadata = result.asset_materializations_for_node("compacted_raw_layer")[0].metadata
    assert metadata["files_written"].value >= 2 and metadata["files_merged"].value > metadata["files_written"].value
    assert _rows(warehouse, RAW_JOBS) == jobs_before and len(_files(warehouse, RAW_JOBS)) < len(files_before)
    assert sorted(p.name for p in (warehouse / ".locks").glob("*.lock")) == [
        "build.lock",
        "extract-123456789012-eu-west-1.lock",
        "extract-123456789012-us-east-1.lock",
        "warehouse.lock",
    ]


def test_a_file_merged_twice_counts_as_read_and_a_second_merge_of_the_same_rows_is_read_once(warehouse: Path) -> None:
    jobs_before = _rows(warehouse, RAW_JOBS)
    unread = sorted(Path(f).name for f in plan_build(warehouse).new_files)
    folder = Path(next(f for f in parquet_files(warehouse, RAW_JOBS) if month_of(Path(f)) == "202610")).parent
    october = sorted(p for p in folder.glob("*.parquet") if month_of(p) == "202610")
    assert len(october) == 3
    first = compaction.merge(october[:2], "202610")
    second = compaction.merge([first.path, october[2]], "202610")  # the first merge merged again
    assert _rows(warehouse, RAW_JOBS) == jobs_before
    plan = plan_build(warehouse)  # every file the second merge holds was read by the published version
    assert plan.incremental and sorted(Path(f).name for f in plan.new_files) == unread

    # Another writer's merge of the same rows (sent by a copy whose lease expired): each row is read once.
    (folder / "compacted-202610-0000000000000000.parquet").write_bytes(second.path.read_bytes())
    assert _rows(warehouse, RAW_JOBS) == jobs_before
    night = build(warehouse, full=True)
    assert (night["mode"], night["failed_checks"]) == ("full", [])


def test_a_damaged_file_stops_its_own_month_only_and_the_compaction_fails(warehouse: Path) -> None:
    october = sorted(Path(f) for f in parquet_files(warehouse, RAW_JOBS) if month_of(Path(f)) == "202610")
    damaged = october[0]
    damaged.write_bytes(b"PAR1 not a parquet file PAR1")
    with pytest.raises(CompactionError, match=f"1 months were not merged.*{damaged.parent.name} 202610"):
        compact_raw(warehouse)
    assert damaged.exists() and all(p.exists() for p in october if p.parent == damaged.parent)
    elsewhere = {p.parent for p in october} - {damaged.parent}
    assert elsewhere and all(len(list(folder.glob("compacted-202610-*.parquet"))) == 1 for folder in elsewhere)
