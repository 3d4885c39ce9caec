"""The cost report: one self-contained HTML file (charts and data inline, plotly.js included, no network)
that a manager can read in a minute. Every figure is a query on the published models, so the report and
SQL always agree. Written to ``<warehouse>/report/index.html`` by each build and by ``sagemaker-warehouse
report``.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import duckdb
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from pipelines.storage.layout import DATABASE

REPORT = Path("report") / "index.html"
# Distinguishable with the common colour-vision deficiencies.
# Okabe-Ito without its yellow, too faint on white.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#999999"]
MONEY_AXIS = {"tickprefix": "$", "tickformat": ",.0f"}
DAYS = 90


@dataclass(frozen=True)
class Figure:
    anchor: str
    title: str  # with its unit and period
    body: str  # HTML: a chart or a table


@cache
def _plotly_js() -> str:
    return get_plotlyjs()  # 4.6 MB read from the installed package: once per process


def _one_tag_key(rollup: str) -> str:
    """The rollups repeat every job under each allocation tag key; reading one key counts each job once."""
    return f"allocation_tag_key = (select min(allocation_tag_key) from {rollup})"


def _rows(connection: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return connection.execute(sql).fetchall()


def money(value: float | None) -> str:
    """Dollars and cents, the sign before the dollar sign; a dash for no value."""
    return "—" if value is None else f"{'-' if value < 0 else ''}${abs(value):,.2f}"


def _chart(figure: go.Figure, anchor: str) -> str:
    figure.update_layout(
        # Styled here rather than with a full template, which plotly deep-copies for every figure.
        template="none",
        plot_bgcolor="#ffffff",
        paper_bgcolor="#ffffff",
        xaxis={"showgrid": False, "linecolor": "#bbbbbb"},
        yaxis={"gridcolor": "#ececec", "zerolinecolor": "#bbbbbb"},
        colorway=PALETTE,
        margin={"l": 60, "r": 20, "t": 10, "b": 40},
        height=360,
        legend={"orientation": "h", "y": -0.15},
        font={"family": "system-ui, sans-serif", "size": 13},
    )
    return figure.to_html(
        full_html=False, include_plotlyjs=False, div_id=f"chart-{anchor}", config={"displaylogo": False}
    )


def _table(header: list[str], rows: list[list[str]], numeric: set[int]) -> str:
    head = "".join(f"<th{' class=num' if i in numeric else ''}>{html.escape(h)}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if i in numeric else ''}>{html.escape(cell)}</td>" for i, cell in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _first_tag(connection: duckdb.DuckDBPyConnection) -> str | None:
    found = _rows(connection, "select allocation_tag_key from cost_daily limit 1")
    return found[0][0] if found else None


def _totals(connection: duckdb.DuckDBPyConnection) -> dict[str, float]:
    (total, spot, accelerator_hours, unpriced) = _rows(
        connection,
        "select coalesce(sum(total_cost_usd), 0), coalesce(sum(spot_savings_usd), 0),"
        " coalesce(sum(accelerator_hours), 0), count(*) filter (where not is_priced) from job_costs",
    )[0]
    wasted_sql = f"select coalesce(sum(wasted_cost_usd), 0) from waste where {_one_tag_key('waste')}"
    (wasted,) = _rows(connection, wasted_sql)[0]
    month, last_month = _rows(
        connection,
        f"""
        with months as (select month, sum(total_cost_usd) as usd from cost_monthly
                        where {_one_tag_key("cost_monthly")} group by month)
        select coalesce(sum(usd) filter (where month = (select max(month) from months)), 0),
               coalesce(sum(usd) filter (where month = (select max(month) from months) - interval 1 month), 0)
        from months
        """,
    )[0]
    totals = {
        "total_cost_usd": float(total),
        "this_month_usd": float(month),
        "last_month_usd": float(last_month),
        "spot_savings_usd": float(spot),
        "wasted_cost_usd": float(wasted),
        "accelerator_hours": float(accelerator_hours),
        "unpriced_jobs": float(unpriced),
    }
    if _has_bill(connection):
        totals["billed_usd"] = float(_rows(connection, "select sum(effective_cost_usd) from billing_line_items")[0][0])
    return totals


def _spend_by_day(connection: duckdb.DuckDBPyConnection, tag: str | None) -> Figure:
    rows = _rows(
        connection,
        f"""
        select day, allocation_tag_value, sum(total_cost_usd)
        from cost_daily
        where day > (select max(day) from cost_daily) - interval {DAYS} day
        group by all order by day, allocation_tag_value
        """,
    )
    figure = go.Figure()
    for value in sorted({r[1] for r in rows}):
        points = [(r[0], r[2]) for r in rows if r[1] == value]
        figure.add_bar(
            x=[p[0] for p in points],
            y=[p[1] for p in points],
            name=value,
            hovertemplate="%{x|%Y-%m-%d}: $%{y:,.2f}<extra>" + html.escape(value) + "</extra>",
        )
    figure.update_layout(barmode="stack", yaxis=MONEY_AXIS)
    by = f"by {tag}" if tag else ""
    return Figure("spend-by-day", f"Estimated spend per UTC day, last {DAYS} days, {by} (USD)", _chart(figure, "day"))


def _month_over_month(connection: duckdb.DuckDBPyConnection, column: str, label: str, anchor: str) -> Figure:
    rows = _rows(
        connection,
        f"""
        with months as (select max(month) as this_month from cost_monthly),
        scoped as (
            select {column} as item, month, total_cost_usd from cost_monthly
            where {_one_tag_key("cost_monthly")}
        )
        select item,
               coalesce(sum(total_cost_usd) filter (where month = (select this_month from months)), 0) as this_month,
               coalesce(sum(total_cost_usd)
                   filter (where month = (select this_month from months) - interval 1 month), 0) as last_month
        from scoped group by item order by this_month + last_month desc limit 12
        """,
    )
    items = [r[0] for r in rows]
    figure = go.Figure()
    figure.add_bar(x=items, y=[r[2] for r in rows], name="last month", hovertemplate="%{x}: $%{y:,.2f}<extra></extra>")
    figure.add_bar(x=items, y=[r[1] for r in rows], name="this month", hovertemplate="%{x}: $%{y:,.2f}<extra></extra>")
    figure.update_layout(barmode="group", yaxis=MONEY_AXIS)
    return Figure(anchor, f"This month vs last month by {label} (USD, UTC months)", _chart(figure, anchor))


def _most_expensive_jobs(connection: duckdb.DuckDBPyConnection, limit: int) -> list[tuple]:
    """Name, region, instance type, status, cost basis and total cost of the ``limit`` costliest jobs."""
    return _rows(
        connection,
        f"""
        select jobs.training_job_name, job_costs.region, job_costs.instance_type, job_costs.training_job_status,
               job_costs.cost_basis, job_costs.total_cost_usd
        from job_costs join jobs using (training_job_arn)
        where job_costs.total_cost_usd is not null
        order by job_costs.total_cost_usd desc, jobs.training_job_name limit {int(limit)}
        """,
    )


def _top_jobs(connection: duckdb.DuckDBPyConnection) -> Figure:
    rows = _most_expensive_jobs(connection, 20)
    table = _table(
        ["job", "region", "instance type", "status", "basis", "cost"],
        [[str(v or "") for v in r[:5]] + [money(r[5])] for r in rows],
        numeric={5},
    )
    return Figure("top-jobs", "The 20 most expensive jobs, all time (USD)", table)


def _waste(connection: duckdb.DuckDBPyConnection) -> Figure:
    kinds = {
        "failed": "failed_cost_usd",
        "stopped": "stopped_cost_usd",
        "max runtime": "max_runtime_exceeded_cost_usd",
        "max wait (spot)": "max_wait_time_exceeded_cost_usd",
        "idle warm pool": "idle_warm_pool_cost_usd",
    }
    sums = ", ".join(f"coalesce(sum({column}), 0)" for column in kinds.values())
    (values,) = _rows(
        connection,
        f"select [{sums}] from waste where {_one_tag_key('waste')}",
    )[0]
    figure = go.Figure(go.Bar(x=list(kinds), y=values, hovertemplate="%{x}: $%{y:,.2f}<extra></extra>"))
    figure.update_layout(yaxis=MONEY_AXIS)
    return Figure(
        "waste", "Money spent on work that did not finish or sat idle, by kind, all time (USD)", _chart(figure, "waste")
    )


def _spot_savings(connection: duckdb.DuckDBPyConnection) -> Figure:
    rows = _rows(
        connection,
        f"""
        select strftime(month, '%Y-%m'), sum(spot_savings_usd), sum(total_cost_usd) from cost_monthly
        where {_one_tag_key("cost_monthly")}
        group by month order by month
        """,
    )
    figure = go.Figure()
    figure.add_bar(
        x=[r[0] for r in rows],
        y=[r[2] for r in rows],
        name="spent",
        hovertemplate="%{x|%Y-%m}: $%{y:,.2f}<extra>spent</extra>",
    )
    figure.add_bar(
        x=[r[0] for r in rows],
        y=[r[1] for r in rows],
        name="saved by managed spot",
        hovertemplate="%{x|%Y-%m}: $%{y:,.2f}<extra>saved</extra>",
    )
    figure.update_layout(barmode="group", yaxis=MONEY_AXIS, xaxis={"type": "category"})
    return Figure("spot", "Spend and managed-spot savings per UTC month (USD)", _chart(figure, "spot"))


def _accelerator_hours(connection: duckdb.DuckDBPyConnection) -> Figure:
    rows = _rows(
        connection,
        """
        select instance_type, sum(accelerator_hours) as hours from job_costs
        where accelerator_hours > 0 group by instance_type order by hours desc limit 12
        """,
    )
    figure = go.Figure(
        go.Bar(x=[r[0] for r in rows], y=[r[1] for r in rows], hovertemplate="%{x}: %{y:,.0f} h<extra></extra>")
    )
    figure.update_layout(yaxis={"tickformat": ",.0f", "ticksuffix": " h"})
    return Figure(
        "accelerators",
        "GPU and Trainium hours by instance type, all time (accelerator-hours)",
        _chart(figure, "accelerators"),
    )


def _coverage(connection: duckdb.DuckDBPyConnection) -> Figure:
    rows = _rows(
        connection,
        """
        select region, instance_type, jobs, priced_jobs, total_cost_usd, unverified_cost_usd from cost_coverage
        where priced_jobs < jobs or unverified_cost_usd > 0
        order by jobs - priced_jobs desc, unverified_cost_usd desc limit 15
        """,
    )
    table = _table(
        ["region", "instance type", "jobs", "priced", "cost", "on unchecked prices"],
        [[r[0], r[1], f"{r[2]:,}", f"{r[3]:,}", money(r[4]), money(r[5])] for r in rows],
        numeric={2, 3, 4, 5},
    )
    return Figure("coverage", "Unpriced usage and cost resting on unchecked prices, by region and instance type", table)


def _has_bill(connection: duckdb.DuckDBPyConnection) -> bool:
    """A bill is loaded, in a warehouse published by a version that reconciles it (an older one has no
    billed columns: its report leaves the bill out until the next build)."""
    billed_columns = _rows(
        connection,
        "select count(*) from information_schema.columns "
        "where table_name = 'cost_monthly' and column_name = 'billed_effective_cost_usd'",
    )[0][0]
    return bool(billed_columns) and bool(_rows(connection, "select exists (select 1 from billing_line_items)")[0][0])


def _estimate_vs_bill(connection: duckdb.DuckDBPyConnection) -> Figure:
    rows = _rows(
        connection,
        f"""
        select strftime(month, '%Y-%m'), sum(total_cost_usd), sum(billed_effective_cost_usd),
               sum(billed_list_cost_usd), bool_and(bill_covers_month)
        from cost_monthly
        where {_one_tag_key("cost_monthly")}
        group by month order by month
        """,
    )
    months = [r[0] + ("" if r[4] else " (partly billed)") for r in rows]
    figure = go.Figure()
    for position, name in ((1, "estimate"), (3, "billed at list price"), (2, "billed, after discounts")):
        figure.add_bar(
            x=months,
            y=[r[position] for r in rows],
            name=name,
            hovertemplate="%{x}: $%{y:,.2f}<extra>" + name + "</extra>",
        )
    figure.update_layout(barmode="group", yaxis=MONEY_AXIS, xaxis={"type": "category"})
    return Figure("bill", "Estimate vs bill per UTC month (USD, Cost and Usage Report)", _chart(figure, "bill"))


def _reconciliation(connection: duckdb.DuckDBPyConnection) -> Figure:
    rows = _rows(
        connection,
        """
        select status, count(*), sum(estimated_total_cost_usd), sum(effective_cost_usd), sum(difference_usd)
        from cost_reconciliation group by status order by sum(effective_cost_usd) desc nulls last
        """,
    )
    table = _table(
        ["why they differ (status)", "rows", "estimated", "billed", "difference"],
        [[r[0], f"{r[1]:,}", money(r[2]), money(r[3]), money(r[4])] for r in rows],
        numeric={1, 2, 3, 4},
    )
    return Figure("reconciliation", "Estimates against the bill, by reason, all billed time (USD)", table)


def _durations(connection: duckdb.DuckDBPyConnection) -> Figure:
    rows = _rows(
        connection,
        """
        select instance_type, sum(jobs) as jobs, max(p50_startup_seconds) / 60, max(p95_startup_seconds) / 60,
               max(p50_training_seconds) / 60, max(p95_training_seconds) / 60
        from duration_rollup where training_job_status = 'Completed'
        group by instance_type order by jobs desc limit 12
        """,
    )
    table = _table(
        ["instance type", "completed jobs", "startup p50", "startup p95", "training p50", "training p95"],
        [[r[0], f"{r[1]:,}", *(f"{v:,.1f} min" if v is not None else "—" for v in r[2:])] for r in rows],
        numeric={1, 2, 3, 4, 5},
    )
    return Figure("durations", "How long completed jobs take to start and to train, by instance type (minutes)", table)


STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}
header{background:#0b3d5c;color:#fff;padding:20px 32px}
header h1{margin:0 0 4px;font-size:22px} header p{margin:0;opacity:.85}
main{max-width:1180px;margin:0 auto;padding:16px 32px 48px}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:12px;margin:16px 0 8px}
.kpi{background:#fff;border:1px solid #ddd;border-radius:6px;padding:12px}
.kpi .label{font-size:12px;color:#555;text-transform:uppercase;letter-spacing:.04em}
.kpi .value{font-size:22px;font-weight:600;margin-top:4px}
section{background:#fff;border:1px solid #ddd;border-radius:6px;margin:16px 0;padding:12px 16px}
section h2{font-size:16px;margin:4px 0 8px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:4px 8px;border-bottom:1px solid #eee;text-align:left}
.num{text-align:right;font-variant-numeric:tabular-nums}
#errors{color:#a00}
"""


def render_report(database: Path) -> str:
    """The report of the warehouse whose DuckDB file is ``database``, as one HTML document."""
    with duckdb.connect(str(database), read_only=True) as connection:
        totals = _totals(connection)
        tag = _first_tag(connection)

        figures = [
            _spend_by_day(connection, tag),
            _month_over_month(connection, "allocation_tag_value", tag or "tag", "by-team"),
            _month_over_month(connection, "instance_type", "instance type", "by-instance-type"),
            _top_jobs(connection),
            _waste(connection),
            _spot_savings(connection),
            _accelerator_hours(connection),
            _coverage(connection),
            _durations(connection),
        ]
        has_bill = "billed_usd" in totals  # the bill's figures are there only when one is loaded
        if has_bill:
            figures[1:1] = [_estimate_vs_bill(connection), _reconciliation(connection)]
    kpis = [
        ("total_cost_usd", "Estimated spend, all time", money(totals["total_cost_usd"])),
        ("this_month_usd", "This month", money(totals["this_month_usd"])),
        ("last_month_usd", "Last month", money(totals["last_month_usd"])),
        ("spot_savings_usd", "Saved by managed spot", money(totals["spot_savings_usd"])),
        ("wasted_cost_usd", "Failed, stopped, idle", money(totals["wasted_cost_usd"])),
        ("accelerator_hours", "Accelerator-hours", f"{totals['accelerator_hours']:,.0f} h"),
        ("unpriced_jobs", "Jobs without a cost", f"{totals['unpriced_jobs']:,.0f}"),
    ]
    if has_bill:
        kpis.insert(1, ("billed_usd", "Billed, after discounts", money(totals["billed_usd"])))
    cards = "".join(
        f'<div class="kpi" data-total="{key}" data-value="{totals[key]:.2f}"><div class="label">{label}</div>'
        f'<div class="value">{shown}</div></div>'
        for key, label, shown in kpis
    )
    sections = "".join(f'<section id="{f.anchor}"><h2>{html.escape(f.title)}</h2>{f.body}</section>' for f in figures)
    written = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>SageMaker training costs</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{STYLE}</style>
<script>window.reportErrors=[];window.addEventListener('error',function(e){{window.reportErrors.push(String(e.message));
var el=document.getElementById('errors');if(el){{el.textContent=window.reportErrors.join('; ');}}}});</script>
<script type="text/javascript">{_plotly_js()}</script>
</head><body>
<header><h1>SageMaker training costs</h1><p>Estimates at list prices (or your rates){
        ", beside the bill (Cost and Usage Report)," if has_bill else ""
    } from the published warehouse, {
        html.escape(written)
    }. Every figure is a query on the models; see docs/costs.md for the rules.</p></header>
<main><div id="errors" role="alert"></div><div class="kpis">{cards}</div>{sections}</main>
</body></html>
"""


def report_preview(warehouse: Path) -> tuple[dict[str, float], str]:
    """The report's headline figures and a Markdown preview of them with the five most expensive jobs,
    for Dagster's materialization metadata (numbers there are plotted across builds)."""
    with duckdb.connect(str(warehouse / DATABASE), read_only=True) as connection:
        totals = _totals(connection)
        top = _most_expensive_jobs(connection, 5)
    lines = [
        "| estimated spend | USD |",
        "|---|---:|",
        f"| all time | {money(totals['total_cost_usd'])} |",
        f"| this month | {money(totals['this_month_usd'])} |",
        f"| last month | {money(totals['last_month_usd'])} |",
        f"| saved by managed spot | {money(totals['spot_savings_usd'])} |",
        f"| failed, stopped, idle | {money(totals['wasted_cost_usd'])} |",
        "",
        "| most expensive job | instance type | USD |",
        "|---|---|---:|",
        *(f"| {name} | {instance_type or ''} | {money(cost)} |" for name, _, instance_type, *_, cost in top),
    ]
    return totals, "\n".join(lines)


def write_report(warehouse: Path) -> Path:
    """Render the published warehouse's report to ``<warehouse>/report/index.html`` (atomically)."""
    target = warehouse / REPORT
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    temporary.write_text(render_report(warehouse / DATABASE), encoding="utf-8")
    os.replace(temporary, target)
    return target
