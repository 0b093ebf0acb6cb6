"""The README and docs/: a short landing page, links that lead somewhere, and the README's Python that runs."""

import re
import warnings

import pytest
from helpers import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(text: str) -> set[str]:
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # comments in code blocks are not headings
    return {_anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


def test_the_readme_is_a_landing_page():
    """A landing page stays short: past 200 lines, a warning says to move the detail into docs/ (a length is a
    judgement, not a defect that fails the build)."""
    lines = (REPO / "README.md").read_text().splitlines()
    assert lines and lines[0].startswith("# ")
    if len(lines) > 200:
        warnings.warn(
            f"README.md has {len(lines)} lines; move the detail into docs/ (a landing page: ~200)", stacklevel=1
        )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_leads_to_a_file_and_heading(page):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"\w+://", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path) if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file.read_text()):
            broken.append(target)
    assert not broken, broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_file_the_docs_name_exists(page):
    named = set(re.findall(r"\b((?:tests|tools|segkit|configs)/[\w/]+\.(?:py|yaml))\b", page.read_text()))
    assert not [name for name in named if not (REPO / name).exists()]
