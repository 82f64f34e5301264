"""The front door and its pages: every relative link in README.md and docs/ reaches a file (or an output
`dvc.yaml` declares), and a heading where it names one; the README stays short; LICENSE and CITATION.cff
agree with pyproject.toml, and the cards cite the datasets with CITATION.cff's year."""

from __future__ import annotations

import re
import tomllib
from datetime import date
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {anchor(m) for m in re.findall(r"^#{1,6}\s+(.*?)\s*#*$", text, re.M)}


def links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text())
    return [a or b for a, b in LINK.findall(text)]


def _declared_output(dest: Path) -> bool:
    """A file that `dvc repro` writes: named in dvc.yaml (a figure a page shows once the pipeline ran)."""
    return dest.is_relative_to(REPO) and str(dest.relative_to(REPO)) in (REPO / "dvc.yaml").read_text()


def test_anchor_follows_github_rules() -> None:
    assert anchor("The CPU preset, run") == "the-cpu-preset-run"
    assert anchor("Sharing results (DVC remote)") == "sharing-results-dvc-remote"
    assert anchor("Isotropic turbulence super-resolution (3D)") == "isotropic-turbulence-super-resolution-3d"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not checked offline
            continue
        path, _, fragment = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists() and not _declared_output(dest):
            broken.append(
                f"{target}: no file {dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest}"
            )
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target}: no heading #{fragment} in {dest.relative_to(REPO)}")
    assert broken == [], f"{page.relative_to(REPO)}: " + "; ".join(broken)


def test_readme_is_a_front_door() -> None:
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    assert "(docs/" in text  # it sends the reader on


def test_license_and_citation_match_the_package() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "MIT"}
    assert (REPO / "LICENSE").read_text().startswith("MIT License\n")
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    # the keys CFF 1.2.0 requires, and the types its schema gives them
    assert cff["cff-version"] == "1.2.0" and isinstance(cff["message"], str) and isinstance(cff["title"], str)
    assert cff["authors"] and all("name" in a or "family-names" in a for a in cff["authors"])
    assert cff["version"] == project["version"] and cff["license"] == "MIT"
    date.fromisoformat(cff["date-released"])  # quoted ISO date, as the schema's pattern wants
    for ref in cff.get("references", []):
        assert ref["type"] and ref["title"] and ref["authors"]


def test_card_citations_carry_a_year() -> None:
    from pipelines.publish.facts import JHTDB_BIB, PHIFLOW_BIB, citation

    block = citation("symflow/smoke-plume-c4", "Smoke", PHIFLOW_BIB, JHTDB_BIB)
    entries = re.findall(r"^@\w+\{.*?^\}", block, re.M | re.S)
    assert len(entries) == 5
    years = [re.search(r"^\s*year\s*=\s*\{(\d{4})\}", e, re.M) for e in entries]
    assert all(years), [e.splitlines()[0] for e, y in zip(entries, years, strict=True) if not y]
    released = yaml.safe_load((REPO / "CITATION.cff").read_text())["date-released"]
    assert years[0].group(1) == released[:4]  # the dataset's own entry: this release's year
