"""Stopping a run on SIGINT/SIGTERM within seconds, leaving nothing half-done.

Dagster's in-process execution captures SIGINT/SIGTERM on the main thread and only acts on them at its
own checkpoints, so a step sleeping out a retry backoff ignored a SIGTERM for a minute or more. The CLI
therefore runs the work on a worker thread and keeps the signals on the main thread: a signal sets every
registered stop event (retry and rate-cap waits end at once; the extraction stops after the batch in
hand, whose files are written whole) and no further Dagster run starts. If the work has not wound down
after ``GRACE_SECONDS`` (a long DuckDB build, say), or on a second signal, the process exits at once,
which is as safe as a crash: every file appears by rename, publication is one rename, and locks die with
the process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import TypeVar

GRACE_SECONDS = 10.0
T = TypeVar("T")

_events: set[threading.Event] = set()
_cleanups: list[Callable[[], None]] = []
_lock = threading.Lock()
_stopping = threading.Event()


class RunInterrupted(RuntimeError):
    """The run was asked to stop by a signal."""


def stop_requested() -> bool:
    return _stopping.is_set()


def watch(event: threading.Event) -> None:
    """Set ``event`` when a stop signal arrives (at once if one already has)."""
    with _lock:
        _events.add(event)
    if _stopping.is_set():
        event.set()


def unwatch(event: threading.Event) -> None:
    with _lock:
        _events.discard(event)


def on_hard_exit(cleanup: Callable[[], None]) -> None:
    """Run ``cleanup`` (e.g. stop a child process) before a hard exit."""
    _cleanups.append(cleanup)


def _hard_exit(code: int) -> None:
    for cleanup in reversed(_cleanups):
        with contextlib.suppress(Exception):  # exiting anyway: one failed cleanup must not block the others
            cleanup()
    os._exit(code)


def run_interruptibly(work: Callable[[], T]) -> T:
    """Run ``work`` on a worker thread while this (main) thread turns SIGINT/SIGTERM into a prompt stop."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:
            outcome["error"] = error

    def on_signal(signum: int, _: FrameType | None) -> None:
        code = 128 + signum
        if _stopping.is_set():
            _hard_exit(code)
        _stopping.set()
        print(
            f"\nStopping on {signal.Signals(signum).name}: files already written are whole; "
            "the next run continues from there.",
            file=sys.stderr,
            flush=True,
        )
        with _lock:
            for event in _events:
                event.set()
        timer = threading.Timer(GRACE_SECONDS, _hard_exit, args=(code,))
        timer.daemon = True
        timer.start()

    worker = threading.Thread(target=target, name="warehouse-run", daemon=True)
    previous = {number: signal.signal(number, on_signal) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker.start()
        while worker.is_alive():
            worker.join(0.2)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
