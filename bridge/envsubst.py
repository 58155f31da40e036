"""``${VAR}`` and ``${VAR:-default}`` references in config strings, replaced from the environment.

A module of its own so that light readers of the config (the container health probe) need not import the
pydantic models of ``bridge.config``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(text: str, env: Mapping[str, str], missing: Callable[[str], None] | None = None) -> str:
    """``text`` with every reference replaced; an unset variable without a default becomes "" and is
    reported to ``missing`` (by name)."""

    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        if missing is not None:
            missing(name)
        return ""

    return VAR.sub(repl, text)
