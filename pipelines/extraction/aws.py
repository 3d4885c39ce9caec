"""AWS access: sessions per account, SageMaker clients per region, retries, rate caps and call counters.

Everything goes through boto3 with the standard settings (credentials chain, ``AWS_ENDPOINT_URL``,
region), so the same code reads real AWS and the local endpoint. botocore does the retrying; this module
only configures it and counts what happened.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from pipelines.aws_model import sagemaker_regions
from pipelines.config import ACCOUNT_ID, Account, ConfigError, ExtractionSettings
from pipelines.extraction.retries import install_retries

# At DEBUG, botocore logs whole request and response bodies (container Environment values), the
# canonical request it signs (the session token) and credential details. Every logger of the AWS SDK and
# its HTTP stack is held at INFO, whatever the root logger or Dagster's python_log_level says: setting a
# parent such as "botocore" to DEBUG does not lower a child that has a level of its own.
_AWS_LOGGER_PREFIXES = ("botocore", "boto3", "urllib3", "s3transfer")
_AWS_LOGGERS = (
    "botocore.auth",
    "botocore.credentials",
    "botocore.endpoint",
    "botocore.parsers",
    "botocore.hooks",
    "botocore.retryhandler",
    "botocore.httpsession",
    "botocore.awsrequest",
    "botocore.client",
    "botocore.utils",
    "botocore.retries.standard",
    "botocore.retries.adaptive",
    "urllib3.connectionpool",
)


def hold_aws_loggers_at_info() -> None:
    """Pin every AWS SDK logger that exists now (and the ones known to log secrets) at INFO or above."""
    names = {*_AWS_LOGGERS, *(n for n in logging.Logger.manager.loggerDict if n.split(".")[0] in _AWS_LOGGER_PREFIXES)}
    for name in names:
        logger = logging.getLogger(name)
        if logger.level < logging.INFO:
            logger.setLevel(logging.INFO)


hold_aws_loggers_at_info()


@dataclass(frozen=True)
class Target:
    """One account and region to read."""

    account: Account
    account_id: str
    region: str

    @property
    def label(self) -> str:
        return f"{self.account.name}/{self.region}"


@dataclass
class ApiCallStats:
    """Thread-safe counters, fed by botocore events: calls, HTTP attempts and error codes by operation."""

    calls: Counter[str] = field(default_factory=Counter)
    attempts: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def on_call(self, model: Any, **_: Any) -> None:
        with self.lock:
            self.calls[model.name] += 1

    def on_attempt(
        self, parsed_response: Any = None, response_dict: Any = None, exception: Any = None, **kwargs: Any
    ) -> None:
        operation = kwargs["event_name"].rsplit(".", 1)[-1]
        code = None
        if exception is not None:
            code = type(exception).__name__
        elif response_dict is not None and response_dict["status_code"] >= 400:
            code = (parsed_response or {}).get("Error", {}).get("Code") or f"HTTP{response_dict['status_code']}"
        with self.lock:
            self.attempts[operation] += 1
            if code:
                self.errors[code] += 1

    @property
    def retries(self) -> int:
        return sum(self.attempts.values()) - sum(self.calls.values())

    @property
    def throttles(self) -> int:
        return sum(n for code, n in self.errors.items() if "Throttl" in code or code == "TooManyRequestsException")

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "calls": dict(self.calls),
                "attempts": dict(self.attempts),
                "errors": dict(self.errors),
                "retries": sum(self.attempts.values()) - sum(self.calls.values()),
            }


class RateLimiter:
    """A token bucket: at most ``rate`` requests per second on average, bursts up to one second's worth
    (and at least one request, so that rates below 1/s still let requests through). A set ``stop`` ends
    the wait."""

    def __init__(self, rate: float, stop: threading.Event | None = None) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self.lock = threading.Lock()
        self.stop = stop or threading.Event()

    def acquire(self, **_: Any) -> None:
        while not self.stop.is_set():
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                wait = (1 - self.tokens) / self.rate
            self.stop.wait(wait)


def base_session() -> boto3.Session:
    """The session the standard AWS settings describe, or a ConfigError when they name a missing profile."""
    try:
        return boto3.Session()
    except botocore.exceptions.ProfileNotFound as error:
        raise ConfigError(
            f"The AWS profile {error.kwargs.get('profile')!r} is not configured; fix AWS_PROFILE "
            "or add the profile with `aws configure --profile NAME`."
        ) from None


def account_session(base: boto3.Session, account: Account, region: str) -> boto3.Session:
    """The session for ``account``: the base credentials, or a role assumed with them."""
    if not account.role_arn:
        return base
    sts = base.client("sts", region_name=region)
    params: dict[str, Any] = {"RoleArn": account.role_arn, "RoleSessionName": "sagemaker-training-warehouse"}
    if account.external_id:
        params["ExternalId"] = account.external_id
    credentials = sts.assume_role(**params)["Credentials"]
    return boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=region,
    )


def caller_account_id(session: boto3.Session, region: str) -> str:
    """The account the session's credentials belong to, or a ConfigError that says how to fix access."""
    try:
        account_id = str(session.client("sts", region_name=region).get_caller_identity()["Account"])
    except botocore.exceptions.NoCredentialsError:
        raise ConfigError(
            "No AWS credentials were found; set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "or run `aws configure`."
        ) from None
    except botocore.exceptions.ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        raise ConfigError(
            f"AWS rejected the credentials ({code}); refresh them (for example `aws sso login`) and try again."
        ) from None
    except botocore.exceptions.EndpointConnectionError as error:
        raise ConfigError(
            f"Could not reach AWS STS at {error.kwargs.get('endpoint_url')}; check the network and AWS_ENDPOINT_URL."
        ) from None
    if not ACCOUNT_ID.match(account_id):
        # It becomes a folder name in the raw layer: anything but 12 digits could point outside it.
        raise ConfigError(
            f"STS returned {account_id[:40]!r} as the account id, not 12 digits; "
            "check AWS_ENDPOINT_URL and the credentials."
        )
    return account_id


def resolve_regions(session: boto3.Session, configured: tuple[str, ...]) -> tuple[str, ...]:
    """The regions to read, validated against the regions where botocore knows SageMaker exists."""
    regions = configured or ((session.region_name,) if session.region_name else ())
    if not regions:
        raise ConfigError(
            "No AWS region is configured; set AWS_DEFAULT_REGION, or list regions under 'regions:' in the config."
        )
    known = sagemaker_regions()
    for region in regions:
        if region not in known:
            raise ConfigError(
                f"Unknown AWS region {region!r}: SageMaker is not offered there; "
                "fix the region name (for example us-east-1) in 'regions' or AWS_DEFAULT_REGION."
            )
    return tuple(regions)


def sagemaker_client(
    session: boto3.Session,
    region: str,
    settings: ExtractionSettings,
    stats: ApiCallStats,
    stop: threading.Event | None = None,
) -> Any:
    """A SageMaker client with botocore's retries sized for throttling storms (see ``retries``), call
    counters, and the optional rate cap. Setting ``stop`` ends its retry and rate-cap waits at once."""
    stop = stop or threading.Event()
    config = Config(
        region_name=region,
        retries={"mode": settings.retry_mode, "total_max_attempts": settings.max_attempts},
        max_pool_connections=settings.max_workers + 2,
        connect_timeout=10,
        read_timeout=60,
        user_agent_extra="sagemaker-training-warehouse",
    )
    client = session.client("sagemaker", config=config)
    hold_aws_loggers_at_info()  # botocore imports more of itself, with more loggers, as clients are made
    install_retries(client, settings.max_attempts, stop, max_backoff=settings.max_backoff_seconds)
    events = client.meta.events
    events.register("before-call.sagemaker", stats.on_call)
    events.register("response-received.sagemaker", stats.on_attempt)
    if settings.max_requests_per_second:
        events.register("before-send.sagemaker", RateLimiter(settings.max_requests_per_second, stop).acquire)
    return client


def error_code(error: BaseException) -> str:
    if isinstance(error, botocore.exceptions.ClientError):
        return str(error.response.get("Error", {}).get("Code") or "ClientError")
    return type(error).__name__
