"""Checks on the cost models, as SQL over a connection holding them. :data:`MODEL_CHECKS` declares each
one once (name, asset, whether it blocks publication); the Dagster asset derives its specs from it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import duckdb

from pipelines.models.build import REFERENCE_TABLES, model_names
from pipelines.schemas import table
from pipelines.sql import CONTRACT_CHECKS, CheckOutcome, changed_jobs_in_jobs, only_changed_rows, rows_to_check, run

COST_COLUMNS = ("compute_cost_usd", "warm_pool_cost_usd", "storage_cost_usd", "total_cost_usd", "spot_savings_usd")


def one_cost_row_per_job(connection: duckdb.DuckDBPyConnection) -> CheckOutcome:
    """Every job has one cost row. Where an incremental build replaced only the changed jobs' cost rows, the
    changed jobs alone are compared: every other job's rows, and its cost row, are the published version's."""
    costs = rows_to_check(connection, table("job_costs"))
    jobs = "jobs"
    if only_changed_rows(connection, table("job_costs")):
        jobs = f"({changed_jobs_in_jobs(connection)})"
    missing, extra = run(
        connection,
        f"""
        select
            (select count(*) from {jobs} anti join {costs} using (training_job_arn)),
            (select count(*) - count(distinct training_job_arn) from {costs})
            + (select count(*) from {costs} anti join {jobs} using (training_job_arn))
        """,
    )[0]
    return CheckOutcome(
        "one_row_per_job",
        missing == 0 and extra == 0,
        f"{missing} jobs without a cost row, {extra} extra or duplicate rows",
        {"jobs_without_cost": int(missing), "extra_rows": int(extra)},
    )


def no_negative_cost(connection: duckdb.DuckDBPyConnection) -> CheckOutcome:
    conditions = " or ".join(f"{column} < 0" for column in COST_COLUMNS)
    negative = run(connection, f"select count(*) from job_costs where {conditions}")[0][0]
    return CheckOutcome(
        "no_negative_cost",
        negative == 0,
        f"{negative} jobs with a negative cost",
        {"jobs_with_negative_cost": int(negative)},
    )


def daily_total_matches_job_costs(connection: duckdb.DuckDBPyConnection) -> CheckOutcome:
    daily, jobs = run(
        connection,
        "select (select coalesce(sum(total_cost_usd), 0) from cost_daily),"
        " (select coalesce(sum(total_cost_usd), 0) from job_costs)",
    )[0]
    return CheckOutcome(
        "total_matches_job_costs",
        round(daily, 2) == round(jobs, 2),
        f"cost_daily totals ${daily:,.2f}; job_costs totals ${jobs:,.2f}",
        {"cost_daily_total_usd": round(float(daily), 2), "job_costs_total_usd": round(float(jobs), 2)},
    )


def unpriced_instance_types(connection: duckdb.DuckDBPyConnection) -> CheckOutcome:
    rows = run(
        connection,
        """
        with unpriced as (
            select region || ' ' || unnest(string_split(unpriced_instance_types, ', ')) as unpriced
            from job_costs
            where unpriced_instance_types is not null
        )
        select unpriced, count(*) as jobs
        from unpriced
        group by unpriced
        order by jobs desc, unpriced
        """,
    )
    found = {name: int(jobs) for name, jobs in rows}
    return CheckOutcome(
        "unpriced_instance_types",
        not found,
        f"no price for {found}; add them to a prices file (costs.prices_file)" if found else "every instance is priced",
        {"unpriced": found},
    )


# Above this share of the cost computed from unchecked prices, the numbers need a warning.
UNVERIFIED_COST_SHARE_LIMIT = 0.10


def unverified_price_share(connection: duckdb.DuckDBPyConnection) -> CheckOutcome:
    unverified, total = run(
        connection, "select coalesce(sum(unverified_cost_usd), 0), coalesce(sum(total_cost_usd), 0) from cost_coverage"
    )[0]
    share = unverified / total if total else 0.0
    return CheckOutcome(
        "unverified_price_share",
        share <= UNVERIFIED_COST_SHARE_LIMIT,
        f"{share:.1%} of the cost (${unverified:,.2f} of ${total:,.2f}) rests on prices not checked against a bill; "
        "give your own rates (costs.prices_file) or run `sagemaker-warehouse prices refresh`",
        {"unverified_cost_usd": round(float(unverified), 2), "share": round(share, 4)},
    )


def reconciles_to_bill(connection: duckdb.DuckDBPyConnection) -> CheckOutcome:
    reconciled, daily, billed, unattributed = run(
        connection,
        "select (select coalesce(sum(effective_cost_usd), 0) from cost_reconciliation),"
        " (select coalesce(sum(billed_effective_cost_usd), 0) from cost_daily),"
        " (select coalesce(sum(effective_cost_usd), 0) from billing_line_items),"
        " (select coalesce(sum(effective_cost_usd), 0) from cost_reconciliation where status = 'unattributed')",
    )[0]
    return CheckOutcome(
        "reconciles_to_bill",
        # To the cent, without float noise deciding it (two sums of the same lines can differ by 1e-15).
        abs(reconciled - billed) < 0.005 and abs(daily - billed) < 0.005,
        f"cost_reconciliation accounts for ${reconciled:,.2f} and cost_daily for ${daily:,.2f} of the bill's "
        f"${billed:,.2f} of SageMaker training (${unattributed:,.2f} of it on no job)",
        {
            "reconciled_usd": round(float(reconciled), 2),
            "cost_daily_billed_usd": round(float(daily), 2),
            "billed_usd": round(float(billed), 2),
            "unattributed_usd": round(float(unattributed), 2),
        },
    )


# Below this share of the billed training cost on jobs whose estimate agrees with the bill (matched, or
# discounted: the list-price side agrees), the estimates need a look.
EXPLAINED_SHARE_LIMIT = 0.80


def billed_cost_explained(connection: duckdb.DuckDBPyConnection) -> CheckOutcome:
    explained, comparable, total = run(
        connection,
        """
        select
            coalesce(sum(effective_cost_usd) filter (where status in ('matched', 'discounted')), 0),
            coalesce(sum(effective_cost_usd) filter (
                where status in ('matched', 'discounted', 'price_differs', 'not_in_bill', 'unpriced_estimate')
            ), 0),
            coalesce(sum(effective_cost_usd), 0)
        from cost_reconciliation
        """,
    )[0]
    if not total:
        return CheckOutcome("billed_cost_explained", True, "no bill loaded (billing.exports): nothing to explain", {})
    if not comparable:
        return CheckOutcome(
            "billed_cost_explained",
            False,
            f"none of the bill's ${total:,.2f} is on a finished job the warehouse estimated: does the export "
            "include resource IDs, and the accounts you read?",
            {"explained_usd": 0.0, "comparable_usd": 0.0, "share": 0.0},
        )
    share = explained / comparable
    return CheckOutcome(
        "billed_cost_explained",
        share >= EXPLAINED_SHARE_LIMIT,
        f"the estimates agree with the bill on {share:.1%} of the billed cost of finished jobs "
        f"(${explained:,.2f} of ${comparable:,.2f}); see cost_reconciliation.status for the rest",
        {"explained_usd": round(float(explained), 2), "comparable_usd": round(float(comparable), 2), "share": share},
    )


def one_export_per_account_and_period(connection: duckdb.DuckDBPyConnection) -> CheckOutcome:
    rows = run(
        connection,
        """
        select account_id, strftime(billing_period, '%Y-%m'), string_agg(distinct export_name, ', ')
        from billing_line_items
        group by account_id, billing_period
        having count(distinct export_name) > 1
        order by all
        """,
    )
    overlaps = {f"{account} {period}": exports for account, period, exports in rows}
    return CheckOutcome(
        "one_export_per_account_and_period",
        not overlaps,
        f"the same account's usage of the same month comes from several exports, which would count it twice: "
        f"{overlaps}; keep one export per payer (remove the others' folders under raw/billing)"
        if overlaps
        else "each account's month comes from one export",
        {"overlaps": overlaps},
    )


@dataclass(frozen=True)
class ModelCheck:
    name: str
    asset: str
    blocking: bool  # a failure keeps the build from being published; otherwise a warning
    description: str
    evaluate: Callable[[duckdb.DuckDBPyConnection], CheckOutcome]

    def __call__(self, connection: duckdb.DuckDBPyConnection) -> CheckOutcome:
        outcome = self.evaluate(connection)
        if outcome.name != self.name:  # one name, declared here: the function must report it
            raise RuntimeError(f"{self.evaluate.__name__} reports {outcome.name!r}, declared {self.name!r}")
        return outcome


def _contract_checks() -> list[ModelCheck]:
    """What each model's and reference table's declaration promises (its key is unique, its required
    columns hold no null), blocking like the normalized tables' own."""
    found = []
    for name in [*REFERENCE_TABLES, *model_names()]:
        declared = table(name)
        for contract in CONTRACT_CHECKS:
            found.append(
                ModelCheck(
                    contract.__name__,
                    name,
                    True,
                    f"{name} keeps its declared contract: {contract.__doc__}",
                    lambda connection, contract=contract, declared=declared: contract(connection, declared),
                )
            )
    return found


MODEL_CHECKS = [
    *_contract_checks(),
    ModelCheck(
        "one_row_per_job",
        "job_costs",
        True,
        "Every job has exactly one cost row, and no row points at no job.",
        one_cost_row_per_job,
    ),
    ModelCheck("no_negative_cost", "job_costs", True, "No cost column is negative.", no_negative_cost),
    ModelCheck(
        "total_matches_job_costs",
        "cost_daily",
        True,
        "The daily rollup sums to the same total as job_costs, to the cent.",
        daily_total_matches_job_costs,
    ),
    ModelCheck(
        "unpriced_instance_types",
        "job_costs",
        False,
        "Instance types with no price: their jobs' costs are null, never zero.",
        unpriced_instance_types,
    ),
    ModelCheck(
        "unverified_price_share",
        "cost_coverage",
        False,
        f"At most {UNVERIFIED_COST_SHARE_LIMIT:.0%} of the cost rests on prices not checked against a bill.",
        unverified_price_share,
    ),
    ModelCheck(
        "reconciles_to_bill",
        "cost_reconciliation",
        True,
        "Every billed dollar of SageMaker training is on a job or on an explicit unattributed row: "
        "cost_reconciliation and cost_daily's billed column sum to the bill's training total, to the cent.",
        reconciles_to_bill,
    ),
    ModelCheck(
        "one_export_per_account_and_period",
        "billing_line_items",
        True,
        "No account's month is loaded from two exports (an hourly and a daily export of one payer, or an export "
        "recreated under a new name), which would count its bill twice.",
        one_export_per_account_and_period,
    ),
    ModelCheck(
        "billed_cost_explained",
        "cost_reconciliation",
        False,
        f"At least {EXPLAINED_SHARE_LIMIT:.0%} of the billed cost of finished, billed jobs is on jobs whose "
        "estimate agrees with the bill (matched or discounted).",
        billed_cost_explained,
    ),
]
