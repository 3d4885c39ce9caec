"""Secrets never leave the process: container Environment values are replaced before anything is written
or logged. The variable names stay, so analysts can still see which variables a job set."""

from __future__ import annotations

from typing import Any

REDACTED = "***redacted***"
SECRET_MAPS = frozenset({"Environment"})  # members that are maps of container environment variables


def redact(value: Any) -> Any:
    """A copy of ``value`` in which every ``Environment`` map, at any depth, has its values replaced."""
    if isinstance(value, dict):
        return {
            key: {name: REDACTED for name in item} if key in SECRET_MAPS and isinstance(item, dict) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value
