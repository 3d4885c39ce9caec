"""Fetching one job's full record: DescribeTrainingJob plus its tags, lossless and redacted."""

from __future__ import annotations

import json
from typing import Any

from pipelines.extraction.redaction import redact


def keep_unknown_members(http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
    """botocore's parser drops members its model does not know yet. This ``after-call`` hook puts them
    back from the wire body, as sent, so that a new AWS field is stored before anyone has typed it."""
    if http_response.status_code >= 300:
        return
    try:
        wire = json.loads(http_response.content)
    except ValueError:
        return
    if isinstance(wire, dict):
        _merge_unknown(parsed, wire)


def _merge_unknown(parsed: dict[str, Any], wire: dict[str, Any]) -> None:
    for key, value in wire.items():
        if key not in parsed:
            parsed[key] = value
        elif isinstance(parsed[key], dict) and isinstance(value, dict):
            _merge_unknown(parsed[key], value)
        elif isinstance(parsed[key], list) and isinstance(value, list) and len(parsed[key]) == len(value):
            for parsed_item, wire_item in zip(parsed[key], value, strict=True):
                if isinstance(parsed_item, dict) and isinstance(wire_item, dict):
                    _merge_unknown(parsed_item, wire_item)


def register_hooks(client: Any) -> None:
    client.meta.events.register("after-call.sagemaker.DescribeTrainingJob", keep_unknown_members)
    client.meta.events.register("after-call.sagemaker.Search", keep_unknown_members)


def _describe(client: Any, name: str) -> dict[str, Any]:
    response = client.describe_training_job(TrainingJobName=name)
    response.pop("ResponseMetadata", None)
    return response  # type: ignore[no-any-return]


def complete_with_describe(client: Any, found: dict[str, Any]) -> dict[str, Any]:
    """The DescribeTrainingJob response of a job Search returned, with the tags Search returned (the
    same as ListTags') and any other member only Search returned, Environment values redacted."""
    response = _describe(client, found["TrainingJobName"])
    # Tags, and any member only Search returned (one botocore does not know yet, say), are kept.
    response.update({key: value for key, value in found.items() if key not in response})
    return redact(response)


def fetch_job(client: Any, name: str) -> dict[str, Any]:
    """The job's DescribeTrainingJob response with ``Tags`` added, Environment values redacted."""
    response = _describe(client, name)
    tags: list[dict[str, str]] = []
    pages = client.get_paginator("list_tags").paginate(
        ResourceArn=response["TrainingJobArn"], PaginationConfig={"PageSize": 100}
    )
    for page in pages:
        tags.extend(page.get("Tags", []))
    response["Tags"] = tags
    return redact(response)
