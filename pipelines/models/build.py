"""SQL models: ``sql/models/<table>.sql``, each a ``select`` whose file name is the table it builds.

A model's dependencies are the tables its SQL reads, found in DuckDB's own parse tree
(``json_serialize_sql``); models are built in dependency order into the staging database, after the
normalized tables and before publication, and their columns must match ``schemas/models/<table>.yaml``.
Run parameters (prices, the storage rate, the cost-allocation tag keys) are plain tables the SQL joins.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from pipelines.billing.exports import EXPORT_NAME_COLUMN
from pipelines.billing.ingest import empty_line_items
from pipelines.config import CostSettings
from pipelines.pricing.instances import instance_specs
from pipelines.pricing.prices import Price, effective_prices, storage_rates
from pipelines.schemas import TableSchema, all_tables, table
from pipelines.sql import (
    CHANGED_JOBS,
    SQL_DIR,
    build_table,
    check_columns,
    has_table,
    identifier,
    insert_rows,
    literal,
    of_jobs,
    previous_rows,
    qualified,
    replace_rows,
    replaced_by_job,
    replacement_rows,
    run,
    stage_replacement_rows,
    table_sql,
)
from pipelines.storage.raw import TERMINAL_STATUSES

MODELS_FOLDER = "models"
PRICES = "instance_prices"
INSTANCE_TYPES = "instance_types"
BILLING_LINE_ITEMS = "billing_line_items"
BILLING_FOLDER = "billing"
# Tables loaded before the models, published with them: the bundled instance data, the bill's training line
# items (sql/billing), and the prices (bundled, refreshed, learned from the bill, yours).
REFERENCE_TABLES = (INSTANCE_TYPES, BILLING_LINE_ITEMS, PRICES)
# Run parameters: temporary tables, visible to the models, never published.
PARAMETER_TABLES = ("storage_rates", "allocation_tags", "final_statuses")


def model_names() -> list[str]:
    return sorted(path.stem for path in (SQL_DIR / MODELS_FOLDER).glob("*.sql"))


def _nodes(node: Any) -> Iterator[dict[str, Any]]:
    """Every object in a parse tree (``json_serialize_sql``'s JSON), depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)


def _base_tables(node: Any) -> set[str]:
    return {n["table_name"] for n in _nodes(node) if n.get("type") == "BASE_TABLE"}


def _ctes(node: Any) -> dict[str, Any]:
    return {entry["key"]: entry["value"] for n in _nodes(node) for entry in (n.get("cte_map") or {}).get("map", [])}


def model_dependencies(name: str) -> frozenset[str]:
    """The tables a model reads. A CTE named like the table it selects from (``jobs as (select * from
    jobs)``, this project's style for inputs) counts as reading that table."""
    return _dependencies()[name]


@cache
def _dependencies() -> dict[str, frozenset[str]]:
    """Every model's inputs, from DuckDB's own parse tree; one connection for them all, once per process."""
    with duckdb.connect() as connection:
        return {name: _inputs(connection, name) for name in model_names()}


def _inputs(connection: duckdb.DuckDBPyConnection, name: str) -> frozenset[str]:
    tree = json.loads(run(connection, f"select json_serialize_sql({literal(table_sql(name, MODELS_FOLDER))})")[0][0])
    if tree.get("error"):
        raise ValueError(f"sql/models/{name}.sql does not parse: {tree.get('error_message')}")
    ctes = _ctes(tree)
    inputs = {cte for cte, body in ctes.items() if cte in _base_tables(body)}
    return frozenset((_base_tables(tree) - set(ctes)) | inputs)


def build_order() -> list[str]:
    models = set(model_names())
    graph = {name: model_dependencies(name) & models for name in models}
    return list(TopologicalSorter(graph).static_order())


def _temporary_table(connection: duckdb.DuckDBPyConnection, name: str, rows: list[dict[str, object]]) -> None:
    """A run parameter the models join: visible to this connection's SQL, never published."""
    connection.register(f"loaded_{name}", pa.Table.from_pylist(rows))
    run(connection, f"create or replace temp table {name} as select * from loaded_{name}")
    connection.unregister(f"loaded_{name}")


def load_billing_line_items(connection: duckdb.DuckDBPyConnection, billing_files: list[str]) -> int:
    """``billing_line_items`` from the raw layer's CUR files (none: an empty table); returns its rows."""
    empty = empty_line_items()
    connection.register("no_line_items", empty.append_column(EXPORT_NAME_COLUMN, pa.array([], pa.string())))
    source = "select * from no_line_items"
    if billing_files:
        files = ", ".join(literal(f) for f in billing_files)
        source = f"select * from read_parquet([{files}], union_by_name = true) union all by name {source}"
    run(connection, f"create or replace temp view cur_line_items as {source}")
    try:
        return build_table(connection, table(BILLING_LINE_ITEMS), table_sql(BILLING_LINE_ITEMS, BILLING_FOLDER))
    finally:
        run(connection, "drop view cur_line_items")
        connection.unregister("no_line_items")


def prices_learned_from_bill(connection: duckdb.DuckDBPyConnection, estimate_with: str) -> list[Price]:
    """Hourly rates per region and instance type from the bill's compute line items, in the newest period
    that billed the type: the public on-demand rate, or with ``estimate_with='effective'`` what was
    paid per instance-hour after Savings Plans and credits."""
    rows = run(
        connection,
        f"""
        with compute as (
            select * from {BILLING_LINE_ITEMS}
            where usage_kind = 'compute' and line_item_type in ('Usage', 'SavingsPlanCoveredUsage')
              and region is not null and instance_type is not null and usage_amount > 0
        ),
        newest as (
            select region, instance_type, max(billing_period) as billing_period from compute group by all
        )
        select
            region, instance_type, strftime(billing_period, '%Y-%m'),
            arg_max(public_on_demand_rate_usd, usage_start) filter (where public_on_demand_rate_usd is not null),
            sum(effective_cost_usd) / sum(usage_amount)
        from compute join newest using (region, instance_type, billing_period)
        group by all
        order by all
        """,
    )
    learned = []
    for region, instance_type, period, public_rate, effective_rate in rows:
        rate, what = (
            (effective_rate, "effective rate") if estimate_with == "effective" else (public_rate, "public rate")
        )
        if rate is not None and rate >= 0:
            learned.append(Price(region, instance_type, float(rate), f"bill ({what}, {period})", period, True))
    return learned


def load_parameters(
    connection: duckdb.DuckDBPyConnection,
    costs: CostSettings,
    refreshed_prices: Path | None = None,
    billing_files: list[str] | None = None,
) -> dict[str, int]:
    """Create the reference tables (published: instance types, the bill's line items, prices) and the
    run's parameter tables (temporary); returns the row counts of the published ones."""
    counts = {BILLING_LINE_ITEMS: load_billing_line_items(connection, billing_files or [])}
    learned = prices_learned_from_bill(connection, costs.estimate_with)
    for name, rows in (
        (INSTANCE_TYPES, instance_specs()),
        (PRICES, effective_prices(costs.prices_file, refreshed_prices, learned)),
    ):
        declared = table(name)
        connection.register(
            f"loaded_{name}", pa.Table.from_pylist([r.__dict__ for r in rows], schema=declared.arrow_schema())
        )
        counts[name] = build_table(connection, declared, f"select * from loaded_{name}")
    rates = storage_rates(costs.storage_usd_per_gb_month)
    _temporary_table(connection, "storage_rates", [rate.__dict__ for rate in rates])
    tags = [{"tag_key": key, "tag_position": position} for position, key in enumerate(costs.allocation_tags)]
    _temporary_table(connection, "allocation_tags", tags)
    # The statuses after which a job no longer changes: the same set tells extraction what to re-read.
    _temporary_table(connection, "final_statuses", [{"status": status} for status in sorted(TERMINAL_STATUSES)])
    return counts


def build_models(
    connection: duckdb.DuckDBPyConnection,
    costs: CostSettings,
    refreshed_prices: Path | None = None,
    billing_files: list[str] | None = None,
    changed_only: bool = False,
    segments: list[dict[str, Any]] | None = None,
) -> dict[str, int]:
    """Every model, in dependency order, into the connection's default catalog; returns row counts. With
    ``changed_only`` (an incremental build whose cost inputs are unchanged), the per-job and by-job models
    replace only the rows of the jobs in ``_changed_jobs``, and the other models are built whole. A per-job
    model built whole is built one segment of jobs after another when ``segments`` (the build's, see
    :mod:`pipelines.warehouse.segments`) allow it, and its starting rowids are recorded in them; otherwise
    it is dropped from them."""
    counts = load_parameters(connection, costs, refreshed_prices, billing_files)
    declared = all_tables()
    for name in build_order():
        if name not in declared:
            raise ValueError(f"sql/models/{name}.sql has no declaration in schemas/models/{name}.yaml")
    partitioned = [name for name in build_order() if declared[name].partitioned_by]
    for name in partitioned:
        _check_partitioned(declared[name])
    # The inputs of a partitioned rollup keep their replaced rows: the rollup's values the build rebuilds
    # include those the changed jobs' rows held before.
    feeding = {input for name in partitioned for input in model_dependencies(name)}
    for name in build_order():
        if changed_only and declared[name].rebuilt_by_job:
            _replace_changed_jobs_rows(connection, declared[name], keep_previous=name in feeding)
        elif changed_only and declared[name].partitioned_by:
            _rebuild_changed_partitions(connection, declared[name])
        elif declared[name].per_job and segments is not None:
            _build_by_segment(connection, declared[name], segments)
        else:
            build_table(connection, declared[name], table_sql(name, MODELS_FOLDER))
    for name in build_order():
        counts[name] = int(run(connection, f"select count(*) from {identifier(name)}")[0][0])
    return counts


def _replace_changed_jobs_rows(
    connection: duckdb.DuckDBPyConnection, model: TableSchema, keep_previous: bool = False
) -> None:
    """Rebuild the changed jobs' rows of ``model``. While it builds, every per-job table is seen through a
    temporary view of the changed jobs' rows, so the model's own SQL computes just those: the rows the
    build put in (:func:`pipelines.sql.replacement_rows`) where it replaced the table's rows, which spares
    a scan of the whole table. Of a by-job model's rows, only the changed jobs' are kept: its others (of
    jobs only the bill knows, or of none) come from the unchanged cost inputs alone."""
    catalog = run(connection, "select current_database()")[0][0]
    changed = qualified(CHANGED_JOBS, catalog)
    replaced = replaced_by_job(connection)
    views = {
        name: f"select * from {qualified(replacement_rows(name), catalog)}"
        if name in replaced
        else f"select * from {qualified(name, catalog)} semi join {changed} using (training_job_arn)"
        for name in (t.name for t in all_tables().values() if t.per_job)
    }
    with _seen_through(connection, views):
        sql = table_sql(model.name, MODELS_FOLDER)
        check_columns(connection, model, sql)
        if not model.per_job:
            sql = f"select * from ({sql}) where {of_jobs(model, changed)}"
        stage_replacement_rows(connection, model, sql, catalog)
        replace_rows(connection, model, changed, catalog, keep_previous)


def _build_by_segment(
    connection: duckdb.DuckDBPyConnection, model: TableSchema, segments: list[dict[str, Any]]
) -> None:
    """Build the per-job ``model`` whole, the jobs of one segment after another, each time with every per-job
    table seen through the rows of that segment (a rowid range DuckDB reads without the rest), so that the
    model's rows are in segments too and the next incremental build can find a job's rows in it. Without a
    starting rowid for every per-job table in every segment, it is built in one go and left out of them."""
    declared = all_tables()
    inputs = sorted(name for name in model_dependencies(model.name) if name in declared and declared[name].per_job)
    usable = bool(segments) and all(name in s["rows_from"] for s in segments for name in inputs)
    sql = table_sql(model.name, MODELS_FOLDER)
    if not usable:
        build_table(connection, model, sql)
        for segment in segments:
            segment["rows_from"].pop(model.name, None)
        return
    build_table(connection, model, f"select * from ({sql}) where false")
    catalog = run(connection, "select current_database()")[0][0]
    for number, segment in enumerate(segments):
        following = segments[number + 1]["rows_from"] if number + 1 < len(segments) else {}
        views = {
            name: f"select * from {qualified(name, catalog)} where rowid >= {segment['rows_from'][name]}"
            + (f" and rowid < {following[name]}" if name in following else "")
            for name in inputs
        }
        (last,) = run(connection, f"select coalesce(max(rowid), -1) from {identifier(model.name)}")[0]
        segment["rows_from"][model.name] = int(last) + 1
        with _seen_through(connection, views):
            insert_rows(connection, model, sql)


@contextmanager
def _seen_through(connection: duckdb.DuckDBPyConnection, views: dict[str, str]) -> Iterator[None]:
    """While the block runs, each table named in ``views`` is read through a temporary view of that SQL (a
    model's own SQL names its inputs unqualified, and a temporary view comes first)."""
    for name, sql in views.items():
        run(connection, f"create or replace temp view {identifier(name)} as {sql}")
    try:
        yield
    finally:
        for name in views:
            run(connection, f"drop view if exists temp.main.{identifier(name)}")


def _reads_jobs(name: str) -> bool:
    """Whether a table's rows depend on the jobs (it is per-job, or a model that reads one), rather than on
    the cost inputs alone."""
    declared = all_tables().get(name)
    if declared is None or declared.per_job:
        return declared is not None
    return name in model_names() and any(_reads_jobs(input) for input in model_dependencies(name))


def _check_partitioned(model: TableSchema) -> None:
    """Refuse a partitioned rollup that could not be rebuilt one value at a time: each input it reads must be
    rebuilt by job and hold the partition columns (not null), or depend on the cost inputs alone, and one at
    least must be rebuilt by job (its changed rows say which values to rebuild)."""
    declared = all_tables()
    inputs = sorted(model_dependencies(model.name))
    if not any(input in declared and declared[input].rebuilt_by_job for input in inputs):
        raise ValueError(f"{model.name} is partitioned but reads no table rebuilt by job: build it whole")
    for input in inputs:
        table = declared.get(input)
        if table is not None and table.rebuilt_by_job:
            columns = {c.name: c for c in table.columns}
            if any(name not in columns or columns[name].nullable for name in model.partitioned_by):
                raise ValueError(
                    f"{model.name} is partitioned by {list(model.partitioned_by)}, which {input} lacks "
                    "(or holds nulls in)"
                )
        elif _reads_jobs(input):
            raise ValueError(f"{model.name} is partitioned but reads {input}, which depends on the jobs as a whole")


def _rebuild_changed_partitions(connection: duckdb.DuckDBPyConnection, model: TableSchema) -> None:
    """Rebuild a partitioned rollup's rows for the values of its partition columns that the changed jobs'
    rows of its inputs held before the build or hold now: every input rebuilt by job is seen through a
    temporary view of its rows with those values (every job's, not only the changed ones'), and the rows
    with other values stay as published."""
    catalog = run(connection, "select current_database()")[0][0]
    columns = ", ".join(map(identifier, model.partitioned_by))
    inputs = [name for name in sorted(model_dependencies(model.name)) if all_tables()[name].rebuilt_by_job]
    values = [
        f"select {columns} from {qualified(kept(name), catalog)}"
        for name in inputs
        for kept in (replacement_rows, previous_rows)
        if has_table(connection, kept(name))
    ]
    affected = "_affected_partitions"
    run(connection, f"create or replace temp table {affected} as {' union '.join(values)}")
    views = {
        name: f"select * from {qualified(name, catalog)} semi join {affected} using ({columns})" for name in inputs
    }
    try:
        with _seen_through(connection, views):
            sql = table_sql(model.name, MODELS_FOLDER)
            check_columns(connection, model, sql)
            run(connection, f"delete from {qualified(model.name, catalog)} where ({columns}) in (from {affected})")
            insert_rows(connection, model, f"select * from ({sql}) semi join {affected} using ({columns})", catalog)
    finally:
        run(connection, f"drop table {affected}")
