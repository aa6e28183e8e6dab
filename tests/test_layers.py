"""The tree shows the data flow, and the imports follow it: each folder imports only from below it.

    cli
    runtime            (runs the jobs on schedule, serves the web app)
    web                (guard, risk_check, dashboard)
    jobs               (ingest, train, synth_train, daily, infer, predict, forget)
    monitoring         (below jobs: batch inference saves the report the dashboard renders)
    engine             (batch jobs on Daft: scoring with a model, aggregates for the report)
    sources | model | synth    (side by side: none imports another)
    store
    ground floor       (config, features, validation, errors, files, clock, progress, tracking)

Lazy imports inside functions count too: a cycle hidden in a function is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import heartrisk

PACKAGE = Path(heartrisk.__file__).parent
LAYERS: dict[str, int] = {
    "ground": 0, "store": 1, "sources": 2, "model": 2, "synth": 2, "engine": 3, "monitoring": 4, "jobs": 5,
    "web": 6, "runtime": 7, "cli": 8,
}
#: Compatibility re-exports for registries written before the move (see the module docstrings).
COMPAT = {"synth_registry"}


def folder(module: str) -> str:
    """``heartrisk.model.gate`` -> ``model``; a top-level module -> ``ground``."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return "cli"
    return parts[1] if (PACKAGE / parts[1]).is_dir() else "ground"


def imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("heartrisk"):
            if node.module == "heartrisk":
                found += [f"heartrisk.{alias.name}" for alias in node.names]
            else:
                found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.startswith("heartrisk.")]
    return found


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out.append((".".join(parts).removesuffix(".__init__"), path))
    return out


def test_every_import_goes_down_the_stack() -> None:
    wrong = []
    for module, path in modules():
        if module.split(".")[-1] in COMPAT:
            continue
        mine = folder(module)
        for target in imports(path):
            theirs = folder(target)
            if theirs == mine or target == "heartrisk.__version__":
                continue
            if LAYERS[theirs] > LAYERS[mine] or (LAYERS[theirs] == LAYERS[mine]):
                wrong.append(f"{module} imports {target} ({mine} -> {theirs})")
    assert wrong == []


def test_the_ground_floor_is_at_most_ten_modules() -> None:
    top = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert len(top) <= 10, top
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert folders == ["cli", "engine", "jobs", "model", "monitoring", "runtime", "sources", "store", "synth",
                       "web"]
