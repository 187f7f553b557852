"""The package itself (elbokit/__init__.py): every public name is the object of the module
that defines it, loaded on first use, and the list of names is complete."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import elbokit


def test_every_public_name_is_the_defining_modules_object():
    for name, module in elbokit._EXPORTS.items():
        assert getattr(elbokit, name) is getattr(importlib.import_module(f"elbokit.{module}"), name)
    for module in elbokit._MODULES:
        assert getattr(elbokit, module) is importlib.import_module(f"elbokit.{module}")
    assert set(elbokit.__all__) == {*elbokit._EXPORTS, "__version__"}
    assert set(elbokit.__all__) <= set(dir(elbokit))
    with pytest.raises(AttributeError, match="has no attribute 'fit'"):
        elbokit.fit  # noqa: B018


def test_importing_the_package_loads_none_of_its_modules():
    code = "import sys, elbokit; print(sorted(m for m in sys.modules if m.startswith('elbokit.')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"



def test_type_checkers_see_the_same_names_from_the_same_modules():
    """The ``if TYPE_CHECKING:`` imports (what mypy and IDEs read, since they do not run
    ``__getattr__``) name exactly the exports and modules, each from its defining module."""
    tree = ast.parse(Path(elbokit.__file__).read_text())
    (block,) = [node for node in tree.body if isinstance(node, ast.If)
                and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"]
    names, modules = {}, set()
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.level == 1, ast.dump(node)
        for alias in node.names:
            assert alias.asname == alias.name, alias.name  # `X as X`: an explicit re-export
            if node.module is None:
                modules.add(alias.name)
            else:
                names[alias.name] = node.module
    assert names == elbokit._EXPORTS
    assert modules == set(elbokit._MODULES)
