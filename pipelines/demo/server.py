"""A local SageMaker endpoint: moto's server, seeded with a demo fleet, with fault injection.

Run it as ``python -m pipelines.demo.server``; it prints one JSON line ``{"endpoint": ...}`` when it is
ready. Clients reach it only through the standard AWS settings (``AWS_ENDPOINT_URL``, region, dummy
credentials), exactly as they would reach AWS.

moto answers the AWS wire protocol (JSON over HTTP, serialized from botocore's own model). Four things
are adjusted, all inside this server process:

- training jobs are stored as the seeded records themselves, so DescribeTrainingJob and ListTags return
  them unchanged (moto's own CreateTrainingJob keeps only a subset of the members);
- ListTrainingJobs sorts, pages and filters like AWS is reported to: CreationTime filters are applied
  before the page is cut, the other filters after it, so pages can come back empty with a NextToken;
- Search over training jobs returns the records without the members only Describe has, tags included,
  with the filters, operators, sorting and paging the API reference describes (moto's own Search knows
  only Equals, Contains and NotEquals and does not page);
- a WSGI layer in front injects latency, ThrottlingException and 5xx errors, throttles operations past
  a per-operation rate, fails chosen jobs or whole regions, adds members botocore does not know yet,
  and counts calls by operation.

The ``/_fleet/...`` paths form a small control API used by :mod:`pipelines.demo.endpoint`.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import contextlib
import json
import logging
import random
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from moto.core.responses import ActionResult
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import SageMakerModelBackend, sagemaker_backends
from moto.sagemaker.responses import SageMakerResponse
from werkzeug.serving import make_server

from pipelines.aws_model import describe_only_members, dumps, parse_timestamps
from pipelines.demo.fleet import FleetSpec, arn_account_and_region, generate_fleet

CONTROL_PREFIX = "/_fleet/"
_REGION_IN_AUTH = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/")


# -- training jobs as seeded records ----------------------------------------------------------------


class SeededTrainingJob:
    """Stands in for moto's FakeTrainingJob: the record is served as it was given."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = {key: value for key, value in record.items() if key != "Tags"}
        self.tags: list[dict[str, str]] = list(record.get("Tags", []))
        self.arn = record["TrainingJobArn"]
        self.training_job_name = record["TrainingJobName"]

    @property
    def response_object(self) -> dict[str, Any]:
        return self.record

    @property
    def search_record(self) -> dict[str, Any]:
        """The record as Search returns it: without the members only Describe has, with the tags."""
        hidden = describe_only_members()
        return {**{k: v for k, v in self.record.items() if k not in hidden}, "Tags": self.tags}


_sorted_cache: dict[tuple[str, str], list[SeededTrainingJob]] = {}
# Search results by (account, region, sort, expression): sort keys and records, ascending. Cleared on
# every change to the stored jobs, so a backfill of 100,000 jobs pages without re-sorting per call.
_search_cache: dict[tuple[str, ...], tuple[list[Any], list[dict[str, Any]]]] = {}
_store_lock = threading.Lock()


def upsert_jobs(records: Iterable[dict[str, Any]]) -> int:
    count = 0
    with _store_lock:
        for record in records:
            account, region = arn_account_and_region(record["TrainingJobArn"])
            sagemaker_backends[account][region].training_jobs[record["TrainingJobName"]] = SeededTrainingJob(record)
            _sorted_cache.pop((account, region), None)
            count += 1
        _search_cache.clear()
    return count


def clear_jobs() -> None:
    with _store_lock:
        for account_backends in sagemaker_backends.values():
            account_backends.reset()
        _sorted_cache.clear()
        _search_cache.clear()


def _as_utc(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    text = str(value)
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        return _as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


_SORT_KEYS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "CreationTime": lambda r: r["CreationTime"],
    "Name": lambda r: r["TrainingJobName"],
    "Status": lambda r: r["TrainingJobStatus"],
}


def list_training_jobs(self: SageMakerResponse) -> ActionResult:
    backend: SageMakerModelBackend = self.sagemaker_backend
    sort_by = self._get_param("SortBy") or "CreationTime"
    descending = (self._get_param("SortOrder") or "Ascending") == "Descending"
    max_results = int(self._get_param("MaxResults") or 10)
    if not 1 <= max_results <= 100 or sort_by not in _SORT_KEYS:
        raise ValidationError(message=f"MaxResults must be 1..100 and SortBy one of {sorted(_SORT_KEYS)}")
    created_after = _as_utc(self._get_param("CreationTimeAfter"))
    created_before = _as_utc(self._get_param("CreationTimeBefore"))
    modified_after = _as_utc(self._get_param("LastModifiedTimeAfter"))
    modified_before = _as_utc(self._get_param("LastModifiedTimeBefore"))
    name_contains = self._get_param("NameContains")
    status_equals = self._get_param("StatusEquals")

    key = (backend.account_id, backend.region_name)
    with _store_lock:
        jobs = _sorted_cache.get(key)
        if jobs is None:
            seeded = [job for job in backend.training_jobs.values() if isinstance(job, SeededTrainingJob)]
            jobs = _sorted_cache[key] = sorted(seeded, key=lambda j: j.record["CreationTime"])
    ordered = (
        sorted(jobs, key=lambda j: _SORT_KEYS[sort_by](j.record), reverse=descending)
        if (sort_by != "CreationTime" or descending)
        else jobs
    )
    # Reported AWS behaviour: creation-time filters narrow the listing before paging ...
    window = [
        j
        for j in ordered
        if (created_after is None or j.record["CreationTime"] > created_after)
        and (created_before is None or j.record["CreationTime"] < created_before)
    ]
    start = int(self._get_param("NextToken") or 0)
    page = window[start : start + max_results]
    next_token = str(start + max_results) if start + max_results < len(window) else None
    # ... while the other filters are applied after the page is cut.
    page = [
        j
        for j in page
        if (modified_after is None or j.record["LastModifiedTime"] > modified_after)
        and (modified_before is None or j.record["LastModifiedTime"] < modified_before)
        and (not name_contains or name_contains in j.training_job_name)
        and (not status_equals or j.record["TrainingJobStatus"] == status_equals)
    ]
    summaries = []
    for job in page:
        record = job.record
        summary = {
            k: record[k]
            for k in (
                "TrainingJobName",
                "TrainingJobArn",
                "CreationTime",
                "TrainingEndTime",
                "LastModifiedTime",
                "TrainingJobStatus",
                "SecondaryStatus",
                "WarmPoolStatus",
            )
            if k in record
        }
        plan = record.get("ResourceConfig", {}).get("TrainingPlanArn")
        if plan:
            summary["TrainingPlanArn"] = plan
        summaries.append(summary)
    result: dict[str, Any] = {"TrainingJobSummaries": summaries}
    if next_token:
        result["NextToken"] = next_token
    return ActionResult(result)


SageMakerResponse.list_training_jobs = list_training_jobs  # type: ignore[method-assign]


# -- Search over training jobs -------------------------------------------------------------------------
# What the pipeline uses of Search, as the API reference describes it: a SearchExpression of up to 20
# Filters (and SubExpressions) joined by And or Or; every Filter operator; SortBy any property (default
# LastModifiedTime), SortOrder (default Descending); MaxResults 1..100 (default 10). NextToken is a
# cursor after the last record returned (sort value, ARN), so records that change while a caller pages
# move instead of shifting the pages. NestedFilters are refused (the pipeline does not use them).

_moto_search = SageMakerResponse.search
_SEARCH_OPERATORS = (
    "Equals", "NotEquals", "GreaterThan", "GreaterThanOrEqualTo", "LessThan", "LessThanOrEqualTo",
    "Contains", "Exists", "NotExists", "In",
)  # fmt: skip


def search(self: SageMakerResponse) -> ActionResult:
    if self._get_param("Resource") != "TrainingJob":
        return _moto_search(self)
    backend: SageMakerModelBackend = self.sagemaker_backend
    expression = self._get_param("SearchExpression") or {}
    sort_by = self._get_param("SortBy") or "LastModifiedTime"
    descending = (self._get_param("SortOrder") or "Descending") == "Descending"
    max_results = int(self._get_param("MaxResults") or 10)
    if not 1 <= max_results <= 100:
        raise ValidationError(message="MaxResults must be between 1 and 100.")
    _check_expression(expression)
    cache_key = (backend.account_id, backend.region_name, sort_by, json.dumps(expression, sort_keys=True))
    with _store_lock:
        cached = _search_cache.get(cache_key)
        if cached is None:
            seeded = (job.search_record for job in backend.training_jobs.values() if isinstance(job, SeededTrainingJob))
            matching = [record for record in seeded if _matches(record, expression)]
            ordered = sorted(((_sort_key(_property(r, sort_by)), r["TrainingJobArn"]), r) for r in matching)
            if len(_search_cache) > 32:
                _search_cache.clear()
            cached = _search_cache[cache_key] = ([k for k, _ in ordered], [r for _, r in ordered])
    keys, records = cached
    token = self._get_param("NextToken")
    cursor = _decode_cursor(token) if token else None
    if descending:
        end = bisect.bisect_left(keys, cursor) if cursor else len(keys)
        start = max(0, end - max_results)
        page, more = list(reversed(records[start:end])), start > 0
        last = keys[start] if page else None
    else:
        start = bisect.bisect_right(keys, cursor) if cursor else 0
        page, more = records[start : start + max_results], start + max_results < len(keys)
        last = keys[start + len(page) - 1] if page else None
    result: dict[str, Any] = {"Results": [{"TrainingJob": record} for record in page]}
    if more:
        result["NextToken"] = base64.urlsafe_b64encode(json.dumps(last).encode()).decode()
    return ActionResult(result)


def _check_expression(expression: dict[str, Any]) -> None:
    if expression.get("NestedFilters"):
        raise ValidationError(message="NestedFilters are not supported by the local endpoint.")
    for key in ("Filters", "SubExpressions"):
        if len(expression.get(key) or []) > 20:
            raise ValidationError(message=f"SearchExpression.{key} holds at most 20 items.")
    for condition in expression.get("Filters") or []:
        if condition.get("Operator", "Equals") not in _SEARCH_OPERATORS:
            raise ValidationError(message=f"Unknown filter operator {condition.get('Operator')!r}.")
    for sub in expression.get("SubExpressions") or []:
        _check_expression(sub)


def _matches(record: dict[str, Any], expression: dict[str, Any]) -> bool:
    outcomes = [_filter_matches(record, f) for f in expression.get("Filters") or []]
    outcomes += [_matches(record, sub) for sub in expression.get("SubExpressions") or []]
    if not outcomes:
        return True
    return any(outcomes) if expression.get("Operator") == "Or" else all(outcomes)


def _property(record: dict[str, Any], name: str) -> Any:
    """A property by Search's dotted name; ``Tags.<key>`` is the value of that tag."""
    if name.startswith("Tags."):
        return next((t["Value"] for t in record.get("Tags", []) if t["Key"] == name[5:]), None)
    value: Any = record
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _filter_matches(record: dict[str, Any], condition: dict[str, Any]) -> bool:
    actual = _property(record, condition["Name"])
    operator = condition.get("Operator", "Equals")
    if operator in ("Exists", "NotExists"):
        return (actual is not None) == (operator == "Exists")
    if actual is None:
        return operator == "NotEquals"
    text = str(condition.get("Value", ""))
    if operator == "In":
        return str(actual) in [v.strip() for v in text.split(",")]
    if operator == "Contains":
        return isinstance(actual, str) and text in actual
    if isinstance(actual, datetime):
        wanted: Any = _as_utc(text)
    elif isinstance(actual, int | float) and not isinstance(actual, bool):
        wanted = float(text)
    else:
        actual, wanted = str(actual), text
    return {
        "Equals": actual == wanted,
        "NotEquals": actual != wanted,
        "GreaterThan": actual > wanted,
        "GreaterThanOrEqualTo": actual >= wanted,
        "LessThan": actual < wanted,
        "LessThanOrEqualTo": actual <= wanted,
    }[operator]


def _sort_key(value: Any) -> list[Any]:
    """A JSON-able key that orders like the value, records without it last."""
    if value is None:
        return [3, ""]
    if isinstance(value, datetime):
        return [0, _as_utc(value).timestamp()]  # type: ignore[union-attr]
    if isinstance(value, int | float):
        return [1, float(value)]
    return [2, str(value)]


def _decode_cursor(token: str) -> tuple[list[Any], str]:
    try:
        key, arn = json.loads(base64.urlsafe_b64decode(token.encode()))
        return list(key), str(arn)
    except (ValueError, TypeError):
        raise ValidationError(message="Invalid NextToken.") from None


SageMakerResponse.search = search  # type: ignore[method-assign]


# -- faults and counters -----------------------------------------------------------------------------


@dataclass
class Faults:
    """What the endpoint does wrong, on purpose. Rates are fractions of SageMaker calls."""

    latency_ms: float = 0.0
    throttle_rate: float = 0.0
    error_rate: float = 0.0
    seed: int = 0
    fail_describe: list[str] = field(default_factory=list)  # job names whose Describe always fails
    fail_regions: list[str] = field(default_factory=list)  # regions where every SageMaker call fails
    extra_members: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> members to add
    deny_operations: list[str] = field(default_factory=list)  # answered with AccessDeniedException
    caller_account: str = ""  # what STS GetCallerIdentity answers as the account id (a hostile endpoint)
    # Requests per second each operation accepts per region (e.g. {"ListTrainingJobs": 2}); calls past
    # it are throttled, as AWS throttles its management APIs per account and region.
    rate_limits: dict[str, float] = field(default_factory=dict)


class _RateBuckets:
    """Token buckets by (operation, region): ``rate`` requests a second, bursts up to one second's worth."""

    def __init__(self) -> None:
        self.buckets: dict[tuple[str, str], tuple[float, float]] = {}  # key -> (tokens, updated)
        self.lock = threading.Lock()

    def take(self, key: tuple[str, str], rate: float) -> bool:
        with self.lock:
            now = time.monotonic()
            tokens, updated = self.buckets.get(key, (max(1.0, rate), now))
            tokens = min(max(1.0, rate), tokens + (now - updated) * rate)
            allowed = tokens >= 1
            self.buckets[key] = (tokens - 1 if allowed else tokens, now)
            return allowed


class FaultInjectingApp:
    def __init__(self, inner: Callable[..., Any]) -> None:
        self.inner = inner
        self.faults = Faults()
        self.rng = random.Random(0)
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.products: list[dict[str, Any]] = []  # Price List API products, seeded by the control API
        self.rate_buckets = _RateBuckets()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(CONTROL_PREFIX):
            return self.control(environ, start_response, path[len(CONTROL_PREFIX) :])
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target == "AWSPriceListService.GetProducts":
            return self.price_list(environ, start_response)
        if self.faults.caller_account and "GetCallerIdentity" in target + environ.get("QUERY_STRING", ""):
            return self.rewrite_caller_account(environ, start_response)
        if self.faults.caller_account and environ.get("CONTENT_TYPE", "").startswith("application/x-www-form"):
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = _Body(body)
            if b"Action=GetCallerIdentity" in body:
                return self.rewrite_caller_account(environ, start_response)
        if not target.startswith("SageMaker."):
            return self.inner(environ, start_response)
        operation = target.split(".", 1)[1]
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = _Body(body)
        faults = self.faults
        with self.lock:
            self.calls[operation] += 1
            draw = self.rng.random()
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        region_match = _REGION_IN_AUTH.search(environ.get("HTTP_AUTHORIZATION", ""))
        region = region_match.group(1) if region_match else ""
        if operation in faults.deny_operations:
            return self.error(
                start_response,
                400,
                "AccessDeniedException",
                f"User is not authorized to perform: sagemaker:{operation}",
            )
        if operation == "DeleteTrainingJob":  # moto has none; as AWS documents it, for terminal jobs only
            return self.delete_training_job(start_response, region, json.loads(body or b"{}"))
        if region in faults.fail_regions:
            return self.error(start_response, 503, "ServiceUnavailable", f"injected outage in {region}")
        limit = faults.rate_limits.get(operation)
        if draw < faults.throttle_rate or (limit and not self.rate_buckets.take((operation, region), limit)):
            return self.error(start_response, 400, "ThrottlingException", "Rate exceeded")
        if draw < faults.throttle_rate + faults.error_rate:
            return self.error(start_response, 500, "InternalFailure", "injected internal error")
        if operation == "DescribeTrainingJob":
            name = json.loads(body or b"{}").get("TrainingJobName", "")
            if name in faults.fail_describe:
                return self.error(start_response, 500, "InternalFailure", f"injected permanent failure for {name}")
            if name in faults.extra_members:
                return self.with_extra_members(environ, start_response, faults.extra_members[name])
        if operation == "Search" and faults.extra_members:
            return self.with_extra_members(environ, start_response, faults.extra_members, search=True)
        return self.inner(environ, start_response)

    def price_list(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """GetProducts of the AWS Price List API (moto has none), answered from the seeded products:
        TERM_MATCH filters, pages of MaxResults, products as JSON strings as AWS sends them."""
        request = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)) or b"{}")
        with self.lock:
            self.calls["GetProducts"] += 1
        filters = {f["Field"]: f["Value"] for f in request.get("Filters", [])}
        matching = [
            product
            for product in self.products
            if all(
                product["product"].get(field, product["product"]["attributes"].get(field)) == value
                for field, value in filters.items()
            )
        ]
        start = int(request.get("NextToken") or 0)
        size = int(request.get("MaxResults") or 100)
        result: dict[str, Any] = {
            "FormatVersion": "aws_v1",
            "PriceList": [json.dumps(product) for product in matching[start : start + size]],
        }
        if start + size < len(matching):
            result["NextToken"] = str(start + size)
        body = json.dumps(result).encode()
        start_response("200 OK", [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(body)))])
        return [body]

    def with_extra_members(
        self, environ: dict[str, Any], start_response: Callable[..., Any], extra: dict[str, Any], search: bool = False
    ) -> Iterable[bytes]:
        """The response with ``extra`` members merged in; for Search, ``extra`` maps job names to the
        members added to that job's record."""
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            captured.update(status=status, headers=headers)

        body = b"".join(self.inner(environ, capture))
        if captured["status"].startswith("200"):
            document = json.loads(body)
            if search:
                for result in document.get("Results", []):
                    job = result.get("TrainingJob", {})
                    _deep_merge(job, extra.get(job.get("TrainingJobName"), {}))
            else:
                _deep_merge(document, extra)
            body = json.dumps(document).encode()
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]

    def rewrite_caller_account(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            captured.update(status=status, headers=headers)

        body = b"".join(self.inner(environ, capture))
        body = re.sub(rb"\d{12}", self.faults.caller_account.encode(), body, count=1)
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]

    def delete_training_job(
        self, start_response: Callable[..., Any], region: str, request: dict[str, Any]
    ) -> Iterable[bytes]:
        name = request.get("TrainingJobName", "")
        with _store_lock:
            for account, backends in sagemaker_backends.items():
                jobs = backends[region].training_jobs
                job = jobs.get(name)
                if job is None:
                    continue
                if job.record.get("TrainingJobStatus") not in ("Completed", "Failed", "Stopped"):
                    break
                del jobs[name]
                _sorted_cache.pop((account, region), None)
                _search_cache.clear()
                body = b"{}"
                start_response("200 OK", [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", "2")])
                return [body]
        return self.error(start_response, 400, "ValidationException", f"Could not delete training job '{name}'.")

    def error(self, start_response: Callable[..., Any], status: int, code: str, message: str) -> Iterable[bytes]:
        with self.lock:
            self.injected[code] += 1
        body = json.dumps({"__type": code, "message": message}).encode()
        reason = {400: "Bad Request", 500: "Internal Server Error", 503: "Service Unavailable"}[status]
        start_response(
            f"{status} {reason}",
            [
                ("Content-Type", "application/x-amz-json-1.1"),
                ("Content-Length", str(len(body))),
                ("x-amzn-RequestId", "injected-fault"),
            ],
        )
        return [body]

    def control(self, environ: dict[str, Any], start_response: Callable[..., Any], action: str) -> Iterable[bytes]:
        raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        payload = json.loads(raw) if raw else {}
        if action == "load":
            spec = FleetSpec(
                jobs=int(payload.get("jobs", 2000)),
                seed=int(payload.get("seed", 7)),
                days=int(payload.get("days", 90)),
                end=_as_utc(payload["end"]) if payload.get("end") else FleetSpec().end,
                accounts=tuple(payload.get("accounts") or FleetSpec().accounts),
                regions=tuple(payload.get("regions") or FleetSpec().regions),
            )
            clear_jobs()
            result: Any = {"loaded": upsert_jobs(generate_fleet(spec))}
        elif action == "jobs":
            result = {"upserted": upsert_jobs(parse_timestamps(record) for record in payload)}
        elif action == "clear":
            clear_jobs()
            result = {"cleared": True}
        elif action == "prices":
            self.products = [price_list_product(**row) for row in payload]
            result = {"products": len(self.products)}
        elif action == "faults":
            self.faults = Faults(**payload)
            self.rng = random.Random(self.faults.seed)
            self.rate_buckets = _RateBuckets()
            result = asdict(self.faults)
        elif action == "stats":
            with self.lock:
                result = {"calls": dict(self.calls), "injected": dict(self.injected)}
        elif action == "stats/reset":
            with self.lock:
                self.calls.clear()
                self.injected.clear()
            result = {"reset": True}
        else:
            body = json.dumps({"error": f"unknown control action {action!r}"}).encode()
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [body]
        body = dumps(result).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


class _Body:
    """A re-readable request body (the fault layer reads it before moto does)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.position = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size is None or size < 0 else self.position + size
        chunk, self.position = self.data[self.position : end], min(end, len(self.data))
        return chunk

    def readline(self, size: int = -1) -> bytes:
        return self.read(size)


def price_list_product(region: str, instance_type: str, usd_per_hour: float, kind: str = "Training") -> dict[str, Any]:
    """One SageMaker product as the Price List API describes it (offer term codes are illustrative)."""
    prefix = {"us-east-1": "USE1", "eu-west-1": "EU"}.get(region, region.upper())
    sku = f"{prefix}{instance_type}{kind}".replace(".", "").upper()[:16]
    usage = {"Training": "Train", "SpotTraining": "Train-Spot", "Hosting": "Host"}.get(kind, kind)
    return {
        "product": {
            "productFamily": "ML Instance",
            "sku": sku,
            "attributes": {
                "regionCode": region,
                "instanceName": instance_type,
                "platoinstancetype": kind,
                "usagetype": f"{prefix}-{usage}:{instance_type}",
                "servicecode": "AmazonSageMaker",
            },
        },
        "serviceCode": "AmazonSageMaker",
        "terms": {
            "OnDemand": {
                f"{sku}.JRTCKXETXF": {
                    "priceDimensions": {
                        f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
                            "unit": "Hrs",
                            "pricePerUnit": {"USD": f"{usd_per_hour:.10f}"},
                            "description": f"${usd_per_hour} per {kind} {instance_type} hour in {region}",
                        }
                    },
                    "effectiveDate": "2026-11-01T00:00:00Z",
                }
            }
        },
        "publicationDate": "2026-11-01T00:00:00Z",
    }


def _deep_merge(target: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        else:
            target[key] = value


class _Dispatcher(DomainDispatcherApplication):
    """moto's dispatcher, with each host's backend looked up once: moto's own lookup lists moto's package
    folder on disk at every request (a sixth of the server's time)."""

    def __init__(self) -> None:
        super().__init__(create_backend_app)
        self._backends: dict[str | None, Any] = {}

    def get_backend_for_host(self, host: str | None) -> Any:
        if host not in self._backends:
            self._backends[host] = super().get_backend_for_host(host)
        return self._backends[host]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--jobs", type=int, default=0, help="seed a demo fleet of this many jobs")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    if args.jobs:
        upsert_jobs(generate_fleet(FleetSpec(jobs=args.jobs, seed=args.seed)))
    app = FaultInjectingApp(_Dispatcher())
    server = make_server(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)
    host, port = server.server_address[:2]
    print(json.dumps({"endpoint": f"http://{host}:{port}"}), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    sys.exit(0)


if __name__ == "__main__":
    main()
