"""docs/configuration.md is generated from the config models, must match them, and describes every field."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bridge.config import BridgeConfig
from bridge.config_docs import render, sections
from bridge.sources.registry import connectors

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_configuration_reference_is_current() -> None:
    """The committed reference equals what the models generate (run `python -m bridge.config_docs`)."""
    assert DOC.read_text().strip() == render().strip()


def test_every_field_in_the_reference_has_a_description() -> None:
    """No row of docs/configuration.md has an empty description: every config field says what it is for."""
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("| `")]
    assert len(rows) > 100
    empty = [row for row in rows if not row.rstrip().rstrip("|").rsplit(" | ", 1)[-1].strip()]
    assert empty == []


def _models(annotation: Any) -> set[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {annotation}
    return set().union(*(_models(arg) for arg in typing.get_args(annotation))) if typing.get_args(annotation) else set()


def test_every_model_reachable_from_the_root_has_a_section() -> None:
    """Every config model a YAML file can reach (nested ones and every registered source's included) is documented
    in a section of its own, so none of its fields escapes the reference."""
    documented = {model for _, model, _ in sections()}
    todo = [BridgeConfig, *(c.config for c in connectors())]
    seen: set[type[BaseModel]] = set()
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for field in model.model_fields.values():
            todo.extend(_models(field.annotation))
    assert seen - {BridgeConfig} <= documented, sorted(m.__name__ for m in seen - {BridgeConfig} - documented)
