"""A deterministic, realistic fleet of SageMaker training jobs for the demo, the tests and the benchmarks.

Every job is a pure function of (spec, index): job ``i`` is built from its own seeded random generator,
so a fleet of any size is streamed one record at a time and any single job can be rebuilt on its own.
Creation times grow with the index, which keeps the fleet sorted by creation time for free.

Each record is shaped exactly like a boto3 ``describe_training_job`` response (timezone-aware UTC
datetimes, millisecond precision as on the wire) plus the job's ``Tags`` list, which SageMaker returns
from ``ListTags`` rather than from Describe.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGIONS = ("us-east-1", "eu-west-1")

# Environment variable names whose values the demo fills with secret-looking random tokens.
SECRET_ENVIRONMENT_KEYS = ("WANDB_API_KEY", "HF_TOKEN", "DB_PASSWORD", "MLFLOW_TRACKING_PASSWORD")

TEAMS = ("search-ranking", "recsys", "fraud", "nlp", "vision", "forecasting")
PROJECTS = {
    "search-ranking": ("query-understanding", "ltr-v3"),
    "recsys": ("home-feed", "two-tower", "cold-start"),
    "fraud": ("card-fraud", "account-takeover"),
    "nlp": ("support-bot", "doc-classifier", "llm-finetune"),
    "vision": ("defect-detection", "ocr"),
    "forecasting": ("demand-forecast", "capacity-planning"),
}
USERS = ("alice", "bob", "chen", "dara", "emeka", "farah", "gus", "hana", "ivan", "jo")

CPU_TYPES = ("ml.m5.xlarge", "ml.m5.2xlarge", "ml.m5.4xlarge", "ml.c5.2xlarge", "ml.c5.4xlarge", "ml.c5.9xlarge")
GPU_TYPES = ("ml.g5.xlarge", "ml.g5.2xlarge", "ml.g5.12xlarge", "ml.g5.48xlarge", "ml.p4d.24xlarge", "ml.p5.48xlarge")
DLC_REGISTRY = "763104351884"  # AWS Deep Learning Containers
PYTORCH_TAG = "2.3.0-gpu-py311-cu121-ubuntu20.04-sagemaker"
HF_TAG = "2.1.0-transformers4.36.0-gpu-py310-cu121-ubuntu20.04"
HF_NEURON_TAG = "1.13.1-transformers4.36.2-neuronx-py310-sdk2.18.0-ubuntu20.04"
BASE_MODEL = "meta-textgeneration-llama-3-1-8b/2.0.0"
TRAINIUM_TYPES = ("ml.trn1.2xlarge", "ml.trn1.32xlarge")

FAILURE_BEFORE_START = (
    "CapacityError: Unable to provision requested ML compute capacity. Please retry using a different ML "
    "instance type.",
    "ResourceLimitExceeded: The account-level service limit 'ml.p4d.24xlarge for training job usage' is 4 "
    "Instances, with current utilization of 4 Instances and a request delta of 2 Instances.",
    "ClientError: Unable to pull training image: repository does not exist or may require authorization.",
)
FAILURE_DURING_TRAINING = (
    'AlgorithmError: ExecuteUserScriptError:\nExitCode 1\nErrorMessage "RuntimeError: CUDA out of memory."',
    "AlgorithmError: ExecuteUserScriptError:\nExitCode 1\nErrorMessage \"KeyError: 'label'\"",
    "ClientError: Data download failed:NoSuchKey (404): The specified key does not exist.",
    "InternalServerError: We encountered an internal error. Please try again.",
    "ClientError: Please ensure the CSV file has no header and the label is in the first column.",
)

STATUS_MESSAGES = {
    "Starting": "Preparing the instances for training",
    "Downloading": "Downloading input data",
    "Training": "Training image download completed. Training in progress.",
    "Uploading": "Uploading generated training model",
    "Completed": "Training job completed",
    "Interrupted": "Spot capacity was reclaimed; the job will resume from its last checkpoint",
    "Failed": "Training job failed",
    "Stopping": "Stopping the training job",
    "Stopped": "Training job stopped",
    "MaxRuntimeExceeded": "Training job exceeded MaxRuntimeInSeconds provided",
}


@dataclass(frozen=True)
class FleetSpec:
    """What fleet to build: how many jobs, over which window, in which accounts and regions."""

    jobs: int = 2000
    seed: int = 7
    days: int = 90
    end: datetime = field(default_factory=lambda: _round_ms(datetime.now(UTC)))
    accounts: tuple[str, ...] = (DEFAULT_ACCOUNT,)
    regions: tuple[str, ...] = DEFAULT_REGIONS

    @property
    def start(self) -> datetime:
        return self.end - timedelta(days=self.days)


def generate_fleet(spec: FleetSpec) -> Iterator[dict[str, Any]]:
    """Yield the fleet's records one at a time, oldest first; memory use does not grow with the size."""
    for index in range(spec.jobs):
        yield generate_job(spec, index)


def generate_job(spec: FleetSpec, index: int) -> dict[str, Any]:
    """Build job ``index`` of the fleet: a DescribeTrainingJob response plus its ``Tags``."""
    rng = random.Random(f"{spec.seed}:{index}")
    return _JobBuilder(spec, index, rng).build()


def arn_account_and_region(arn: str) -> tuple[str, str]:
    """The (account, region) a SageMaker ARN names: arn:aws:sagemaker:<region>:<account>:..."""
    parts = arn.split(":")
    return parts[4], parts[3]


def _round_ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _token(rng: random.Random, length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


class _JobBuilder:
    """Builds one record. Each method adds one part of the response; the order of calls matters only
    in that times are decided before the members that quote them."""

    def __init__(self, spec: FleetSpec, index: int, rng: random.Random) -> None:
        self.spec = spec
        self.index = index
        self.rng = rng
        self.account = rng.choice(spec.accounts)
        self.region = spec.regions[0] if rng.random() < 0.7 or len(spec.regions) == 1 else rng.choice(spec.regions[1:])
        span = (spec.end - spec.start) / max(spec.jobs, 1)
        # Strictly increasing with the index: job i is created inside its own slice of the window.
        self.creation = _round_ms(spec.start + span * index + span * (0.05 + 0.9 * rng.random()))
        self.team = rng.choice(TEAMS)
        self.project = rng.choice(PROJECTS[self.team])
        self.framework = rng.choices(("xgboost", "pytorch", "huggingface"), weights=(35, 40, 25))[0]
        self.record: dict[str, Any] = {}

    def build(self) -> dict[str, Any]:
        rng = self.rng
        kind = rng.random()
        self.serverless = kind < 0.01
        self.heterogeneous = not self.serverless and self.framework == "pytorch" and kind < 0.05
        self.flexible = (
            not (self.serverless or self.heterogeneous) and self.framework != "xgboost" and (rng.random() < 0.06)
        )
        self.on_plan = not (self.serverless or self.heterogeneous or self.flexible) and (
            self.framework != "xgboost" and rng.random() < 0.03
        )
        self.spot = not (self.serverless or self.heterogeneous or self.on_plan) and rng.random() < 0.25
        self.warm_pool = not (self.serverless or self.heterogeneous or self.spot) and rng.random() < 0.12
        self.tuning = self.framework != "huggingface" and not self.serverless and rng.random() < 0.12

        self._names()
        self._resources()
        self._timeline()
        self._algorithm()
        self._channels_and_output()
        self._extras()
        self._tags()
        return self.record

    # -- identity -------------------------------------------------------------------------------------
    def _names(self) -> None:
        rng = self.rng
        stamp = self.creation.strftime("%Y-%m-%d-%H-%M-%S-") + f"{self.creation.microsecond // 1000:03d}"
        if self.tuning:
            self.tuning_name = f"{self.project[:12]}-hpo-{self.creation:%y%m%d}-{_token(rng, 4).lower()}"
            name = f"{self.tuning_name}-{rng.randint(1, 60):03d}-{_token(rng, 8, '0123456789abcdef')}"
        else:
            name = f"{self.project}-{self.framework}-{stamp}"
        # Names are unique per account and region; the index suffix keeps them unique in the fleet too.
        self.name = f"{name}-{self.index:07d}"[:63]
        self.arn = f"arn:aws:sagemaker:{self.region}:{self.account}:training-job/{self.name.lower()}"
        self.record.update(TrainingJobName=self.name, TrainingJobArn=self.arn)
        if self.tuning:
            self.record["TuningJobArn"] = (
                f"arn:aws:sagemaker:{self.region}:{self.account}:hyper-parameter-tuning-job/{self.tuning_name}"
            )
        self.record["RoleArn"] = f"arn:aws:iam::{self.account}:role/sagemaker-{self.team}-execution"

    # -- instances ------------------------------------------------------------------------------------
    def _resources(self) -> None:
        rng = self.rng
        if self.serverless:
            self.instance_type, self.instance_count = None, 0
            return
        if self.framework == "xgboost":
            instance_type, count = rng.choice(CPU_TYPES), rng.choice((1, 1, 1, 2, 4))
        elif self.framework == "huggingface" and rng.random() < 0.15:
            instance_type, count = rng.choice(TRAINIUM_TYPES), rng.choice((1, 2, 4, 8))
        else:
            instance_type = rng.choices(GPU_TYPES, weights=(25, 20, 20, 10, 15, 10))[0]
            count = (
                rng.choice((1, 1, 1, 2, 4, 8, 16))
                if instance_type.startswith(("ml.p4d", "ml.p5"))
                else (rng.choice((1, 1, 2, 4)))
            )
        self.instance_type, self.instance_count = instance_type, count
        volume = rng.choice((30, 50, 100, 200, 500)) if self.framework != "xgboost" else rng.choice((10, 30, 50))
        config: dict[str, Any] = {"VolumeSizeInGB": volume}
        if self.heterogeneous:
            config["InstanceGroups"] = [
                {"InstanceType": "ml.p4d.24xlarge", "InstanceCount": rng.choice((1, 2)), "InstanceGroupName": "gpu"},
                {"InstanceType": "ml.c5.18xlarge", "InstanceCount": rng.choice((2, 4)), "InstanceGroupName": "data"},
            ]
        elif self.flexible:
            first, second = ("ml.p5.48xlarge", 1), ("ml.p4d.24xlarge", 2)
            if instance_type.startswith("ml.g5"):
                first, second = ("ml.g5.48xlarge", 1), ("ml.g5.12xlarge", 2)
            config["InstancePreferences"] = [
                {"InstanceType": first[0], "InstanceCount": first[1]},
                {"InstanceType": second[0], "InstanceCount": second[1]},
            ]
            # What actually ran: SageMaker picks the first preference it has capacity for.
            self.instance_type, self.instance_count = first if rng.random() < 0.5 else second
            config["SelectedInstanceType"], config["SelectedInstanceCount"] = self.instance_type, self.instance_count
        else:
            config["InstanceType"], config["InstanceCount"] = instance_type, count
        if self.on_plan:
            config["TrainingPlanArn"] = (
                f"arn:aws:sagemaker:{self.region}:{self.account}:training-plan/{self.team}-reserved-p5"
            )
        if self.warm_pool:
            config["KeepAlivePeriodInSeconds"] = rng.choice((600, 1800, 3600))
        self.record["ResourceConfig"] = config

    # -- what happened, and when -----------------------------------------------------------------------
    def _timeline(self) -> None:
        rng, rec = self.rng, self.record
        outcome = rng.choices(
            ("Completed", "FailedEarly", "Failed", "Stopped", "MaxRuntimeExceeded"), weights=(74, 5, 11, 6, 4)
        )[0]
        gpu = self.instance_type is not None and not self.instance_type.startswith(("ml.m5", "ml.c5"))
        max_runtime = rng.choice((3600 * 4, 3600 * 24, 3600 * 72)) if gpu else rng.choice((3600, 3600 * 8))
        stopping = {"MaxRuntimeInSeconds": max_runtime}
        if self.spot:
            stopping["MaxWaitTimeInSeconds"] = max_runtime * 2
        rec["StoppingCondition"] = stopping

        startup = timedelta(seconds=rng.randint(90, 420) + (rng.randint(0, 1800) if gpu and rng.random() < 0.2 else 0))
        download = timedelta(seconds=rng.randint(5, 240))
        planned_training = timedelta(
            seconds=int(rng.lognormvariate(8.3 if gpu else 7.2, 0.9))  # ~1 h GPU, ~20 min CPU median
        )
        if outcome == "MaxRuntimeExceeded":
            planned_training = timedelta(seconds=max_runtime) - download
        planned_training = min(planned_training, timedelta(seconds=max_runtime) - download)
        upload = timedelta(seconds=rng.randint(10, 180))
        age = self.spec.end - self.creation
        if age < timedelta(hours=24) and rng.random() < 0.5:
            # A fleet always has work in flight: recent jobs are often still running "now".
            outcome = "Completed"
            planned_training = age + timedelta(seconds=rng.randint(1800, 12 * 3600))
        elif self.warm_pool and outcome == "Completed" and age < timedelta(hours=12):
            # Recent warm-pool jobs ended minutes ago, so their instances are still retained.
            keep_alive = self.record["ResourceConfig"]["KeepAlivePeriodInSeconds"]
            ended = self.spec.end - timedelta(seconds=rng.randint(60, keep_alive - 60))
            needed = ended - self.creation - startup - download - upload
            if needed > timedelta(minutes=1):
                planned_training = needed

        transitions: list[tuple[str, datetime]] = [("Starting", self.creation)]
        clock = self.creation
        if outcome == "FailedEarly":
            clock += startup
            self._finish(transitions, clock, "Failed", "Failed", rng.choice(FAILURE_BEFORE_START), started=None)
            return

        clock += startup
        start = clock
        transitions.append(("Downloading", clock))
        clock += download
        transitions.append(("Training", clock))
        billable = (clock - start).total_seconds()
        remaining = planned_training
        if outcome == "Failed":
            remaining = planned_training * rng.uniform(0.01, 0.8)
        elif outcome == "Stopped":
            remaining = planned_training * rng.uniform(0.1, 0.9)
        if self.spot:
            for _ in range(rng.choices((0, 1, 2, 3), weights=(55, 25, 12, 8))[0]):
                chunk = remaining * rng.uniform(0.2, 0.5)
                clock += chunk
                billable += chunk.total_seconds()
                remaining -= chunk
                transitions.append(("Interrupted", clock))
                clock += timedelta(seconds=rng.randint(120, 3600))  # waiting for spot capacity
                transitions.append(("Starting", clock))
                clock += timedelta(seconds=rng.randint(60, 300))
                transitions.append(("Training", clock))
        clock += remaining
        billable += remaining.total_seconds()

        if outcome == "Failed":
            self._finish(transitions, clock, "Failed", "Failed", rng.choice(FAILURE_DURING_TRAINING), start, billable)
        elif outcome == "Stopped":
            transitions.append(("Stopping", clock))
            stopping_time = timedelta(seconds=rng.randint(5, 120))
            clock += stopping_time
            billable += stopping_time.total_seconds()
            self._finish(transitions, clock, "Stopped", "Stopped", None, start, billable)
        elif outcome == "MaxRuntimeExceeded":
            self._finish(transitions, clock, "Stopped", "MaxRuntimeExceeded", None, start, billable)
        else:
            transitions.append(("Uploading", clock))
            clock += upload
            billable += upload.total_seconds()
            self._finish(transitions, clock, "Completed", "Completed", None, start, billable)
        if clock > self.spec.end:
            # A job that ends after "now" has not ended yet: keep only what has happened so far.
            self._in_progress([(s, t) for s, t in transitions if t <= self.spec.end])

    def _finish(
        self,
        transitions: list[tuple[str, datetime]],
        end: datetime,
        status: str,
        secondary: str,
        failure: str | None,
        started: datetime | None,
        billable: float = 0.0,
    ) -> None:
        rec = self.record
        end = _round_ms(end)
        transitions.append((secondary, end))
        rec["TrainingJobStatus"], rec["SecondaryStatus"] = status, secondary
        if failure:
            rec["FailureReason"] = failure
        rec["CreationTime"] = self.creation
        if started is not None:
            started = _round_ms(started)
            training_seconds = int((end - started).total_seconds())
            rec["TrainingStartTime"], rec["TrainingEndTime"] = started, end
            rec["TrainingTimeInSeconds"] = training_seconds
            if self.spot:
                # Managed spot bills fewer seconds than the job ran: the time spent waiting for capacity
                # after an interruption, and the spot discount itself (AWS: savings = 1 - billable /
                # training), 60-90% off here. A separate generator keeps the rest of the fleet unchanged.
                discount = random.Random(f"spot-{rec['TrainingJobName']}").uniform(0.60, 0.90)
                rec["BillableTimeInSeconds"] = min(int(billable * (1 - discount)), training_seconds)
            else:
                rec["BillableTimeInSeconds"] = training_seconds
        rec["LastModifiedTime"] = end
        rec["SecondaryStatusTransitions"] = self._transitions(transitions, open_last=False)
        if self.serverless and started is not None:
            rec["BillableTokenCount"] = self.rng.randint(2_000_000, 400_000_000)
        self._warm_pool(end, status)

    def _in_progress(self, transitions: list[tuple[str, datetime]]) -> None:
        rec = self.record
        for key in (
            "TrainingEndTime",
            "TrainingTimeInSeconds",
            "BillableTimeInSeconds",
            "FailureReason",
            "WarmPoolStatus",
            "BillableTokenCount",
        ):
            rec.pop(key, None)
        rec["TrainingJobStatus"] = "InProgress"
        rec["SecondaryStatus"] = transitions[-1][0]
        rec["CreationTime"] = self.creation
        started = [t for s, t in transitions if s == "Downloading"]
        if started:
            rec["TrainingStartTime"] = _round_ms(started[0])
        else:
            rec.pop("TrainingStartTime", None)
        rec["LastModifiedTime"] = _round_ms(transitions[-1][1])
        rec["SecondaryStatusTransitions"] = self._transitions(transitions, open_last=True)

    def _transitions(self, transitions: list[tuple[str, datetime]], open_last: bool) -> list[dict[str, Any]]:
        result = []
        for position, (status, begin) in enumerate(transitions):
            item: dict[str, Any] = {"Status": status, "StartTime": _round_ms(begin)}
            if position + 1 < len(transitions):
                item["EndTime"] = _round_ms(transitions[position + 1][1])
            elif not open_last:
                item["EndTime"] = _round_ms(begin)  # a terminal status starts and ends at once
            item["StatusMessage"] = STATUS_MESSAGES.get(status, status)
            result.append(item)
        return result

    def _warm_pool(self, end: datetime, status: str) -> None:
        if not self.warm_pool:
            return
        keep_alive = self.record["ResourceConfig"]["KeepAlivePeriodInSeconds"]
        since_end = (self.spec.end - end).total_seconds()
        if status != "Completed":
            pool = {"Status": "Terminated", "ResourceRetainedBillableTimeInSeconds": 0}
        elif since_end < keep_alive:
            pool = {"Status": "Available", "ResourceRetainedBillableTimeInSeconds": max(int(since_end), 0)}
        elif self.rng.random() < 0.4:
            reused_after = self.rng.randint(30, keep_alive)
            pool = {
                "Status": "Reused",
                "ResourceRetainedBillableTimeInSeconds": reused_after,
                "ReusedByJob": f"{self.project}-{self.framework}-followup-{_token(self.rng, 6).lower()}",
            }
        else:
            pool = {"Status": "Terminated", "ResourceRetainedBillableTimeInSeconds": keep_alive}
        self.record["WarmPoolStatus"] = pool

    # -- algorithm, data, and the rest ----------------------------------------------------------------
    def _algorithm(self) -> None:
        rng, rec = self.rng, self.record
        region = self.region
        if self.framework == "xgboost":
            image = f"683313688378.dkr.ecr.{region}.amazonaws.com/sagemaker-xgboost:1.7-1"
            hyper = {
                "objective": rng.choice(("binary:logistic", "reg:squarederror", "multi:softprob")),
                "max_depth": str(rng.randint(3, 10)),
                "eta": f"{rng.uniform(0.01, 0.3):.3f}",
                "num_round": str(rng.choice((100, 200, 500, 1000))),
                "subsample": f"{rng.uniform(0.5, 1.0):.2f}",
                "eval_metric": "auc",
            }
            metrics = [
                ("validation:auc", r".*\[[0-9]+\].*#011validation-auc:([-+]?[0-9]*\.?[0-9]+).*"),
                ("train:auc", r".*\[[0-9]+\]#011train-auc:([-+]?[0-9]*\.?[0-9]+).*"),
            ]
            values = {"validation:auc": rng.uniform(0.70, 0.97), "train:auc": rng.uniform(0.80, 0.99)}
        elif self.framework == "pytorch":
            image = f"{DLC_REGISTRY}.dkr.ecr.{region}.amazonaws.com/pytorch-training:{PYTORCH_TAG}"
            hyper = {
                "epochs": str(rng.choice((3, 5, 10, 20, 50))),
                "lr": f"{rng.choice((1e-4, 3e-4, 1e-3, 3e-3)):g}",
                "batch-size": str(rng.choice((32, 64, 128, 256))),
                "sagemaker_program": '"train.py"',
                "sagemaker_submit_directory": f'"s3://{self.team}-ml-{self.account}/{self.project}/code/sourcedir.tar.gz"',
                "sagemaker_region": f'"{region}"',
            }
            metrics = [
                ("train:loss", r"train_loss=([0-9\.]+)"),
                ("val:loss", r"val_loss=([0-9\.]+)"),
                ("val:accuracy", r"val_acc=([0-9\.]+)"),
            ]
            values = {
                "train:loss": rng.uniform(0.05, 1.2),
                "val:loss": rng.uniform(0.1, 1.5),
                "val:accuracy": rng.uniform(0.6, 0.98),
            }
        else:
            neuron = self.instance_type is not None and self.instance_type.startswith("ml.trn1")
            repository = "huggingface-pytorch-training-neuronx" if neuron else "huggingface-pytorch-training"
            image = f"{DLC_REGISTRY}.dkr.ecr.{region}.amazonaws.com/{repository}:{HF_NEURON_TAG if neuron else HF_TAG}"
            hyper = {
                "model_name_or_path": rng.choice(
                    (
                        "bert-base-uncased",
                        "roberta-large",
                        "meta-llama/Llama-3.1-8B",
                        "mistralai/Mistral-7B-v0.3",
                        "google/flan-t5-xl",
                    )
                ),
                "learning_rate": f"{rng.choice((1e-5, 2e-5, 5e-5, 2e-4)):g}",
                "num_train_epochs": str(rng.choice((1, 2, 3))),
                "per_device_train_batch_size": str(rng.choice((4, 8, 16, 32))),
                "fp16": rng.choice(("true", "false")),
                "output_dir": '"/opt/ml/model"',
            }
            metrics = [
                ("eval_loss", r"'eval_loss': ([0-9\.]+)"),
                ("train_runtime", r"'train_runtime': ([0-9\.]+)"),
                ("eval_accuracy", r"'eval_accuracy': ([0-9\.]+)"),
            ]
            values = {
                "eval_loss": rng.uniform(0.1, 2.0),
                "train_runtime": rng.uniform(300, 50000),
                "eval_accuracy": rng.uniform(0.5, 0.95),
            }
        if self.tuning:
            hyper["_tuning_objective_metric"] = metrics[0][0]
        spec: dict[str, Any] = {"TrainingImage": image, "TrainingInputMode": rng.choice(("File", "File", "FastFile"))}
        spec["MetricDefinitions"] = [{"Name": name, "Regex": regex} for name, regex in metrics]
        spec["EnableSageMakerMetricsTimeSeries"] = self.framework != "xgboost"
        if self.serverless:
            spec = {"TrainingInputMode": "File"}
            hyper = {}
            self.record["ServerlessJobConfig"] = {
                "BaseModelArn": f"arn:aws:sagemaker:{region}:aws:hub-content/SageMakerPublicHub/Model/{BASE_MODEL}",
                "AcceptEula": True,
                "JobType": "FineTuning",
                "CustomizationTechnique": "SFT",
                "Peft": "LORA",
            }
        rec["AlgorithmSpecification"] = spec
        if hyper:
            rec["HyperParameters"] = hyper
        if rec["TrainingJobStatus"] == "Completed" or (
            rec["TrainingJobStatus"] == "Failed" and "TrainingStartTime" in rec and rng.random() < 0.5
        ):
            stamp = rec["TrainingEndTime"]
            rec["FinalMetricDataList"] = [
                {"MetricName": name, "Value": round(values[name], 6), "Timestamp": stamp}
                for name, _ in metrics
                if not (rec["TrainingJobStatus"] == "Failed" and name.startswith(("val", "eval")))
            ]
        self.metrics = metrics

    def _channels_and_output(self) -> None:
        rng, rec = self.rng, self.record
        bucket = f"{self.team}-ml-{self.account}"
        prefix = f"s3://{bucket}/{self.project}"
        channels: list[dict[str, Any]] = []
        names = ("train", "validation") if self.framework == "xgboost" else rng.choice((("train",), ("train", "test")))
        for channel_name in names:
            source: dict[str, Any] = {
                "S3DataType": "S3Prefix",
                "S3Uri": f"{prefix}/data/{channel_name}/",
                "S3DataDistributionType": rng.choice(("FullyReplicated", "ShardedByS3Key")),
            }
            if self.heterogeneous:
                source["InstanceGroupNames"] = ["data"]
            channel: dict[str, Any] = {"ChannelName": channel_name, "DataSource": {"S3DataSource": source}}
            if self.framework == "xgboost":
                channel.update(ContentType="text/csv", CompressionType="None", RecordWrapperType="None")
            channel["InputMode"] = rec["AlgorithmSpecification"]["TrainingInputMode"]
            channels.append(channel)
        if self.framework == "huggingface" and not self.serverless and rng.random() < 0.3:
            channels.append(
                {
                    "ChannelName": "fsx",
                    "DataSource": {
                        "FileSystemDataSource": {
                            "FileSystemId": f"fs-{_token(rng, 17, '0123456789abcdef')}",
                            "FileSystemAccessMode": "ro",
                            "FileSystemType": "FSxLustre",
                            "DirectoryPath": f"/{_token(rng, 8, 'abcdefghijklmnopqrstuvwxyz')}/{self.project}",
                        }
                    },
                    "InputMode": "File",
                }
            )
        rec["InputDataConfig"] = channels
        rec["OutputDataConfig"] = {"S3OutputPath": f"{prefix}/output", "CompressionType": "GZIP"}
        artifacts = f"{prefix}/output/{self.name}/output/model.tar.gz"
        rec["ModelArtifacts"] = {"S3ModelArtifacts": artifacts if rec["TrainingJobStatus"] == "Completed" else ""}
        if self.spot or rng.random() < 0.15:
            rec["CheckpointConfig"] = {"S3Uri": f"{prefix}/checkpoints/{self.name}", "LocalPath": "/opt/ml/checkpoints"}

    def _extras(self) -> None:
        rng, rec = self.rng, self.record
        rec["EnableNetworkIsolation"] = rng.random() < 0.1
        rec["EnableInterContainerTrafficEncryption"] = self.instance_count > 1 and rng.random() < 0.3
        rec["EnableManagedSpotTraining"] = self.spot
        if rng.random() < 0.3:
            rec["VpcConfig"] = {
                "SecurityGroupIds": [f"sg-{_token(rng, 17, '0123456789abcdef')}"],
                "Subnets": [f"subnet-{_token(rng, 17, '0123456789abcdef')}" for _ in range(rng.choice((1, 2, 3)))],
            }
        if self.framework != "xgboost" and not self.serverless:
            env = {"NCCL_DEBUG": "WARN", "PYTHONUNBUFFERED": "1", "SM_LOG_LEVEL": "20"}
            # Users do put secrets here; the pipeline must never write these values anywhere.
            for key in rng.sample(SECRET_ENVIRONMENT_KEYS, rng.randint(1, 3)):
                env[key] = f"{key.split('_')[0].lower()}-{_token(rng, 32)}"
            rec["Environment"] = env
        if self.framework == "pytorch" and rng.random() < 0.3:
            rules = ("LossNotDecreasing", "Overfit", "GPUMemoryIncrease")
            chosen = rng.sample(rules, 2)
            image = f"503895931360.dkr.ecr.{self.region}.amazonaws.com/sagemaker-debugger-rules:latest"
            rec["DebugHookConfig"] = {"S3OutputPath": f"s3://{self.team}-ml-{self.account}/{self.project}/debug-output"}
            rec["DebugRuleConfigurations"] = [
                {
                    "RuleConfigurationName": f"{rule}Rule",
                    "RuleEvaluatorImage": image,
                    "VolumeSizeInGB": 0,
                    "RuleParameters": {"rule_to_invoke": rule},
                }
                for rule in chosen
            ]
            if "TrainingEndTime" in rec:
                rec["DebugRuleEvaluationStatuses"] = [
                    {
                        "RuleConfigurationName": f"{rule}Rule",
                        "RuleEvaluationJobArn": f"arn:aws:sagemaker:{self.region}:{self.account}:processing-job/"
                        f"{self.name[:40].lower()}-{rule[:8].lower()}-{_token(rng, 6).lower()}",
                        "RuleEvaluationStatus": rng.choice(("NoIssuesFound", "NoIssuesFound", "IssuesFound", "Error")),
                        "LastModifiedTime": rec["TrainingEndTime"],
                    }
                    for rule in chosen
                ]
            rec["ProfilerConfig"] = {
                "S3OutputPath": f"s3://{self.team}-ml-{self.account}/{self.project}/profiler",
                "ProfilingIntervalInMilliseconds": 500,
                "DisableProfiler": False,
            }
            rec["ProfilingStatus"] = "Enabled"
        if rng.random() < 0.2:
            rec["ExperimentConfig"] = {
                "ExperimentName": self.project,
                "TrialName": f"{self.project}-trial-{rng.randint(1, 40)}",
            }
        if rng.random() < 0.05:
            rec["RetryStrategy"] = {"MaximumRetryAttempts": rng.choice((1, 2, 3))}

    def _tags(self) -> None:
        rng = self.rng
        tags: list[dict[str, str]] = []
        if rng.random() > 0.12:  # some jobs are never tagged: cost reports must say "(untagged)"
            tags.append({"Key": "team", "Value": self.team})
            tags.append({"Key": "project", "Value": self.project})
        if rng.random() < 0.5:
            tags.append({"Key": "cost-center", "Value": f"cc-{1000 + TEAMS.index(self.team) * 10}"})
        if rng.random() < 0.4:
            domain = (
                f"d-{_token(random.Random(self.account + self.region), 12, 'abcdefghijklmnopqrstuvwxyz0123456789')}"
            )
            user = rng.choice(USERS)
            base = f"arn:aws:sagemaker:{self.region}:{self.account}"
            tags.append({"Key": "sagemaker:domain-arn", "Value": f"{base}:domain/{domain}"})
            tags.append({"Key": "sagemaker:user-profile-arn", "Value": f"{base}:user-profile/{domain}/{user}"})
        self.record["Tags"] = tags
