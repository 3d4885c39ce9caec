"""Start and steer the local SageMaker endpoint (:mod:`pipelines.demo.server`) from Python.

The server runs in its own process so that it answers over real HTTP, as AWS does, and so that its
work does not compete with the pipeline's threads for the interpreter lock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from pipelines.aws_model import dumps
from pipelines.demo.fleet import FleetSpec
from pipelines.demo.server import Faults

DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


class LocalSageMaker:
    """A running local endpoint. ``environment()`` gives the standard AWS settings that point at it."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url

    @classmethod
    def start(cls) -> LocalSageMaker:
        # The server is moto: it must not pick up the caller's AWS profile, endpoint or credentials.
        environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        process = subprocess.Popen(
            [sys.executable, "-m", "pipelines.demo.server", "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
            env={**environment, **DUMMY_CREDENTIALS},
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            process.wait(timeout=10)
            raise RuntimeError(f"the local SageMaker endpoint did not start (exit code {process.returncode})")
        return cls(process, json.loads(line)["endpoint"])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def environment(self, region: str = "us-east-1") -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.url, "AWS_DEFAULT_REGION": region, **DUMMY_CREDENTIALS}

    # -- control API --------------------------------------------------------------------------------
    def _post(self, action: str, payload: Any = None) -> Any:
        data = dumps(payload if payload is not None else {}).encode()
        request = urllib.request.Request(f"{self.url}/_fleet/{action}", data=data, method="POST")
        with urllib.request.urlopen(request, timeout=300) as response:
            return json.loads(response.read())

    def load_fleet(self, spec: FleetSpec) -> int:
        """Replace every training job with the fleet ``spec`` describes; returns the job count."""
        payload = asdict(spec)
        return int(self._post("load", payload)["loaded"])

    def upsert_jobs(self, records: Iterable[dict[str, Any]]) -> int:
        return int(self._post("jobs", list(records))["upserted"])

    def set_price_list(self, rows: list[dict[str, Any]]) -> int:
        """Seed the Price List API: rows of region, instance_type, usd_per_hour and optional kind."""
        return int(self._post("prices", rows)["products"])

    def clear(self) -> None:
        self._post("clear")

    def set_faults(self, faults: Faults | None = None, **kwargs: Any) -> None:
        self._post("faults", asdict(faults) if faults else kwargs)

    def stats(self) -> dict[str, dict[str, int]]:
        with urllib.request.urlopen(f"{self.url}/_fleet/stats", timeout=30) as response:
            return json.loads(response.read())

    def reset_stats(self) -> None:
        self._post("stats/reset")


@contextmanager
def local_sagemaker() -> Iterator[LocalSageMaker]:
    endpoint = LocalSageMaker.start()
    try:
        yield endpoint
    finally:
        endpoint.stop()


@contextmanager
def aws_environment(settings: dict[str, str]) -> Iterator[None]:
    """Set AWS settings in this process's environment for the duration of the block."""
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
