"""The published versions on disk: ``.versions/<run>/`` folders and the links that make one current.

``current`` is a symbolic link to one version, swapped by a single ``rename``; ``sagemaker.duckdb`` and
``parquet`` are fixed links through it. Publication (``warehouse.publication``) and the S3 working copy
(``storage.remote``) both make a version current with these functions.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pipelines.storage.layout import CURRENT, DATABASE, PARQUET, VERSIONS

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
    for old in versions(warehouse)[:-KEEP_VERSIONS]:
        if old.name != keep:
            shutil.rmtree(old, ignore_errors=True)
