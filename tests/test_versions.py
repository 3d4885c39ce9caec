"""A retired version's database recycled as a staging database: it ends with the published file's bytes
whatever it held, and it is never rewritten while a reader has it open (that build copies instead)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipelines.storage.layout import DATABASE, RETIRED, VERSIONS
from pipelines.storage.versions import CHUNK_BYTES, copy_published_database, make_current

READER = """
import sys, duckdb
connection = duckdb.connect(sys.argv[1], read_only=True)
print(connection.execute("select count(*) from t").fetchone()[0], flush=True)
sys.stdin.readline()
print(connection.execute("select count(*) from t").fetchone()[0], flush=True)
"""


def _database(path: Path, rows: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(path)) as connection:
        connection.execute(f"create table t as select range as x, md5(range::varchar) as y from range({rows})")
    return path


@pytest.mark.parametrize("retired_size", [0, 3 * CHUNK_BYTES + 17, 9 * CHUNK_BYTES + 5])
def test_a_retired_database_ends_with_the_published_bytes(tmp_path: Path, retired_size: int) -> None:
    """Shorter, longer or empty, partly equal and partly not: afterwards the file is the published one."""
    random.seed(retired_size)
    published = tmp_path / "published"
    content = random.randbytes(6 * CHUNK_BYTES + 123)
    published.write_bytes(content)
    retired = tmp_path / "warehouse" / RETIRED / DATABASE
    retired.parent.mkdir(parents=True)
    old = bytearray(content[:retired_size].ljust(retired_size, b"\0"))
    old[CHUNK_BYTES + 5 : CHUNK_BYTES + 9] = b"diff"  # one chunk differs, the others (when there) match
    retired.write_bytes(bytes(old[:retired_size]))
    target = tmp_path / "staging" / DATABASE
    target.parent.mkdir()

    assert copy_published_database(tmp_path / "warehouse", published, target)
    assert target.read_bytes() == content
    assert not retired.exists()


def test_without_a_retired_database_the_published_one_is_copied(tmp_path: Path) -> None:
    published = _database(tmp_path / "published.duckdb", 1000)
    target = tmp_path / "staged.duckdb"
    assert not copy_published_database(tmp_path / "warehouse", published, target)
    assert target.read_bytes() == published.read_bytes()


def test_a_retired_database_a_reader_still_has_open_is_left_to_it(tmp_path: Path) -> None:
    """A reader that connected before the version was retired (another process, holding DuckDB's lock) keeps
    reading what it read; the build copies the published file instead."""
    warehouse = tmp_path / "warehouse"
    retired = _database(warehouse / RETIRED / DATABASE, 10)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(retired)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None and reader.stdout.readline().strip() == "10"
    published = _database(tmp_path / "published.duckdb", 50_000)
    target = tmp_path / "staged.duckdb"
    try:
        assert not copy_published_database(warehouse, published, target)
    finally:
        out, err = reader.communicate("go on\n", timeout=60)
    assert reader.returncode == 0, err
    assert out.strip() == "10"
    assert target.read_bytes() == published.read_bytes()


def test_a_retired_database_this_process_has_open_is_left_to_it(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse"
    retired = _database(warehouse / RETIRED / DATABASE, 10)
    published = _database(tmp_path / "published.duckdb", 50_000)
    target = tmp_path / "staged.duckdb"
    with open(retired, "rb") as held:
        assert not copy_published_database(warehouse, published, target)
        assert os.fstat(held.fileno()).st_nlink == 0  # unlinked, still readable by its holder
    assert target.read_bytes() == published.read_bytes()


def test_a_version_no_longer_kept_leaves_its_database_retired(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse"
    for number, run_id in enumerate(("one", "two", "three", "four")):
        version = warehouse / VERSIONS / run_id
        version.mkdir(parents=True)
        (version / DATABASE).write_bytes(run_id.encode())
        os.utime(version, (number, number))
        make_current(warehouse, run_id)
    assert sorted(p.name for p in (warehouse / VERSIONS).iterdir()) == ["four", "three"]
    assert (warehouse / RETIRED / DATABASE).read_bytes() == b"two"  # the newest of those removed
