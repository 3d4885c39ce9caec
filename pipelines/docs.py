"""The README's data dictionary, generated from ``schemas/`` so that it cannot drift.

``python -m pipelines.docs`` rewrites the section between the markers in README.md; a test fails when
the README and the schemas disagree.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from pipelines.schemas import all_tables

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- data-dictionary:start -->", "<!-- data-dictionary:end -->"


def data_dictionary() -> str:
    sections = []
    for declared in all_tables().values():
        lines = [
            f"#### `{declared.name}` ({declared.layer})",
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


def render(readme_text: str) -> str:
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(readme_text):
        raise ValueError(f"README.md has no {START} ... {END} section")
    return pattern.sub(lambda _: f"{START}\n{data_dictionary()}\n{END}", readme_text)


def main() -> int:
    README.write_text(render(README.read_text()))
    print(f"Rewrote the data dictionary in {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
