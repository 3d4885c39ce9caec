"""Dependencies point one way: every import inside ``pipelines`` goes to its own package or a lower layer,
never up and never round a circle. A newcomer can read the layers bottom-up."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pipelines"

# Bottom to top. Packages on the same layer never import each other.
LAYERS: list[set[str]] = [
    {"config", "resources", "aws_model", "interrupts", "progress"},  # foundation
    {"schemas"},  # table declarations, read from resources
    {"sql"},  # running SQL, quoting, schema-checked tables
    {"storage"},  # the warehouse directory: layout, raw store, locks
    {"pricing", "billing"},  # hourly prices: the snapshot, your rates, the Price List API; the bill (CUR)
    {"extraction", "normalization", "models"},  # API -> raw; raw -> tables; tables -> cost models
    {"warehouse", "report"},  # the build (stage, check) and publication; the report on what was published
    {"assets", "demo"},
    {"definitions", "summary", "docs"},
    {"cli"},
]


def unit(module: str) -> str:
    """``pipelines.storage.raw`` -> ``storage``: the package (or top-level module) a module belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_of(name: str) -> int:
    for number, names in enumerate(LAYERS):
        if name in names:
            return number
    raise AssertionError(f"pipelines.{name} is on no layer: add it to LAYERS in {__file__}")


def module_imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipelines"):
                imported.add(node.module)
                imported.update(
                    f"{node.module}.{alias.name}"
                    for alias in node.names
                    if (PACKAGE.parent / node.module.replace(".", "/") / f"{alias.name}.py").exists()
                )
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names if alias.name.startswith("pipelines"))
        graph[module] = {name for name in imported if name != "pipelines"}
    return graph


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    upward = []
    for module, imports in graph.items():
        if module == "pipelines":
            continue
        here = unit(module)
        for imported in imports:
            there = unit(imported)
            if there != here and layer_of(there) >= layer_of(here):
                upward.append(f"{module} imports {imported}")
    return sorted(upward)


def test_every_import_points_down_or_within_its_package() -> None:
    upward = upward_imports(module_imports())
    assert not upward, "imports that point up or sideways a layer:\n" + "\n".join(upward)


def test_no_import_cycle_between_modules() -> None:
    graph = module_imports()
    try:
        list(TopologicalSorter({m: {i for i in deps if i in graph} for m, deps in graph.items()}).static_order())
    except CycleError as cycle:
        raise AssertionError(f"import cycle: {' -> '.join(cycle.args[1])}") from None


def test_the_layer_rule_catches_upward_and_sideways_imports() -> None:
    """The rule itself can fail: the imports this codebase once had are all reported."""
    once = {
        "pipelines.storage.raw": {"pipelines.extraction.planning"},  # storage reached up into extraction
        "pipelines.models.build": {"pipelines.normalization.flatten"},  # sideways into normalization
        "pipelines.extraction.run": {"pipelines.storage.raw", "pipelines.sql"},  # down: fine
    }
    assert upward_imports(once) == [
        "pipelines.models.build imports pipelines.normalization.flatten",
        "pipelines.storage.raw imports pipelines.extraction.planning",
    ]


def test_the_wheel_lists_every_package() -> None:
    """pyproject.toml names the packages explicitly (sql/ and schemas/ are mapped into the wheel), so a new
    package left off the list would be missing from an installed wheel while an editable install hides it."""
    import tomllib

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(path.parent.relative_to(PACKAGE.parent).parts) for path in PACKAGE.rglob("__init__.py")}
    assert on_disk <= listed, f"add to [tool.setuptools] packages: {sorted(on_disk - listed)}"
