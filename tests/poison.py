"""A poisoned normalizer for tests: messages holding a marker make normalization raise (a stand-in for any input
that makes an exception escape normalize), the others normalize as usual."""

from __future__ import annotations

from typing import Any

import pytest

import bridge.normalize
from bridge.model import RawMessage


def poison_normalizer(monkeypatch: pytest.MonkeyPatch, marker: bytes, error: Exception) -> None:
    """From now on (for this test), normalizing a message whose body contains ``marker`` raises ``error``."""
    real = bridge.normalize.normalize_all

    def normalize_all(msg: RawMessage) -> Any:
        if marker in msg.body:
            raise error
        return real(msg)

    monkeypatch.setattr(bridge.normalize, "normalize_all", normalize_all)
