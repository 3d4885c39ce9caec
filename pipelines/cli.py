"""``sagemaker-warehouse``: a thin command line over the same Dagster definitions ``dagster dev`` shows.

Exit codes: 0 success; 1 the run failed (an account or region could not be read, a job could not be
fetched, a check failed, or a step broke); 2 bad configuration, credentials or input, including SQL that
``query`` refuses (the message says what to fix); 130 stopped by SIGINT/SIGTERM (nothing half-done).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetMaterialization,
    DagsterEvent,
    DagsterInstance,
    ExecuteInProcessResult,
)

from pipelines import progress
from pipelines.config import SCRATCH_ENV, ConfigError, remote_origin, warehouse_location, warehouse_path
from pipelines.interrupts import on_hard_exit, run_interruptibly, stop_requested
from pipelines.storage.locks import WarehouseBusy
from pipelines.storage.remote import PublicationConflict

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass
class WarehouseRun:
    """The Dagster runs of one warehouse refresh: one extraction run per account/region, then the build."""

    runs: list[ExecuteInProcessResult]
    interrupted: bool = False  # a stop signal arrived: later runs were not started

    @property
    def success(self) -> bool:
        return not self.interrupted and all(run.success for run in self.runs)

    @property
    def all_events(self) -> list[DagsterEvent]:
        return [event for run in self.runs for event in run.all_events]

    def get_asset_check_evaluations(self) -> list[AssetCheckEvaluation]:
        return [check for run in self.runs for check in run.get_asset_check_evaluations()]

    def get_asset_materialization_events(self) -> list[DagsterEvent]:
        return [event for run in self.runs for event in run.get_asset_materialization_events()]

    def materializations(self, asset: str) -> list[AssetMaterialization]:
        return [
            event.event_specific_data.materialization  # type: ignore[union-attr]
            for event in self.get_asset_materialization_events()
            if event.asset_key is not None and event.asset_key.to_user_string() == asset
        ]


def materialize_all(
    config_file: str | None = None,
    warehouse: str | None = None,
    full_refresh: bool = False,
    prices_file: str | None = None,
    wait: bool = True,
    billing: str | None = None,
) -> WarehouseRun:
    """Refresh the whole warehouse in this process, as the nightly schedules would: extract every
    account/region partition in its own run, then build (flatten, model, check, publish) once. Holds
    the warehouse's writer lock throughout; another run waits for it (or, without ``wait``, raises
    WarehouseBusy)."""
    from pipelines.definitions import build_resources
    from pipelines.storage.locks import exclusive_warehouse

    resources = build_resources(config_file, warehouse, prices_file, billing)
    location = resources["warehouse_config"].settings().warehouse  # type: ignore[attr-defined]

    def waiting(who: str) -> None:
        where = remote_origin(location) or location
        print(f"Another run holds {where} ({who}); waiting for it to finish.", file=sys.stderr, flush=True)

    with exclusive_warehouse(location, wait=wait, on_wait=waiting):
        return _materialize_all(resources, full_refresh)


def _instance() -> DagsterInstance:
    """``$DAGSTER_HOME``'s instance (so that the UI shows what the CLI ran), else an ephemeral one. Open and
    close it on one thread: its SQLite connections must not be closed from another one."""
    return DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()


def _loggers() -> dict[str, object]:
    """The run config of Dagster's console logger: ``SMW_LOG_LEVEL``, else INFO (WARNING on a terminal,
    where the progress bars say what the info lines would; warnings and errors still print)."""
    default_level = "WARNING" if progress.active() else "INFO"
    return {"console": {"config": {"log_level": os.environ.get("SMW_LOG_LEVEL", default_level)}}}


def _materialize_all(resources: dict[str, object], full_refresh: bool) -> WarehouseRun:
    with _instance() as instance:
        return _materialize_in(instance, resources, full_refresh)


def _materialize_in(instance: DagsterInstance, resources: dict[str, object], full_refresh: bool) -> WarehouseRun:
    from pipelines.definitions import (
        BUILD_JOB,
        EXTRACT_JOB,
        build_run_config,
        extraction_run_config,
        make_definitions,
        register_partitions,
    )

    settings = resources["warehouse_config"].settings()  # type: ignore[attr-defined]
    definitions = make_definitions(settings, resources)
    loggers = _loggers()
    runs = []
    for label in register_partitions(instance, settings):
        if stop_requested():
            return WarehouseRun(runs, interrupted=True)
        runs.append(
            definitions.resolve_job_def(EXTRACT_JOB).execute_in_process(
                run_config={**extraction_run_config(full_refresh), "loggers": loggers},
                instance=instance,
                partition_key=label,
                raise_on_error=False,
            )
        )
    if stop_requested():  # nothing new is published after a stop was asked for
        return WarehouseRun(runs, interrupted=True)
    runs.append(
        definitions.resolve_job_def(BUILD_JOB).execute_in_process(
            run_config={**build_run_config(full_refresh), "loggers": loggers}, instance=instance, raise_on_error=False
        )
    )
    return WarehouseRun(runs, interrupted=stop_requested())


def _run_and_report(
    config_file: str | None,
    warehouse: str | None,
    full_refresh: bool,
    prices_file: str | None = None,
    wait: bool = True,
    output: str = "text",
    billing: str | None = None,
) -> int:
    """Materialize everything, then report: ``output`` is text (a summary), quiet (errors only) or json
    (one JSON object on stdout: the summary, warnings and failed checks)."""
    from pipelines.billing.exports import find_deliveries
    from pipelines.config import export_location, load_settings
    from pipelines.extraction.run import resolve_targets
    from pipelines.pricing.prices import effective_prices

    # Preflight, before Dagster starts: a malformed config or price file, missing credentials or an
    # unknown region is one sentence on stderr, not a step failure buried in a run log.
    settings = load_settings(config_file)
    # A directory this user can write (for an s3:// warehouse, its local working copy).
    target = warehouse_path(warehouse_location(warehouse) if warehouse else settings.warehouse, create=True)
    effective_prices(Path(prices_file) if prices_file else settings.costs.prices_file)
    for location in (export_location(billing, "--billing"),) if billing else settings.billing.exports:
        find_deliveries(location)  # a wrong path or a malformed manifest is one sentence, before anything runs
    resolve_targets(settings)
    started = time.monotonic()
    try:
        bars = TerminalProgress() if output == "text" and sys.stderr.isatty() else None
        with bars or nullcontext(), progress.showing(bars):
            result = run_interruptibly(
                lambda: materialize_all(config_file, warehouse, full_refresh, prices_file, wait, billing)
            )
    except WarehouseBusy as busy:
        where = remote_origin(target) or target
        print(f"error: another run holds {where} ({busy}); try again when it has finished.", file=sys.stderr)
        return EXIT_FAILED
    except PublicationConflict as conflict:
        print(f"error: {conflict}", file=sys.stderr)
        return EXIT_FAILED
    if result.interrupted:
        if result.materializations("published_warehouse"):
            print("error: the run was stopped by a signal after it had published a new version.", file=sys.stderr)
        else:
            print("error: the run was stopped by a signal; the previous version stays published.", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not result.success:
        _print_step_failures(result.all_events)
        return EXIT_FAILED
    count = len(result.get_asset_materialization_events())
    if output == "text":
        print(f"Materialized {count} assets in {time.monotonic() - started:.1f}s.")
    evaluations = [c for c in result.get_asset_check_evaluations() if not c.passed]
    warnings = [c for c in evaluations if c.severity == AssetCheckSeverity.WARN]
    failed_checks = [c for c in evaluations if c.severity == AssetCheckSeverity.ERROR]
    for check in warnings:
        print(f"warning: {_check_name(check)}: {check.description}", file=sys.stderr)
    for check in failed_checks:
        print(f"error: check {_check_name(check)} failed: {check.description}", file=sys.stderr)
    from pipelines.summary import print_run_summary, run_summary

    summary = None if failed_checks else run_summary(target)
    if output == "json":
        named = {
            kind: [{"check": _check_name(c), "description": c.description} for c in checks]
            for kind, checks in (("warnings", warnings), ("failed_checks", failed_checks))
        }
        print(json.dumps({"published": summary, **named}, indent=2))
    elif output == "text" and summary:
        print_run_summary(summary)
    return EXIT_FAILED if failed_checks else EXIT_OK


class TerminalProgress:
    """Progress on a terminal (stderr), drawn with rich: one bar per account/region (jobs fetched of those
    planned, with an estimate of the time left) and one line for the build's current stage."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn

        self.bars = Progress(
            SpinnerColumn(finished_text="[green]done"),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"),
            console=Console(stderr=True),
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> TerminalProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def update(self, task: str, done: int, total: int | None, note: str) -> None:
        count = f"{done:,}/{total:,}" if total is not None else (f"{done:,}" if done else "")
        if task not in self.tasks:
            self.tasks[task] = self.bars.add_task(task, total=total, count=count, note=note)
        self.bars.update(self.tasks[task], completed=done, total=total, count=count, note=note)

    def finish(self, task: str, note: str) -> None:
        if task in self.tasks:
            state = self.bars.tasks[self.tasks[task]]
            total = int(state.total if state.total is not None else state.completed) or 1
            self.bars.update(self.tasks[task], total=total, completed=total, note=note)


def _check_name(check: Any) -> str:
    return f"{check.asset_key.to_user_string()}.{check.check_name}"


def _innermost(error: Any) -> str:
    """The deepest cause's message, on one line: the sentence our code raised, without Dagster's wrapping."""
    while error.cause is not None:
        error = error.cause
    return "; ".join(line.strip() for line in error.message.strip().splitlines() if line.strip())


def _print_step_failures(events: Sequence[DagsterEvent]) -> None:
    for event in events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            print(f"error: {event.step_key} failed: {_innermost(event.step_failure_data.error)}", file=sys.stderr)


def cmd_compact(args: argparse.Namespace) -> int:
    """Run the declared compaction job in this process, holding the whole warehouse (no run meanwhile)."""
    from pipelines.definitions import COMPACT_JOB, build_resources, make_definitions
    from pipelines.storage.locks import exclusive_warehouse

    resources = build_resources(args.config, args.warehouse)
    settings = resources["warehouse_config"].settings()  # type: ignore[attr-defined]
    target = warehouse_path(settings.warehouse, create=True)
    where = remote_origin(target) or target

    def waiting(who: str) -> None:
        print(f"Another run holds {where} ({who}); waiting for it to finish.", file=sys.stderr, flush=True)

    try:
        with (
            exclusive_warehouse(settings.warehouse, wait=not args.no_wait, on_wait=waiting),
            _instance() as instance,
        ):
            result = (
                make_definitions(settings, resources)
                .resolve_job_def(COMPACT_JOB)
                .execute_in_process(run_config={"loggers": _loggers()}, instance=instance, raise_on_error=False)
            )
    except WarehouseBusy as busy:
        print(f"error: another run holds {where} ({busy}); try again when it has finished.", file=sys.stderr)
        return EXIT_FAILED
    if not result.success:
        _print_step_failures(result.all_events)
        return EXIT_FAILED
    metadata = result.asset_materializations_for_node("compacted_raw_layer")[0].metadata
    merged, written, rows = (metadata[key].value for key in ("files_merged", "files_written", "rows"))
    print(f"Merged {merged} raw files into {written} ({rows} rows) in {where}." if written else "Nothing to merge.")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    output = "json" if args.json else "quiet" if args.quiet else "text"
    return _run_and_report(
        args.config,
        args.warehouse,
        args.full_refresh,
        args.prices,
        wait=not args.no_wait,
        output=output,
        billing=args.billing,
    )


DEMO_EXTRA_MISSING = (
    "The demo needs its local SageMaker endpoint (moto's server), which a production install leaves out; "
    "install it with `pip install 'sagemaker-training-warehouse[demo]'` (or run `make demo` in a checkout)."
)


def cmd_demo(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("moto") is None:
        print(f"error: {DEMO_EXTRA_MISSING}", file=sys.stderr)
        return EXIT_CONFIG
    from pipelines.demo.bill import DEMO_BILLING_EXPORT, deliver_demo_bill
    from pipelines.demo.endpoint import LocalSageMaker, aws_environment
    from pipelines.demo.fleet import FleetSpec
    from pipelines.summary import print_summary

    if args.warehouse.startswith("s3://") and not os.environ.get(SCRATCH_ENV):
        # Its S3 lives only as long as the demo: a working copy of its own, never reused by a later run.
        os.environ[SCRATCH_ENV] = tempfile.mkdtemp(prefix="sagemaker-warehouse-demo-")
    warehouse = warehouse_path(warehouse_location(args.warehouse, "--warehouse"), create=True)
    print(f"Starting a local SageMaker endpoint with a demo fleet of {args.jobs} training jobs ...")
    endpoint = LocalSageMaker.start()
    on_hard_exit(endpoint.stop)  # a second Ctrl-C must not leave the server running
    try:
        # The fleet ends at the start of today (UTC): a second demo on the same day sees the same jobs,
        # so it shows an incremental run instead of a second, shifted fleet.
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        spec = FleetSpec(jobs=args.jobs, seed=args.seed, end=today)
        endpoint.load_fleet(spec)
        settings = endpoint.environment()
        # Only the demo endpoint and its dummy credentials: nothing from a real AWS profile leaks in.
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "SMW_CONFIG", "SMW_REGIONS"):
            os.environ.pop(key, None)
        with aws_environment({**settings, "SMW_REGIONS": "us-east-1,eu-west-1"}):
            # The bill for the same fleet, delivered into the endpoint's S3 as AWS Data Exports would.
            periods = deliver_demo_bill(spec, DEMO_BILLING_EXPORT)
            origin = remote_origin(warehouse)
            if origin:  # an s3:// warehouse in the endpoint's S3: it lasts as long as the demo does
                import boto3

                boto3.client("s3").create_bucket(Bucket=origin.removeprefix("s3://").split("/")[0])
                print(f"Created the bucket of {origin} in the demo endpoint's S3 (it is gone when the demo ends).")
            print(f"Delivered a CUR 2.0 export of {len(periods)} billing periods to {DEMO_BILLING_EXPORT} ...")
            code = _run_and_report(None, str(warehouse), full_refresh=False, billing=DEMO_BILLING_EXPORT)
        calls = endpoint.stats()["calls"]
    finally:
        endpoint.stop()
    if code == EXIT_OK:
        print_summary(warehouse, api_calls=calls)
    return code


def _warehouse_folder(args: argparse.Namespace, writable: bool) -> Path:
    """The warehouse folder ``--warehouse`` or the config names (for an s3:// warehouse, its working copy)."""
    from pipelines.config import load_settings

    chosen = (
        warehouse_location(args.warehouse, "--warehouse") if args.warehouse else load_settings(args.config).warehouse
    )
    return warehouse_path(chosen, writable=writable)


def _nothing_published(database: Path | None, warehouse: Path) -> int:
    where = database or remote_origin(warehouse)
    print(f"error: no warehouse at {where}; run `sagemaker-warehouse run` (or `demo`) first.", file=sys.stderr)
    return EXIT_CONFIG


def _published_parquet_prefix(args: argparse.Namespace) -> str | None:
    """For an s3:// warehouse, where its current tables are at fixed keys: ``<warehouse>/parquet``."""
    origin = remote_origin(_warehouse_folder(args, writable=False))
    return f"{origin}/parquet" if origin else None


GLUE_NAME = re.compile(r"^[a-z0-9_]{1,255}\Z")


def cmd_ddl(args: argparse.Namespace) -> int:
    """Print the CREATE statements of every published table for Athena or Trino; with --glue-database,
    also register them in the AWS Glue Data Catalog (through the standard AWS settings)."""
    from pipelines.warehouse.ddl import ddl, register_in_glue

    for name, flag in ((args.database, "--database"), (args.glue_database, "--glue-database")):
        if name is not None and not GLUE_NAME.match(name):
            print(f"error: {flag} {name!r} must be lowercase letters, digits and underscores.", file=sys.stderr)
            return EXIT_CONFIG
    location = args.location or _published_parquet_prefix(args)
    if location is None:
        print(
            "error: --location is needed for a local warehouse: the s3:// prefix you copy warehouse/parquet to "
            "(an s3:// warehouse publishes its tables under <warehouse>/parquet itself).",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    print(";\n\n".join(ddl(args.dialect, location, args.database or "sagemaker_warehouse")) + ";")
    if args.glue_database:
        import boto3

        names = register_in_glue(boto3.client("glue"), args.glue_database, location)
        print(f"-- registered {len(names)} tables in the Glue database {args.glue_database}", file=sys.stderr)
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from pipelines.report import write_report
    from pipelines.storage.layout import DATABASE
    from pipelines.storage.locks import BUILD, writer

    warehouse = _warehouse_folder(args, writable=True)  # the report is written into it
    if remote_origin(warehouse) is None and not (warehouse / DATABASE).exists():  # nothing to lock, nothing made
        return _nothing_published(warehouse / DATABASE, warehouse)
    with writer(warehouse, BUILD):  # for an s3:// warehouse: the published version pulled, the report sent
        if not (warehouse / DATABASE).exists():
            return _nothing_published(warehouse / DATABASE, warehouse)
        report = write_report(warehouse)
    origin = remote_origin(warehouse)
    print(f"Cost report: {report.resolve()}" + (f" (and {origin}/report/index.html)" if origin else ""))
    if args.open:
        import webbrowser

        webbrowser.open(report.resolve().as_uri())
    return EXIT_OK


def cmd_prices_refresh(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from pipelines.config import load_settings
    from pipelines.extraction.aws import base_session, resolve_regions
    from pipelines.pricing.refresh import fetch_training_prices, write_price_list

    settings = load_settings(args.config)
    if args.warehouse:
        settings = replace(settings, warehouse=warehouse_location(args.warehouse, "--warehouse"))
    warehouse_path(settings.warehouse, create=True)  # written to: a directory this user can write
    session = base_session()
    regions = resolve_regions(session, settings.regions)
    prices = fetch_training_prices(regions, session)
    if not prices:
        print(
            f"error: the Price List API returned no SageMaker training prices for {', '.join(regions)}; "
            "nothing was written.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    from pipelines.storage.locks import BUILD, writer

    with writer(settings.warehouse, BUILD):  # for an s3:// warehouse, the price list is sent there too
        path = write_price_list(settings.warehouse, prices)
    print(f"Wrote {len(prices)} training prices for {', '.join(regions)} to {path}; the next run uses them.")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from pipelines.billing.exports import find_deliveries
    from pipelines.config import load_settings
    from pipelines.extraction.preflight import check_targets
    from pipelines.pricing.prices import effective_prices
    from pipelines.storage.remote import working_copy

    settings = load_settings(args.config)
    prices = effective_prices(settings.costs.prices_file)
    warehouse_path(settings.warehouse)  # a directory a run can write, or create (nothing is created here)
    warehouse = remote_origin(settings.warehouse) or settings.warehouse
    print(f"config: {settings.source}; {len(prices)} prices; warehouse {warehouse}")
    copy = working_copy(settings.warehouse)
    if copy is not None:  # an s3:// warehouse: a missing bucket or a refusal is one sentence, exit 2
        print(copy.status())
    for location in settings.billing.exports:  # a problem here is a BillingExportError: one sentence, exit 2
        periods = sorted({d.period for d in find_deliveries(location)})
        plural = "s" if len(periods) != 1 else ""
        print(
            f"billing export {location}: {len(periods)} billing period{plural} delivered "
            f"({periods[0]} to {periods[-1]})"
        )
    results = check_targets(settings)
    for result in results:
        print(result.line)
    failed = [r for r in results if r.problem]
    print(f"{len(results) - len(failed)} of {len(results)} account/region targets readable.")
    return EXIT_FAILED if failed else EXIT_OK


# One statement that only reads: DESCRIBE, SHOW and SUMMARIZE parse as SELECT. EXPLAIN only of a SELECT,
# and never EXPLAIN ANALYZE, which runs the statement it explains.
_EXPLAIN = re.compile(r"^\s*explain\s+", re.IGNORECASE)
_EXPLAIN_ANALYZE = re.compile(r"^\s*explain\s+analy[sz]e\b", re.IGNORECASE)


def _read_only_statement(sql: str) -> str | None:
    """None if ``sql`` is one statement that only reads; else what it is, for the refusal."""
    import duckdb

    statements = duckdb.extract_statements(sql)
    if len(statements) != 1:
        return f"{len(statements)} statements"
    kind = statements[0].type.name
    if kind == "SELECT":
        return None
    if kind == "EXPLAIN" and not _EXPLAIN_ANALYZE.match(sql):
        inner = duckdb.extract_statements(_EXPLAIN.sub("", sql, count=1))
        return None if [s.type.name for s in inner] == ["SELECT"] else "an EXPLAIN of something other than a SELECT"
    return "EXPLAIN ANALYZE (it runs the statement)" if kind == "EXPLAIN" else f"a {kind} statement"


def cmd_query(args: argparse.Namespace) -> int:
    import duckdb

    from pipelines.storage.remote import published_database
    from pipelines.warehouse.publication import connect_reader

    warehouse = _warehouse_folder(args, writable=False)  # reading needs no write access
    database = published_database(warehouse)  # for an s3:// warehouse, downloaded into the working copy
    if database is None or not database.exists():
        return _nothing_published(database, warehouse)
    try:
        found = _read_only_statement(args.sql)
    except duckdb.Error as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return EXIT_CONFIG
    if found is not None:
        print(
            f"error: query runs one read-only statement (SELECT, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN), not {found}; "
            "the warehouse is read-only here.",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    with connect_reader(database) as connection:
        try:
            relation = connection.sql(args.sql)
            if relation is not None:
                relation.show(max_rows=args.max_rows, max_width=10_000)
        except duckdb.PermissionException as error:
            print(
                f"error: query reads only the warehouse's own tables (read-only: {str(error).splitlines()[0]}).",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        except duckdb.Error as error:
            print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
            return EXIT_CONFIG
    return EXIT_OK


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sagemaker-warehouse", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="materialize the whole warehouse now against the configured AWS accounts")
    run.add_argument("--warehouse", help="warehouse directory (default: the config's, else ./warehouse)")
    run.add_argument("--config", help="YAML config file (default: $SMW_CONFIG)")
    run.add_argument(
        "--full-refresh", action="store_true", help="re-list and re-describe every job, and rebuild every table"
    )
    run.add_argument("--prices", help="CSV of your own rates: region,instance_type,usd_per_hour")
    run.add_argument(
        "--billing", help="a CUR 2.0 export (folder or s3://bucket/prefix) to reconcile with (default: billing.exports)"
    )
    run.add_argument(
        "--no-wait", action="store_true", help="exit at once (1) if another run holds the warehouse, instead of waiting"
    )
    printed = run.add_mutually_exclusive_group()
    printed.add_argument("--quiet", action="store_true", help="print nothing on success (errors still go to stderr)")
    printed.add_argument("--json", action="store_true", help="end with one JSON object: what was published, warnings")
    run.set_defaults(func=cmd_run)

    compact = commands.add_parser(
        "compact", help="merge the raw layer's small files, per account, region and month (lossless, verified)"
    )
    compact.add_argument("--warehouse", help="warehouse directory (default: the config's, else ./warehouse)")
    compact.add_argument("--config", help="YAML config file (default: $SMW_CONFIG)")
    compact.add_argument(
        "--no-wait", action="store_true", help="exit at once (1) if another run holds the warehouse, instead of waiting"
    )
    compact.set_defaults(func=cmd_compact)

    check = commands.add_parser("check", help="verify config, credentials and IAM permissions for every target")
    check.add_argument("--config", help="YAML config file (default: $SMW_CONFIG)")
    check.set_defaults(func=cmd_check)

    query = commands.add_parser("query", help="run read-only SQL against the published warehouse")
    query.add_argument("sql", help='for example "select * from cost_monthly limit 10"')
    query.add_argument("--warehouse", help="warehouse directory (default: the config's, else ./warehouse)")
    query.add_argument("--config", help="YAML config file (default: $SMW_CONFIG)")
    query.add_argument("--max-rows", type=_positive, default=40, help="rows to print (default 40)")
    query.set_defaults(func=cmd_query)

    prices = commands.add_parser("prices", help="manage the hourly prices the cost models use")
    prices_commands = prices.add_subparsers(dest="prices_command", required=True)
    refresh = prices_commands.add_parser("refresh", help="fetch list prices from the AWS Price List Query API")
    refresh.add_argument("--config", help="YAML config file (default: $SMW_CONFIG)")
    refresh.add_argument("--warehouse", help="warehouse directory (default: the config's, else ./warehouse)")
    refresh.set_defaults(func=cmd_prices_refresh)

    report = commands.add_parser("report", help="write the cost report of the published warehouse (HTML, offline)")
    report.add_argument("--warehouse", help="warehouse directory (default: the config's, else ./warehouse)")
    report.add_argument("--config", help="YAML config file (default: $SMW_CONFIG)")
    report.add_argument("--open", action="store_true", help="open it in the default browser")
    report.set_defaults(func=cmd_report)

    ddl = commands.add_parser(
        "ddl", help="print Athena or Trino CREATE statements for the published tables copied to S3 (from schemas/)"
    )
    ddl.add_argument("--dialect", choices=["athena", "trino"], required=True)
    ddl.add_argument(
        "--location",
        help="the s3:// prefix of the tables' folders (default, for an s3:// warehouse: its parquet/ prefix; "
        "else the prefix you copy warehouse/parquet to)",
    )
    ddl.add_argument("--warehouse", help="warehouse folder or s3:// URI (default: the config's, else ./warehouse)")
    ddl.add_argument("--config", help="YAML config file (default: $SMW_CONFIG)")
    ddl.add_argument("--database", help="the schema the statements create tables in (default sagemaker_warehouse)")
    ddl.add_argument("--glue-database", help="also create or update the tables in this AWS Glue database")
    ddl.set_defaults(func=cmd_ddl)

    demo = commands.add_parser("demo", help="run the whole pipeline against a local endpoint with a demo fleet")
    demo.add_argument("--jobs", type=_positive, default=2000, help="how many demo training jobs (default 2000)")
    demo.add_argument("--seed", type=int, default=7, help="the demo fleet's random seed")
    demo.add_argument("--warehouse", default="warehouse", help="warehouse directory (default ./warehouse)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
