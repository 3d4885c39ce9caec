"""Settings: one YAML file plus environment overrides, validated on load.

Every problem is reported as a :class:`ConfigError` whose message names the key and the fix, so the CLI
and Dagster can show one sentence instead of a stack trace.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

CONFIG_ENV = "SMW_CONFIG"
WAREHOUSE_ENV = "SMW_WAREHOUSE"
REGIONS_ENV = "SMW_REGIONS"
SCRATCH_ENV = "SMW_SCRATCH"  # the local working copy of an s3:// warehouse (default: the user's cache)
ORIGIN_FILE = ".remote"  # in a working copy: the s3:// warehouse it is a copy of

# ASCII only, and \Z (not $, which also matches before a final newline): these become paths and ARNs.
ROLE_ARN = re.compile(r"^arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]{1,512}\Z")
REGION_NAME = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]\Z")
ACCOUNT_ID = re.compile(r"^[0-9]{12}\Z")
ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")


class ConfigError(ValueError):
    """A configuration problem, phrased as one sentence saying what is wrong and how to fix it."""


@dataclass(frozen=True)
class Account:
    """An AWS account to read. Without ``role_arn`` the current credentials are used as they are."""

    name: str
    role_arn: str | None = None
    external_id: str | None = None


@dataclass(frozen=True)
class ExtractionSettings:
    max_workers: int = 8  # concurrent Describe/ListTags calls per account and region
    max_requests_per_second: float | None = None  # optional cap per account and region
    # botocore's retry mode. "standard" backs off exponentially with jitter; "adaptive" also slows the
    # client's own send rate after throttles, which can crawl when throttling is not rate-driven.
    retry_mode: str = "standard"
    max_attempts: int = 12  # botocore attempts per call, first try included
    max_backoff_seconds: float = 20.0  # the longest single retry wait (botocore's own cap is 20 s)
    overlap_hours: float = 24.0  # how far before the newest stored job an incremental listing starts
    batch_size: int = 500  # jobs per raw Parquet file
    # How records are read (docs/extraction.md): "describe" (DescribeTrainingJob + ListTags, two calls a
    # job, every member), "search" (Search, up to 100 records a call, tags included, without the members
    # only Describe has) or "auto": Search for full loads and full refreshes and for nights with more
    # than search_above_jobs jobs to fetch, Describe for the other nights.
    mode: str = "auto"
    search_above_jobs: int = 100
    # Search mode describes jobs that name no instances (serverless: billed per token, which only
    # Describe returns). With this on, also jobs with an enabled profiler, for their profiler rule results.
    describe_profiled_jobs: bool = False


@dataclass(frozen=True)
class CostSettings:
    allocation_tags: tuple[str, ...] = ("team",)  # tag keys costs are rolled up by; the first drives cost_daily
    # ML storage volumes (gp2), per GB-month. None: the bundled rate of each region
    # (pipelines/pricing/storage_prices.csv); a number: that rate in every region (e.g. a negotiated one).
    storage_usd_per_gb_month: float | None = None
    prices_file: Path | None = None  # your own rates: region,instance_type,usd_per_hour
    # What an estimate multiplies usage by where the bill has taught a rate (docs/costs.md): "list", the
    # public on-demand rate, or "effective", the rate actually paid after Savings Plans and discounts.
    estimate_with: str = "list"


ESTIMATE_WITH = ("list", "effective")
EXPORT_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?\Z")


@dataclass(frozen=True)
class BillingSettings:
    # Where AWS Data Exports delivers a CUR 2.0 export: local folders or s3://bucket/prefix URIs, each
    # holding <export-name>/data/BILLING_PERIOD=YYYY-MM/ and <export-name>/metadata/... (docs/costs.md).
    exports: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScheduleSettings:
    cron: str = "0 2 * * *"  # nightly extraction at 02:00, one run per account and region
    build_cron: str = "0 3 * * *"  # then the build: flatten, model, check, publish
    full_refresh_cron: str = "0 4 * * 0"  # weekly full refresh, Sundays at 04:00
    compaction_cron: str = "0 1 * * 0"  # weekly raw compaction, Sundays at 01:00 (before the night's extraction)
    timezone: str = "UTC"


@dataclass(frozen=True)
class Settings:
    warehouse: Path = Path("warehouse")
    accounts: tuple[Account, ...] = (Account(name="default"),)
    regions: tuple[str, ...] = ()  # empty: the region the AWS settings configure
    extraction: ExtractionSettings = field(default_factory=ExtractionSettings)
    costs: CostSettings = field(default_factory=CostSettings)
    billing: BillingSettings = field(default_factory=BillingSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    source: str = "defaults"  # where the settings came from, for messages


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from ``path`` (or ``$SMW_CONFIG``), then apply ``SMW_*`` environment overrides."""
    environ = os.environ if environ is None else environ
    path = path or environ.get(CONFIG_ENV) or None
    document: dict[str, Any] = {}
    source = "defaults"
    if path:
        config_path = Path(path)
        if config_path.is_dir():
            raise ConfigError(f"Config file {config_path} is a folder; point at the YAML file inside it.")
        if not config_path.is_file():
            raise ConfigError(f"Config file {config_path} does not exist; create it or point {CONFIG_ENV} elsewhere.")
        try:
            loaded = yaml.safe_load(utf8_text(config_path, "Config file")) or {}
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"Config file {config_path} is not valid YAML{where}; fix its syntax.") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"Config file {config_path} must be a mapping of keys to values at the top level.")
        document, source = loaded, str(config_path)
    settings = parse_settings(document, source)
    if environ.get(WAREHOUSE_ENV):
        settings = replace(settings, warehouse=warehouse_location(environ[WAREHOUSE_ENV], WAREHOUSE_ENV, environ))
    if environ.get(REGIONS_ENV):
        settings = replace(settings, regions=_regions(environ[REGIONS_ENV].split(","), REGIONS_ENV))
    return settings


def warehouse_location(value: Any, key: str = "warehouse", environ: Mapping[str, str] | None = None) -> Path:
    """The local folder of a warehouse: the folder itself, or for ``s3://bucket/prefix`` its working copy
    (``$SMW_SCRATCH``, else under the user's cache folder), which records its origin in ``.remote`` so
    that every writer and reader of the folder knows to synchronise it (``storage.remote``)."""
    text = _string(value, key)
    if not text.startswith("s3://"):
        if "://" in text or text.lower().startswith("s3:"):
            raise ConfigError(f"{key}: {text!r} is neither a folder nor an s3://bucket/prefix URI.")
        return Path(text)
    if "//" in text.removeprefix("s3://"):
        raise ConfigError(f"{key}: {text!r} has an empty path segment (//); write it as s3://bucket/prefix.")
    if not EXPORT_URI.match(text):
        raise ConfigError(
            f"{key}: {text!r} is not an S3 URI with a valid bucket name (3-63 lowercase letters, digits, dots "
            "and hyphens), such as s3://my-bucket/sagemaker-warehouse."
        )
    origin = text.rstrip("/")
    environ = os.environ if environ is None else environ
    if environ.get(SCRATCH_ENV):
        scratch = Path(environ[SCRATCH_ENV])
    else:
        cache = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        scratch = cache / "sagemaker-warehouse" / origin.removeprefix("s3://")
    marker = scratch / ORIGIN_FILE
    if marker.is_file() and marker.read_text().strip() != origin:
        raise ConfigError(
            f"The scratch folder {scratch} is the working copy of {marker.read_text().strip()}, not {origin}; "
            f"point {SCRATCH_ENV} at another folder."
        )
    if not marker.is_file():
        warehouse_path(scratch)  # a directory this user can create
        if scratch.is_dir() and any(scratch.iterdir()):  # e.g. a local warehouse: it must not be pushed to S3
            raise ConfigError(
                f"The scratch folder {scratch} already holds files and is not a working copy of an S3 warehouse; "
                f"point {SCRATCH_ENV} at an empty or new folder (one per S3 warehouse)."
            )
        scratch.mkdir(parents=True, exist_ok=True)
        marker.write_text(origin + "\n")
    return scratch


def remote_origin(warehouse: Path) -> str | None:
    """The s3:// warehouse that the folder ``warehouse`` is a working copy of, or None for a local one."""
    marker = warehouse / ORIGIN_FILE
    return marker.read_text().strip() if marker.is_file() else None


def utf8_text(path: Path, what: str) -> str:
    """The text of ``path`` read as UTF-8 (a leading byte-order mark, as Excel writes, is dropped); a file in
    another encoding is a ConfigError naming where its first foreign byte is."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{what} {path} is not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset {error.start}); "
            "save it as UTF-8."
        ) from None


def warehouse_path(path: Path, writable: bool = True, create: bool = False) -> Path:
    """``path`` if it is a directory, or could be created as one; a writer (``writable``) must also be
    able to write it, a reader need not. With ``create`` (a run about to write it) a missing directory is
    created now, so that a place no one can write (such as /proc, which root's permission checks pass) is
    one sentence rather than a failure deep in the run. Else a ConfigError."""
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"The warehouse {path} is a file, not a directory; point warehouse elsewhere.")
        if writable and not _writable_directory(path):
            raise ConfigError(f"The warehouse directory {path} is not writable by this user; fix its permissions.")
        return path
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or (writable and not _writable_directory(parent)):
        raise ConfigError(f"The warehouse {path} cannot be created: {parent} is not a writable directory.")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(
                f"The warehouse {path} cannot be created ({error.strerror}); point warehouse at a folder you can write."
            ) from None
    return path


def _writable_directory(path: Path) -> bool:
    """Whether this user may create files in the directory ``path``, on a file system that takes writes: not
    mounted read-only, and not a kernel pseudo file system such as /proc or /sys (no blocks), which
    permission checks alone pass for root."""
    if not os.access(path, os.W_OK | os.X_OK):
        return False
    stats = os.statvfs(path)
    return not stats.f_flag & os.ST_RDONLY and stats.f_blocks > 0


def parse_settings(document: Mapping[str, Any], source: str = "config") -> Settings:
    known = {"warehouse", "accounts", "regions", "extraction", "costs", "billing", "schedule"}
    unknown = sorted(set(document) - known)
    if unknown:
        raise ConfigError(f"Unknown key {unknown[0]!r} in {source}; the known top-level keys are {sorted(known)}.")
    settings = Settings(source=source)
    if "warehouse" in document:
        settings = replace(settings, warehouse=warehouse_location(document["warehouse"], "warehouse"))
    if "accounts" in document:
        settings = replace(settings, accounts=_accounts(document["accounts"]))
    if "regions" in document:
        raw = document["regions"]
        if not isinstance(raw, list):
            raise ConfigError("Key 'regions' must be a list of region names, for example [us-east-1, eu-west-1].")
        settings = replace(settings, regions=_regions(raw, "regions"))
    if "extraction" in document:
        settings = replace(settings, extraction=_extraction(document["extraction"]))
    if "costs" in document:
        settings = replace(settings, costs=_costs(document["costs"]))
    if "billing" in document:
        settings = replace(settings, billing=_billing(document["billing"]))
    if "schedule" in document:
        settings = replace(settings, schedule=_schedule(document["schedule"]))
    return settings


def _billing(raw: Any) -> BillingSettings:
    if not isinstance(raw, dict) or set(raw) - {"exports"}:
        raise ConfigError("Key 'billing' must be a mapping with one key, exports, e.g. {exports: [s3://bucket/cur]}.")
    exports = raw.get("exports") or []
    if isinstance(exports, str):
        exports = [exports]
    if not isinstance(exports, list):
        raise ConfigError("billing.exports must be a list of folders or s3://bucket/prefix URIs.")
    return BillingSettings(exports=tuple(export_location(e, "billing.exports") for e in exports))


def export_location(value: Any, key: str) -> str:
    """A billing export's location: an ``s3://bucket/prefix`` URI or a local folder, else a ConfigError."""
    text = _string(value, key)
    if text.startswith("s3://"):
        if not EXPORT_URI.match(text):
            raise ConfigError(
                f"{key}: {text!r} is not an S3 URI with a valid bucket name (3-63 lowercase letters, digits, dots "
                "and hyphens), such as s3://my-billing-bucket/cur2."
            )
        return text.rstrip("/")
    if "://" in text:
        raise ConfigError(f"{key}: {text!r} must be a local folder or an s3:// URI.")
    return text


def _schedule(raw: Any) -> ScheduleSettings:
    crons = ("cron", "build_cron", "full_refresh_cron", "compaction_cron")
    if not isinstance(raw, dict) or set(raw) - {*crons, "timezone"}:
        raise ConfigError(
            "Key 'schedule' must be a mapping of cron, build_cron, full_refresh_cron, compaction_cron and "
            "timezone, e.g. {cron: '0 2 * * *'}."
        )
    schedule = ScheduleSettings()
    for key in crons:
        if key in raw:
            cron = str(raw[key]).strip()
            if len(cron.split()) != 5 or not _dagster_accepts_cron(cron):
                raise ConfigError(
                    f"schedule.{key} {cron!r} is not a 5-field cron expression such as '0 2 * * *' "
                    "(minute 0-59, hour 0-23, day 1-31, month 1-12, weekday 0-6)."
                )
            schedule = replace(schedule, **{key: cron})
    if "timezone" in raw:
        zone = str(raw["timezone"])
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"schedule.timezone {zone!r} is not an IANA time zone such as UTC or Europe/Paris."
            ) from None
        schedule = replace(schedule, timezone=zone)
    return schedule


def _dagster_accepts_cron(cron: str) -> bool:
    """Dagster's own test, so that a schedule the config accepts is one Dagster loads (pinned version)."""
    from dagster._utils.schedules import is_valid_cron_string

    return bool(is_valid_cron_string(cron))


def _costs(raw: Any) -> CostSettings:
    if not isinstance(raw, dict):
        raise ConfigError("Key 'costs' must be a mapping, for example {allocation_tags: [team, project]}.")
    allowed = {"allocation_tags", "storage_usd_per_gb_month", "prices_file", "estimate_with"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"Unknown key 'costs.{unknown[0]}'; the known keys are {sorted(allowed)}.")
    costs = CostSettings()
    if "allocation_tags" in raw:
        tags = raw["allocation_tags"]
        if not isinstance(tags, list) or not tags or not all(isinstance(t, str) and t.strip() for t in tags):
            raise ConfigError(
                "costs.allocation_tags must be a non-empty list of tag keys, for example [team, project]."
            )
        costs = replace(costs, allocation_tags=tuple(dict.fromkeys(t.strip() for t in tags)))
    if "storage_usd_per_gb_month" in raw:
        rate = bounded_number(raw["storage_usd_per_gb_month"], "costs.storage_usd_per_gb_month", 0, 100)
        costs = replace(costs, storage_usd_per_gb_month=float(rate))
    if raw.get("prices_file") is not None:
        costs = replace(costs, prices_file=Path(_string(raw["prices_file"], "costs.prices_file")))
    if "estimate_with" in raw:
        if raw["estimate_with"] not in ESTIMATE_WITH:
            raise ConfigError(f"costs.estimate_with must be 'list' or 'effective', not {raw['estimate_with']!r}.")
        costs = replace(costs, estimate_with=raw["estimate_with"])
    return costs


def _string(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"Key {key!r} must be a non-empty string.")
    return value.strip()


def _regions(values: list[Any], key: str) -> tuple[str, ...]:
    regions = []
    for value in values:
        region = str(value).strip()
        if not REGION_NAME.match(region):
            raise ConfigError(f"{key}: {region!r} is not an AWS region name; use names such as us-east-1 or eu-west-1.")
        regions.append(region)
    if not regions:
        raise ConfigError(f"{key} is empty; list at least one region or remove the key to use the AWS default region.")
    return tuple(dict.fromkeys(regions))


def _accounts(raw: Any) -> tuple[Account, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError("Key 'accounts' must be a non-empty list of {name, role_arn} entries.")
    accounts = []
    for position, entry in enumerate(raw):
        where = f"accounts[{position}]"
        if not isinstance(entry, dict) or "name" not in entry:
            raise ConfigError(f"{where} must be a mapping with at least a 'name' (and usually a 'role_arn').")
        extra = sorted(set(entry) - {"name", "role_arn", "external_id"})
        if extra:
            raise ConfigError(f"{where} has unknown key {extra[0]!r}; the keys are name, role_arn and external_id.")
        name = str(entry["name"])
        if not ACCOUNT_NAME.match(name):
            raise ConfigError(f"{where}.name {name!r} must be 1-64 letters, digits, '.', '_' or '-'.")
        role_arn = entry.get("role_arn")
        if role_arn is not None and not ROLE_ARN.match(str(role_arn)):
            raise ConfigError(
                f"{where}.role_arn {role_arn!r} is not an IAM role ARN; "
                "it should look like arn:aws:iam::123456789012:role/SageMakerWarehouseReader."
            )
        accounts.append(Account(name=name, role_arn=role_arn, external_id=entry.get("external_id")))
    names = [a.name for a in accounts]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"Account name {duplicates[0]!r} appears twice under 'accounts'; names must be unique.")
    return tuple(accounts)


# Bounds for every numeric extraction setting: (smallest, largest, whole numbers only). Past them a value
# is a typo, not a choice (a billion threads hang the machine; 0.001 requests/s never finishes).
_EXTRACTION_BOUNDS: dict[str, tuple[float, float, bool]] = {
    "max_workers": (1, 256, True),
    "max_requests_per_second": (0.01, 10_000, False),
    "max_attempts": (1, 50, True),
    "max_backoff_seconds": (0.01, 300, False),
    "overlap_hours": (0, 24 * 366, False),
    "batch_size": (1, 100_000, True),
    "search_above_jobs": (0, 100_000_000, True),
}
EXTRACTION_MODES = ("describe", "search", "auto")


def bounded_number(value: Any, key: str, low: float, high: float, whole: bool = False) -> float:
    """``value`` as a finite number within [low, high], or a ConfigError naming ``key`` and the range."""
    kind = "a whole number" if whole else "a number"
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or (whole and not isinstance(value, int))
        or not low <= value <= high
    ):
        raise ConfigError(f"{key} must be {kind} from {low:g} to {high:g}; got {value!r}.")
    return value


def _extraction(raw: Any) -> ExtractionSettings:
    if not isinstance(raw, dict):
        raise ConfigError("Key 'extraction' must be a mapping, for example {max_workers: 8}.")
    defaults = ExtractionSettings()
    allowed = set(defaults.__dataclass_fields__)
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"Unknown key 'extraction.{unknown[0]}'; the known keys are {sorted(allowed)}.")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "retry_mode":
            if value not in ("standard", "adaptive"):
                raise ConfigError("extraction.retry_mode must be 'standard' or 'adaptive'.")
            values[key] = value
        elif key == "max_requests_per_second" and value is None:
            values[key] = None  # no cap
        elif key == "mode":
            if value not in EXTRACTION_MODES:
                raise ConfigError(f"extraction.mode must be one of {', '.join(EXTRACTION_MODES)}, not {value!r}.")
            values[key] = value
        elif key == "describe_profiled_jobs":
            if not isinstance(value, bool):
                raise ConfigError(f"extraction.describe_profiled_jobs must be true or false, not {value!r}.")
            values[key] = value
        else:
            low, high, whole = _EXTRACTION_BOUNDS[key]
            number = bounded_number(value, f"extraction.{key}", low, high, whole)
            values[key] = int(number) if whole else float(number)
    return replace(defaults, **values)
