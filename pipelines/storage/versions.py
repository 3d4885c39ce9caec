"""The published versions on disk: ``.versions/<run>/`` folders and the links that make one current.

``current`` is a symbolic link to one version, swapped by a single ``rename``; ``sagemaker.duckdb`` and
``parquet`` are fixed links through it. Publication (``warehouse.publication``) and the S3 working copy
(``storage.remote``) both make a version current with these functions.

A version no longer kept leaves its database behind in ``.retired/``, and the next incremental build makes
it its staging database by rewriting only the blocks that differ from the published one
(:func:`copy_published_database`): two nights apart, 185 of a 1.2M-job database's 5,214 blocks differ,
and the build writes 46 MB instead of copying 1.4 GB.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

from pipelines.storage.layout import CURRENT, DATABASE, PARQUET, RETIRED, VERSIONS

KEEP_VERSIONS = 2  # the current version and the one before, for readers still on it


def make_current(warehouse: Path, run_id: str) -> None:
    """Make ``.versions/<run_id>`` the published version in one step, then drop all but the newest kept."""
    version = warehouse / VERSIONS / run_id
    os.utime(version)  # its age orders the versions kept for readers
    swap_symlink(warehouse / CURRENT, Path(VERSIONS) / run_id)  # the one step that publishes
    ensure_stable_links(warehouse)
    remove_old_versions(warehouse, keep=run_id)


def current_version(warehouse: Path) -> str | None:
    """The run id of the published version, or None before the first publication."""
    link = warehouse / CURRENT
    return Path(os.readlink(link)).name if link.is_symlink() else None


def forget_published(warehouse: Path) -> None:
    """No version is published any more: the links and the kept versions go (the raw layer stays)."""
    for name in (CURRENT, DATABASE, PARQUET):
        link = warehouse / name
        if link.is_symlink():
            link.unlink()
    shutil.rmtree(warehouse / VERSIONS, ignore_errors=True)
    shutil.rmtree(warehouse / RETIRED, ignore_errors=True)


def ensure_stable_links(warehouse: Path) -> None:
    """``sagemaker.duckdb`` and ``parquet`` point through ``current``. Made once; a warehouse from the
    older layout (a real file and a link to a version) is converted here, each path in one rename."""
    for name in (DATABASE, PARQUET):
        link = warehouse / name
        target = Path(CURRENT) / name
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        if link.is_dir() and not link.is_symlink():
            link.rename(link.with_name(f"{name}.old"))  # a real directory from the oldest layout
        swap_symlink(link, target)


def swap_symlink(link: Path, target: Path) -> None:
    temporary = link.with_name(f"{link.name}.tmp-{os.getpid()}")
    temporary.unlink(missing_ok=True)
    os.symlink(target, temporary)
    os.replace(temporary, link)


def versions(warehouse: Path) -> list[Path]:
    """The published versions still kept, oldest first (publication touches each one as it becomes current)."""
    folder = warehouse / VERSIONS
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)


def remove_old_versions(warehouse: Path, keep: str) -> None:
    """Remove the versions older than the :data:`KEEP_VERSIONS` newest; the newest of those removed leaves its
    database in ``.retired/`` (replacing the one there) for the next build to recycle. A reader still on a
    removed version keeps its open file: a retired database is only recycled when nothing has it open."""
    for old in versions(warehouse)[:-KEEP_VERSIONS]:
        if old.name != keep:
            if not old.is_symlink():  # a version kept elsewhere through a link is left alone, as rmtree does
                _retire(warehouse, old / DATABASE)
            shutil.rmtree(old, ignore_errors=True)


def _retire(warehouse: Path, database: Path) -> None:
    """Move a removed version's database to ``.retired/``; where it cannot be moved, it goes with its version
    (this runs after the new version is current, and must not fail the publication)."""
    if database.is_file() and not database.is_symlink():
        with contextlib.suppress(OSError):
            (warehouse / RETIRED).mkdir(exist_ok=True)
            os.replace(database, warehouse / RETIRED / DATABASE)


def discard_retired_database(warehouse: Path) -> None:
    """Remove the retired database: a build that will not recycle it (a full build) would otherwise hold one
    database more on disk while it runs."""
    _remove(warehouse / RETIRED / DATABASE)


# A DuckDB file is a 12 KiB header (three 4 KiB headers) then 256 KiB blocks. The retired file is compared
# with the published one in chunks laid over them: a changed block rewrites one chunk (another layout only
# rewrites more; the result is the same bytes).
HEADER_BYTES = 12 * 1024
CHUNK_BYTES = 256 * 1024


def copy_published_database(warehouse: Path, published: Path, target: Path) -> bool:
    """Make ``target`` (a path in a new staging area) a byte-for-byte copy of the published database. When a
    retired database is there and nothing else has it open, it is moved to ``target`` (one rename: two builds
    cannot both take it) and only its chunks that differ from ``published`` are written; otherwise
    ``published`` is copied whole. Returns whether a retired database was recycled. Either way the result
    is the published file's bytes: the recycled file's content only decides how much is written."""
    try:
        os.replace(warehouse / RETIRED / DATABASE, target)
    except OSError:  # none there (the first night, after a full build), or nothing a rename can take
        shutil.copyfile(published, target)
        return False
    with _unless_open_elsewhere(target) as handle:
        if handle is not None:
            _write_differing_chunks(published, handle)
            return True
    _remove(target)  # a reader still has it (and keeps it), or it is not a plain file of its own: copy
    shutil.copyfile(published, target)
    return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def _unless_open_elsewhere(path: Path) -> Iterator[int | None]:
    """A writable descriptor of ``path``, locked against DuckDB connections for as long as it is held, or None
    when the file must not be rewritten: it is a link or not a regular file, it has another name (a hard
    link: a snapshot's copy, say), or something has it open (:func:`_opened_elsewhere`)."""
    try:
        handle = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        yield None
        return
    try:
        status = os.fstat(handle)
        usable = stat.S_ISREG(status.st_mode) and status.st_nlink == 1 and not _opened_elsewhere(handle)
        yield handle if usable else None
    finally:
        os.close(handle)


def _opened_elsewhere(handle: int) -> bool:
    """Whether a descriptor other than ``handle`` has its file open.

    - On Linux a write lease answers for every process of this machine: the kernel refuses it while another
      descriptor is open. It is given back at once. An opener in between would signal this process: with
      SIGWINCH (ignored unless handled), not SIGIO, which would end it.
    - Where leases are refused for other reasons (some file systems, another owner), this process's own
      descriptors are compared, before a lock is tried: closing one would drop this process's locks on it.
    - Then a lock is taken. It fails while another process's DuckDB connection (even read-only) holds its
      own, and keeps new ones out while the file is rewritten.
    """
    lease, notify = getattr(fcntl, "F_SETLEASE", None), getattr(fcntl, "F_SETSIG", None)
    leased = False
    if lease is not None and notify is not None:
        try:
            fcntl.fcntl(handle, notify, signal.SIGWINCH)
            fcntl.fcntl(handle, lease, fcntl.F_WRLCK)
        except BlockingIOError:  # another descriptor has it open
            return True
        except OSError:
            pass
        else:
            fcntl.fcntl(handle, lease, fcntl.F_UNLCK)
            leased = True
    if not leased and _open_in_this_process(handle):
        return True
    try:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    return False


def _open_in_this_process(handle: int) -> bool:
    """Whether another of this process's descriptors (listed in /proc/self/fd, or /dev/fd) is ``handle``'s file."""
    identity = os.fstat(handle)
    listing = next((folder for folder in ("/proc/self/fd", "/dev/fd") if os.path.isdir(folder)), None)
    if listing is None:
        return False
    for name in os.listdir(listing):
        with contextlib.suppress(OSError, ValueError):  # closed meanwhile (the listing's own), or not a number
            descriptor = int(name)
            opened = os.fstat(descriptor)
            if descriptor != handle and (opened.st_dev, opened.st_ino) == (identity.st_dev, identity.st_ino):
                return True
    return False


def _write_differing_chunks(source: Path, target: int) -> None:
    """Make the open file ``target`` hold ``source``'s bytes, writing only the chunks that differ. Both are
    read in order into two reused buffers (reads at explicit offsets were three times slower here)."""
    theirs, ours = bytearray(CHUNK_BYTES), bytearray(CHUNK_BYTES)
    with open(source, "rb", buffering=0) as reading, open(target, "r+b", buffering=0, closefd=False) as writing:
        offset, size = 0, HEADER_BYTES
        while count := reading.readinto(memoryview(theirs)[:size]):
            held = writing.readinto(memoryview(ours)[:count])
            if held != count or (ours != theirs if count == CHUNK_BYTES else ours[:count] != theirs[:count]):
                writing.seek(offset)
                chunk = memoryview(theirs)[:count]
                while chunk:
                    chunk = chunk[writing.write(chunk) :]
            offset, size = offset + count, CHUNK_BYTES
        writing.truncate(offset)
