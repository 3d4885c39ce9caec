"""Bad configuration gets one clear sentence that names the problem and the fix."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipelines.assets.resources import WarehouseConfig
from pipelines.cli import EXIT_CONFIG, main
from pipelines.config import Account, ConfigError, Settings, load_settings, parse_settings
from pipelines.demo.endpoint import LocalSageMaker
from pipelines.extraction.aws import RateLimiter
from pipelines.extraction.run import resolve_targets


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "warehouse.yaml"
    path.write_text(text)
    return path


def test_a_full_config_file_loads(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
warehouse: /data/sagemaker
regions: [us-east-1, eu-west-1]
accounts:
  - name: main
  - name: research
    role_arn: arn:aws:iam::210987654321:role/WarehouseReader
    external_id: abc
extraction:
  max_workers: 4
  max_requests_per_second: 5
  retry_mode: adaptive
""",
    )
    settings = load_settings(path, environ={})
    assert settings.warehouse == Path("/data/sagemaker")
    assert settings.regions == ("us-east-1", "eu-west-1")
    assert settings.accounts[1] == Account("research", "arn:aws:iam::210987654321:role/WarehouseReader", "abc")
    assert (settings.extraction.max_workers, settings.extraction.max_requests_per_second) == (4, 5)


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "warehouse: /from/file\nregions: [us-east-1]\n")
    settings = load_settings(
        None, environ={"SMW_CONFIG": str(path), "SMW_WAREHOUSE": "/from/env", "SMW_REGIONS": "eu-west-1, us-west-2"}
    )
    assert settings.warehouse == Path("/from/env") and settings.regions == ("eu-west-1", "us-west-2")


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"acounts": []}, "Unknown key 'acounts'"),
        ({"regions": "us-east-1"}, "must be a list"),
        ({"regions": ["US East"]}, "'US East' is not an AWS region name"),
        ({"accounts": [{"name": "x", "role_arn": "arn:aws:iam::123:role/r"}]}, "is not an IAM role ARN"),
        ({"accounts": [{"name": "a"}, {"name": "a"}]}, "appears twice"),
        ({"accounts": [{"name": "x", "role_arn": "arn:aws:iam::123456789012:role/r\n"}]}, "is not an IAM role ARN"),
        ({"accounts": [{"name": "x", "role_arn": "arn:aws:iam::١٢٣٤٥٦٧٨٩٠١٢:role/r"}]}, "is not an IAM role ARN"),
        ({"accounts": [{"name": "prod\n"}]}, "must be 1-64 letters"),
        ({"accounts": [{"name": "a", "role": "x"}]}, "unknown key 'role'"),
        ({"extraction": {"max_workers": 0}}, "extraction.max_workers must be a whole number"),
        ({"extraction": {"retry_mode": "legacy"}}, "retry_mode must be 'standard' or 'adaptive'"),
        ({"extraction": {"threads": 3}}, "Unknown key 'extraction.threads'"),
        # Values that used to hang, crash after minutes, or reach SQL as identifiers.
        ({"extraction": {"max_workers": 1_000_000_000_000}}, "extraction.max_workers must be a whole number from 1"),
        ({"extraction": {"max_requests_per_second": 0}}, "max_requests_per_second must be a number from 0.01"),
        ({"extraction": {"max_requests_per_second": float("nan")}}, "got nan"),
        ({"extraction": {"overlap_hours": float("inf")}}, "extraction.overlap_hours must be a number from 0"),
        ({"extraction": {"max_attempts": 2.5}}, "extraction.max_attempts must be a whole number"),
        ({"extraction": {"batch_size": True}}, "extraction.batch_size must be a whole number"),
        ({"costs": {"storage_usd_per_gb_month": float("nan")}}, "costs.storage_usd_per_gb_month must be a number"),
        ({"schedule": {"cron": "0 25 * * *"}}, "schedule.cron '0 25 * * *' is not a 5-field cron expression"),
        ({"schedule": {"build_cron": "0 3 30 2 *"}}, "schedule.build_cron '0 3 30 2 *' is not"),
    ],
)
def test_malformed_settings_name_the_key_and_the_fix(document: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_settings(document)
    assert expected in str(raised.value)
    assert "\n" not in str(raised.value)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "regions: [us-east-1\nwarehouse: x\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML at line \d"):
        load_settings(path, environ={})


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml", environ={})
    with pytest.raises(ConfigError, match="is a folder; point at the YAML file inside it"):
        load_settings(tmp_path, environ={})


def test_a_config_file_that_is_not_utf8_is_named_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes("# équipe ML\nregions: [us-east-1]\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(byte 0xe9 at offset 2\); save it as UTF-8"):
        load_settings(path, environ={})


def test_unknown_region_is_rejected_before_any_call(aws: LocalSageMaker) -> None:
    with pytest.raises(ConfigError, match=r"Unknown AWS region 'mars-north-1'.*fix the region name"):
        resolve_targets(Settings(regions=("mars-north-1",)))


def test_missing_region_says_how_to_set_one(aws: LocalSageMaker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(ConfigError, match="No AWS region is configured; set AWS_DEFAULT_REGION"):
        resolve_targets(Settings())


def test_missing_credentials_say_how_to_provide_them(aws: LocalSageMaker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ConfigError, match="No AWS credentials were found; set AWS_PROFILE"):
        resolve_targets(Settings(regions=("us-east-1",)))


def test_cli_prints_one_line_and_exits_2_on_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "accounts:\n  - name: prod\n    role_arn: not-an-arn\n")
    assert main(["run", "--config", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.startswith("error: accounts[0].role_arn 'not-an-arn' is not an IAM role ARN")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_reports_missing_credentials_in_one_line(
    aws: LocalSageMaker, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert main(["run", "--warehouse", str(tmp_path / "w")]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.startswith("error: No AWS credentials were found") and err.count("\n") == 1


def test_cli_rejects_a_bad_price_file_before_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prices = tmp_path / "rates.csv"
    prices.write_text("region,instance_type,usd_per_hour\nus-east-1,ml.g5.xlarge,1.2\nus-east-1,ml.g5.2xlarge,n/a\n")
    assert main(["run", "--prices", str(prices), "--warehouse", str(tmp_path / "w")]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err == f"error: {prices} line 3: usd_per_hour 'n/a' is not a number; write dollars per hour, e.g. 1.408.\n"


def test_costs_settings_are_validated() -> None:
    settings = parse_settings({"costs": {"allocation_tags": ["team", "project"], "storage_usd_per_gb_month": 0.154}})
    assert settings.costs.allocation_tags == ("team", "project") and settings.costs.storage_usd_per_gb_month == 0.154
    with pytest.raises(ConfigError, match=r"costs\.allocation_tags must be a non-empty list"):
        parse_settings({"costs": {"allocation_tags": "team"}})
    with pytest.raises(ConfigError, match=r"costs\.storage_usd_per_gb_month must be a number"):
        parse_settings({"costs": {"storage_usd_per_gb_month": -1}})


def test_schedule_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"schedule\.cron 'nightly' is not a 5-field cron expression"):
        parse_settings({"schedule": {"cron": "nightly"}})
    with pytest.raises(ConfigError, match=r"schedule\.timezone 'Mars/Olympus' is not an IANA time zone"):
        parse_settings({"schedule": {"timezone": "Mars/Olympus"}})


def test_yaml_nan_and_infinity_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "extraction:\n  max_requests_per_second: .nan\ncosts:\n  storage_usd_per_gb_month: .inf\n")
    with pytest.raises(ConfigError, match=r"max_requests_per_second must be a number from 0\.01 to 10000; got nan"):
        load_settings(path, environ={})


def test_a_rate_below_one_request_per_second_still_lets_requests_through() -> None:
    limiter = RateLimiter(rate=0.5)
    started = time.monotonic()
    limiter.acquire()  # the first request goes at once ...
    limiter.acquire()  # ... the next one two seconds later
    assert 1.5 < time.monotonic() - started < 4


def test_the_warehouse_must_be_a_directory_or_creatable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("x")
    assert main(["run", "--warehouse", str(a_file)]) == EXIT_CONFIG
    expected = f"error: The warehouse {a_file} is a file, not a directory; point warehouse elsewhere.\n"
    assert capsys.readouterr().err == expected
    assert main(["query", "select 1", "--warehouse", str(a_file / "below")]) == EXIT_CONFIG
    assert "cannot be created" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="is a file, not a directory"):  # what Dagster's steps use
        WarehouseConfig(warehouse=str(a_file)).settings()
    # /proc passes root's permission checks but takes no folder: `check` says so, and so does `run` in one line.
    config = write(tmp_path, "warehouse: /proc/no-warehouse\nregions: [us-east-1]\n")
    assert main(["check", "--config", str(config)]) == EXIT_CONFIG
    assert "cannot be created: /proc is not a writable directory" in capsys.readouterr().err
    assert main(["run", "--warehouse", "/proc/no-warehouse"]) == EXIT_CONFIG
    assert capsys.readouterr().err.count("\n") == 1
    # A default ./warehouse that is a file does not matter to a run pointed elsewhere.
    assert load_settings(None, environ={"SMW_WAREHOUSE": str(a_file)}).warehouse == a_file


def test_an_unknown_aws_profile_is_one_sentence(
    aws: LocalSageMaker, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "nope")
    assert main(["run", "--warehouse", str(tmp_path / "w")]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.startswith("error: The AWS profile 'nope' is not configured; fix AWS_PROFILE") and err.count("\n") == 1
    assert main(["check"]) == EXIT_CONFIG


def test_an_account_id_that_is_not_twelve_digits_never_becomes_a_path(
    aws: LocalSageMaker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """STS's answer names a folder in the raw layer; anything but 12 digits is refused before any write."""
    aws.set_faults(caller_account="../../../x")
    warehouse = tmp_path / "inside" / "warehouse"
    assert main(["run", "--warehouse", str(warehouse)]) == EXIT_CONFIG
    assert "STS returned '../../../x' as the account id, not 12 digits" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.parquet"))
