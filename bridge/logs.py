"""Logging: structlog JSON lines (or console), with secrets scrubbed from every value.

Connection strings, keys, passwords and tokens never reach the output: the ``redact`` processor rewrites
``SharedAccessKey=..``, ``AccountKey=..``, ``SharedAccessSignature ..``, ``sig=..``, URL passwords
(``redis://user:PASS@host``), JWTs and ``Bearer`` tokens, SigV4 signatures and session tokens, MSK IAM
tokens, PEM private keys, and any field whose name looks secret.

The bridge's own structlog loggers and the libraries' stdlib loggers (aiokafka, azure, botocore, ...) share
one processor chain: stdlib records go through ``structlog.stdlib.ProcessorFormatter`` on the root handler,
so every line on stderr is rendered the same way (JSON by default) and scrubbed by ``redact``, tracebacks
included.

The bridge's own event names are ``component.what_happened`` in snake case (``daemon.connect_failed``,
``kafka.commit_failed``): stable names to search for; what varies goes into fields (tests/test_logs.py checks).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.typing import Processor

_SECRET_FIELD = re.compile(r"(password|secret|key|token|connection_string|credential)", re.I)
_PATTERNS = [
    (re.compile(r"((?:SharedAccessKey|AccountKey|SharedAccessSignature|Password|pwd)\s*=\s*)[^;\s\"']+", re.I),
     r"\1***"),
    (re.compile(r"(\bsig=)[^&\s\"']+", re.I), r"\1***"),
    (re.compile(r"(SharedAccessSignature\s+)\S+", re.I), r"\1***"),
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+@", re.I), r"\1***@"),
    (re.compile(r"(aws_secret_access_key['\"]?\s*[:=]\s*['\"]?)[^'\"\s,]+", re.I), r"\1***"),
    # bearer tokens: JWTs (Entra ID, web identity), "Bearer x", SigV4 presigned parts, MSK IAM tokens (the
    # base64url of an https://kafka.<region>.amazonaws.com/ presigned URL), STS answers, PEM private keys
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), "eyJ***"),
    (re.compile(r"(\bBearer\s+)[A-Za-z0-9._~+/=-]+", re.I), r"\1***"),
    (re.compile(r"(X-Amz-(?:Signature|Security-Token)=)[^&\s\"']+", re.I), r"\1***"),
    (re.compile(r"\baHR0cHM6Ly9rYWZrYS[A-Za-z0-9_=-]+"), "***"),
    (re.compile(r"(<(?:SecretAccessKey|SessionToken)>)[^<]+"), r"\1***"),
    (re.compile(r"(\"(?:SecretAccessKey|SessionToken|access_token)\"\s*:\s*\")[^\"]+"), r"\1***"),
    (re.compile(r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
     r"-----BEGIN \1PRIVATE KEY----- *** -----END PRIVATE KEY-----"),
]
# libraries whose INFO/DEBUG chatter is never wanted: they log at WARNING and above whatever log.level says
LIBRARY_LOGGERS = ("aiokafka", "azure", "botocore", "aiobotocore", "uamqp", "urllib3", "asyncio", "msal")


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


class _BridgeHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler ``configure`` installs (replaced, never stacked, when ``configure`` runs again)."""


def _renderer(fmt: str) -> Processor:
    if fmt == "json":
        return structlog.processors.JSONRenderer()
    return structlog.dev.ConsoleRenderer(colors=False)


def configure(level: str = "info", fmt: str = "json") -> None:
    """Send every log line, the bridge's and the libraries', to stderr through one scrubbing chain."""
    global debug_enabled
    lvl = getattr(logging, level.upper(), logging.INFO)
    debug_enabled = lvl <= logging.DEBUG
    # what both kinds of record go through before they are rendered
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # format_exc_info before redact: a traceback's text is scrubbed like any other value
    tail: list[Processor] = [structlog.processors.format_exc_info, redact, _renderer(fmt)]

    handler = _BridgeHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
    ))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _BridgeHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(lvl)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(max(lvl, logging.WARNING))
    logging.captureWarnings(True)  # warnings.warn from libraries: a JSON line too, not bare text

    structlog.configure(
        processors=[*shared, *tail],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
