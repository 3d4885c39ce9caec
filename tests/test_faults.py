"""The fault suite: what a run promises under throttling storms, concurrent runs, damaged files, crashes
and signals, over the local endpoint and real processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from pipelines.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, main
from pipelines.config import Settings
from pipelines.demo.endpoint import LocalSageMaker
from pipelines.demo.fleet import FleetSpec, generate_fleet
from pipelines.extraction.planning import describe_needed
from pipelines.extraction.run import extract
from pipelines.normalization.flatten import normalized_tables
from pipelines.storage.layout import DATABASE
from pipelines.storage.raw import RAW_ERRORS, RAW_JOBS, parquet_files
from pipelines.summary import print_summary
from pipelines.warehouse.build import stage_normalized_tables
from pipelines.warehouse.publication import PublicationRefused, connect_reader, publish
from tests.conftest import FLEET_END, REGIONS, SMALL_FLEET, copy_of, published_rows, renamed

STORM_FLEET = FleetSpec(jobs=200, seed=21, end=FLEET_END)


def published_arns(warehouse: Path) -> list[str]:
    with connect_reader(warehouse / DATABASE) as connection:
        return [row[0] for row in connection.execute("select training_job_arn from jobs").fetchall()]


def write_config(tmp_path: Path, warehouse: Path, extraction: str = "") -> str:
    config = tmp_path / "config.yaml"
    config.write_text(f"warehouse: {warehouse}\nregions: [us-east-1, eu-west-1]\n{extraction}")
    return str(config)


def test_a_throttling_storm_never_ends_in_false_success_and_the_next_run_completes(
    aws: LocalSageMaker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """200 jobs, 60% of calls throttled and 5% HTTP 500. botocore's default retry quota would run dry
    after ~100 retries per client; the run either publishes every job (exit 0) or exits 1 naming how
    many are missing, with every fetched job published. The next, calm run publishes all 200."""
    aws.load_fleet(STORM_FLEET)
    expected = {record["TrainingJobArn"] for record in generate_fleet(STORM_FLEET)}
    warehouse = tmp_path / "warehouse"
    # Short backoff caps keep the test quick; the retry decisions are botocore's.
    config = write_config(
        tmp_path, warehouse, "extraction: {mode: describe, max_workers: 16, max_backoff_seconds: 0.05}\n"
    )
    aws.set_faults(throttle_rate=0.6, error_rate=0.05, seed=5)

    code = main(["run", "--config", config])
    err = capsys.readouterr().err
    stats = aws.stats()
    assert stats["injected"]["ThrottlingException"] > 300
    published = published_arns(warehouse)
    assert len(published) == len(set(published)) and set(published) <= expected
    if code == EXIT_OK:
        assert set(published) == expected
    else:
        assert code == EXIT_FAILED
        missing = len(expected) - len(published)
        assert missing > 0
        # One line per account/region partition, each naming its count.
        named = re.findall(r"every_job_fetched failed: (\d+) jobs could not be fetched", err)
        assert named and sum(map(int, named)) >= missing, err
    # Far more retries happened than botocore's default quota (500 units, 5 per throttle) allows a client.
    assert sum(stats["calls"].values()) - 2 * len(expected) > 2 * 100

    aws.set_faults()
    assert main(["run", "--config", config]) == EXIT_OK
    assert sorted(published_arns(warehouse)) == sorted(expected)


SMALL = FleetSpec(jobs=120, seed=23, end=FLEET_END)


@pytest.fixture
def published_small(demo_warehouse: Path, aws: LocalSageMaker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of a warehouse that has published SMALL_FLEET once, the endpoint serving that fleet,
    and the CLI's regions set."""
    warehouse = copy_of(demo_warehouse, tmp_path / "warehouse")
    aws.load_fleet(SMALL_FLEET)
    monkeypatch.setenv("SMW_REGIONS", ",".join(REGIONS))
    return warehouse


def run_args(warehouse: Path, *extra: str) -> list[str]:
    return ["run", "--warehouse", str(warehouse), *extra]


def cli(warehouse: Path, *extra: str) -> list[str]:
    """The run as its own process."""
    return [sys.executable, "-m", "pipelines.cli", *run_args(warehouse, *extra)]


def run_environment(aws: LocalSageMaker) -> dict[str, str]:
    return {**os.environ, "SMW_REGIONS": ",".join(REGIONS)}


def start_until(command: list[str], environment: dict[str, str], marker: str) -> subprocess.Popen[str]:
    """Start a run and return once it has logged a line containing ``marker`` (its stderr still open)."""
    process = subprocess.Popen(command, env=environment, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if marker in line:
            return process
    process.wait()
    raise AssertionError(f"the run ended (exit {process.returncode}) before logging {marker!r}")


def raw_counts(warehouse: Path) -> tuple[int, int]:
    """(rows, distinct jobs) in the raw layer."""
    files = parquet_files(warehouse, RAW_JOBS)
    with duckdb.connect() as connection:
        rows, jobs = connection.execute(
            "select count(*), count(distinct training_job_arn) from read_parquet(?)", [files]
        ).fetchone()
    return int(rows), int(jobs)


def test_two_concurrent_runs_store_each_job_once_and_both_succeed(aws: LocalSageMaker, tmp_path: Path) -> None:
    aws.load_fleet(SMALL)
    aws.set_faults(latency_ms=5)  # long enough for the two runs to overlap
    warehouse = tmp_path / "warehouse"
    environment = run_environment(aws)
    environment.pop("SMW_LOG_LEVEL", None)
    runs = [
        subprocess.Popen(cli(warehouse), env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outcomes = [(run.wait(timeout=300), *run.communicate()) for run in runs]
    for code, out, err in outcomes:
        assert code == EXIT_OK, err
        assert "Traceback" not in err
        # Output to pipes gets Dagster's log lines, not the progress bars a terminal gets (tests/test_progress.py).
        assert " - dagster - INFO - " in err and "━" not in err + out
    assert any("Another run holds" in err and "waiting for it to finish" in err for _, _, err in outcomes)
    rows, jobs = raw_counts(warehouse)
    assert rows == jobs == SMALL.jobs
    assert len(published_arns(warehouse)) == SMALL.jobs


def test_no_wait_exits_at_once_naming_the_holder(aws: LocalSageMaker, tmp_path: Path) -> None:
    from pipelines.storage.locks import exclusive_warehouse

    warehouse = tmp_path / "warehouse"
    holder = (
        "import pathlib, sys, time\n"
        "from pipelines.storage.locks import exclusive_warehouse\n"
        "with exclusive_warehouse(pathlib.Path(sys.argv[1])):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(60)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", holder, str(warehouse)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "held"
        started = time.monotonic()
        result = subprocess.run(cli(warehouse, "--no-wait"), env=run_environment(aws), capture_output=True, text=True)
        assert result.returncode == EXIT_FAILED and time.monotonic() - started < 30
        assert re.search(
            rf"another run holds {re.escape(str(warehouse))} \(pid {process.pid} since [0-9: -]+UTC\)", result.stderr
        )
    finally:
        process.kill()
        process.wait()
    with exclusive_warehouse(warehouse, wait=False):  # the kernel released the dead holder's lock
        pass


def test_a_truncated_raw_file_is_quarantined_and_its_jobs_fetched_again(published_small: Path) -> None:
    warehouse = published_small
    damaged = Path(next(f for f in parquet_files(warehouse, RAW_JOBS) if "/us-east-1/" in f))
    held = pq.read_metadata(damaged).num_rows
    damaged.write_bytes(damaged.read_bytes()[:1000])  # truncated: no footer

    assert main(["run", "--warehouse", str(warehouse)]) == EXIT_OK
    assert not damaged.exists() and (warehouse / "quarantine" / damaged.relative_to(warehouse)).exists()
    assert sorted(published_arns(warehouse)) == sorted(r["TrainingJobArn"] for r in generate_fleet(SMALL_FLEET))
    assert raw_counts(warehouse) == (SMALL_FLEET.jobs, SMALL_FLEET.jobs)
    with duckdb.connect() as connection:
        errors = connection.execute(
            "select count(*) from read_parquet(?) where operation = 'ReadRawFile'",
            [parquet_files(warehouse, RAW_ERRORS)],
        ).fetchall()[0][0]
    assert errors == 1 and held > 0


def test_a_deleted_raw_file_never_shrinks_the_published_warehouse(
    aws: LocalSageMaker, tmp_path: Path, capsys: pytest.CaptureFixture[str], published_small: Path
) -> None:
    warehouse = published_small
    everything = sorted(published_arns(warehouse))
    deleted = Path(next(f for f in parquet_files(warehouse, RAW_JOBS) if "/eu-west-1/" in f))
    deleted.unlink()  # what anyone would do with a file that breaks every run

    # The region is down tonight, so its lost jobs cannot be fetched: the build refuses to publish
    # fewer jobs, and says so.
    aws.set_faults(fail_regions=["eu-west-1"])
    capsys.readouterr()
    quick = write_config(tmp_path, warehouse, "extraction: {max_attempts: 2}\n")
    assert main(["run", "--config", quick]) == EXIT_FAILED
    assert "no_published_job_lost" in capsys.readouterr().err
    assert sorted(published_arns(warehouse)) == everything

    aws.set_faults()
    assert main(["run", "--warehouse", str(warehouse)]) == EXIT_OK
    assert sorted(published_arns(warehouse)) == everything
    assert raw_counts(warehouse)[1] == SMALL_FLEET.jobs


def test_a_failure_during_publication_leaves_the_previous_version_whole(
    aws: LocalSageMaker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, published_small: Path
) -> None:
    from pipelines.storage import versions

    warehouse = published_small
    aws.upsert_jobs([renamed(record, f"late-{i}") for i, record in enumerate(list(generate_fleet(SMALL_FLEET))[-3:])])

    def failing_swap(link: Path, target: Path) -> None:
        raise OSError("injected: the disk went away")

    working_swap = versions.swap_symlink
    monkeypatch.setattr(versions, "swap_symlink", failing_swap)
    assert main(["run", "--warehouse", str(warehouse)]) == EXIT_FAILED
    monkeypatch.setattr(versions, "swap_symlink", working_swap)
    assert len(published_arns(warehouse)) == SMALL_FLEET.jobs
    assert published_rows(warehouse, "jobs") == SMALL_FLEET.jobs
    assert main(["run", "--warehouse", str(warehouse)]) == EXIT_OK
    assert len(published_arns(warehouse)) == SMALL_FLEET.jobs + 3
    assert published_rows(warehouse, "jobs") == SMALL_FLEET.jobs + 3


def test_no_credential_reaches_a_log_or_the_disk_at_debug(aws: LocalSageMaker, tmp_path: Path) -> None:
    """Dagster capturing botocore at DEBUG, the console at DEBUG, a session token set: the token, the
    secret key and request signatures appear in no event log, captured log, output or warehouse file."""
    aws.load_fleet(FleetSpec(jobs=12, seed=3, end=FLEET_END))
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "python_logs:\n  python_log_level: DEBUG\n  managed_python_loggers: [botocore, boto3, urllib3]\n"
    )
    token, secret = "SessionTokenMarker8d1f0b", "SecretKeyMarker3e9a77"
    environment = {
        **run_environment(aws),
        "AWS_SESSION_TOKEN": token,
        "AWS_SECRET_ACCESS_KEY": secret,
        "DAGSTER_HOME": str(home),
        "SMW_LOG_LEVEL": "DEBUG",
    }
    warehouse = tmp_path / "warehouse"
    result = subprocess.run(cli(warehouse), env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == EXIT_OK, result.stderr
    assert "DEBUG" in result.stderr  # the run did log at DEBUG
    written = [path for path in [*home.rglob("*"), *warehouse.rglob("*")] if path.is_file()]
    assert any(path.suffix == ".err" for path in written)  # Dagster's captured step logs exist
    for text in (result.stdout, result.stderr, *(path.read_bytes().decode("latin-1") for path in written)):
        assert token not in text and secret not in text
        assert "Signature=" not in text and "x-amz-security-token" not in text.lower()


def test_a_signal_stops_a_run_within_seconds_and_the_next_run_converges(
    aws: LocalSageMaker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mid-storm, with botocore's full 20-second backoffs: SIGTERM (what a scheduler or container runtime
    sends) and then SIGINT (Ctrl-C) each stop a run within seconds (it used to sleep its retries out for a
    minute or more); nothing is published, and the next, calm run completes."""
    aws.load_fleet(SMALL)
    aws.set_faults(throttle_rate=0.5, seed=9)
    warehouse = tmp_path / "warehouse"
    for stop in (signal.SIGTERM, signal.SIGINT):
        aws.reset_stats()
        run = subprocess.Popen(cli(warehouse), env=run_environment(aws), stderr=subprocess.PIPE, text=True)
        while not aws.stats()["injected"].get("ThrottlingException"):  # in the storm, waiting out a backoff
            assert run.poll() is None
            time.sleep(0.1)
        time.sleep(0.5)
        sent = time.monotonic()
        run.send_signal(stop)
        _, err = run.communicate(timeout=120)
        assert time.monotonic() - sent < 15, stop
        assert run.returncode == EXIT_INTERRUPTED, (stop, err)
        assert "stopped by a signal" in err and "Traceback" not in err
        assert not (warehouse / DATABASE).exists()  # nothing was published

    aws.set_faults()
    monkeypatch.setenv("SMW_REGIONS", ",".join(REGIONS))
    assert main(run_args(warehouse)) == EXIT_OK  # the next run (in this process: its start-up is not under test)
    rows, jobs = raw_counts(warehouse)
    assert rows == jobs == SMALL.jobs
    assert len(published_arns(warehouse)) == SMALL.jobs


def test_sigkill_at_any_point_then_a_clean_run_converges(
    aws: LocalSageMaker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL while fetching (between two batch files) and while publishing; each time the next run
    completes with every job once, in raw and published."""
    aws.load_fleet(SMALL)
    aws.set_faults(latency_ms=3)
    warehouse = tmp_path / "warehouse"
    config = ["--config", write_config(tmp_path, warehouse, "extraction: {batch_size: 40}\n")]
    # What the run logs just before each phase: the first batch file is written (the kill lands between
    # two batch files); the models are built (the kill lands in publication, with a staged build behind).
    for marker in ("fetched", "built"):
        run = start_until(cli(warehouse, *config), run_environment(aws), marker)
        run.kill()
        run.communicate()
    aws.set_faults()
    monkeypatch.setenv("SMW_REGIONS", ",".join(REGIONS))
    assert main(run_args(warehouse, *config)) == EXIT_OK  # the next run, in this process
    rows, jobs = raw_counts(warehouse)
    assert jobs == SMALL.jobs and rows >= jobs  # a job fetched again after a kill may be stored twice ...
    published = published_arns(warehouse)
    assert len(published) == len(set(published)) == SMALL.jobs  # ... but is published once
    assert not list(warehouse.rglob("*.tmp-*"))


def test_a_job_that_cannot_be_fetched_makes_the_run_exit_1_naming_it(
    aws: LocalSageMaker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.load_fleet(SMALL)
    records = list(generate_fleet(SMALL))
    # A first load reads with Search; a job naming no instances is then completed with Describe, which fails.
    broken = next(r for r in records if describe_needed(r) is not None)
    aws.set_faults(fail_describe=[broken["TrainingJobName"]])
    warehouse = tmp_path / "warehouse"
    config = write_config(tmp_path, warehouse, "extraction: {max_attempts: 2}\n")
    assert main(["run", "--config", config]) == EXIT_FAILED
    err = capsys.readouterr().err
    region = broken["TrainingJobArn"].split(":")[3]
    named = f"1 jobs could not be fetched after 2 attempts per call (default/{region}: 1 (InternalFailure x1))"
    assert f"every_job_fetched failed: {named}" in err
    assert sorted(published_arns(warehouse)) == sorted(r["TrainingJobArn"] for r in records if r is not broken)

    aws.set_faults()
    assert main(["run", "--config", config]) == EXIT_OK
    assert len(published_arns(warehouse)) == SMALL.jobs
    capsys.readouterr()
    print_summary(warehouse)  # what `demo` prints: it counts the errors recorded on the way
    assert "extraction errors recorded so far: 2" in capsys.readouterr().out  # two rounds of the first run


def test_a_job_deleted_in_sagemaker_may_leave_but_no_other_job_may(aws: LocalSageMaker, published_small: Path) -> None:
    """DeleteTrainingJob exists: a published job whose raw record is lost, and that SageMaker no longer
    has, is confirmed gone (not retried, not a failure) and leaves the warehouse; the others stay."""
    import boto3

    warehouse = published_small
    damaged = Path(next(f for f in parquet_files(warehouse, RAW_JOBS) if "/eu-west-1/" in f))
    held = pq.read_table(damaged, columns=["training_job_name", "training_job_status"]).to_pylist()
    deleted = next(r["training_job_name"] for r in held if r["training_job_status"] == "Completed")
    boto3.client("sagemaker", region_name="eu-west-1").delete_training_job(TrainingJobName=deleted)
    damaged.unlink()

    assert main(["run", "--warehouse", str(warehouse)]) == EXIT_OK
    published = published_arns(warehouse)
    assert len(published) == SMALL_FLEET.jobs - 1 and not any(arn.endswith(f"/{deleted}") for arn in published)
    aws.reset_stats()
    assert main(["run", "--warehouse", str(warehouse)]) == EXIT_OK  # not retried, not a failure, next night
    assert aws.stats()["calls"].get("DescribeTrainingJob", 0) < 30  # only the jobs that can still change


def test_publication_refuses_a_build_that_drops_a_published_job_or_follows_a_stop(
    aws: LocalSageMaker, settings: Settings
) -> None:
    """Checked again at the moment of publication, under the build lock: another run may have published
    since this build's checks, and a stop signal may have arrived."""
    from pipelines import interrupts

    aws.load_fleet(SMALL)
    extract(settings)
    names = [t.name for t in normalized_tables()]
    publish(stage_normalized_tables(settings.warehouse, "v1")[0], names)
    current = os.readlink(settings.warehouse / "current")
    Path(parquet_files(settings.warehouse, RAW_JOBS)[0]).unlink()
    with pytest.raises(PublicationRefused, match="published jobs are missing from the raw layer"):
        publish(stage_normalized_tables(settings.warehouse, "v2")[0], names)
    assert os.readlink(settings.warehouse / "current") == current

    extract(settings)  # fetches the lost jobs again by name
    interrupts._stopping.set()
    try:
        with pytest.raises(PublicationRefused, match="stopped by a signal"):
            publish(stage_normalized_tables(settings.warehouse, "v3")[0], names)
    finally:
        interrupts._stopping.clear()
    assert os.readlink(settings.warehouse / "current") == current
    publish(stage_normalized_tables(settings.warehouse, "v4")[0], names)
    assert len(published_arns(settings.warehouse)) == SMALL.jobs


def test_the_writer_lock_excludes_other_threads_of_the_same_process(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from pipelines.storage.locks import WarehouseBusy, exclusive_warehouse, holds_warehouse

    with exclusive_warehouse(tmp_path), exclusive_warehouse(tmp_path):  # re-entrant on its own thread
        assert holds_warehouse(tmp_path)
        with ThreadPoolExecutor(1) as other:
            assert not other.submit(holds_warehouse, tmp_path).result()

            def try_to_write() -> None:
                with exclusive_warehouse(tmp_path, wait=False):
                    pass

            with pytest.raises(WarehouseBusy):
                other.submit(try_to_write).result()
