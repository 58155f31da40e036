"""Logging: structlog JSON lines (or console), with secrets scrubbed from every value.

Connection strings, keys and passwords never reach the output: the ``redact`` processor rewrites
``SharedAccessKey=..``, ``AccountKey=..``, ``SharedAccessSignature ..``, ``sig=..``, URL passwords
(``redis://user:PASS@host``) and any field whose name looks secret.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_FIELD = re.compile(r"(password|secret|key|token|connection_string|credential)", re.I)
_PATTERNS = [
    (re.compile(r"((?:SharedAccessKey|AccountKey|SharedAccessSignature|Password|pwd)\s*=\s*)[^;\s\"']+", re.I),
     r"\1***"),
    (re.compile(r"(\bsig=)[^&\s\"']+", re.I), r"\1***"),
    (re.compile(r"(SharedAccessSignature\s+)\S+", re.I), r"\1***"),
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+@", re.I), r"\1***@"),
    (re.compile(r"(aws_secret_access_key['\"]?\s*[:=]\s*['\"]?)[^'\"\s,]+", re.I), r"\1***"),
]


def scrub(text: str) -> str:
    """Remove secrets from a string (connection strings, URL passwords, SAS signatures)."""
    for pat, repl in _PATTERNS:
        text = pat.sub(repl, text)
    return text


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for k, v in list(event_dict.items()):
        if isinstance(v, str):
            if _SECRET_FIELD.search(k) and k not in ("event", "key", "dedup_key", "partitionkey"):
                event_dict[k] = "***"
            else:
                event_dict[k] = scrub(v)
    return event_dict


debug_enabled = False  # per-event logs on the hot path are written only when this is set


def configure(level: str = "info", fmt: str = "json") -> None:
    global debug_enabled
    lvl = getattr(logging, level.upper(), logging.INFO)
    debug_enabled = lvl <= logging.DEBUG
    logging.basicConfig(stream=sys.stderr, level=lvl, format="%(message)s")
    for noisy in ("aiokafka", "azure", "botocore", "aiobotocore", "uamqp", "urllib3"):
        logging.getLogger(noisy).setLevel(max(lvl, logging.WARNING))
    renderer: Any = (structlog.processors.JSONRenderer() if fmt == "json"
                     else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
