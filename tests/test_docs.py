"""The docs are true: every SQL query in the README and docs/ runs on the demo warehouse and returns the
columns the page shows, every `sagemaker-warehouse` command they show is one the CLI accepts (the queries
among them run), and every `make` target they name exists."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import duckdb
import pytest

from pipelines.cli import EXIT_OK, build_parser, main
from pipelines.storage.layout import DATABASE
from pipelines.warehouse.publication import connect_reader

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks() -> list[tuple[str, str, str]]:
    """(page, language, text) of every fenced block, in page order."""
    return [
        (page.relative_to(ROOT).as_posix(), match[1], match[2])
        for page in PAGES
        for match in FENCE.finditer(page.read_text())
    ]


def queries() -> list[tuple[str, str, list[str] | None]]:
    """(page, sql, the column names of the `text` block that shows its result, if the next block is one)."""
    found = []
    every = blocks()
    for position, (page, language, text) in enumerate(every):
        if language != "sql":
            continue
        shown = None
        if position + 1 < len(every) and every[position + 1][:2] == (page, "text"):
            lines = [line for line in every[position + 1][2].splitlines() if not line.rstrip().endswith(":")]
            shown = re.sub(r"\(.*?\)", "", lines[0]).split()
        found.append((page, text, shown))
    return found


def commands() -> list[tuple[str, str]]:
    """(page, command line) of every `sagemaker-warehouse ...` in a block or in inline code."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for line in [*(match[2] for match in FENCE.finditer(text)), *re.findall(r"`([^`\n]+)`", text)]:
            for command in re.findall(r"(?:^|[\s/])sagemaker-warehouse (.+)", line, re.MULTILINE):
                found.append((page.relative_to(ROOT).as_posix(), command.split("  #")[0].split(" #")[0].strip()))
    return found


def test_the_docs_show_queries_and_commands() -> None:
    assert len(queries()) >= 10 and len(commands()) >= 8  # the collectors below find what is there


@pytest.mark.parametrize(("page", "sql", "shown"), queries(), ids=lambda value: "")
def test_every_documented_query_runs_on_the_demo_warehouse(
    demo_warehouse: Path, monkeypatch: pytest.MonkeyPatch, page: str, sql: str, shown: list[str] | None
) -> None:
    if "read_parquet('warehouse/" in sql:
        # Reading the raw layer: any DuckDB, from the folder that holds the warehouse.
        monkeypatch.chdir(demo_warehouse.parent)
        connection = duckdb.connect()
    else:
        assert main(["query", sql, "--warehouse", str(demo_warehouse)]) == EXIT_OK, (page, sql)
        connection = connect_reader(demo_warehouse / DATABASE)
    with connection:
        result = connection.execute(sql)
        columns = [column[0] for column in result.description]
        rows = result.fetchall()
    assert rows, f"{page}: the query returns nothing on the demo warehouse:\n{sql}"
    if shown is not None:
        assert columns == shown, f"{page}: the result shown has other columns than the query:\n{sql}"


def test_every_documented_command_is_one_the_cli_accepts(
    demo_warehouse: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = build_parser()
    names = parser._subparsers._group_actions[0].choices
    for page, command in commands():
        # "[--a | --b]" offers one of the two: try the first.
        command = re.sub(r"\s*\|\s*--[\w-]+", "", command)
        words = shlex.split(command.replace("[", "").replace("]", "").replace("...", ""))
        # The usage lines show placeholders (FILE, DIR, N, "SQL"): give them values of the right kind.
        placeholders = {"N": "10", "S": "7", "FILE": "x.yaml", "DIR": "w", "DIALECT": "trino", "NAME": "ml"}
        words = [placeholders.get(word, word) for word in words]
        if words in ([name] for name in names) or words == ["prices", "refresh"]:
            continue  # the command named in prose, without its arguments
        try:
            arguments = parser.parse_args(words)
        except SystemExit:
            pytest.fail(f"{page}: `sagemaker-warehouse {command}` is not a command the CLI accepts")
        if arguments.command == "query" and arguments.sql.lower().startswith("select"):
            assert main(["query", arguments.sql, "--warehouse", str(demo_warehouse)]) == EXIT_OK, (page, command)
    capsys.readouterr()


def test_every_documented_option_exists_and_every_option_is_documented() -> None:
    documented = (ROOT / "docs" / "configuration.md").read_text()
    usage = {}
    for line in re.findall(r"^sagemaker-warehouse (.*)$", documented, re.MULTILINE):
        name = " ".join(re.match(r"[a-z ]*", line)[0].split())
        usage[name] = set(re.findall(r"--[\w-]+", line))
    parser = build_parser()
    actual: dict[str, set[str]] = {}
    for name, sub in parser._subparsers._group_actions[0].choices.items():
        nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        for command, parsed in nested[0].choices.items() if nested else [("", sub)]:
            options = {o for a in parsed._actions for o in a.option_strings if o.startswith("--")}
            actual[f"{name} {command}".strip()] = options - {"--help"}
    assert usage == actual


def test_every_make_target_the_docs_name_exists() -> None:
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    named = {target for page in PAGES for target in re.findall(r"\bmake ([a-z][\w-]*)", page.read_text())}
    assert named and named <= targets, named - targets
