"""Raw compaction: the many small files of the raw layer merged into one file per month, losslessly.

Every extraction adds a few small files per account and region (one per batch of jobs), so after years
of nights reading the raw layer would mean opening thousands of files. Compaction merges, per table,
account, region and month (the month of the run that wrote each file), the files into one
``compacted-<YYYYMM>-<id>.parquet``:

1. the merged file is written under a temporary name, its rows are checked against the files it
   replaces (same count, and the same sum of a hash of every row, every column), then it is fsynced
   and renamed into place; its footer names the files it merged, and those a merged compacted file had
   merged in turn, and its name is a hash of the files it merged;
2. only then are those files removed. Until they are, readers skip them (:func:`parquet_files`), so a
   stop between the two steps never shows a row twice, and the next compaction removes them.

Job files are merged only once the published version has read them (its ``build.json``), so the next
build stays incremental: the compacted file counts as read, and the files it replaces are not "gone"
(:func:`pipelines.warehouse.changes.published_raw_files`). Error files are merged whenever they are two
or more. The caller holds the locks: no extraction of the partition and no build may run meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.sql import identifier, literal
from pipelines.storage.layout import VERSIONS
from pipelines.storage.raw import (
    COMPACTED_PREFIX,
    RAW_ERRORS,
    RAW_JOBS,
    REPLACES_KEY,
    TEMP_MARKER,
    merge_tree,
    parquet_files,
    replaced_by_compaction,
    table_dir,
)
from pipelines.storage.remote import working_copy
from pipelines.storage.versions import current_version
from pipelines.warehouse.changes import published_raw_files, read_manifest

_MONTH = re.compile(rf"^(?:{COMPACTED_PREFIX})?(\d{{6}})")


class CompactionError(RuntimeError):
    """A merged file did not hold exactly the rows of the files it was to replace; nothing was removed."""


@dataclass(frozen=True)
class Compaction:
    """One merge: the compacted file, how many files it replaced, and its rows."""

    path: Path
    replaced: int
    rows: int


def month_of(path: Path) -> str:
    """The month a raw file belongs to: that of the run that wrote it (run ids start with the UTC date),
    a compacted file's own; ``other`` for anything else (a quarantine record)."""
    match = _MONTH.match(path.name)
    return match.group(1) if match else "other"


def partitions(warehouse: Path) -> list[tuple[str, str]]:
    """Every account and region with raw files."""
    found = set()
    for table_name in (RAW_JOBS, RAW_ERRORS):
        root = table_dir(warehouse, table_name)
        if root.is_dir():
            found |= {(a.name, r.name) for a in root.iterdir() if a.is_dir() for r in a.iterdir() if r.is_dir()}
    return sorted(found)


def remove_replaced(warehouse: Path, account_id: str, region: str) -> int:
    """Remove the files a compacted file already replaces (left by a compaction that was stopped)."""
    removed = 0
    for table_name in (RAW_JOBS, RAW_ERRORS):
        directory = table_dir(warehouse, table_name, account_id, region)
        if not directory.is_dir():
            continue
        for sources in replaced_by_compaction(sorted(directory.glob("*.parquet"))).values():
            for source in sources:
                if source.is_file():
                    source.unlink()
                    removed += 1
    return removed


def compact_raw(
    warehouse: Path,
    hold_partition: Callable[[str, str], AbstractContextManager[object]] = lambda account, region: nullcontext(),
    min_files: int = 2,
) -> list[Compaction]:
    """Merge the raw layer's small files, partition by partition (each inside ``hold_partition``), month
    by month; returns what was merged."""
    version = current_version(warehouse)
    manifest = read_manifest(warehouse / VERSIONS / version) if version else None
    published = published_raw_files(warehouse, manifest) if manifest else set()
    # In a working copy of an S3 warehouse, only files that are on S3: another copy's merge, made from what
    # S3 holds, then holds every file of this one's or none, and the larger is read (no row twice).
    copy = working_copy(warehouse)
    done, failed = [], []
    for account_id, region in partitions(warehouse):
        with hold_partition(account_id, region):
            remove_replaced(warehouse, account_id, region)
            on_s3 = copy.on_s3() if copy is not None else None
            for table_name in (RAW_JOBS, RAW_ERRORS):
                files = [Path(f) for f in parquet_files(warehouse, table_name, account_id, region)]
                if table_name == RAW_JOBS:  # only what the published version read: the next build stays incremental
                    files = [f for f in files if f.relative_to(warehouse).as_posix() in published]
                if on_s3 is not None:
                    files = [f for f in files if f in on_s3]
                by_month: dict[str, list[Path]] = defaultdict(list)
                for path in files:
                    by_month[month_of(path)].append(path)
                for month, group in sorted(by_month.items()):
                    if len(group) < min_files:
                        continue
                    try:
                        done.append(merge(group, month))
                    except (OSError, pa.ArrowException, duckdb.Error, CompactionError) as error:
                        # One damaged file (quarantined by the next extraction or build) stops its month only.
                        failed.append(f"{group[0].parent.relative_to(warehouse)} {month}: {error}")
    if failed:
        raise CompactionError(
            f"{len(failed)} months were not merged, nothing of theirs was removed ({'; '.join(failed)}); "
            f"{len(done)} others were."
        )
    return done


def merge(files: list[Path], month: str) -> Compaction:
    """Merge ``files`` (one folder) into one compacted file, verified before they are removed."""
    directory = files[0].parent
    # Named by what it merges: two writers that merge the same files write the same file.
    names = json.dumps(sorted(f.name for f in files)).encode()
    target = directory / f"{COMPACTED_PREFIX}{month}-{hashlib.sha256(names).hexdigest()[:16]}.parquet"
    temporary = target.with_name(f"{target.name}{TEMP_MARKER}{os.getpid()}")
    # The union of the files' columns: a file written by a newer version keeps the columns it added.
    schema = pa.unify_schemas([pq.read_schema(f) for f in files]).remove_metadata()
    tree = {f.name: merge_tree(f) if f.name.startswith(COMPACTED_PREFIX) else None for f in files}
    schema = schema.with_metadata({REPLACES_KEY: json.dumps(tree, sort_keys=True).encode()})
    try:
        with pq.ParquetWriter(temporary, schema, compression="zstd") as writer:
            for batch in _batches(files, schema):
                writer.write_batch(batch)
        rows = _verify(files, temporary, schema.names)
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        _fsync_directory(directory)  # the merged file's name is on disk before the files it replaces go
    finally:
        temporary.unlink(missing_ok=True)
    for source in files:
        source.unlink()
    return Compaction(target, len(files), rows)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _batches(files: list[Path], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Every row of ``files``, one row group at a time (memory stays at a row group), in ``schema``."""
    for path in files:
        source = pq.ParquetFile(path)
        for group in range(source.num_row_groups):
            data = source.read_row_group(group)
            columns = [
                data.column(f.name).cast(f.type) if f.name in data.column_names else pa.nulls(len(data), f.type)
                for f in schema
            ]
            yield from pa.Table.from_arrays(columns, schema=schema).to_batches()


def _verify(files: list[Path], merged: Path, columns: list[str]) -> int:
    """The merged file's row count, after checking that it holds exactly the rows of ``files``: the same
    count and the same sum of a 64-bit hash of every row (every column)."""
    row_hash = f"sum(hash({', '.join(identifier(c) for c in columns)})::hugeint)"
    sources = f"read_parquet([{', '.join(literal(f) for f in files)}], union_by_name = true)"
    connection = duckdb.connect()
    try:
        expected = connection.execute(f"select count(*), {row_hash} from {sources}").fetchone()
        found = connection.execute(f"select count(*), {row_hash} from read_parquet({literal(merged)})").fetchone()
    finally:
        connection.close()
    if expected != found:
        raise CompactionError(
            f"merging {len(files)} raw files in {files[0].parent} gave {found[0]} rows where they hold "
            f"{expected[0]} (or different values); nothing was removed."
        )
    return int(found[0])
