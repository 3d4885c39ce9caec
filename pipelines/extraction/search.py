"""Reading training jobs through the Search API: up to 100 whole records a call, tags included.

A Search record is a DescribeTrainingJob response without the members only Describe returns
(:func:`pipelines.aws_model.describe_only_members`: BillableTokenCount, ProgressInfo, ...) and with
``Tags``, so one Search call replaces up to 200 Describe and ListTags calls. Which records still need
Describe is decided in :mod:`pipelines.extraction.planning`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from pipelines.extraction.redaction import redact

PAGE_SIZE = 100  # the largest MaxResults Search allows
NAMES_PER_CALL = 20  # a SearchExpression holds at most 20 filters


def search_jobs(client: Any, modified_after: datetime | None) -> Iterator[dict[str, Any]]:
    """Every training job of the client's account and region, or those modified after
    ``modified_after``, redacted. A full read goes in creation order, which changes to jobs cannot
    reorder while it pages; an incremental one in modification order."""
    params: dict[str, Any] = {"Resource": "TrainingJob", "SortOrder": "Ascending", "SortBy": "CreationTime"}
    if modified_after is not None:
        params["SortBy"] = "LastModifiedTime"
        params["SearchExpression"] = {
            "Filters": [{"Name": "LastModifiedTime", "Operator": "GreaterThan", "Value": search_time(modified_after)}]
        }
    yield from _records(client, params)


def search_by_name(client: Any, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The records of ``names`` (at most 20: one SearchExpression) that Search returns, by name, redacted."""
    expression = {
        "Filters": [{"Name": "TrainingJobName", "Operator": "Equals", "Value": name} for name in names],
        "Operator": "Or",
    }
    return {
        r["TrainingJobName"]: r for r in _records(client, {"Resource": "TrainingJob", "SearchExpression": expression})
    }


def search_time(moment: datetime) -> str:
    """A time as Search filters take it: ISO 8601, ``YYYY-mm-ddTHH:MM:SS``, in UTC (rounded down)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _records(client: Any, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    # The paginator follows NextToken to the end; 100 is the largest page the API allows.
    for page in client.get_paginator("search").paginate(**params, PaginationConfig={"PageSize": PAGE_SIZE}):
        for result in page.get("Results", []):
            if "TrainingJob" in result:
                yield redact(result["TrainingJob"])
