"""docs/configuration.md is generated from the config models and must match them."""

from pathlib import Path

from bridge.config_docs import render


def test_configuration_reference_is_current() -> None:
    """The committed reference equals what the models generate (run `python -m bridge.config_docs`)."""
    doc = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
    assert doc.read_text().strip() == render().strip()
