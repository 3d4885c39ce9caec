"""The data dictionary (docs/data-dictionary.md), generated from ``schemas/`` so that it cannot drift.

``python -m pipelines.docs`` rewrites the section between the markers; a test fails when the page and the
schemas disagree. A development tool: it reads and writes the source checkout, not the installed package.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from pipelines.schemas import all_tables

DATA_DICTIONARY = Path(__file__).resolve().parent.parent / "docs" / "data-dictionary.md"
START, END = "<!-- data-dictionary:start -->", "<!-- data-dictionary:end -->"


def data_dictionary() -> str:
    sections = []
    for declared in all_tables().values():
        lines = [
            f"## `{declared.name}` ({declared.layer})",
            "",
            declared.description,
            "",
            f"Key: {', '.join(f'`{k}`' for k in declared.key)}",
            "",
            "| column | type | null? | description |",
            "| --- | --- | --- | --- |",
        ]
        lines += [
            f"| `{c.name}` | {c.type} | {'yes' if c.nullable else 'no'} | {c.description} |" for c in declared.columns
        ]
        sections.append("\n".join(lines))
    return "\n\n".join(sections)


def render(page: str) -> str:
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(page):
        raise ValueError(f"{DATA_DICTIONARY.name} has no {START} ... {END} section")
    return pattern.sub(lambda _: f"{START}\n{data_dictionary()}\n{END}", page)


def main() -> int:
    DATA_DICTIONARY.write_text(render(DATA_DICTIONARY.read_text()))
    print(f"Rewrote the data dictionary in {DATA_DICTIONARY}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
