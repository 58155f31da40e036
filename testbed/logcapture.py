"""Capture what a bridge module logs, whatever structlog configuration earlier code installed.

``structlog.testing.capture_logs`` misses loggers that were cached on first use under another configuration
(``bridge.logs.configure`` caches them), and a filtering wrapper installed by the CLI drops info lines. This
replaces the module's ``log`` with an unfiltered logger writing into a ``CapturingLogger``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
import structlog
from structlog.testing import CapturingLogger


class ModuleLogs:
    """The calls made on a module's logger: ``events`` as dicts with ``event`` and ``log_level``."""

    def __init__(self) -> None:
        self.captured = CapturingLogger()

    @property
    def events(self) -> list[dict[str, Any]]:
        out = []
        for call in self.captured.calls:
            entry = dict(call.kwargs)
            if call.args:
                entry["event"] = call.args[0]
            entry["log_level"] = call.method_name
            out.append(entry)
        return out


def capture_module_logs(monkeypatch: pytest.MonkeyPatch, module: ModuleType, name: str = "log") -> ModuleLogs:
    """Swap ``module.<name>`` for a capturing logger for the rest of the test."""
    logs = ModuleLogs()
    logger = structlog.wrap_logger(logs.captured, processors=[], wrapper_class=structlog.BoundLogger)
    monkeypatch.setattr(module, name, logger)
    return logs
