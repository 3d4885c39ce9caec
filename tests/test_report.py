"""The cost report: self-contained, drawn by a real browser (Debian's chromium, headless, with networking
off), and showing the same totals as the models."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest

from pipelines.cli import EXIT_CONFIG, EXIT_OK, main
from pipelines.report import write_report
from tests.conftest import copy_of

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHARTS = ["day", "bill", "by-team", "by-instance-type", "waste", "spot", "accelerators"]  # the demo has a bill
TABLES = ["reconciliation", "top-jobs", "coverage", "durations"]


@pytest.fixture(scope="module")
def report(demo_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(copy_of(demo_warehouse, tmp_path_factory.mktemp("report") / "warehouse"))


def browser(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed; `apt-get install chromium` (make test does it when it can)")
    offline = ["--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND", "--disable-background-networking"]
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    return subprocess.run([*command, *offline, *arguments], capture_output=True, text=True, timeout=120)


def test_the_report_needs_nothing_from_the_network(report: Path) -> None:
    text = report.read_text()
    scripts = re.findall(r"<script([^>]*)>", text)
    assert scripts and not any("src" in attributes for attributes in scripts)  # plotly.js itself is inline ...
    page = re.sub(r"<script[^>]*>.*?</script>", "", text, flags=re.DOTALL)
    assert "Plotly.newPlot" in text and "Plotly.newPlot" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # ... and the page fetches nothing
    assert not re.search(r"@import|url\(", page)


def test_every_chart_is_drawn_offline_and_the_totals_are_the_models(report: Path, tmp_path: Path) -> None:
    rendered = browser(tmp_path, "--virtual-time-budget=10000", "--dump-dom", report.as_uri())
    dom = rendered.stdout
    assert '<div id="errors" role="alert"></div>' in dom, re.search(r'<div id="errors"[^<]*', dom)  # no script error
    for chart in CHARTS:
        drawn = dom.split(f'id="chart-{chart}"', 1)[1].split('id="chart-', 1)[0]
        assert "js-plotly-plot" in drawn and 'class="main-svg"' in drawn, chart
        assert re.search(r'class="(point|bars|trace bars)', drawn), chart  # bars were drawn, not only axes
    for table in TABLES:
        section = dom.split(f'<section id="{table}">', 1)[1].split("</section>", 1)[0]
        assert section.count("<tr>") >= 2, table

    with duckdb.connect(str(report.parent.parent / "sagemaker.duckdb"), read_only=True) as connection:
        total, spot, unpriced = connection.execute(
            "select sum(total_cost_usd), sum(spot_savings_usd), count(*) filter (where not is_priced) from job_costs"
        ).fetchone()
        (billed,) = connection.execute("select sum(effective_cost_usd) from cost_reconciliation").fetchone()
    shown = dict(re.findall(r'data-total="(\w+)" data-value="([\d.]+)"', dom))
    assert float(shown["total_cost_usd"]) == round(total, 2)
    assert float(shown["spot_savings_usd"]) == round(spot, 2)
    assert float(shown["unpriced_jobs"]) == unpriced
    assert float(shown["billed_usd"]) == round(billed, 2)
    assert f"${total:,.2f}" in dom  # printed as money

    screenshot = tmp_path / "report.png"
    browser(tmp_path, "--hide-scrollbars", "--window-size=1280,3400", f"--screenshot={screenshot}", report.as_uri())
    assert screenshot.stat().st_size > 100_000  # a page of charts, not a blank one


def test_the_report_command_writes_it_and_says_where(
    demo_warehouse: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--warehouse", str(tmp_path / "nothing-here")]) == EXIT_CONFIG
    assert "no warehouse at" in capsys.readouterr().err
    warehouse = copy_of(demo_warehouse, tmp_path / "warehouse")
    assert main(["report", "--warehouse", str(warehouse)]) == EXIT_OK
    report = warehouse / "report" / "index.html"
    assert capsys.readouterr().out.strip() == f"Cost report: {report.resolve()}"
    assert report.stat().st_size > 1_000_000  # plotly.js is inside
