"""Data-quality checks on the normalized tables, as plain SQL over a connection holding them.

Each check returns a :class:`CheckOutcome`; the Dagster assets turn them into (blocking) asset checks
so that a failure keeps the staged tables from being published.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb

from pipelines.aws_model import structure_paths
from pipelines.normalization.flatten import LEFT_OUT, PARENT_TABLE, RAW_JSON, normalized_tables
from pipelines.schemas import TableSchema
from pipelines.sql import (
    CheckOutcome,
    changed_jobs_in_jobs,
    has_table,
    identifier,
    literal,
    only_changed_rows,
    previous_rows,
    required_columns_not_null,
    rows_to_check,
    run,
    temp_table_once,
    unique_key,
)

JOBS = PARENT_TABLE


def references_jobs(connection: duckdb.DuckDBPyConnection, table: TableSchema) -> CheckOutcome:
    """every row points at a job in the jobs table."""
    rows, parents = rows_to_check(connection, table), _parents(connection, table)
    orphans = run(connection, f"select count(*) from {rows} child anti join {parents} using (training_job_arn)")[0][0]
    return CheckOutcome(
        "references_jobs",
        orphans == 0,
        f"{orphans} rows point at no job" if orphans else "every row points at a job",
        {"orphan_rows": int(orphans)},
    )


_CHANGED_PARENTS = "_changed_jobs_in_jobs"  # per connection: the changed jobs that have a row in jobs


def _parents(connection: duckdb.DuckDBPyConnection, table: TableSchema) -> str:
    """The jobs that the rows a check of ``table`` reads may point at: the jobs table, or when it reads only
    the changed jobs' rows, the changed jobs that are in it (the same answer for those rows), found once per
    connection instead of hashing every job's ARN for each table."""
    if only_changed_rows(connection, table):
        return temp_table_once(connection, _CHANGED_PARENTS, changed_jobs_in_jobs(connection))
    return JOBS


RAW_ROW_COUNTS = "_raw_row_counts"  # per connection: what every table should hold, from one scan


def _rows_in_raw(connection: duckdb.DuckDBPyConnection, table: TableSchema) -> int:
    """The rows ``table``'s source lists and maps hold in the raw JSON. The first call counts them for every
    normalized table in one scan of the raw records, parsing each record twice (once for the lengths of all
    the lists, once for the keys of all the maps), and keeps the counts for the connection."""
    if not has_table(connection, RAW_ROW_COUNTS):
        counted = [t for t in normalized_tables() if t.rows_from]
        paths = {
            kind: sorted({path for t in counted for k, paths in t.rows_from if k == kind for path in paths})
            for kind in ("lists", "maps")
        }
        parsed = ["1 as one_per_job"]
        if paths["lists"]:
            parsed.append(f"json_array_length(response_json, [{', '.join(map(literal, paths['lists']))}]) as lists")
        if paths["maps"]:
            parsed.append(f"json_keys(response_json, [{', '.join(map(literal, paths['maps']))}]) as maps")

        def term(kind: str, path: str) -> str:
            if kind == "one_per_job":
                return "1"
            position = paths[kind].index(path) + 1
            return f"coalesce(lists[{position}], 0)" if kind == "lists" else f"coalesce(len(maps[{position}]), 0)"

        sums = ", ".join(
            f"coalesce(sum({' + '.join(term(kind, path) for kind, paths in t.rows_from for path in paths)}), 0)"
            for t in counted
        )
        totals = run(connection, f"select {sums} from (select {', '.join(parsed)} from {RAW_JSON})")[0]
        values = ", ".join(f"({literal(t.name)}, {int(n)})" for t, n in zip(counted, totals, strict=True))
        run(connection, f"create temp table {RAW_ROW_COUNTS} as select * from (values {values}) t(table_name, rows)")
    return int(run(connection, f"select rows from {RAW_ROW_COUNTS} where table_name = {literal(table.name)}")[0][0])


def row_count_matches_raw(connection: duckdb.DuckDBPyConnection, table: TableSchema) -> CheckOutcome:
    """The table has exactly as many rows as its source lists or maps hold in the raw JSON, counted with
    DuckDB's JSON functions on the stored text: a second path, independent of the flattening SQL. (An
    incremental build counts the changed jobs' rows against their records.)"""
    in_raw = _rows_in_raw(connection, table)
    left_out = sum(count for _, _, count in _left_out(connection, table))
    expected = in_raw - left_out
    actual = run(connection, f"select count(*) from {rows_to_check(connection, table)}")[0][0]
    return CheckOutcome(
        "row_count_matches_raw",
        expected == actual,
        f"{actual} rows; the raw records hold {in_raw}" + (f", {left_out} of them left out" if left_out else ""),
        {"rows": int(actual), "expected_from_raw": int(expected), "left_out": left_out},
    )


def _left_out(connection: duckdb.DuckDBPyConnection, table: TableSchema) -> list[tuple[str, str, int]]:
    """(job ARN, reason, rows) left out of ``table`` by the build, if it recorded any."""
    if not has_table(connection, LEFT_OUT):
        return []
    return [
        (arn, reason, int(rows))
        for arn, reason, rows in run(
            connection,
            f"select training_job_arn, reason, rows_left_out from {LEFT_OUT} "
            f"where table_name = '{table.name}' order by training_job_arn",
        )
    ]


def rows_left_out(connection: duckdb.DuckDBPyConnection, table: TableSchema) -> CheckOutcome:
    """A warning naming the jobs whose rows broke ``table``'s contract and were left out of it."""
    found = _left_out(connection, table)
    rows = sum(count for _, _, count in found)
    named = "; ".join(f"{arn}: {count} row(s) {reason}" for arn, reason, count in found[:5])
    more = f" and {len(found) - 5} more jobs" if len(found) > 5 else ""
    return CheckOutcome(
        "rows_left_out",
        not found,
        f"{rows} rows of {len(found)} jobs left out: {named}{more}. Their records are whole in the raw layer."
        if found
        else "every row meets the table's contract",
        {"rows_left_out": rows, "jobs": [arn for arn, _, _ in found]},
    )


TABLE_CHECKS: dict[str, Callable[[duckdb.DuckDBPyConnection, TableSchema], CheckOutcome]] = {
    "unique_key": unique_key,
    "required_columns_not_null": required_columns_not_null,
    "references_jobs": references_jobs,
    "row_count_matches_raw": row_count_matches_raw,
}


def check_description(name: str) -> str:
    """What a table check promises, as one sentence: the first sentence of its function's docstring."""
    first = " ".join((TABLE_CHECKS[name].__doc__ or "").split()).split(": ")[0].split(". ")[0].rstrip(".")
    return first[:1].upper() + first[1:] + "."


def check_names(table: TableSchema) -> list[str]:
    """The checks that apply to ``table``: jobs is the parent; a row count needs a declared source."""
    return [
        name
        for name in TABLE_CHECKS
        if not (name == "references_jobs" and table.name == JOBS)
        and not (name == "row_count_matches_raw" and not table.rows_from)
    ]


def table_checks(connection: duckdb.DuckDBPyConnection, table: TableSchema) -> list[CheckOutcome]:
    return [TABLE_CHECKS[name](connection, table) for name in check_names(table)]


def unknown_members(connection: duckdb.DuckDBPyConnection) -> CheckOutcome:
    """Members of the stored records that botocore's model (and so the tables) does not know: kept in the
    raw layer, reported here so that someone can decide to type them. One scan of the raw records lists
    the members of every structure at once."""
    known_by_path = structure_paths()
    paths = list(known_by_path)
    # json_keys with a list of paths parses each record once for all of them.
    rows = run(
        connection,
        f"""
        with keyed as (
            select json_keys(response_json, [{", ".join(map(literal, paths))}]) as members from {RAW_JSON}
        ),
        by_path as (select unnest(range({len(paths)})) as position, unnest(members) as members from keyed)
        select position, member, count(*)
        from (select position, unnest(members) as member from by_path)
        group by position, member
        """,
    )
    rows = [(paths[position], member, count) for position, member, count in rows]
    found = {
        f"{path}.{member}".replace("$.", "", 1).lstrip("$."): int(count)
        for path, member, count in sorted(rows)
        if member not in known_by_path[path]
    }
    return CheckOutcome(
        "unknown_members",
        not found,
        f"members no table types yet: {found}" if found else "every stored member is known to the model",
        {"unknown_members": found},
    )


GONE_FROM_SAGEMAKER = "_gone_from_sagemaker"  # staging only: names SageMaker answered 'not found' for


def published_jobs_kept(
    connection: duckdb.DuckDBPyConnection, published_jobs: Sequence[Path], built_on_published: bool = False
) -> CheckOutcome:
    """Every job of the currently published warehouse is still in the staged ``jobs`` table, unless
    SageMaker confirmed it is gone (DeleteTrainingJob: a Describe by name in its account and region
    answered 'not found'). A job that disappears otherwise means its raw record was lost (a
    damaged file moved to quarantine, a file deleted by hand): publishing would silently drop it. The
    next extraction fetches such jobs again by name.

    ``built_on_published``: the staged build is incremental and started from the version published now.
    Then the published jobs are counted rather than read: when the unchanged jobs are as many in both and
    every changed job that was published is still there, none is lost. Otherwise every published ARN is
    looked up, as for any other build."""
    if not published_jobs:
        return CheckOutcome("no_published_job_lost", True, "nothing published yet", {"lost_jobs": 0})
    source = "[" + ", ".join(literal(path) for path in published_jobs) + "]"
    changed_before = previous_rows(JOBS)  # the changed jobs' rows as published, kept by the build
    if built_on_published and has_table(connection, changed_before):
        counts = run(
            connection,
            f"""
            with changed_now as ({changed_jobs_in_jobs(connection)})
            select
                (select count(*) from read_parquet({source})) - (select count(*) from {identifier(changed_before)}),
                (select count(*) from {JOBS}) - (select count(*) from changed_now),
                (select count(*) from {identifier(changed_before)} anti join changed_now using (training_job_arn))
            """,
        )[0]
        unchanged_published, unchanged_staged, changed_gone = counts
        if unchanged_published == unchanged_staged and changed_gone == 0:
            return CheckOutcome("no_published_job_lost", True, "every published job is still present", {"lost_jobs": 0})
    gone_jobs = (
        f"select account_id, region, training_job_name from {GONE_FROM_SAGEMAKER}"
        if has_table(connection, GONE_FROM_SAGEMAKER)
        else "select null::varchar, null::varchar, null::varchar where false"
    )
    count, examples, gone = run(
        connection,
        f"""
        with missing_arns as (
            -- The ARNs alone first: the names are read only for the (usually no) jobs missing.
            select training_job_arn from read_parquet({source}) anti join {JOBS} using (training_job_arn)
        ),
        missing as (
            select published.training_job_arn,
                   (published.account_id, published.region, published.training_job_name) in ({gone_jobs}) as gone
            from read_parquet({source}) published semi join missing_arns using (training_job_arn)
        )
        select count(*) filter (not gone), list(training_job_arn order by training_job_arn) filter (not gone),
               count(*) filter (gone)
        from missing
        """,
    )[0]
    count, gone, examples = int(count), int(gone), list(examples or [])[:5]
    left = f"; {gone} jobs deleted in SageMaker left the warehouse" if gone else ""
    return CheckOutcome(
        "no_published_job_lost",
        count == 0,
        f"{count} published jobs are missing from the raw layer (e.g. {', '.join(examples)}); the next run "
        f"fetches them again, and the previous version stays published meanwhile{left}"
        if count
        else f"every published job is still present{left}",
        {"lost_jobs": count, "deleted_in_sagemaker": gone, "examples": examples},
    )
