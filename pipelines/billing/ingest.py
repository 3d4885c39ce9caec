"""Loading an export's training line items into the raw layer: one Parquet file per export and billing
period, ``raw/billing/<account>-<export-name>/BILLING_PERIOD=YYYY-MM.parquet``.

A period is read again only when its delivery changed (its manifest, or a file it lists). A re-delivered
period replaces the earlier one in a single rename, so a crash leaves the old file or the new one, never
half of one, and a period is never counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.billing.exports import (
    EXPORT_NAME_COLUMN,
    KNOWN_COLUMNS,
    SOURCE_ROW_COLUMN,
    BillingExportError,
    Delivery,
    find_deliveries,
    training_line_items,
)
from pipelines.storage.raw import write_parquet_atomically

RAW_BILLING = "billing"
FINGERPRINT = b"smw_delivery_fingerprint"


@dataclass
class IngestReport:
    periods_loaded: list[str] = field(default_factory=list)  # "<export>/<period>"
    periods_unchanged: list[str] = field(default_factory=list)
    rows_read: int = 0  # every line item of the files read
    rows_kept: int = 0  # the SageMaker training ones


def raw_billing_dir(warehouse: Path) -> Path:
    return warehouse / "raw" / RAW_BILLING


def raw_billing_file(warehouse: Path, delivery: Delivery) -> Path:
    return raw_billing_dir(warehouse) / delivery.export_key / f"BILLING_PERIOD={delivery.period}.parquet"


def raw_billing_files(warehouse: Path) -> list[str]:
    directory = raw_billing_dir(warehouse)
    return sorted(str(p) for p in directory.glob("*/BILLING_PERIOD=*.parquet")) if directory.exists() else []


def stored_fingerprint(path: Path) -> bytes | None:
    if not path.exists():
        return None
    return (pq.read_schema(path).metadata or {}).get(FINGERPRINT)


def ingest_exports(warehouse: Path, locations: tuple[str, ...]) -> IngestReport:
    """Load every changed billing period of every export at ``locations`` into the raw layer."""
    report = IngestReport()
    for location in locations:
        for delivery in find_deliveries(location):
            target = raw_billing_file(warehouse, delivery)
            label = f"{delivery.export_key}/{delivery.period}"
            if stored_fingerprint(target) == delivery.fingerprint.encode():
                report.periods_unchanged.append(label)
                continue
            parts, rows_read = [], 0
            for kept, rows in training_line_items(delivery):
                parts.append(kept)
                rows_read += rows
            try:
                rows = pa.concat_tables(parts, promote_options="permissive") if parts else empty_line_items()
            except pa.ArrowException as error:
                raise BillingExportError(
                    f"The data files of {delivery.manifest} disagree on a column's type ({error})."
                ) from None
            rows = rows.append_column(EXPORT_NAME_COLUMN, pa.array([delivery.export_key] * rows.num_rows, pa.string()))
            metadata = {
                FINGERPRINT: delivery.fingerprint.encode(),
                b"smw_manifest": delivery.manifest.encode(),
                b"smw_rows_read": str(rows_read).encode(),
                b"smw_loaded_at": datetime.now(UTC).isoformat().encode(),
            }
            write_parquet_atomically(rows.replace_schema_metadata(metadata), target)
            report.periods_loaded.append(label)
            report.rows_read += rows_read
            report.rows_kept += rows.num_rows
    return report


def empty_line_items() -> pa.Table:
    """No line items, with every column the models read (a warehouse without a bill has this)."""
    fields = [pa.field(name, kind) for name, kind in KNOWN_COLUMNS.items()]
    return pa.schema([*fields, pa.field(SOURCE_ROW_COLUMN, pa.int64())]).empty_table()
