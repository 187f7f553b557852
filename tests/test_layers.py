"""The layering of docs/design.md holds: every module imports only from its own layer and
the layers below it (every import statement counts, also those inside functions), and every
module of the package has a layer.

The tests mirror the package, by one rule: a module ``elbokit/a.py`` is tested in
``tests/test_a.py``; a module of a package folder, ``elbokit/a/b.py``, in ``tests/test_b.py``
or in the folder's ``tests/test_a.py`` / ``tests/test_a_*.py`` (cli/ and data/ are tested per
folder, models/ per module); a folder's ``__init__.py`` in the folder's file, and the
package's own in ``tests/test_elbokit.py``. Exceptions are listed, with their reason, in
:data:`UNMIRRORED`. Test modules of no package module (test_conv.py, test_reliability.py, ...)
test a feature across modules and are welcome."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "elbokit"
TESTS = Path(__file__).resolve().parent
DESIGN = PACKAGE.parent / "docs" / "design.md"

# Bottom to top; a module is named by its dotted path below elbokit ("" is the package).
LAYERS: dict[str, tuple[str, ...]] = {
    "io": ("errors", "registry", "checkpoint", "plugins", "progress", "distributed", "rng",
           "allocator", "markup"),
    "maths": ("numerics", "bounds", "models.base"),
    "components": ("likelihoods", "models.latents", "models.priors", "models.flows",
                   "models.hierarchy", "nets", "estimators", "imputation", "data", "data.*",
                   "metrics", "diagnostics"),
    "models": ("models", "models.vae", "models.mixture"),
    "training": ("optimizer", "training"),
    "facades": ("api", "classifiers", "novelty", "semisupervised", "tensorboard"),
    "workflows": ("runs", "workflows", "evaluation", "classification", "figures", "plots",
                  "report"),
    "faces": ("", "__main__", "cli", "cli.*"),
}


def layer_of(module: str) -> int:
    for rank, (_, patterns) in enumerate(LAYERS.items()):
        for pattern in patterns:
            if module == pattern or (pattern.endswith(".*") and module.startswith(pattern[:-1])):
                return rank
    raise AssertionError(f"elbokit.{module} has no layer: add it to LAYERS and docs/design.md")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported(path: Path) -> set[str]:
    """The elbokit modules ``path`` imports (relative to the package; "" is the package)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = [p for p in package.split(".") if p]
            base = base[:len(base) - node.level + 1]
            if node.module:
                found.add(".".join(base + [node.module]))
            else:  # from . import a, b: modules of the package
                found.update(".".join(base + [a.name]) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("elbokit"):
            found.add(node.module.removeprefix("elbokit").lstrip("."))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("elbokit").lstrip(".") for a in node.names
                         if a.name.split(".")[0] == "elbokit")
    return {_existing(m) for m in found} - {name}


def _existing(module: str) -> str:
    """``data.Dataset`` (a name imported from a package) -> ``data``."""
    while module and not ((PACKAGE / module.replace(".", "/")).with_suffix(".py").exists()
                          or (PACKAGE / module.replace(".", "/") / "__init__.py").exists()):
        module = module.rpartition(".")[0]
    return module


def test_every_module_imports_only_from_its_layer_and_below():
    names = list(LAYERS)
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        rank = layer_of(module)
        for target in sorted(imported(path)):
            if layer_of(target) > rank:
                wrong.append(f"elbokit.{module} ({names[rank]}) imports elbokit.{target} "
                             f"({names[layer_of(target)]})")
    assert not wrong, "\n".join(wrong)


def test_the_design_page_lists_the_same_layers():
    text = DESIGN.read_text()
    block = re.search(r"```text\n(.*?)```", text, flags=re.S).group(1)
    shown = [line.split()[0] for line in block.splitlines() if line[:1].strip()]
    assert shown == list(reversed(LAYERS)), shown


# Package modules with no test module of their own, and why.
UNMIRRORED = {
    "__main__": "three lines calling cli.main; `python -m elbokit` runs in test_cli.py, "
                "test_progress.py and test_reliability.py",
}


def accepted_test_files(module: str) -> list[str]:
    """The test files the rule of the module docstring accepts for ``module`` (dotted, below
    elbokit; "" is the package)."""
    if not module:
        return ["test_elbokit.py"]
    *folders, last = module.split(".")
    path = PACKAGE.joinpath(*module.split("."))
    if not folders and not path.is_dir():  # elbokit/a.py
        return [f"test_{last}.py"]
    folder = folders[0] if folders else last  # elbokit/a/b.py or elbokit/a/__init__.py
    accepted = sorted(p.name for p in TESTS.glob(f"test_{folder}_*.py"))
    return [f"test_{last}.py", f"test_{folder}.py", *accepted]


def test_every_package_module_has_a_test_module():
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        if module in UNMIRRORED:
            continue
        accepted = accepted_test_files(module)
        if not any((TESTS / name).is_file() for name in accepted):
            missing.append(f"elbokit.{module or '(package)'}: none of {', '.join(accepted)}")
    assert not missing, "\n".join(missing)
    stale = [m for m in UNMIRRORED if not (PACKAGE / f"{m.replace('.', '/')}.py").exists()]
    assert not stale, f"UNMIRRORED lists modules that are gone: {stale}"
