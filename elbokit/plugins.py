"""A user's own model class: where it comes from, and when elbokit may import it.

A model class is named by a *reference*:

    PATH.py:Class          a Python file (the path as given, made absolute when recorded)
    package.module:Class   an importable module
    NAME                   a model an installed package registers under the entry-point group
                           ``elbokit.models`` (``[project.entry-points."elbokit.models"]
                           NAME = "package.module:Class"`` in its pyproject.toml)

Installed packages may also list modules under ``elbokit.components``; the CLI imports them
at start, and their ``@LIKELIHOODS.register(...)`` (and other registries') declarations make
their components available to every command (see :func:`load_components`).

Security: a run directory or a saved model records the reference it was trained with, but
never makes elbokit import anything by itself. Loading such a run needs either an installed
plugin whose entry point still names the recorded class, or the same reference given again
explicitly (``--model`` / ``model=``); a reference that differs from the recorded one is
refused before anything is imported, so editing a run's files cannot make elbokit run code.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import re
import sys
import traceback
import warnings
from pathlib import Path

from .errors import CheckpointError, ConfigError

ENTRY_POINT_GROUP = "elbokit.models"
COMPONENT_GROUP = "elbokit.components"  # modules whose import registers components
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def is_reference(text: str) -> bool:
    """Whether ``text`` names a user's class (``PATH.py:Class`` or ``module:Class``)."""
    return ":" in text


def installed_plugins() -> dict[str, str]:
    """The models installed packages register: entry-point name -> ``module:Class``."""
    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def load_components() -> None:
    """Import the modules installed packages list under the entry-point group
    ``elbokit.components`` (``NAME = "package.module"``): importing one registers its
    observation models, estimators, latent kinds or data sets, which the CLI then offers
    (``--likelihood``, ``--estimator``, ...). A failing plugin is one line naming it."""
    for entry in importlib.metadata.entry_points(group=COMPONENT_GROUP):
        if entry.value in sys.modules:
            continue
        try:
            entry.load()
        except Exception as e:
            raise ConfigError(f"the installed elbokit plugin {entry.name} ({entry.value}) failed "
                              f"to load at {_user_frame(e)}: {type(e).__name__}: {e}") from None


def normalize(reference: str, where: str = "--model") -> str:
    """The reference as a run records it: a file made absolute (so that it names the same
    file from any directory), a module or plugin name as given. Nothing is imported."""
    if not is_reference(reference):
        if reference not in installed_plugins():
            known = ", ".join(installed_plugins()) or "none installed"
            raise ConfigError(f"{where} {reference}: not a built-in model, an installed plugin "
                              f"({known}) or a reference PATH.py:Class / package.module:Class")
        return reference
    target, _, name = reference.rpartition(":")
    if not _IDENTIFIER.match(name) or "." in name:
        raise ConfigError(f"{where} {reference}: {name!r} is not a class name")
    if target.endswith(".py"):
        path = Path(target).expanduser()
        if not path.is_file():
            raise ConfigError(f"{where} {reference}: no such file {target}")
        return f"{path.resolve()}:{name}"
    if not _IDENTIFIER.match(target):
        raise ConfigError(f"{where} {reference}: expected PATH.py:Class or package.module:Class")
    return reference


def source_digest(reference: str) -> str | None:
    """SHA-256 of a file reference's source (recorded to say when it changed), else None."""
    target = reference.rpartition(":")[0]
    if target.endswith(".py") and Path(target).is_file():
        return hashlib.sha256(Path(target).read_bytes()).hexdigest()
    return None


def load_class(reference: str, where: str = "--model") -> type:
    """Import the class a normalized ``reference`` names (see :func:`normalize`). An error
    in the user's file is one line naming the file and line, not a traceback."""
    if not is_reference(reference):
        reference = installed_plugins()[reference]
    target, _, name = reference.rpartition(":")
    try:
        if target.endswith(".py"):
            module = _import_file(Path(target))
        else:
            module = importlib.import_module(target)
    except ConfigError:
        raise
    except Exception as e:  # the user's code failed: say where, in one line
        raise ConfigError(f"{where} {reference}: importing it failed at {_user_frame(e)}: "
                          f"{type(e).__name__}: {e}") from None
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        raise ConfigError(f"{where} {reference}: {target} defines no class {name}")
    return cls


def _import_file(path: Path):
    """The module of a Python file, imported once per file (under a name made from its path,
    so that two files of one name do not collide)."""
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    module_name = f"elbokit_user_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look classes up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _user_frame(error: BaseException) -> str:
    """``file:line`` of the innermost frame of ``error`` outside elbokit and the import machinery."""
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if "importlib" not in f.filename and not f.filename.startswith(str(Path(__file__).parent))]
    if isinstance(error, SyntaxError) and error.filename:
        return f"{error.filename}:{error.lineno}"
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "import"


def reference_of(cls: type) -> str:
    """``module:Class`` for a class passed from Python (a file imported by
    :func:`load_class` is named by its file again)."""
    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None)
    if cls.__module__.startswith("elbokit_user_") and path:
        return f"{Path(path).resolve()}:{cls.__qualname__}"
    return f"{cls.__module__}:{cls.__qualname__}"


def check_reference(recorded: str, given: str | type | None, where: str) -> str | type:
    """What to import (a reference) or use (a class) to load a run that recorded
    ``recorded``: the explicitly ``given`` reference or class when it names the same class,
    else an installed plugin that registers it. Refused in one line otherwise, before
    anything is imported (a moved file is refused too: name it where it was trained, or
    retrain; a run never vouches for another file)."""
    if given is None:
        plugins = installed_plugins()
        if recorded in plugins or recorded in plugins.values():  # an installed plugin's class
            return recorded
        raise CheckpointError(f"{where}: trained with the user model {recorded}; elbokit imports "
                              f"a user's code only when named: add --model {_shown(recorded)} "
                              "(or model= in Python)")
    if isinstance(given, type):
        name = reference_of(given)
        if name.rpartition(":")[2] != recorded.rpartition(":")[2]:
            raise CheckpointError(f"{where}: trained with {recorded}, not {name}")
        return given
    given = normalize(given)
    if given != recorded:
        raise CheckpointError(f"{where}: trained with the user model {recorded}, not {given}; "
                              "refused without importing either")
    return given


def warn_if_changed(reference: str, recorded_digest: str | None, where: str) -> None:
    """One warning when a file reference's source is not what the run was trained with."""
    digest = source_digest(reference)
    if recorded_digest is not None and digest is not None and digest != recorded_digest:
        warnings.warn(f"{where}: {reference.rpartition(':')[0]} changed since the model was "
                      "trained; its weights load only if the parameters still match",
                      stacklevel=3)


def _shown(reference: str) -> str:
    """A recorded reference as a user would type it (a file path relative when below the
    working directory)."""
    target, _, name = reference.rpartition(":")
    if target.endswith(".py"):
        try:
            target = str(Path(target).relative_to(Path.cwd()))
        except ValueError:
            pass
    return f"{target}:{name}" if target else reference
