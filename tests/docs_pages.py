"""The documentation's pages and their runnable blocks, in one place: what a page presents as
runnable is run, as written, in page order (tests/test_docs.py for every page; the guide's
and the extending page's own tests run theirs the same way and check what they promise).

The convention (every page of docs/ and README.md): a fenced ```` ```python ```` block is
executed, the blocks of a page sharing one namespace as in a notebook; every line of a
```` ```sh ```` block is an ``elbokit`` command (a ``\\`` continues it, ``#`` starts a
comment), run through ``elbokit.cli.main`` and expected to exit 0. What is shown but not run
(other programs, launches over several processes or machines, runs of minutes or hours,
program output) goes in ```` ```console ```` or ```` ```text ```` blocks, with the reason
stated beside it. Pages run in a temporary directory holding a copy of docs/examples/ (pages
name those files relative to the repository's root).
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MKDOCS = ROOT / "mkdocs.yml"
RUNNABLE = ("python", "sh")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<language>[\w+-]*)[^\n`]*$")


def nav_pages() -> list[Path]:
    """The pages of mkdocs.yml's nav, in its order (paths under docs/)."""
    nav = MKDOCS.read_text().split("\nnav:", 1)[1]
    return [DOCS / name for name in re.findall(r"([\w./-]+\.md)\s*$", nav, flags=re.M)]


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced block, in order; an indented fence (in a list)
    has its indentation taken off the body."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        i += 1
        if not opening:
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        body = []
        while i < len(lines) and not re.match(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[i]):
            line = lines[i]
            body.append(line[indent:] if line[:indent].isspace() else line.lstrip() if indent else line)
            i += 1
        i += 1
        blocks.append((opening["language"].lower(), "\n".join(body) + "\n"))
    return blocks


def runnable_blocks(page: Path) -> list[tuple[str, str]]:
    return [(language, body) for language, body in fenced_blocks(page.read_text()) if language in RUNNABLE]


def commands(body: str) -> list[str]:
    """The commands of a ```sh block: continuation lines joined, comments and blanks left out."""
    joined = re.sub(r"\\\n", " ", body)
    return [line.strip() for line in joined.splitlines() if shlex.split(line, comments=True)]


def registries() -> list:
    from elbokit.api import MODEL_KINDS
    from elbokit.data import DATASETS
    from elbokit.estimators import ESTIMATORS
    from elbokit.likelihoods import LIKELIHOODS
    from elbokit.models.flows import POSTERIORS
    from elbokit.models.latents import LATENTS
    from elbokit.models.priors import PRIORS
    return [LIKELIHOODS, ESTIMATORS, LATENTS, PRIORS, POSTERIORS, DATASETS, MODEL_KINDS]


def run_page(page: Path, where: Path, capsys) -> dict:
    """Run ``page``'s runnable blocks in order with ``where`` as the working directory (the
    caller's ``monkeypatch.chdir``); returns the namespace its Python blocks share. A
    component a page registers is taken out again afterwards, so that no other test sees it."""
    from elbokit.cli import main

    shutil.copytree(DOCS / "examples", where / "docs" / "examples", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    namespace: dict = {"__name__": page.stem}
    before = {registry: set(registry.names()) for registry in registries()}
    try:
        for language, body in runnable_blocks(page):
            if language == "python":
                exec(compile(body, str(page), "exec"), namespace)  # noqa: S102 (our own pages)
                continue
            for command in commands(body):
                assert command.startswith("elbokit "), (
                    f"{page.name}: `{command}` in a ```sh block: those hold elbokit commands, which "
                    "the docs test runs; show other commands in a ```console block")
                code = main(shlex.split(command, comments=True)[1:])
                out, err = capsys.readouterr()
                assert code == 0, f"{page.name}: {command}\n{err}"
    finally:
        for registry, names in before.items():
            for name in set(registry.names()) - names:
                registry.remove(name)
    return namespace
