"""Refreshing list prices from the AWS Price List Query API into the warehouse.

``GetProducts`` (service AmazonSageMaker) answers with one JSON document per product; training prices
are the products of family "ML Instance" whose ``platoinstancetype`` is "Training", priced per hour under
``terms.OnDemand.*.priceDimensions.*.pricePerUnit.USD``. The result is written to
``<warehouse>/prices/price_list.csv``, which takes precedence over the bundled snapshot (and yields to
your own rates).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import boto3

from pipelines.pricing.prices import Price

PRICE_LIST_FILE = Path("prices") / "price_list.csv"
# The Price List API has endpoints only in us-east-1 and ap-south-1.
PRICING_REGION = "us-east-1"
SOURCE = "AWS Price List API (GetProducts, AmazonSageMaker, OnDemand)"


def parse_products(documents: Iterable[str], as_of: str) -> list[Price]:
    """Training prices from GetProducts' PriceList entries; anything else (hosting, spot, other units) is skipped."""
    prices = []
    for document in documents:
        product = json.loads(document)
        attributes = product.get("product", {}).get("attributes", {})
        if attributes.get("platoinstancetype") != "Training":
            continue
        usage = attributes.get("usagetype", "")
        instance_type = usage.split(":", 1)[1] if "Train:" in usage else attributes.get("instanceName", "")
        for term in product.get("terms", {}).get("OnDemand", {}).values():
            for dimension in term.get("priceDimensions", {}).values():
                usd = dimension.get("pricePerUnit", {}).get("USD")
                if dimension.get("unit") == "Hrs" and usd is not None and instance_type.startswith("ml."):
                    prices.append(Price(attributes["regionCode"], instance_type, float(usd), SOURCE, as_of, True))
    return prices


def fetch_training_prices(regions: Iterable[str], session: boto3.Session | None = None) -> list[Price]:
    client = (session or boto3.Session()).client("pricing", region_name=PRICING_REGION)
    as_of = datetime.now(UTC).date().isoformat()
    documents: list[str] = []
    for region in regions:
        filters = [
            {"Type": "TERM_MATCH", "Field": "productFamily", "Value": "ML Instance"},
            {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
            {"Type": "TERM_MATCH", "Field": "platoinstancetype", "Value": "Training"},
        ]
        pages = client.get_paginator("get_products").paginate(
            ServiceCode="AmazonSageMaker", Filters=filters, PaginationConfig={"PageSize": 100}
        )
        for page in pages:
            documents.extend(page.get("PriceList", []))
    return parse_products(documents, as_of)


def write_price_list(warehouse: Path, prices: list[Price]) -> Path:
    """Write the refreshed prices atomically as a price CSV that ``effective_prices`` reads."""
    path = warehouse / PRICE_LIST_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["region", "instance_type", "usd_per_hour", "source", "as_of", "verified"])
    unique = {(p.region, p.instance_type): p for p in prices}  # a product listed twice is one price
    for price in sorted(unique.values(), key=lambda p: (p.region, p.instance_type)):
        writer.writerow([price.region, price.instance_type, price.usd_per_hour, price.source, price.as_of, "true"])
    temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    temporary.write_text(buffer.getvalue())
    os.replace(temporary, path)
    return path


def refreshed_prices_file(warehouse: Path) -> Path | None:
    path = warehouse / PRICE_LIST_FILE
    return path if path.is_file() else None
