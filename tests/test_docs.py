"""The documentation: the site builds offline with ``mkdocs build --strict`` (a broken link,
anchor or API cross-reference fails it), every page of its nav exists, README.md stays a
front page whose links resolve, and every block a page presents as runnable runs, as written
(the convention: tests/docs_pages.py).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from docs_pages import DOCS, MKDOCS, ROOT, nav_pages, run_page

README = ROOT / "README.md"
# Pages whose blocks their own tests run (through docs_pages.run_page), checking what the
# page promises on what its commands leave behind.
OWN_TESTS = {"guide.md": "test_guide.py", "extending.md": "test_extending.py"}


def test_the_site_builds_strict_and_the_readme_is_a_front_page(tmp_path):
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    pages = nav_pages()
    assert len(pages) >= 20 and len(set(pages)) == len(pages)
    missing = [str(page.relative_to(ROOT)) for page in pages if not page.is_file()]
    assert not missing, f"pages in mkdocs.yml's nav that do not exist: {missing}"
    orphans = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if p not in pages)
    assert not orphans, f"pages missing from mkdocs.yml's nav: {orphans}"
    site = tmp_path / "site"
    config = load_config(str(MKDOCS), site_dir=str(site), strict=True)
    logger = logging.getLogger("mkdocs")
    handlers = list(logger.handlers)
    try:
        build(config)  # raises mkdocs.exceptions.Abort on any warning, naming it in the log
    finally:
        logger.handlers[:] = handlers  # build() leaves its warning counter attached
    for page in pages:
        assert (site / page.relative_to(DOCS).with_suffix(".html")).is_file(), page
    assert "fonts.googleapis" not in (site / "index.html").read_text()

    text = README.read_text()
    assert len(text.splitlines()) <= 200, "README.md is the front page: at most ~200 lines"
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert any(link.startswith("docs/") for link in links)
    for link in links:
        if re.match(r"[a-z]+://|mailto:", link):
            continue
        path, _, anchor = link.partition("#")
        target = (ROOT / path) if path else README
        assert target.exists(), f"README.md links to {link}, which does not exist"
        if anchor and path.startswith("docs/") and path.endswith(".md"):
            html = (site / Path(path).relative_to("docs").with_suffix(".html")).read_text()
            assert f'id="{anchor}"' in html, f"README.md links to {link}: no such heading"
    for page in [README, *DOCS.rglob("*.md")]:
        assert "../shared" not in page.read_text(), f"{page.name} names ../shared"


@pytest.mark.parametrize("name", [str(page.relative_to(DOCS)) for page in nav_pages()
                                  if page.name not in OWN_TESTS] + ["../README.md"])
def test_every_runnable_block_of_the_page_runs(name, tmp_path, monkeypatch, capsys):
    page = (DOCS / name).resolve()
    if not page.is_file():
        pytest.fail(f"{name} is in mkdocs.yml's nav but does not exist")
    monkeypatch.chdir(tmp_path)
    run_page(page, tmp_path, capsys)


def test_pages_with_their_own_test_run_through_the_same_mechanism():
    for page, test in OWN_TESTS.items():
        source = (ROOT / "tests" / test).read_text()
        assert "run_page(" in source and (DOCS / page) in nav_pages(), (page, test)
