"""What changed since the published version, and so how much the build must do.

Each published version carries a manifest (``build.json``): the raw job files it read, a fingerprint of
the code that built it and one of the cost inputs (settings, price files, the bill's files), and when
everything was last built from scratch. The next build compares:

- **incremental** (the default): the raw layer has only grown since (every file the published version
  read is still there) and the code is the same. Only the new raw files are read; a job whose newest
  record there is newer than the published one (by ``fetched_at``, then run id: the rule a full build
  uses to pick a job's record) is *changed*, and only its rows are replaced.
- **full**: asked for (``run --full-refresh``, ``full_rebuild`` in Dagster), nothing published yet, no
  manifest, the code changed, a raw file the published version read is gone (quarantined or deleted by
  hand: its jobs' records may now be older ones; a compacted file that replaces files the published version
  read is not new, and the files it replaces are not gone), or the last full build is older than
  :data:`FULL_REBUILD_EVERY` (so that a defect no check catches cannot live on in rows nobody rebuilds).

The models follow the tables; the per-job ones are rebuilt fully as well when the cost inputs changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

from pipelines.billing.ingest import raw_billing_files, stored_fingerprint
from pipelines.config import CostSettings
from pipelines.pricing.refresh import refreshed_prices_file
from pipelines.resources import resource_dir
from pipelines.storage.layout import DATABASE, VERSIONS
from pipelines.storage.raw import COMPACTED_PREFIX, RAW_JOBS, merge_tree, parquet_files, replaced_raw_files
from pipelines.storage.versions import current_version

MANIFEST = "build.json"
MANIFEST_FORMAT = 1
FULL_REBUILD_EVERY = timedelta(days=7)
_PACKAGE = Path(__file__).resolve().parent.parent


def _digest(parts: list[bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def code_fingerprint() -> str:
    """The code that turns raw records into rows: the package's Python and bundled data, ``sql/``,
    ``schemas/``, and the versions of DuckDB and botocore (whose model types the JSON)."""
    files = [p for p in sorted(_PACKAGE.rglob("*")) if p.is_file() and p.suffix in {".py", ".csv"}]
    for name in ("sql", "schemas"):
        files += [p for p in sorted(resource_dir(name).rglob("*")) if p.is_file()]
    libraries = f"duckdb {version('duckdb')} botocore {version('botocore')}"
    return _digest([libraries.encode(), *(p.read_bytes() for p in files)])


def cost_inputs_fingerprint(warehouse: Path, costs: CostSettings) -> str:
    """What the models read besides the tables: cost settings, price files, and the bill's files."""
    parts = [repr(costs).encode()]
    for prices in (costs.prices_file, refreshed_prices_file(warehouse)):
        parts.append(prices.read_bytes() if prices is not None and Path(prices).is_file() else b"")
    for billing in raw_billing_files(warehouse):
        parts.append(Path(billing).name.encode() + (stored_fingerprint(Path(billing)) or b""))
    return _digest(parts)


@dataclass(frozen=True)
class BuildPlan:
    """How the build runs: every job (full) or the changed ones (incremental), and why."""

    incremental: bool
    reason: str
    raw_files: tuple[str, ...]  # every raw job file now, relative to the warehouse
    new_files: tuple[str, ...]  # of those, the ones the published version did not read
    code: str
    last_full_build: str  # ISO time of the newest full build (this one, if full)
    published_version: str | None  # incremental: the version it starts from

    @property
    def mode(self) -> str:
        return "incremental" if self.incremental else "full"

    def manifest(self) -> dict[str, object]:
        return {
            "format": MANIFEST_FORMAT,
            "mode": self.mode,
            "reason": self.reason,
            "code": self.code,
            "last_full_build": self.last_full_build,
            "published_version": self.published_version,
            "raw_files": list(self.raw_files),
        }

    @classmethod
    def of(cls, manifest: dict[str, Any]) -> BuildPlan:
        """The plan a staged build recorded (its new files are not kept)."""
        return cls(
            manifest["mode"] == "incremental",
            manifest["reason"],
            tuple(manifest["raw_files"]),
            (),
            manifest["code"],
            manifest["last_full_build"],
            manifest["published_version"],
        )


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a published version or a staged build (None: none, or an older format)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT else None


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Record ``manifest`` in a staged version folder, atomically."""
    temporary = folder / f"{MANIFEST}.tmp-{os.getpid()}"
    temporary.write_text(json.dumps(manifest))
    os.replace(temporary, folder / MANIFEST)


def published_raw_files(warehouse: Path, manifest: dict[str, Any]) -> set[str]:
    """The raw job files whose rows the published version (``manifest``) read: the ones it lists, and
    compacted files that replace only those (their rows were read, from the files they replace)."""
    read = set(manifest["raw_files"])

    def covered(folder: str, tree: dict[str, Any]) -> bool:  # every file merged was read, or merged from read ones
        return all(f"{folder}/{name}" in read or (inner and covered(folder, inner)) for name, inner in tree.items())

    for name in parquet_files(warehouse, RAW_JOBS):
        path = Path(name)
        relative = path.relative_to(warehouse).as_posix()
        tree = merge_tree(path) if path.name.startswith(COMPACTED_PREFIX) else None
        if tree is not None and covered(relative.rsplit("/", 1)[0], tree):
            read.add(relative)
    return read - replaced_raw_files(warehouse)


def plan_build(warehouse: Path, full: bool = False, now: datetime | None = None) -> BuildPlan:
    """Decide between an incremental and a full build (see the module's docstring)."""
    now = now or datetime.now(UTC)
    raw_files = tuple(Path(f).relative_to(warehouse).as_posix() for f in parquet_files(warehouse, RAW_JOBS))
    code = code_fingerprint()
    version = current_version(warehouse)
    manifest = read_manifest(warehouse / VERSIONS / version) if version else None

    def full_build(reason: str) -> BuildPlan:
        return BuildPlan(False, reason, raw_files, raw_files, code, now.isoformat(), None)

    if full:
        return full_build("a full rebuild was asked for")
    if version is None:
        return full_build("nothing is published yet")
    if manifest is None or not (warehouse / VERSIONS / version / DATABASE).is_file():
        return full_build("the published version has no build manifest")
    if manifest["code"] != code:
        return full_build("the code or the table definitions changed since the published version")
    read_before = published_raw_files(warehouse, manifest)
    gone = read_before - set(raw_files)
    if gone:
        return full_build(f"{len(gone)} raw files the published version read are gone (quarantined or removed)")
    last_full = datetime.fromisoformat(manifest["last_full_build"])
    if now - last_full >= FULL_REBUILD_EVERY:
        return full_build(f"the last full build was {(now - last_full).days} days ago")
    new_files = tuple(f for f in raw_files if f not in read_before)
    return BuildPlan(
        True, f"{len(new_files)} new raw files", raw_files, new_files, code, manifest["last_full_build"], version
    )
