"""Where things are in a warehouse directory: the published paths readers use, and the folders behind
them. Only names and paths: the code that writes them lives in ``storage.raw`` and ``warehouse``.

```
warehouse/
  sagemaker.duckdb -> current/sagemaker.duckdb     fixed links: the paths readers and BI tools use
  parquet          -> current/parquet
  current          -> .versions/<run>               the one pointer, swapped by a single rename
  .versions/<run>/ .staging/<run>/ .retired/ raw/ quarantine/ .locks/
```
"""

from __future__ import annotations

from pathlib import Path

DATABASE = "sagemaker.duckdb"
PARQUET = "parquet"
CURRENT = "current"
VERSIONS = ".versions"
STAGING = ".staging"
# The database of the newest version no longer kept, which the next incremental build recycles as its staging
# database (storage.versions.copy_published_database).
RETIRED = ".retired"


def published_parquet(warehouse: Path, table_name: str) -> list[Path]:
    """A published table's Parquet files, through ``current`` (none before the first publication). A table
    is a folder of files: one per week of job creation for a per-job table, else one."""
    folder = warehouse / PARQUET / table_name
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []
