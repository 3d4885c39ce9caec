"""The command line: check, query."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import duckdb
import pytest

from pipelines.cli import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, main
from pipelines.demo.endpoint import LocalSageMaker
from pipelines.demo.fleet import generate_fleet
from pipelines.summary import print_run_summary, run_summary
from pipelines.warehouse.changes import read_manifest
from pipelines.warehouse.history import newest_build
from tests.conftest import REGIONS, SMALL_FLEET, copy_of, published_rows, renamed


def test_check_reports_success_against_the_local_endpoint(
    fleet: list[dict], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMW_REGIONS", "us-east-1,eu-west-1")
    assert main(["check"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "ok  default/us-east-1 (123456789012)" in out and "ok  default/eu-west-1 (123456789012)" in out
    assert "2 of 2 account/region targets readable." in out


@pytest.mark.parametrize("operation", ["DescribeTrainingJob", "Search"])
def test_check_names_the_missing_permission(
    operation: str,
    fleet: list[dict],
    aws: LocalSageMaker,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SMW_REGIONS", "us-east-1")
    aws.set_faults(deny_operations=[operation])
    assert main(["check"]) == EXIT_FAILED
    out = capsys.readouterr().out
    assert f"FAIL default/us-east-1 (123456789012): missing permission sagemaker:{operation}" in out


def test_check_names_a_broken_configuration(
    aws: LocalSageMaker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("regions: [us-east-7]\n")
    assert main(["check", "--config", str(config)]) == EXIT_CONFIG
    assert capsys.readouterr().err.startswith("error: Unknown AWS region 'us-east-7'")


def test_query_prints_results_and_refuses_every_escape_from_read_only(
    demo_warehouse: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["query", "select 1", "--warehouse", str(tmp_path / "nothing-here")]) == EXIT_CONFIG
    assert "no warehouse at" in capsys.readouterr().err
    warehouse = copy_of(demo_warehouse, tmp_path / "warehouse")  # the escapes below try to write to it
    assert main(["query", "select count(*) as jobs from jobs", "--warehouse", str(warehouse)]) == EXIT_OK
    assert re.search(rf"│\s+{SMALL_FLEET.jobs} │", capsys.readouterr().out)
    for reading in ("describe jobs", "show tables", "summarize tags", "explain select * from jobs"):
        assert main(["query", reading, "--warehouse", str(warehouse)]) == EXIT_OK, reading

    published = min((warehouse / "parquet" / "jobs").glob("*.parquet"))
    other = tmp_path / "other.duckdb"
    escapes = [
        "drop table jobs",
        f"COPY (select * from jobs limit 1) TO '{published}' (format parquet)",
        f"COPY (select * from jobs limit 1) TO '{warehouse}/raw/training_jobs/planted.parquet' (format parquet)",
        f"ATTACH '{other}' (READ_WRITE)",
        f"select * from jobs; ATTACH '{warehouse / 'sagemaker.duckdb'}' AS rw (READ_WRITE); DROP TABLE rw.jobs",
        "select * from read_csv('/etc/passwd')",
        f"select count(*) from read_parquet('{published}')",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "select 1; select 2",
        f"EXPORT DATABASE '{tmp_path / 'exported'}'",
        "create temp table t as select 1",
        "explain analyze create temp table t as select 1",
        "EXPLAIN ANALYZE load parquet",
        "explain analyze checkpoint",
        "pragma enable_profiling",
        "select * from nowhere",
    ]
    for sql in escapes:
        assert main(["query", sql, "--warehouse", str(warehouse)]) == EXIT_CONFIG, sql
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, (sql, err)
    assert not other.exists() and not (tmp_path / "exported").exists()
    assert not list((warehouse / "raw").rglob("planted*"))
    assert main(["query", "select count(*) from jobs", "--warehouse", str(warehouse)]) == EXIT_OK
    assert re.search(rf"│\s+{SMALL_FLEET.jobs} │", capsys.readouterr().out)
    assert published_rows(warehouse, "jobs") == SMALL_FLEET.jobs


def test_the_example_config_is_the_documented_one_and_passes_check(
    fleet: list[dict], capsys: pytest.CaptureFixture[str]
) -> None:
    root = Path(__file__).resolve().parent.parent
    example = root / "warehouse.example.yaml"
    documented = (root / "docs" / "configuration.md").read_text().split("```yaml\n", 1)[1].split("```", 1)[0]
    assert example.read_text().endswith(documented)
    assert main(["check", "--config", str(example)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "4 of 4 account/region targets readable." in out  # main and research, in both regions


def test_a_run_ends_saying_what_changed_and_what_it_cost(
    demo_warehouse: Path, aws: LocalSageMaker, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    warehouse = copy_of(demo_warehouse, tmp_path / "warehouse")
    aws.load_fleet(SMALL_FLEET)
    monkeypatch.setenv("SMW_REGIONS", ",".join(REGIONS))
    newest = max(generate_fleet(SMALL_FLEET), key=lambda r: r["CreationTime"])
    aws.upsert_jobs([renamed(newest, "arrived-overnight")])
    # For scripts: one JSON object on stdout, nothing else.
    assert main(["run", "--warehouse", str(warehouse), "--json"]) == EXIT_OK
    printed = json.loads(capsys.readouterr().out)
    with duckdb.connect(str(warehouse / "sagemaker.duckdb"), read_only=True) as connection:
        total, added = connection.execute(
            "select sum(total_cost_usd), sum(total_cost_usd) filter (where training_job_arn like '%/arrived-overnight')"
            " from job_costs"
        ).fetchone()
    published = printed["published"]
    assert (published["jobs"], published["new_jobs"], published["changed_jobs"]) == (SMALL_FLEET.jobs + 1, 1, 0)
    assert published["spend_all_time_usd"] == round(total, 2)
    assert published["spend_change_usd"] == pytest.approx(added, abs=0.01) and added > 0
    assert published["report"] == str((warehouse / "report" / "index.html").resolve())
    assert printed["failed_checks"] == []
    # The same night in the build history, with the warnings the run printed.
    history = newest_build(warehouse)
    assert history is not None and (history["new_jobs"], history["changed_jobs"]) == (1, 0)
    assert history["spend_added_usd"] == pytest.approx(added, abs=0.01)
    warned = [f"{w['check']}: {w['description']}" for w in printed["warnings"]]
    assert history["checks_failed"] == len(warned)
    assert (history["failed_checks"] or "").split("\n") == (warned or [""])
    # What a person reads at the end of `run` and `demo`: the same summary, as sentences.
    print_run_summary(run_summary(warehouse))
    out = capsys.readouterr().out
    assert f"Published {SMALL_FLEET.jobs + 1} jobs to {warehouse.resolve()}: 1 new and 0 changed since" in out
    spend = re.search(r"all time \$([\d,.]+) \(([+-])\$([\d,.]+) since the previous version\)", out)
    assert spend and float(spend[1].replace(",", "")) == round(total, 2), out
    assert spend[2] == "+" and float(spend[3].replace(",", "")) == pytest.approx(added, abs=0.01)
    # Compaction merges the raw files both runs wrote, per region (the demo's and tonight's batches).
    raw_files = sorted((warehouse / "raw" / "training_jobs").rglob("*.parquet"))
    assert main(["compact", "--warehouse", str(warehouse)]) == EXIT_OK
    compacted = capsys.readouterr()
    merged = re.fullmatch(r"Merged (\d+) raw files into (\d+) \((\d+) rows\) in .*\n", compacted.out)
    assert merged and int(merged[1]) > int(merged[2]) >= 1
    assert " - DEBUG - " not in compacted.err and " - INFO - " in compacted.err  # the log level of a run
    assert len(list((warehouse / "raw" / "training_jobs").rglob("*.parquet"))) < len(raw_files)
    # Nothing at all with --quiet; the next night has nothing new.
    assert main(["run", "--warehouse", str(warehouse), "--quiet"]) == EXIT_OK
    assert capsys.readouterr().out == ""
    assert run_summary(warehouse)["new_jobs"] == 0
    # Those builds replaced only the changed jobs' rows, compaction or not; --full-refresh rebuilds every one.
    manifest = read_manifest((warehouse / "current").resolve())
    assert manifest is not None and (manifest["mode"], manifest["models"]) == ("incremental", "incremental")
    assert main(["run", "--warehouse", str(warehouse), "--full-refresh", "--quiet"]) == EXIT_OK
    manifest = read_manifest((warehouse / "current").resolve())
    assert manifest is not None and (manifest["mode"], manifest["reason"]) == ("full", "a full rebuild was asked for")


def test_demo_without_its_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A production install (`pip install .`) has no moto: what `find_spec` then answers.
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "moto" else real_find_spec(name, *a)
    )
    assert main(["demo", "--jobs", "10"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "pip install 'sagemaker-training-warehouse[demo]'" in err and "Traceback" not in err
