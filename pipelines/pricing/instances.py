"""What each SageMaker training instance type is: vCPUs, memory, accelerators, local NVMe storage.

Independent of prices and regions, so that usage (accelerator-hours) and the storage rule never depend on
whether a price row exists. The bundled table (``instance_types.csv``) covers every member of botocore's
``TrainingInstanceType`` enum, each row naming its source; a type whose specification could not be
confirmed has its unknown facts empty (null), never guessed.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

BUNDLED_SPECS = Path(__file__).resolve().parent / "instance_types.csv"


@dataclass(frozen=True)
class InstanceSpec:
    instance_type: str
    vcpus: int | None
    memory_gib: float | None
    accelerator_kind: str  # gpu, trainium or none
    accelerator_name: str | None
    accelerator_count: int | None
    has_local_nvme: bool | None
    source: str


def _optional(text: str | None) -> str | None:
    return (text or "").strip() or None


def instance_specs(path: Path = BUNDLED_SPECS) -> list[InstanceSpec]:
    with path.open(newline="") as handle:
        return [
            InstanceSpec(
                instance_type=row["instance_type"],
                vcpus=int(vcpus) if (vcpus := _optional(row["vcpus"])) else None,
                memory_gib=float(memory) if (memory := _optional(row["memory_gib"])) else None,
                accelerator_kind=row["accelerator_kind"],
                accelerator_name=_optional(row["accelerator_name"]),
                accelerator_count=int(count) if (count := _optional(row["accelerator_count"])) else None,
                has_local_nvme=None if (nvme := _optional(row["has_local_nvme"])) is None else nvme == "true",
                source=row["source"],
            )
            for row in csv.DictReader(handle)
        ]
