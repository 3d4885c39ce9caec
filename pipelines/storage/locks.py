"""One writer at a time: advisory file locks (``fcntl.flock``) under ``<warehouse>/.locks/``.

Two levels, so that Dagster can still extract several accounts at once:

- ``warehouse``: ``sagemaker-warehouse run`` holds it exclusively for the whole run; each Dagster step
  that writes holds it shared, so a CLI run and a Dagster run never write at the same time;
- one lock per writer role, held exclusively by the step that writes: ``extract-<account>-<region>`` for
  an extraction, ``build`` for the normalization, model and publication steps.

A thread that holds the warehouse lock exclusively already owns everything, so the steps it runs
in-process (on the same thread) take nothing more. Locks are released by the kernel when the process
dies, so a crash never leaves a stale lock behind. Readers never take a lock.

For a working copy of an s3:// warehouse, each of these also holds the role's lease on S3 (``storage.remote``;
a whole run holds the build's) and keeps the copy in step: pulled when taken, pushed when released.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pipelines.storage import remote

LOCKS = ".locks"
WAREHOUSE = "warehouse"
BUILD = "build"

# (warehouse lock file, thread) -> nesting depth. Per thread: a Dagster in-process run executes its steps
# on the thread that started it, and another thread of the same process is another writer.
_held: dict[tuple[Path, int], int] = {}
_held_lock = threading.Lock()


class WarehouseBusy(RuntimeError):
    """Another process holds the lock and the caller chose not to wait."""


@contextmanager
def _remote_session(warehouse: Path, role: str, wait: bool, on_wait: Callable[[str], None] | None) -> Iterator[None]:
    """For a working copy of an s3:// warehouse, the role's lease on S3 and the copy kept in step; only the
    build's session publishes."""
    try:
        with remote.session(warehouse, role, publishes=role == BUILD, wait=wait, on_wait=on_wait):
            yield
    except remote.WarehouseLeaseBusy as busy:
        raise WarehouseBusy(str(busy)) from None


def extraction_lock_name(account_id: str, region: str) -> str:
    return f"extract-{account_id}-{region}"


def _lock_path(warehouse: Path, name: str) -> Path:
    return warehouse / LOCKS / f"{name}.lock"


def holds_warehouse(warehouse: Path) -> bool:
    """Whether this thread holds the whole warehouse exclusively (no other writer can exist)."""
    with _held_lock:
        return (_lock_path(warehouse, WAREHOUSE).resolve(), threading.get_ident()) in _held


@contextmanager
def _flock(path: Path, shared: bool, wait: bool, on_wait: Callable[[str], None] | None) -> Iterator[int]:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(descriptor, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            who = path.read_text().strip() or "another process"
            if not wait:
                raise WarehouseBusy(who) from None
            if on_wait:
                on_wait(who)
            fcntl.flock(descriptor, mode)
        if not shared:
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"pid {os.getpid()} since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC\n".encode(), 0)
        yield descriptor
    finally:
        os.close(descriptor)  # closing releases the lock


@contextmanager
def exclusive_warehouse(
    warehouse: Path, wait: bool = True, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the whole warehouse for one run. Raises WarehouseBusy when ``wait`` is false and another
    process holds it (its holder text is the message)."""
    path = _lock_path(warehouse, WAREHOUSE)
    key = (path.resolve(), threading.get_ident())
    with _held_lock:
        nested = key in _held
        if nested:
            _held[key] += 1
    if nested:
        try:
            yield
        finally:
            with _held_lock:
                _held[key] -= 1
        return
    with _flock(path, shared=False, wait=wait, on_wait=on_wait):
        with _held_lock:
            _held[key] = 1
        try:
            with _remote_session(warehouse, BUILD, wait, on_wait):  # a whole run publishes: the build's lease
                yield
        finally:
            with _held_lock:
                del _held[key]


@contextmanager
def writer(warehouse: Path, name: str, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the writer role ``name`` (and the warehouse shared) for one step; waits for other holders."""
    if holds_warehouse(warehouse):  # a whole run: it holds the build's lease and keeps the copy in step
        if name == BUILD:
            yield
        else:  # an extraction still takes its partition's lease, so no Dagster step extracts it meanwhile
            told = (lambda who: on_wait(f"waiting for the {name} lease, held by {who}")) if on_wait else None
            with remote.lease_only(warehouse, name, told):
                yield
        return

    def waiting(who: str) -> None:
        if on_wait:
            on_wait(f"waiting for the {name} lock of {warehouse}, held by {who}")

    with (
        _flock(_lock_path(warehouse, WAREHOUSE), shared=True, wait=True, on_wait=waiting),
        _flock(_lock_path(warehouse, name), shared=False, wait=True, on_wait=waiting),
        _remote_session(warehouse, name, wait=True, on_wait=waiting),
    ):
        yield
