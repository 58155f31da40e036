"""Read the pip requirement lock files (``make lock``: ``uv pip compile --generate-hashes``) for the tests."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_LOCK = ROOT / "requirements.lock"
BUILD_LOCK = ROOT / "requirements-build.lock"
BUILD_INPUT = ROOT / "requirements-build.in"
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


@dataclass(frozen=True)
class Pin:
    """One locked distribution."""

    name: str  # canonical (PEP 503) name
    requirement: Requirement
    hashes: tuple[str, ...]
    via: tuple[str, ...]  # what asked for it (the lock's `# via` annotations)

    @property
    def version(self) -> str:
        """The pinned version (the lock pins every entry with ==)."""
        (spec,) = self.requirement.specifier
        assert spec.operator == "==", self.requirement
        return spec.version

    def applies(self) -> bool:
        """Whether the entry's environment marker holds for the running interpreter (CPython 3.11 on Linux)."""
        return self.requirement.marker is None or self.requirement.marker.evaluate()


def read_lock(path: Path) -> dict[str, Pin]:
    """The entries of a lock file by canonical name."""
    pins: dict[str, Pin] = {}
    blocks: list[list[str]] = []
    for line in path.read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            blocks.append([line])
        elif blocks and line.startswith(" "):
            blocks[-1].append(line.strip())
    for block in blocks:
        req = Requirement(block[0].rstrip("\\").strip())
        hashes = tuple(h for line in block for h in _HASH.findall(line))
        via: list[str] = []
        for line in block[1:]:
            if line.startswith("#"):
                text = line.lstrip("#").strip()
                text = text.removeprefix("via").strip()
                if text:
                    via.append(text)
        name = canonicalize_name(req.name)
        assert name not in pins, f"{path.name}: {name} locked twice"
        pins[name] = Pin(name, req, hashes, tuple(via))
    return pins


def read_requirements(lines: list[str]) -> dict[str, Requirement]:
    """Requirement strings (comments and blanks ignored) by canonical name."""
    out: dict[str, Requirement] = {}
    for raw in lines:
        text = raw.split("#", 1)[0].strip()
        if text:
            req = Requirement(text)
            out[canonicalize_name(req.name)] = req
    return out
