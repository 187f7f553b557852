"""A griffe extension for the API reference (mkdocs.yml loads it; the site excludes it).

elbokit's docstrings use Sphinx's markup: roles such as ``:class:`~elbokit.training.TrainConfig```
and ``:meth:`fit```, ``::`` before a literal block, and the occasional simple table of
``=====`` rules. mkdocstrings renders docstrings as Markdown, so this turns each role into
a cross-reference (a link where the target is on a page of the reference, code text where
it is not) and each table into a literal block. A role naming an elbokit object that does
not exist is a warning, which fails ``mkdocs build --strict``.
"""

from __future__ import annotations

import builtins
import logging
import re

import griffe

import elbokit

log = logging.getLogger("mkdocs.plugins.griffe_roles")
ROLE = re.compile(r":(?:py:)?(?P<role>class|meth|func|mod|data|attr|obj|exc|const):`(?P<body>[^`]+)`")
RULE = re.compile(r"^\s*=+(\s+=+)+\s*$")


def _find(package: griffe.Module, path: str) -> griffe.Object | griffe.Alias | None:
    if path == package.path:
        return package
    if not path.startswith(package.path + "."):
        return None
    name = path[len(package.path) + 1:]
    if name in elbokit._EXPORTS:  # elbokit.VAE: a name the package loads on first use
        name = f"{elbokit._EXPORTS[name]}.{name}"
    try:
        return package[name]
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        pass
    parent, _, member = path.rpartition(".")  # an inherited method
    owner = _find(package, parent) if parent != package.path else None
    try:
        return owner.all_members.get(member) if owner is not None and owner.is_class else None
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def _target(obj: griffe.Object, name: str, package: griffe.Module) -> str | None:
    """The full path of ``name`` as the docstring of ``obj`` means it, or None."""
    first, _, rest = name.partition(".")
    candidates = [name]
    try:
        candidates.append(obj.resolve(first) + (f".{rest}" if rest else ""))
    except griffe.NameResolutionError:
        pass
    scope = obj  # a method the class inherits: :meth:`save` in a subclass's docstring
    while scope is not None and not rest:
        if scope.is_class:
            candidates.append(f"{scope.path}.{first}")
        scope = scope.parent
    for candidate in candidates:
        found = _find(package, candidate)
        if found is not None:
            try:
                return found.canonical_path
            except (griffe.AliasResolutionError, griffe.CyclicAliasError):
                return candidate
    return None


def _tables_as_literal(text: str) -> str:
    """A simple reST table (three ``=====`` rules) becomes an indented literal block."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        rules = [j for j in range(i, len(lines)) if RULE.match(lines[j])][:3] if RULE.match(lines[i]) else []
        if len(rules) == 3:
            out += ["", *("    " + line for line in lines[i:rules[2] + 1]), ""]
            i = rules[2] + 1
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out)


def convert(text: str, obj: griffe.Object, package: griffe.Module) -> str:
    def role(match: re.Match) -> str:
        body = match["body"].strip()
        label, _, explicit = body.partition("<")
        target = explicit.rstrip(">").strip() if explicit else body
        short = target.startswith("~")
        target = re.sub(r"\s+", "", target).lstrip("~.")
        title = label.strip() if explicit else (target.rsplit(".", 1)[-1] if short else target)
        if match["role"] in ("meth", "func") and not title.endswith(")"):
            title += "()"
        path = _target(obj, target, package) or _target(obj, f"{package.name}.{target}", package)
        if path is None:
            if target.startswith(package.name + ".") or ("." not in target and not hasattr(builtins, target)):
                log.warning("%s: the docstring names %s, which elbokit does not have", obj.path, match[0])
            return f"`{title}`"
        return f'<autoref identifier="{path}" optional><code>{title}</code></autoref>'

    text = _tables_as_literal(text)
    text = re.sub(r"(?<=\S)::(?=\n)", ":", text)  # "like this::" before a literal block
    text = re.sub(r"(?m)^::\n", "", text)
    return ROLE.sub(role, text)


class SphinxRoles(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs: object) -> None:
        seen: set[int] = set()

        def walk(obj: griffe.Object) -> None:
            if id(obj) in seen:
                return
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = convert(obj.docstring.value, obj, pkg)
            for member in obj.members.values():
                if not member.is_alias:
                    walk(member)

        walk(pkg)
