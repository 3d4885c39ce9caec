"""``sagemaker-warehouse check``: can this configuration read every account and region?

For each target it makes the calls the pipeline makes, at their smallest (one ListTrainingJobs result,
one Describe, one ListTags and, unless the mode is describe, one Search result), and names the IAM
permission behind any AccessDenied answer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import botocore.exceptions

from pipelines.config import Settings
from pipelines.extraction.aws import ApiCallStats, Target, account_session, base_session, error_code, sagemaker_client
from pipelines.extraction.run import resolve_targets

PERMISSIONS = {
    "AssumeRole": "sts:AssumeRole",
    "ListTrainingJobs": "sagemaker:ListTrainingJobs",
    "DescribeTrainingJob": "sagemaker:DescribeTrainingJob",
    "ListTags": "sagemaker:ListTags",
    "Search": "sagemaker:Search",
}


@dataclass(frozen=True)
class TargetCheck:
    target: Target
    problem: str | None  # None: everything the pipeline needs works

    @property
    def line(self) -> str:
        return f"{'ok ' if self.problem is None else 'FAIL'} {self.target.label} ({self.target.account_id})" + (
            f": {self.problem}" if self.problem else ""
        )


def check_targets(settings: Settings) -> list[TargetCheck]:
    """Raises ConfigError for problems with the configuration or credentials themselves."""
    session = base_session()
    quick = replace(settings.extraction, max_attempts=3)
    results = []
    for target in resolve_targets(settings, session):
        operation = "AssumeRole"
        try:
            client = sagemaker_client(
                account_session(session, target.account, target.region), target.region, quick, ApiCallStats()
            )
            operation = "ListTrainingJobs"
            summaries = client.list_training_jobs(MaxResults=1).get("TrainingJobSummaries", [])
            if summaries:
                operation = "DescribeTrainingJob"
                job: dict[str, Any] = client.describe_training_job(TrainingJobName=summaries[0]["TrainingJobName"])
                operation = "ListTags"
                client.list_tags(ResourceArn=job["TrainingJobArn"], MaxResults=50)
            if settings.extraction.mode != "describe":
                operation = "Search"
                client.search(Resource="TrainingJob", MaxResults=1)
            results.append(TargetCheck(target, None))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
            code = error_code(error)
            if "AccessDenied" in code or code in ("UnauthorizedOperation", "AuthorizationError"):
                problem = f"missing permission {PERMISSIONS[operation]} ({code}); grant it to the role or user"
            else:
                problem = f"{operation} failed: {code}: {error}"
            results.append(TargetCheck(target, problem))
    return results
