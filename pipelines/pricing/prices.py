"""Hourly training prices: a bundled snapshot, refreshed list prices, and the user's own rates.

There is no authoritative offline price list. The bundled snapshot (``training_prices.csv``) names a
public source and a date for every row, and says whether the figure was checked against a published bill
(``verified``). Prices refreshed from the AWS Price List API (``prices refresh``) override it, and a
user's CSV (``region,instance_type,usd_per_hour``, e.g. negotiated rates) overrides both. A malformed
row is an error naming the file, the line and the problem.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, replace
from pathlib import Path

from pipelines.aws_model import sagemaker_regions
from pipelines.config import REGION_NAME, ConfigError, utf8_text

BUNDLED = Path(__file__).resolve().parent / "training_prices.csv"
REQUIRED = ("region", "instance_type", "usd_per_hour")
INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9-]+\.[a-z0-9]+\Z")


class PriceFileError(ConfigError):
    """A price file that cannot be trusted, with the file, line and problem."""


@dataclass(frozen=True)
class Price:
    region: str
    instance_type: str
    usd_per_hour: float
    source: str
    as_of: str | None
    verified: bool


def read_price_file(path: Path, default_source: str | None = None) -> list[Price]:
    """Every row of a price CSV, validated; the first problem found raises PriceFileError."""
    if not path.is_file():
        raise PriceFileError(
            f"Price file {path} does not exist; fix the path given with --prices or costs.prices_file."
        )
    with io.StringIO(utf8_text(path, "Price file"), newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise PriceFileError(
                f"{path} line 1: the header lacks {', '.join(missing)}; it must name region,instance_type,usd_per_hour."
            )
        prices: dict[tuple[str, str], Price] = {}
        for row in reader:
            line = reader.line_num
            price = _parse_row(row, f"{path} line {line}", default_source or str(path))
            key = (price.region, price.instance_type)
            if key in prices:
                raise PriceFileError(f"{path} line {line}: {key[1]} in {key[0]} is priced twice; keep one row.")
            prices[key] = price
    return list(prices.values())


def _parse_row(row: dict[str, str | None], where: str, default_source: str) -> Price:
    region = (row.get("region") or "").strip()
    instance_type = (row.get("instance_type") or "").strip()
    if not REGION_NAME.match(region):
        raise PriceFileError(f"{where}: region {region!r} is not an AWS region name such as us-east-1.")
    if region not in sagemaker_regions():  # a misspelt region would price nothing, silently
        raise PriceFileError(f"{where}: region {region!r} is not a region SageMaker is offered in; fix its spelling.")
    if not INSTANCE_TYPE.match(instance_type):
        raise PriceFileError(f"{where}: instance_type {instance_type!r} is not a SageMaker type such as ml.g5.xlarge.")
    raw_price = (row.get("usd_per_hour") or "").strip()
    try:
        usd_per_hour = float(raw_price)
    except ValueError:
        raise PriceFileError(
            f"{where}: usd_per_hour {raw_price!r} is not a number; write dollars per hour, e.g. 1.408."
        ) from None
    if not usd_per_hour >= 0 or usd_per_hour == float("inf"):
        raise PriceFileError(f"{where}: usd_per_hour {raw_price!r} must be a finite number, 0 or more.")
    return Price(
        region=region,
        instance_type=instance_type,
        usd_per_hour=usd_per_hour,
        source=(row.get("source") or "").strip() or default_source,
        as_of=(row.get("as_of") or "").strip() or None,
        verified=(row.get("verified") or "").strip().lower() == "true",
    )


def effective_prices(
    user_file: Path | None = None, refreshed_file: Path | None = None, from_bill: list[Price] | None = None
) -> list[Price]:
    """The bundled snapshot, overridden by prices refreshed from the Price List API, overridden by rates
    learned from the bill (``from_bill``), overridden by ``user_file``. What an instance type is
    (accelerators, local NVMe) lives in ``instances.py``."""
    prices = {(p.region, p.instance_type): p for p in read_price_file(BUNDLED)}
    overrides = []
    if refreshed_file is not None:
        overrides.append(read_price_file(refreshed_file))
    if from_bill:
        overrides.append(from_bill)
    if user_file is not None:
        overrides.append(read_price_file(user_file, default_source=f"user rates ({user_file.name})"))
    for layer in overrides:
        for price in layer:
            prices[(price.region, price.instance_type)] = replace(price, verified=True)
    return sorted(prices.values(), key=lambda p: (p.region, p.instance_type))


BUNDLED_STORAGE = Path(__file__).resolve().parent / "storage_prices.csv"
ANY_REGION = "*"


@dataclass(frozen=True)
class StorageRate:
    region: str  # or ANY_REGION: the rate of every region without a row of its own
    usd_per_gb_month: float
    source: str
    verified: bool


def storage_rates(override: float | None = None) -> list[StorageRate]:
    """ML storage rates per region: the bundled ones, or ``override`` in every region."""
    if override is not None:
        return [
            StorageRate(ANY_REGION, float(override), "costs.storage_usd_per_gb_month (your rate, every region)", True)
        ]
    with BUNDLED_STORAGE.open(newline="") as handle:
        return [
            StorageRate(row["region"], float(row["usd_per_gb_month"]), row["source"], row["verified"] == "true")
            for row in csv.DictReader(handle)
        ]
