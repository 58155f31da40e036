"""docs/design.md is the project's own design: every section the code, tests and docs point at exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = re.compile(r'design\.md(?:\]\(design\.md\)|\]\(docs/design\.md\))?,?\s*\(?"([A-Z][A-Za-z -]+)"')


def test_every_section_named_by_a_reference_exists() -> None:
    """A reference like `docs/design.md, "Delivery"` anywhere in bridge/, tests/, README.md or docs/ names a
    section heading of docs/design.md, and nothing points at a DESIGN.md outside the repository."""
    headings = {m.group(1) for m in re.finditer(r"^## (.+)$", (ROOT / "docs" / "design.md").read_text(), re.M)}
    files = [*ROOT.joinpath("bridge").rglob("*.py"), *ROOT.joinpath("tests").rglob("*.py"), ROOT / "README.md",
             *ROOT.joinpath("docs").glob("*.md")]
    named: dict[str, str] = {}
    outside: list[str] = []
    for path in files:
        text = path.read_text()
        for match in REFERENCE.finditer(text):
            named[match.group(1)] = path.name
        if "DESIGN.md" in text and path.name != "test_design_doc.py":
            outside.append(path.name)
    assert len(named) >= 4, named
    assert {section: where for section, where in named.items() if section not in headings} == {}
    assert outside == []
