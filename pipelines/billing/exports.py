"""Reading a CUR 2.0 export as AWS Data Exports delivers it, from a local folder or ``s3://``.

An export is laid out as ``<prefix>/<export-name>/data/BILLING_PERIOD=YYYY-MM/<files>`` and
``<prefix>/<export-name>/metadata/BILLING_PERIOD=YYYY-MM/.../<export-name>-Manifest.json``. The manifest
is written after the data files and lists them (``dataFiles``), so a period is read only through its
manifest: files without one are a delivery still under way. When a period has several manifests (the
"create new report" delivery keeps each execution), the newest replaces the others.

Only SageMaker training line items are kept: product code ``AmazonSageMaker`` and a usage type of the
``Train`` family (``USE1-Train:ml.m5.large``, ``USE1-Train:VolumeUsage.gp2``; see docs/costs.md for the
spot and warm-pool names). Every column of a kept row is kept; the columns the models read are cast to
one type, so that periods delivered with different physical types read as one table.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import fs

from pipelines.config import ConfigError

PRODUCT_CODE = "AmazonSageMaker"
# <REGION>-Train:<instance type>, <REGION>-Train:VolumeUsage.gp2 and any other member of the Train family
# (a region prefix is absent in some regions' usage types).
TRAINING_USAGE_TYPE = r"^([A-Z0-9]+-)?Train[A-Za-z-]*:"
PERIOD = re.compile(r"BILLING_PERIOD=(\d{4}-\d{2})")
ARN_ACCOUNT = re.compile(r"^arn:aws[a-z-]*:bcm-data-exports:[a-z0-9-]*:(\d{12}):export/")
SOURCE_ROW_COLUMN = "smw_source_row"  # ours: the row's place in its delivery (file number x 10^12 + row)
ROWS_PER_FILE = 10**12
EXPORT_NAME_COLUMN = "smw_export_name"  # ours: which export (Delivery.export_key) a kept row came from

_TIMESTAMP = pa.timestamp("us", tz="UTC")
# The columns the models read, with the type each is cast to. Required ones must be in every data file.
REQUIRED_COLUMNS: dict[str, pa.DataType] = {
    "identity_line_item_id": pa.string(),
    "bill_billing_period_start_date": _TIMESTAMP,
    "line_item_usage_account_id": pa.string(),
    "line_item_line_item_type": pa.string(),
    "line_item_product_code": pa.string(),
    "line_item_usage_type": pa.string(),
    "line_item_usage_start_date": _TIMESTAMP,
    "line_item_usage_end_date": _TIMESTAMP,
    "line_item_usage_amount": pa.float64(),
    "line_item_unblended_cost": pa.float64(),
}
# Present in a CUR 2.0 export, but some only with options (resource IDs) or for some line items.
OPTIONAL_COLUMNS: dict[str, pa.DataType] = {
    "line_item_resource_id": pa.string(),
    "line_item_operation": pa.string(),
    "line_item_line_item_description": pa.string(),
    "line_item_unblended_rate": pa.string(),
    "line_item_net_unblended_cost": pa.float64(),
    "pricing_unit": pa.string(),
    "pricing_public_on_demand_rate": pa.string(),
    "pricing_public_on_demand_cost": pa.float64(),
    "savings_plan_savings_plan_effective_cost": pa.float64(),
    "savings_plan_savings_plan_a_r_n": pa.string(),
    "product_region_code": pa.string(),
    "product_instance_type": pa.string(),
    "resource_tags": pa.map_(pa.string(), pa.string()),
}
KNOWN_COLUMNS = {**REQUIRED_COLUMNS, **OPTIONAL_COLUMNS}
BATCH_ROWS = 65_536  # rows read at a time: a month of a large account's bill never sits in memory whole


class BillingExportError(ConfigError):
    """An export that cannot be read as CUR 2.0, named with the file and the problem."""


@dataclass(frozen=True)
class Delivery:
    """One billing period of one export, as its newest manifest describes it."""

    location: str  # the configured export location
    export_name: str
    period: str  # YYYY-MM
    export_key: str  # <account>-<export-name> from the manifest's exportArn: unique, wherever the copy lives
    manifest: str  # path in the export's filesystem
    data_files: tuple[str, ...]
    fingerprint: str  # changes whenever the manifest or any listed file does


def open_export(location: str) -> tuple[fs.FileSystem, str]:
    """The filesystem and root path of an export location: a local folder or ``s3://bucket/prefix``
    (reached with the standard AWS settings, ``AWS_ENDPOINT_URL`` included)."""
    if location.startswith("s3://"):
        try:
            filesystem, root = fs.FileSystem.from_uri(location)
        except (OSError, pa.ArrowException) as error:
            raise BillingExportError(f"Cannot open the billing export {location}: {error}.") from None
        return filesystem, root.rstrip("/")
    folder = Path(location)
    if not folder.is_dir():
        raise BillingExportError(
            f"The billing export {location} is not a folder; point billing.exports (or --billing) at the folder "
            "or s3:// prefix that holds <export-name>/data and <export-name>/metadata."
        )
    return fs.LocalFileSystem(), str(folder.resolve())


def find_deliveries(location: str) -> list[Delivery]:
    """Every billing period the export at ``location`` has delivered, newest manifest per period."""
    filesystem, root = open_export(location)
    try:
        files = {
            info.path: info
            for info in filesystem.get_file_info(fs.FileSelector(root, recursive=True))
            if info.type == fs.FileType.File
        }
    except (OSError, pa.ArrowException) as error:
        raise BillingExportError(f"Cannot list the billing export {location}: {error}.") from None
    newest: dict[tuple[str, str, str], fs.FileInfo] = {}  # (export folder, name, period): newest manifest
    for path, info in files.items():
        parts = path[len(root) :].strip("/").split("/")
        period = PERIOD.search(path)
        if not path.endswith("Manifest.json") or "metadata" not in parts or period is None:
            continue
        # <prefix>/<export>/metadata/...: the location may be the prefix or the export's own folder.
        at = parts.index("metadata")
        name = parts[at - 1] if at else root.rstrip("/").rsplit("/", 1)[-1]
        key = ("/".join(parts[:at]), name, period.group(1))  # payerA/cur2 and payerB/cur2 are two exports
        if key not in newest or (info.mtime, info.path) > (newest[key].mtime, newest[key].path):
            newest[key] = info
    if not newest:
        raise BillingExportError(
            f"No CUR 2.0 manifest (<export-name>/metadata/BILLING_PERIOD=YYYY-MM/...Manifest.json) under "
            f"{location}; point billing.exports at the prefix the export delivers to."
        )
    return [
        delivery
        for (_, export_name, period), manifest in sorted(newest.items())
        if (delivery := _delivery(location, filesystem, root, files, export_name, period, manifest)) is not None
    ]


def _delivery(
    location: str,
    filesystem: fs.FileSystem,
    root: str,
    files: dict[str, fs.FileInfo],
    export_name: str,
    period: str,
    manifest: fs.FileInfo,
) -> Delivery | None:
    """The delivery a manifest describes; None when it exports another table than CUR 2.0."""
    where = _shown(location, root, manifest.path)
    try:
        with filesystem.open_input_stream(manifest.path) as handle:
            text = handle.read()
    except (OSError, pa.ArrowException) as error:
        raise BillingExportError(f"Cannot read {where}: {error}.") from None
    try:
        document = json.loads(text)
        listed = document["dataFiles"]
        if not isinstance(listed, list) or not all(isinstance(f, str) for f in listed):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise BillingExportError(
            f"{where} is not a Data Exports manifest: it must be JSON with a dataFiles list of file URIs."
        ) from None
    listed_columns = {c.get("name") for c in document.get("columns") or [] if isinstance(c, dict)}
    if listed_columns and not {"identity_line_item_id", "line_item_usage_type"} <= listed_columns:
        return None  # another table's export in the same prefix (FOCUS, say): not a CUR 2.0 one
    # A manifest names its files by full S3 URI; the part from <export-name>/data/ on is the same in a
    # local copy of the export, so files are found relative to the export's folder.
    export_root = manifest.path[: manifest.path.index(f"/{export_name}/metadata/")]
    data_files = []
    for uri in listed:
        marker = f"/{export_name}/data/"
        if marker not in uri:
            raise BillingExportError(f"{where} lists {uri}, which is not under {export_name}/data/.")
        path = export_root + marker + uri.split(marker, 1)[1]
        if path not in files:
            raise BillingExportError(f"{where} lists {uri}, but the export has no such file; copy the whole export.")
        if not path.endswith(".parquet"):
            raise BillingExportError(
                f"{_shown(location, root, path)} is not Parquet; create the CUR 2.0 export with the Parquet format."
            )
        data_files.append(path)
    digest = hashlib.sha256(text)
    for path in data_files:
        digest.update(f"\n{path[len(export_root) :]}\t{files[path].size}\t{files[path].mtime_ns}".encode())
    # Two payer accounts may both name their export "cur2"; the account that owns it tells them apart,
    # while a local copy of the same export keeps the same key (so it never counts twice).
    owner = ARN_ACCOUNT.search(str(document.get("exportArn") or ""))
    key = f"{owner.group(1)}-{export_name}" if owner else export_name
    return Delivery(location, export_name, period, key, manifest.path, tuple(data_files), digest.hexdigest())


def _shown(location: str, root: str, path: str) -> str:
    """A file's name as the user knows it: under the location they configured."""
    return location.rstrip("/") + path[len(root) :]


def training_line_items(delivery: Delivery) -> Iterator[tuple[pa.Table, int]]:
    """The SageMaker training line items of each data file of ``delivery``, with every column, the known
    ones cast to their types; also how many rows the file held."""
    filesystem, root = open_export(delivery.location)
    for file_number, path in enumerate(delivery.data_files):
        where = _shown(delivery.location, root, path)
        try:
            parquet = pq.ParquetFile(filesystem.open_input_file(path))
        except (OSError, pa.ArrowException) as error:
            raise BillingExportError(f"{where} is not a readable Parquet file ({error}).") from None
        names = parquet.schema_arrow.names
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            raise BillingExportError(
                f"{where} has no column {missing[0]}; it is not a CUR 2.0 export (create one with Data Exports)."
            )
        try:
            kept = _kept_rows(parquet, file_number, where)
        except (OSError, pa.ArrowException) as error:
            raise BillingExportError(f"{where} cannot be read ({error}); AWS may still be delivering it.") from None
        yield kept, parquet.metadata.num_rows


def _kept_rows(parquet: pq.ParquetFile, file_number: int, where: str) -> pa.Table:
    """The training rows of one data file, typed, with their place in the delivery."""
    kept, first_row = [], 0
    for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
        # Where each row sat in the delivery: AWS promises identity_line_item_id unique only within a
        # partition, so this, not the id, is what tells two kept rows apart.
        position = file_number * ROWS_PER_FILE + first_row + np.arange(batch.num_rows, dtype=np.int64)
        rows = pa.Table.from_batches([batch]).append_column(SOURCE_ROW_COLUMN, pa.array(position))
        first_row += batch.num_rows
        training = pc.and_(
            pc.equal(rows["line_item_product_code"], PRODUCT_CODE),
            pc.match_substring_regex(rows["line_item_usage_type"].cast(pa.string()), TRAINING_USAGE_TYPE),
        )
        kept.append(_typed(rows.filter(pc.fill_null(training, False)), where))
    if not kept:
        empty = parquet.schema_arrow.empty_table()
        kept = [_typed(empty.append_column(SOURCE_ROW_COLUMN, pa.array([], pa.int64())), where)]
    return _covered_usage_priced(pa.concat_tables(kept, promote_options="permissive"), where)


def _covered_usage_priced(rows: pa.Table, where: str) -> pa.Table:
    """Savings Plan covered usage costs its effective cost: without it, the plan's dollars would vanish."""
    covered = pc.equal(rows["line_item_line_item_type"], "SavingsPlanCoveredUsage")
    if not pc.any(covered).as_py():
        return rows
    column = "savings_plan_savings_plan_effective_cost"
    if column not in rows.column_names or pc.any(pc.is_null(rows.filter(covered)[column])).as_py():
        raise BillingExportError(
            f"{where}: SavingsPlanCoveredUsage lines without {column}; include the Savings Plan columns in the export."
        )
    return rows


def _typed(rows: pa.Table, where: str) -> pa.Table:
    for name, wanted in KNOWN_COLUMNS.items():
        if name not in rows.column_names or rows.schema.field(name).type == wanted:
            continue
        position = rows.column_names.index(name)
        try:
            rows = rows.set_column(position, name, rows[name].cast(wanted))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise BillingExportError(
                f"{where}: column {name} holds {rows.schema.field(name).type} values that are not {wanted}; "
                "the file is not the CUR 2.0 AWS delivers."
            ) from None
    return rows
