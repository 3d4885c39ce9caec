"""A warehouse on S3 (moto's server, over HTTP, through the standard AWS settings): runs from different empty
folders share it incrementally, readers find one complete version, and two writers cannot both publish."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import duckdb
import pyarrow.parquet as pq
import pytest

from pipelines.cli import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, main
from pipelines.config import ORIGIN_FILE, ConfigError, warehouse_location
from pipelines.demo.endpoint import LocalSageMaker
from pipelines.storage import remote
from pipelines.storage.layout import VERSIONS
from pipelines.storage.raw import RAW_ERRORS, parquet_files, write_rows
from pipelines.storage.versions import current_version, make_current
from pipelines.warehouse.compaction import compact_raw
from tests.conftest import REGIONS, SMALL_FLEET, copy_of


@pytest.fixture
def bucket(aws: LocalSageMaker, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new, empty bucket on the local endpoint, and the regions of the demo fleet."""
    name = f"smw-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    monkeypatch.setenv("SMW_REGIONS", ",".join(REGIONS))
    return name


def scratch(monkeypatch: pytest.MonkeyPatch, folder: Path) -> Path:
    monkeypatch.setenv("SMW_SCRATCH", str(folder))
    return folder


def pointer(bucket: str, prefix: str = "wh") -> dict:
    body = boto3.client("s3").get_object(Bucket=bucket, Key=f"{prefix}/current.json")["Body"].read()
    return json.loads(body)


def jobs_published(uri: str, fixed_key: bool = False) -> int:
    """The jobs of the published version, read as a BI tool would: DuckDB over the Parquet objects on S3,
    found through the pointer, or (``fixed_key``) at the fixed key that Athena and Trino tables use."""
    from fsspec.implementations.arrow import ArrowFSWrapper
    from pyarrow import fs

    with duckdb.connect() as connection:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        s3, _ = fs.FileSystem.from_uri(f"s3://{bucket}")  # the standard AWS settings, AWS_ENDPOINT_URL included
        connection.register_filesystem(ArrowFSWrapper(s3))
        jobs = f"{uri}/parquet/jobs/" if fixed_key else pointer(bucket, prefix)["tables"]["jobs"]
        jobs += "*.parquet"  # a table is a folder of Parquet files
        return connection.execute("select count(*) from read_parquet(?)", [jobs]).fetchall()[0][0]


def test_runs_from_empty_folders_share_one_s3_warehouse_and_a_stopped_publication_changes_nothing(
    aws: LocalSageMaker,
    bucket: str,
    fleet: list[dict],
    demo_warehouse: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Nights on one S3 warehouse: a host that runs it every night, and folders that have never seen it."""
    uri = f"s3://{bucket}/wh"
    scratch(monkeypatch, tmp_path / "first")
    assert main(["run", "--warehouse", uri]) == EXIT_OK
    assert jobs_published(uri) == SMALL_FLEET.jobs
    published = pointer(bucket)

    # Every object of the next version is uploaded; the process dies before the one write that publishes.
    def dies(*args: object, **kwargs: object) -> None:
        raise remote.RemoteWarehouseError("injected: the machine died before replacing the pointer")

    replace_pointer = remote.WorkingCopy._replace_pointer
    monkeypatch.setattr(remote.WorkingCopy, "_replace_pointer", dies)
    assert main(["run", "--warehouse", uri]) == EXIT_CONFIG  # from the first run's folder, as a nightly host
    assert pointer(bucket) == published
    assert len({key.split("/")[2] for key in _keys(bucket, "wh/versions/")}) == 2  # the orphan is there
    assert jobs_published(uri) == SMALL_FLEET.jobs
    monkeypatch.setattr(remote.WorkingCopy, "_replace_pointer", replace_pointer)

    # The next run publishes, from another empty folder.
    aws.reset_stats()
    capsys.readouterr()
    scratch(monkeypatch, tmp_path / "second")
    assert main(["run", "--warehouse", uri]) == EXIT_OK
    from_s3 = aws.stats()["calls"]
    assert f"Published {SMALL_FLEET.jobs:,} jobs to {uri}: 0 new and 0 changed" in capsys.readouterr().out
    now = pointer(bucket)["version"]
    assert now != published["version"]

    # It made the calls a second run on a local warehouse makes: only what can still change is read again.
    aws.reset_stats()
    local = copy_of(demo_warehouse, tmp_path / "local")
    assert main(["run", "--warehouse", str(local)]) == EXIT_OK
    assert from_s3 == aws.stats()["calls"]
    assert "Search" not in from_s3 and from_s3.get("DescribeTrainingJob", 0) < SMALL_FLEET.jobs / 10

    # A reader in a third empty folder queries the published version. Two versions are kept on S3: the
    # orphan went with the versions no reader needs.
    capsys.readouterr()
    scratch(monkeypatch, tmp_path / "reader")
    assert main(["query", "--warehouse", uri, "select count(*) as jobs from jobs"]) == EXIT_OK
    assert f"{SMALL_FLEET.jobs}" in capsys.readouterr().out
    assert main(["ddl", "--dialect", "athena", "--warehouse", uri]) == EXIT_OK
    assert f"LOCATION '{uri}/parquet/jobs/'" in capsys.readouterr().out
    assert jobs_published(uri, fixed_key=True) == SMALL_FLEET.jobs
    assert {key.split("/")[2] for key in _keys(bucket, "wh/versions/")} == {published["version"], now}
    assert not _keys(bucket, "wh/locks/"), "every lease was released"


def test_dagster_steps_each_keep_the_s3_warehouse_in_step(
    aws: LocalSageMaker, bucket: str, fleet: list[dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a Dagster deployment runs it: no run-wide lock, every step takes its own lease, pulls and pushes."""
    from pipelines.cli import _materialize_all
    from pipelines.definitions import build_resources

    uri = f"s3://{bucket}/wh"
    scratch(monkeypatch, tmp_path / "container")
    result = _materialize_all(build_resources(warehouse=uri), full_refresh=False)
    assert result.success
    assert jobs_published(uri) == SMALL_FLEET.jobs
    assert _keys(bucket, "wh/report/index.html") and _keys(bucket, "wh/raw/")
    assert not _keys(bucket, "wh/locks/")


def _keys(bucket: str, prefix: str) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for item in listed.get("Contents", [])]


def _fake_version(copy: remote.WorkingCopy, run_id: str) -> None:
    """A new local version, as a build would publish into the working copy."""
    folder = copy.warehouse / VERSIONS / run_id
    (folder / "parquet" / "jobs").mkdir(parents=True)
    (folder / "parquet" / "jobs" / "data.parquet").write_bytes(b"not read by this test")
    (folder / "sagemaker.duckdb").write_bytes(b"")
    make_current(copy.warehouse, run_id)


def test_two_writers_cannot_both_publish(bucket: str, tmp_path: Path) -> None:
    one = remote.WorkingCopy(tmp_path / "one", remote.Remote(bucket, "wh"))
    two = remote.WorkingCopy(tmp_path / "two", remote.Remote(bucket, "wh"))
    for copy in (one, two):
        copy.warehouse.mkdir()
        copy.pull(make_current=True)
    _fake_version(one, "run-one")
    _fake_version(two, "run-two")
    one.push()
    with pytest.raises(remote.PublicationConflict, match="another writer published"):
        two.push()
    assert pointer(bucket)["version"] == "run-one"

    two.pull(make_current=True)  # catching up makes the other writer's version current here too
    assert current_version(two.warehouse) == "run-one"


def test_only_the_session_that_published_moves_the_pointer_and_readers_never_move_current(
    bucket: str, tmp_path: Path
) -> None:
    warehouse = tmp_path / "shared"  # one working copy, used by several processes of one host
    warehouse.mkdir()
    (warehouse / ".remote").write_text(f"s3://{bucket}/wh\n")
    with remote.session(warehouse, "build", publishes=True):
        _fake_version(remote.working_copy(warehouse), "run-one")  # type: ignore[arg-type]
    assert pointer(bucket)["version"] == "run-one"

    with remote.session(warehouse, "build", publishes=True):
        _fake_version(remote.working_copy(warehouse), "run-two")  # type: ignore[arg-type]
        # Meanwhile, on the same copy: a reader, and an extraction step that ends before the build does.
        assert remote.published_database(warehouse) == warehouse / VERSIONS / "run-one" / "sagemaker.duckdb"
        with remote.session(warehouse, "extract-123456789012-us-east-1", publishes=False):
            pass
        assert current_version(warehouse) == "run-two"
        assert pointer(bucket)["version"] == "run-one", "an extraction step publishes nothing"
    assert pointer(bucket)["version"] == "run-two", "the build published its own version"


def test_a_copy_from_another_history_drops_its_published_version(bucket: str, tmp_path: Path) -> None:
    """A working copy left by a demo (its S3 gone with it), pointed at a bucket where nothing is published."""
    copy = remote.WorkingCopy(tmp_path / "left-over", remote.Remote(bucket, "wh"))
    copy.warehouse.mkdir()
    _fake_version(copy, "demo-run")
    copy.pull(make_current=False)  # an extraction step leaves it alone
    assert current_version(copy.warehouse) == "demo-run"
    copy.pull(make_current=True)  # the build takes S3 as the truth: nothing is published there
    assert current_version(copy.warehouse) is None
    assert not (copy.warehouse / "sagemaker.duckdb").exists() and not (copy.warehouse / VERSIONS).exists()


def test_state_goes_up_after_the_data_it_vouches_for() -> None:
    relatives = [
        "raw/state/123456789012/us-east-1/search_watermark.json",
        "raw/training_jobs/123456789012/us-east-1/run-2.parquet",
        "report/index.html",
        "raw/training_jobs/123456789012/us-east-1/run-1.parquet",
    ]
    assert sorted(relatives, key=remote._upload_order)[-1].startswith("raw/state/")


def test_files_removed_by_one_copy_are_removed_from_the_others(bucket: str, tmp_path: Path) -> None:
    one = remote.WorkingCopy(tmp_path / "one", remote.Remote(bucket, "wh"))
    two = remote.WorkingCopy(tmp_path / "two", remote.Remote(bucket, "wh"))
    for copy in (one, two):
        copy.warehouse.mkdir()
    kept, moved = one.warehouse / "raw" / "kept.parquet", one.warehouse / "raw" / "moved.parquet"
    moved.parent.mkdir()
    kept.write_text("kept")
    moved.write_text("moved")
    (one.warehouse / "raw" / "half.parquet.tmp-1").write_text("a file still being written stays local")
    one.push()
    two.pull(make_current=False)
    assert sorted(p.name for p in (two.warehouse / "raw").iterdir()) == ["kept.parquet", "moved.parquet"]

    # A file merely missing from a copy (a cleaned cache) is fetched again, never removed from S3.
    (two.warehouse / "raw" / "kept.parquet").unlink()
    two.push()
    assert _keys(bucket, "wh/raw/kept.parquet")
    two.pull(make_current=False)
    assert (two.warehouse / "raw" / "kept.parquet").read_text() == "kept"

    (one.warehouse / "quarantine" / "raw").mkdir(parents=True)
    moved.rename(one.warehouse / "quarantine" / "raw" / "moved.parquet")  # as quarantining an unreadable file does
    kept.write_text("kept, rewritten")
    one.push()
    (two.warehouse / "raw" / "only-here.parquet").write_text("fetched here, not pushed yet")
    two.pull(make_current=False)
    assert sorted(p.name for p in (two.warehouse / "raw").iterdir()) == ["kept.parquet", "only-here.parquet"]
    assert (two.warehouse / "raw" / "kept.parquet").read_text() == "kept, rewritten"
    assert (two.warehouse / "quarantine" / "raw" / "moved.parquet").read_text() == "moved"


def test_files_a_compaction_merged_leave_s3_after_the_merged_file_arrives(bucket: str, tmp_path: Path) -> None:
    one = remote.WorkingCopy(tmp_path / "one", remote.Remote(bucket, "wh"))
    two = remote.WorkingCopy(tmp_path / "two", remote.Remote(bucket, "wh"))
    for night in range(3):  # three nights' error records: error files merge without a publication
        error = {
            **dict(account_id="123456789012", region="us-east-1", operation="DescribeTrainingJob"),
            **dict(training_job_name=f"job-{night}", error_code="InternalFailure", error_message="a 5xx"),
            **dict(occurred_at=datetime(2026, 11, 1, night, tzinfo=UTC), run_id=f"night-{night}"),
        }
        write_rows(one.warehouse, RAW_ERRORS, [error], "123456789012", "us-east-1", f"20261101T0{night}0000Z-e")
    one.push()
    two.pull(make_current=False)
    raw_errors = "wh/raw/extraction_errors/"
    assert len(_keys(bucket, raw_errors)) == 3 and len(parquet_files(two.warehouse, RAW_ERRORS)) == 3

    [merged] = compact_raw(one.warehouse)
    one.pull(make_current=False)  # not pushed yet: the merged files are not fetched back
    assert [Path(f).name for f in parquet_files(one.warehouse, RAW_ERRORS)] == [merged.path.name]
    assert len(list(merged.path.parent.iterdir())) == 1
    one.push()
    assert [key.rsplit("/", 1)[1] for key in _keys(bucket, raw_errors)] == [merged.path.name]
    two.pull(make_current=False)
    [only] = parquet_files(two.warehouse, RAW_ERRORS)
    assert Path(only).name == merged.path.name and len(list(Path(only).parent.iterdir())) == 1
    assert sorted(pq.read_table(only).column("training_job_name").to_pylist()) == ["job-0", "job-1", "job-2"]


def _error_rows(night: int) -> list[dict]:
    return [
        {
            **dict(account_id="123456789012", region="us-east-1", operation="DescribeTrainingJob"),
            **dict(training_job_name=f"job-{night}", error_code="InternalFailure", error_message="a 5xx"),
            **dict(occurred_at=datetime(2026, 11, 1, night, tzinfo=UTC), run_id=f"night-{night}"),
        }
    ]


def _store_errors(copy: remote.WorkingCopy, *nights: int) -> None:
    """One raw error file per night, as an extraction of that night leaves it."""
    for night in nights:
        write_rows(copy.warehouse, RAW_ERRORS, _error_rows(night), "123456789012", "us-east-1", f"2026110{night}-e")


def _error_names(warehouse: Path) -> list[str]:
    files = parquet_files(warehouse, RAW_ERRORS)
    return sorted(name for file in files for name in pq.read_table(file).column("training_job_name").to_pylist())


def _copies(bucket: str, tmp_path: Path, *names: str) -> list[remote.WorkingCopy]:
    """Working copies of s3://bucket/wh, marked as such (as a session leaves them)."""
    copies = [remote.WorkingCopy(tmp_path / name, remote.Remote(bucket, "wh")) for name in names]
    for copy in copies:
        copy.warehouse.mkdir(parents=True, exist_ok=True)
        (copy.warehouse / ORIGIN_FILE).write_text(f"s3://{bucket}/wh")
    return copies


def test_a_merge_not_sent_before_a_second_one_still_removes_every_file_it_holds(bucket: str, tmp_path: Path) -> None:
    one, two, fresh = _copies(bucket, tmp_path, "one", "two", "fresh")
    _store_errors(one, 0, 1, 2)
    one.push()
    compact_raw(one.warehouse)  # its session's push fails: the merge stays in this copy
    two.pull(make_current=False)
    _store_errors(two, 5)
    two.push()  # another copy's night
    one.pull(make_current=False)
    compact_raw(one.warehouse)  # its unsent merge is not merged again (not on S3 yet), nor what it merged
    one.push()
    fresh.pull(make_current=False)
    assert _error_names(fresh.warehouse) == ["job-0", "job-1", "job-2", "job-5"]
    assert len(_keys(bucket, "wh/raw/extraction_errors/")) == 2  # the merge and copy two's file


def test_two_copies_that_merged_the_same_files_show_each_row_once(bucket: str, tmp_path: Path) -> None:
    one, two, fresh = _copies(bucket, tmp_path, "one", "two", "fresh")
    _store_errors(one, 0, 1, 2)
    one.push()
    two.pull(make_current=False)
    compact_raw(one.warehouse)  # copy one dies before it sends the merge; its lease expires
    _store_errors(two, 4)
    compact_raw(two.warehouse)  # copy two merges the same files (its new one is not on S3 yet) and sends it
    two.push()
    one.pull(make_current=False)
    one.push()  # copy one comes back and sends its older merge too
    for copy in (one, fresh):
        copy.pull(make_current=False)
        assert _error_names(copy.warehouse) == ["job-0", "job-1", "job-2", "job-4"]


def test_a_copy_merges_only_files_on_s3_so_two_merges_never_overlap_in_part(bucket: str, tmp_path: Path) -> None:
    one, two, fresh = _copies(bucket, tmp_path, "one", "two", "fresh")
    _store_errors(one, 0, 1, 2)
    one.push()
    two.pull(make_current=False)
    _store_errors(one, 3)  # not sent
    compact_raw(one.warehouse)  # then copy one dies before it sends anything
    assert "20261103-e.parquet" in [Path(f).name for f in parquet_files(one.warehouse, RAW_ERRORS)]
    _store_errors(two, 4)
    two.push()
    two.pull(make_current=False)
    compact_raw(two.warehouse)
    two.push()
    one.pull(make_current=False)
    one.push()  # copy one comes back: its merge holds only files copy two's merge holds too
    for copy in (one, fresh):
        copy.pull(make_current=False)
    assert _error_names(fresh.warehouse) == ["job-0", "job-1", "job-2", "job-3", "job-4"]
    assert _error_names(one.warehouse) == ["job-0", "job-1", "job-2", "job-3", "job-4"]


def test_a_push_removes_only_what_a_merge_it_sent_replaces(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's push from the same copy while a compaction lands there: the files it merged stay on
    S3 until the merged file is sent."""
    one, fresh = _copies(bucket, tmp_path, "one", "fresh")
    _store_errors(one, 0, 1, 2)
    one.push()
    real = remote.replaced_raw_files

    def compaction_lands_now(warehouse: Path, compacted: object = None) -> set[str]:
        compact_raw(warehouse)
        return real(warehouse, compacted)  # type: ignore[arg-type]

    monkeypatch.setattr(remote, "replaced_raw_files", compaction_lands_now)
    remote.WorkingCopy(one.warehouse, remote.Remote(bucket, "wh")).push(publish=False)
    monkeypatch.setattr(remote, "replaced_raw_files", real)
    fresh.pull(make_current=False)  # the compaction's own push never happened
    assert _error_names(fresh.warehouse) == ["job-0", "job-1", "job-2"]


def test_a_lease_admits_one_writer_and_an_expired_one_is_taken_over(bucket: str, tmp_path: Path) -> None:
    copy = remote.WorkingCopy(tmp_path, remote.Remote(bucket, "wh"))
    first = remote.Lease(copy, "build")
    first.acquire(wait=False, on_wait=None)
    with pytest.raises(remote.WarehouseLeaseBusy, match=r"pid \d+ on "):
        remote.Lease(copy, "build").acquire(wait=False, on_wait=None)
    remote.Lease(copy, "extract-123456789012-us-east-1").acquire(wait=False, on_wait=None)  # another role
    first.release()

    # A holder that died: its lease expired a minute ago.
    s3 = boto3.client("s3")
    expired = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    s3.put_object(
        Bucket=bucket, Key="wh/locks/build.json", Body=json.dumps({"holder": "pid 1 on gone", "expires": expired})
    )
    taker = remote.Lease(copy, "build")
    taker.acquire(wait=False, on_wait=None)
    assert (
        json.loads(s3.get_object(Bucket=bucket, Key="wh/locks/build.json")["Body"].read())["holder"] != "pid 1 on gone"
    )
    taker.release()
    assert not _keys(bucket, "wh/locks/build.json")


def test_a_writer_whose_lease_was_taken_over_does_not_publish(bucket: str, tmp_path: Path) -> None:
    copy = remote.WorkingCopy(tmp_path / "slow", remote.Remote(bucket, "wh"))
    copy.warehouse.mkdir()
    lease = remote.Lease(copy, "build")
    lease.acquire(wait=False, on_wait=None)
    copy.pull(make_current=True)
    # It stalled past the expiry; another writer removed its lease and took its own.
    s3 = boto3.client("s3")
    s3.delete_object(Bucket=bucket, Key="wh/locks/build.json")
    remote.Lease(copy, "build").acquire(wait=False, on_wait=None)
    _fake_version(copy, "run-late")
    with pytest.raises(remote.PublicationConflict, match="lease expired"):
        copy.push(lease)  # checked when it publishes, not only when the renewer next wakes
    assert not _keys(bucket, "wh/current.json")
    lease.release()
    assert _keys(bucket, "wh/locks/build.json"), "the new holder's lease stays"


def test_a_busy_or_missing_s3_warehouse_is_one_sentence(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scratch(monkeypatch, tmp_path / "copy")
    expires = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    boto3.client("s3").put_object(
        Bucket=bucket, Key="wh/locks/build.json", Body=json.dumps({"holder": "pid 7 on nightly", "expires": expires})
    )
    assert main(["run", "--warehouse", f"s3://{bucket}/wh", "--no-wait"]) == EXIT_FAILED
    assert "another run holds" in capsys.readouterr().err

    monkeypatch.setenv("SMW_WAREHOUSE", f"s3://{bucket}/wh")
    assert main(["check"]) == EXIT_OK
    assert f"warehouse s3://{bucket}/wh: readable, nothing published yet" in capsys.readouterr().out

    shutil.rmtree(tmp_path / "copy")
    scratch(monkeypatch, tmp_path / "other")
    for command in (["run", "--warehouse", "s3://smw-no-such-bucket/wh"], ["check"]):
        monkeypatch.setenv("SMW_WAREHOUSE", "s3://smw-no-such-bucket/wh")
        assert main(command) == EXIT_CONFIG
        error = capsys.readouterr().err
        assert "The warehouse bucket smw-no-such-bucket does not exist" in error and "Traceback" not in error


def test_a_working_copy_belongs_to_one_s3_warehouse(tmp_path: Path) -> None:
    environ = {"SMW_SCRATCH": str(tmp_path / "copy")}
    assert warehouse_location("s3://team-bucket/sagemaker/", environ=environ) == tmp_path / "copy"
    assert (tmp_path / "copy" / ".remote").read_text().strip() == "s3://team-bucket/sagemaker"
    with pytest.raises(ConfigError, match="is the working copy of s3://team-bucket/sagemaker, not s3://other"):
        warehouse_location("s3://other-bucket/x", environ=environ)
    with pytest.raises(ConfigError, match="not an S3 URI with a valid bucket name"):
        warehouse_location("s3://Bad_Bucket/x", environ=environ)
    for typo in ("gs://bucket/x", "s3:/team-bucket/x", "S3:team-bucket"):
        with pytest.raises(ConfigError, match="neither a folder nor an s3://"):
            warehouse_location(typo, environ=environ)
    with pytest.raises(ConfigError, match="empty path segment"):
        warehouse_location("s3://team-bucket//x", environ=environ)
    # A folder that already holds something (a local warehouse) never becomes a working copy: it would be pushed.
    (tmp_path / "local-warehouse" / "raw").mkdir(parents=True)
    with pytest.raises(ConfigError, match="already holds files and is not a working copy"):
        warehouse_location("s3://team-bucket/x", environ={"SMW_SCRATCH": str(tmp_path / "local-warehouse")})
    default = warehouse_location("s3://team-bucket/p", environ={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert default == tmp_path / "cache" / "sagemaker-warehouse" / "team-bucket" / "p"
