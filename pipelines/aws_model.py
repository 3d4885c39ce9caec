"""What botocore's own service model says about DescribeTrainingJob: validation and JSON conversion.

The botocore model is the declarative truth about the API's shape; walking it (instead of hand-written
field lists) keeps this code correct as AWS adds members. Importing this module also makes every botocore
session of the process share one data loader (see ``_share_data_loader``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from typing import Any

import botocore
import botocore.loaders
import botocore.session
from botocore.model import Shape, StructureShape
from botocore.validate import ParamValidator


class _SearchPaths(list[str]):
    """boto3 appends its data folder to the loader of every session it makes: once is enough."""

    def append(self, path: str) -> None:
        if path not in self:
            super().append(path)


@cache
def _loader(data_path: str | None) -> botocore.loaders.Loader:
    loader = botocore.loaders.create_loader(data_path)
    loader._search_paths = _SearchPaths(loader.search_paths)  # botocore keeps them there; no public setter
    return loader


def _share_data_loader(session: botocore.session.Session) -> None:
    """Every session gets the process's loader for its ``data_path`` (AWS_DATA_PATH), so botocore's data
    files (endpoints and service models, several MB of JSON) are parsed once per process instead of once per
    session: a run makes a session per account and every thread its own. botocore's loader only caches what
    it read, and a session shares it between its clients already (botocore issue #3078 describes this use)."""
    session.lazy_register_component("data_loader", lambda: _loader(session.get_config_variable("data_path")))


botocore.register_initializer(_share_data_loader)


@cache
def training_instance_types() -> tuple[str, ...]:
    """Every instance type a training job may ask for (botocore's ``TrainingInstanceType`` enum)."""
    return tuple(botocore.session.get_session().get_service_model("sagemaker").shape_for("TrainingInstanceType").enum)


@cache
def describe_training_job_shape() -> StructureShape:
    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model("DescribeTrainingJob").output_shape
    assert isinstance(shape, StructureShape)
    return shape


@cache
def search_record_members() -> frozenset[str]:
    """The members of the ``TrainingJob`` record the Search API returns (Tags included)."""
    model = botocore.session.get_session().get_service_model("sagemaker")
    return frozenset(model.shape_for("TrainingJob").members)  # type: ignore[attr-defined]


@cache
def describe_only_members() -> frozenset[str]:
    """What DescribeTrainingJob returns and a Search record lacks (BillableTokenCount, ProfilingStatus,
    ProgressInfo, ...): derived from botocore's model, so it follows AWS as the model does."""
    return frozenset(describe_training_job_shape().members) - search_record_members()


def validation_errors(record: dict[str, Any]) -> str:
    """Why ``record`` (a DescribeTrainingJob response, ``Tags`` ignored) does not fit botocore's output
    shape; empty when it fits."""
    body = {key: value for key, value in record.items() if key != "Tags"}
    report = ParamValidator().validate(body, describe_training_job_shape())
    return report.generate_report() if report.has_errors() else ""


def json_default(value: Any) -> Any:
    """``json.dumps`` hook: datetimes become ISO-8601 strings in UTC."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> str:
    """Compact JSON with sorted keys, so that equal records always serialize (and hash) the same."""
    return json.dumps(value, default=json_default, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def parse_timestamps(value: Any, shape: Shape | None = None) -> Any:
    """Turn the ISO strings that sit where the model has timestamps back into aware datetimes."""
    shape = shape or describe_training_job_shape()
    if shape.type_name == "timestamp" and isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    if shape.type_name == "structure" and isinstance(value, dict):
        members = shape.members  # type: ignore[attr-defined]
        return {k: parse_timestamps(v, members[k]) if k in members else v for k, v in value.items()}
    if shape.type_name == "list" and isinstance(value, list):
        return [parse_timestamps(v, shape.member) for v in value]  # type: ignore[attr-defined]
    if shape.type_name == "map" and isinstance(value, dict):
        return {k: parse_timestamps(v, shape.value) for k, v in value.items()}  # type: ignore[attr-defined]
    return value


_DUCKDB_SCALARS = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "long": "BIGINT",
    "float": "DOUBLE",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
}


def duckdb_json_structure(shape: Shape | None = None, wanted: frozenset[str] | None = None) -> Any:
    """The structure DuckDB's ``json_transform`` needs to parse a stored record into typed STRUCTs and
    LISTs, derived from botocore's model (so new members are typed as soon as botocore knows them).
    ``Tags`` is added: the raw layer stores ListTags' answer beside the Describe response. With
    ``wanted``, members whose names are not in it are left out (parsing only what is read is faster)."""
    if shape is None:
        structure = duckdb_json_structure(describe_training_job_shape(), wanted)
        structure["Tags"] = [{"Key": "VARCHAR", "Value": "VARCHAR"}]
        return structure
    if shape.type_name == "structure":
        members = shape.members.items()  # type: ignore[attr-defined]
        parsed = {
            name: duckdb_json_structure(member, wanted) for name, member in members if wanted is None or name in wanted
        }
        # A wanted member none of whose own members is wanted stays, as raw JSON: its presence can matter.
        return {
            name: {"{}": "JSON", "[{}]": ["JSON"]}.get(json.dumps(v, separators=(",", ":")), v)
            for name, v in parsed.items()
        }
    if shape.type_name == "list":
        return [duckdb_json_structure(shape.member, wanted)]  # type: ignore[attr-defined]
    if shape.type_name == "map":
        return f"MAP(VARCHAR, {_DUCKDB_SCALARS.get(shape.value.type_name, 'JSON')})"  # type: ignore[attr-defined]
    return _DUCKDB_SCALARS.get(shape.type_name, "JSON")


def structure_paths(shape: Shape | None = None, prefix: str = "$", depth: int = 2) -> dict[str, set[str]]:
    """JSON paths of the structures in a record, each with the member names the model knows, down to
    ``depth`` levels: what an unknown-member check compares the stored keys with."""
    shape = shape or describe_training_job_shape()
    known = set(shape.members)  # type: ignore[attr-defined]
    paths = {prefix: known | ({"Tags"} if prefix == "$" else set())}
    if depth > 1:
        for name, member in shape.members.items():  # type: ignore[attr-defined]
            if member.type_name == "structure":
                paths.update(structure_paths(member, f"{prefix}.{name}", depth - 1))
    return paths


@cache
def sagemaker_regions() -> frozenset[str]:
    """Every region botocore's bundled endpoint data lists for SageMaker (it ships with botocore, so one
    read per process is enough): the regions a run may read and a price file may price."""
    session = botocore.session.get_session()
    return frozenset(
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("sagemaker", partition_name=partition)
    )
