"""BI tools read the warehouse through SQLAlchemy and duckdb-engine (what Superset uses), and keep
working while the nightly run publishes."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from pipelines.cli import materialize_all
from pipelines.demo.endpoint import LocalSageMaker
from pipelines.schemas import all_tables
from pipelines.storage.layout import DATABASE
from pipelines.warehouse.publication import connect_reader
from tests.conftest import REGIONS, copy_of, renamed


def test_a_sqlalchemy_reader_queries_every_table_and_survives_a_publication(
    demo_warehouse: Path, fleet: list[dict], aws: LocalSageMaker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMW_REGIONS", ",".join(REGIONS))
    warehouse = copy_of(demo_warehouse, tmp_path / "warehouse")
    url = f"duckdb:///{warehouse / DATABASE}"
    engine = sa.create_engine(url, connect_args={"read_only": True}, poolclass=sa.pool.NullPool)
    tables = sa.inspect(engine).get_table_names()
    assert {"jobs", "tags", "job_costs", "cost_daily", "cost_monthly", "waste", "duration_rollup"} <= set(tables)

    with engine.connect() as bi_tool:
        for name in tables:
            assert bi_tool.execute(sa.text(f'select count(*) from "{name}"')).scalar() > 0, name
        aws.upsert_jobs([renamed(fleet[0], "arrived-overnight")])
        assert materialize_all(warehouse=str(warehouse)).success  # the nightly run, while the tool is connected
        # The open connection keeps its consistent (old) version ...
        assert bi_tool.execute(sa.text("select count(*) from jobs")).scalar() == len(fleet)
        assert bi_tool.execute(sa.text("select count(*) from job_costs")).scalar() == len(fleet)
    # ... and a new one sees the new data.
    with engine.connect() as reconnected:
        assert reconnected.execute(sa.text("select count(*) from jobs")).scalar() == len(fleet) + 1


def test_published_tables_and_columns_carry_their_declared_descriptions(demo_warehouse: Path) -> None:
    """What BI tools show as a table's or column's description is the sentence from schemas/."""
    with connect_reader(demo_warehouse / DATABASE) as connection:
        tables = dict(connection.execute("select table_name, comment from duckdb_tables()").fetchall())
        columns = {
            (t, c): comment
            for t, c, comment in connection.execute(
                "select table_name, column_name, comment from duckdb_columns()"
            ).fetchall()
        }
    published = {name for name, declared in all_tables().items() if declared.layer != "raw"}
    assert set(tables) == published
    for name in published:
        declared = all_tables()[name]
        assert tables[name] == declared.description
        assert {c.name: columns[(name, c.name)] for c in declared.columns} == {
            c.name: c.description for c in declared.columns
        }
