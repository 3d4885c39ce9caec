"""The command line: check, query."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipelines.cli import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, main
from pipelines.demo.endpoint import LocalSageMaker


def test_check_reports_success_against_the_local_endpoint(
    fleet: list[dict], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMW_REGIONS", "us-east-1,eu-west-1")
    assert main(["check"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "ok  default/us-east-1 (123456789012)" in out and "ok  default/eu-west-1 (123456789012)" in out
    assert "2 of 2 account/region targets readable." in out


def test_check_names_the_missing_permission(
    fleet: list[dict], aws: LocalSageMaker, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMW_REGIONS", "us-east-1")
    aws.set_faults(deny_operations=["DescribeTrainingJob"])
    assert main(["check"]) == EXIT_FAILED
    out = capsys.readouterr().out
    assert "FAIL default/us-east-1 (123456789012): missing permission sagemaker:DescribeTrainingJob" in out


def test_check_names_a_broken_configuration(
    aws: LocalSageMaker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("regions: [us-east-7]\n")
    assert main(["check", "--config", str(config)]) == EXIT_CONFIG
    assert capsys.readouterr().err.startswith("error: Unknown AWS region 'us-east-7'")


def test_query_prints_results_read_only(
    fleet: list[dict], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMW_REGIONS", "us-east-1,eu-west-1")
    warehouse = str(tmp_path / "warehouse")
    assert main(["query", "select 1", "--warehouse", warehouse]) == EXIT_CONFIG
    assert "no warehouse at" in capsys.readouterr().err
    assert main(["run", "--warehouse", warehouse]) == EXIT_OK
    capsys.readouterr()
    assert main(["query", "select count(*) as jobs from jobs", "--warehouse", warehouse]) == EXIT_OK
    assert re.search(rf"│\s+{len(fleet)} │", capsys.readouterr().out)
    assert main(["query", "drop table jobs", "--warehouse", warehouse]) == EXIT_FAILED
    assert "read-only" in capsys.readouterr().err
