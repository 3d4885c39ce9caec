"""A retired version's database recycled as a staging database: it ends with the published file's bytes
whatever it held, and it is never rewritten while anything has it open, nor when it is a link or has
another name (that build copies instead)."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipelines.storage.layout import CURRENT, DATABASE, RETIRED, VERSIONS
from pipelines.storage.versions import (
    CHUNK_BYTES,
    HEADER_BYTES,
    copy_published_database,
    forget_published,
    remove_old_versions,
)

# A reader that connected before its version was retired: a DuckDB connection (which locks the file) and a
# plain descriptor, through which it reports a digest of the file's bytes before and after.
READER = """
import hashlib, os, sys, duckdb
connection = duckdb.connect(sys.argv[1], read_only=True)
raw = os.open(sys.argv[1], os.O_RDONLY)
digest = lambda: hashlib.sha256(os.pread(raw, os.fstat(raw).st_size, 0)).hexdigest()
print(digest(), flush=True)
sys.stdin.readline()
print(digest(), connection.execute("select count(*) from t").fetchone()[0], flush=True)
"""


def _database(path: Path, rows: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(path)) as connection:
        connection.execute(f"create table t as select range as x, md5(range::varchar) as y from range({rows})")
    return path


def _retired(warehouse: Path, content: bytes) -> Path:
    retired = warehouse / RETIRED / DATABASE
    retired.parent.mkdir(parents=True)
    retired.write_bytes(content)
    return retired


@pytest.mark.parametrize(
    "retired_size", [0, 3 * CHUNK_BYTES + 17, 6 * CHUNK_BYTES + HEADER_BYTES + 123, 9 * CHUNK_BYTES + 5]
)
def test_a_retired_database_ends_with_the_published_bytes(tmp_path: Path, retired_size: int) -> None:
    """Shorter, the same size, longer or empty; its header, a block and its last partial block changed:
    afterwards the file is the published one."""
    random.seed(retired_size)
    published = tmp_path / "published"
    content = random.randbytes(6 * CHUNK_BYTES + HEADER_BYTES + 123)
    published.write_bytes(content)
    old = bytearray(content[:retired_size])
    for at in (5, HEADER_BYTES + CHUNK_BYTES + 5, len(content) - 3):  # header, a block, the last partial block
        old[at : at + 2] = b"\x00\x01"
    retired = _retired(tmp_path / "warehouse", bytes(old[:retired_size]))
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
    """A reader that connected before the version was retired (another process) keeps reading the bytes it
    read; the build copies the published file instead."""
    warehouse = tmp_path / "warehouse"
    retired = _database(warehouse / RETIRED / DATABASE, 10)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(retired)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None
    before = reader.stdout.readline().strip()
    assert before == hashlib.sha256(retired.read_bytes()).hexdigest()
    published = _database(tmp_path / "published.duckdb", 50_000)
    target = tmp_path / "staged.duckdb"
    try:
        assert not copy_published_database(warehouse, published, target)
    finally:
        out, err = reader.communicate("go on\n", timeout=60)
    assert reader.returncode == 0, err
    assert out.split() == [before, "10"]
    assert target.read_bytes() == published.read_bytes()


def test_a_retired_database_another_program_reads_is_left_to_it(tmp_path: Path) -> None:
    """Not only DuckDB: a backup or a copy reading the file (no lock) keeps its bytes too."""
    warehouse = tmp_path / "warehouse"
    retired = _retired(warehouse, b"an old version" * 1000)
    program = "import os, sys; f = open(sys.argv[1], 'rb'); print('open', flush=True); sys.stdin.readline()"
    reading = subprocess.Popen(
        [sys.executable, "-c", program, str(retired)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert reading.stdout is not None and reading.stdout.readline().strip() == "open"
    published = _database(tmp_path / "published.duckdb", 1000)
    target = tmp_path / "staged.duckdb"
    try:
        assert not copy_published_database(warehouse, published, target)
    finally:
        reading.communicate("done\n", timeout=60)
    assert target.read_bytes() == published.read_bytes()


def test_a_retired_database_this_process_has_open_is_left_to_it(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse"
    retired = _database(warehouse / RETIRED / DATABASE, 10)
    original = retired.read_bytes()
    published = _database(tmp_path / "published.duckdb", 50_000)
    target = tmp_path / "staged.duckdb"
    with open(retired, "rb") as held:
        assert not copy_published_database(warehouse, published, target)
        assert os.fstat(held.fileno()).st_nlink == 0  # unlinked, still readable by its holder
        assert held.read() == original
    assert target.read_bytes() == published.read_bytes()


@pytest.mark.parametrize("kind", ["hard link", "symbolic link", "directory"])
def test_a_retired_database_that_is_not_a_plain_file_of_its_own_is_not_rewritten(tmp_path: Path, kind: str) -> None:
    """A second name (a snapshot's hard link), a link to another file or a directory there: the build copies
    the published file, and whatever the other name or the link points at is untouched."""
    warehouse = tmp_path / "warehouse"
    elsewhere = tmp_path / "snapshot.duckdb"
    elsewhere.write_bytes(b"a published file elsewhere" * 1000)
    retired = warehouse / RETIRED / DATABASE
    retired.parent.mkdir(parents=True)
    if kind == "hard link":
        os.link(elsewhere, retired)
    elif kind == "symbolic link":
        retired.symlink_to(elsewhere)
    else:
        (retired / "inside").mkdir(parents=True)
    published = _database(tmp_path / "published.duckdb", 1000)
    target = tmp_path / "staging" / DATABASE
    target.parent.mkdir()

    assert not copy_published_database(warehouse, published, target)
    assert target.read_bytes() == published.read_bytes() and not target.is_symlink()
    assert elsewhere.read_bytes() == b"a published file elsewhere" * 1000


def _version(warehouse: Path, run_id: str, mtime: int) -> Path:
    version = warehouse / VERSIONS / run_id
    version.mkdir(parents=True)
    (version / DATABASE).write_bytes(run_id.encode())
    os.utime(version, (mtime, mtime))
    return version


def test_the_newest_version_no_longer_kept_leaves_its_database_retired(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse"
    for number, run_id in enumerate(("one", "two", "three", "four")):
        _version(warehouse, run_id, 1_000 + number)
    remove_old_versions(warehouse, keep="four")
    assert sorted(p.name for p in (warehouse / VERSIONS).iterdir()) == ["four", "three"]
    assert (warehouse / RETIRED / DATABASE).read_bytes() == b"two"  # the newest of those removed

    forget_published(warehouse)
    assert not (warehouse / RETIRED).exists()


def test_a_version_kept_elsewhere_through_a_link_keeps_its_database(tmp_path: Path) -> None:
    """A version folder that is a link (to a snapshot, another disk): removing the version removes the link
    only, as before, and its database stays where it is."""
    warehouse = tmp_path / "warehouse"
    kept_elsewhere = _version(tmp_path / "elsewhere", "one", 1_000)
    (warehouse / VERSIONS).mkdir(parents=True)
    (warehouse / VERSIONS / "one").symlink_to(kept_elsewhere)
    os.utime(warehouse / VERSIONS / "one", (1_000, 1_000), follow_symlinks=False)
    for number, run_id in enumerate(("two", "three"), start=1):
        _version(warehouse, run_id, 1_000 + number)
    (warehouse / CURRENT).symlink_to(Path(VERSIONS) / "three")
    remove_old_versions(warehouse, keep="three")
    assert (kept_elsewhere / DATABASE).read_bytes() == b"one"
    assert not (warehouse / RETIRED / DATABASE).exists()
