"""botocore's standard retries, sized for throttling storms and interruptible.

botocore's standard mode gives each client a retry quota of 500 capacity units: a throttled retry costs 5,
any other retry 14, a first-try success earns 1 back. Under a storm (say 60% of calls throttled) the quota
is empty after about 100 retries, and from then on every throttled call fails on its first attempt, so
the configured attempts mostly never happen. The quota exists to protect a struggling service from retry
amplification; here the attempts per call are already bounded and backed off, and a job that is not
fetched is a job missing from the warehouse. So the client keeps botocore's retry conditions, backoff and
quota accounting, with a quota sized to the run (``capacity``), and its waits end at once when the run is
stopped (SIGINT/SIGTERM), instead of sleeping out a 20-second backoff.
"""

from __future__ import annotations

import threading
from typing import Any

from botocore.retries import quota, standard

# Enough for every call of a large run to use all its attempts on throttles (5 units each).
DEFAULT_QUOTA_CAPACITY = 1_000_000


class StopRequested(threading.Event):
    """Set when the run must stop: retries give up and their waits end immediately."""


class InterruptibleRetryHandler:
    """Wraps botocore's ``RetryHandler``: the delay it computes is waited on ``stop`` (so a stop ends
    the wait), and botocore's own sleep is then zero."""

    def __init__(self, handler: standard.RetryHandler, stop: threading.Event) -> None:
        self.handler = handler
        self.stop = stop

    def needs_retry(self, **kwargs: Any) -> float | bool | None:
        if self.stop.is_set():
            return None
        delay = self.handler.needs_retry(**kwargs)
        if not delay:  # None (no retry) or False (long polling): botocore's own answer
            return delay
        if self.stop.wait(delay):
            return None
        return 0


def install_retries(
    client: Any,
    max_attempts: int,
    stop: threading.Event,
    capacity: int = DEFAULT_QUOTA_CAPACITY,
    max_backoff: float = 20.0,
) -> InterruptibleRetryHandler:
    """Replace the client's standard retry handler by the same one with a ``capacity`` quota, a backoff
    capped at ``max_backoff`` seconds and waits that ``stop`` interrupts."""
    service = client.meta.service_model.service_id.hyphenize()
    adapter = standard.RetryEventAdapter()
    throttling = standard.ThrottlingErrorDetector(adapter)
    checker = standard.RetryQuotaChecker(quota.RetryQuota(initial_capacity=capacity), throttling)
    handler = standard.RetryHandler(
        retry_policy=standard.RetryPolicy(
            retry_checker=standard.StandardRetryConditions(max_attempts=max_attempts),
            retry_backoff=standard.ExponentialBackoff(
                max_backoff=max_backoff, service_name=service, throttling_detector=throttling
            ),
        ),
        retry_event_adapter=adapter,
        retry_quota=checker,
        service_name=service,
    )
    wrapped = InterruptibleRetryHandler(handler, stop)
    events = client.meta.events
    unique_id = f"retry-config-{service}"  # the id botocore registers its own handler under
    events.unregister(f"needs-retry.{service}", unique_id=unique_id)
    events.register(f"needs-retry.{service}", wrapped.needs_retry, unique_id=unique_id)
    events.register(f"after-call.{service}", checker.release_retry_quota)
    return wrapped
