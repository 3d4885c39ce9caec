"""Progress of long work, for a person at a terminal.

The code that does the work reports what it has done (:func:`update`, :func:`stage`, :func:`finish`); the
shell decides whether anyone sees it. Nothing is shown unless a sink is installed with :func:`showing`:
the CLI installs one (drawn with ``rich``) when its output is a terminal, and Dagster, CI and scripts get
the plain log lines as before.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Sink(Protocol):
    def update(self, task: str, done: int, total: int | None, note: str) -> None: ...

    def finish(self, task: str, note: str) -> None: ...


_sink: Sink | None = None
_lock = threading.Lock()


def active() -> bool:
    """Whether someone is watching (a sink is installed): the CLI then keeps its info logs off the screen."""
    return _sink is not None


def update(task: str, done: int, total: int | None = None, note: str = "") -> None:
    """``task`` has ``done`` of ``total`` units finished (``total`` None: not known yet)."""
    sink = _sink
    if sink is not None:
        with _lock:
            sink.update(task, done, total, note)


def stage(task: str, note: str) -> None:
    """``task`` is now doing ``note`` (work measured in steps, not units)."""
    update(task, 0, None, note)


def finish(task: str, note: str = "done") -> None:
    sink = _sink
    if sink is not None:
        with _lock:
            sink.finish(task, note)


@contextmanager
def showing(sink: Sink | None) -> Iterator[None]:
    """Report to ``sink`` for the duration of the block (None: to nobody)."""
    global _sink
    previous, _sink = _sink, sink
    try:
        yield
    finally:
        _sink = previous
