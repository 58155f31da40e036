"""Secrets never reach logs, and every line on stderr (the bridge's and the libraries') goes through one
scrubbing structlog chain: connection strings, keys, SAS signatures, URL passwords are replaced by ***."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.logs import redact, scrub
from testbed.process import BridgeProcess
from testbed.servers import RefusedPort
from testbed.waiting import wait_for_sync

# Logs through stdlib loggers the way aiokafka, azure-* and botocore do, after bridge.logs.configure.
LIBRARY_LINES = r"""
import logging, sys, warnings
import structlog
from bridge.logs import configure

configure("info", sys.argv[1])
structlog.get_logger("bridge.test").info("own line", connection_string="Endpoint=sb://x;SharedAccessKey=own1")
logging.getLogger("aiokafka.conn").error("Unable connect to %s", "redis://user:hunter2@redis:6379/0")
logging.getLogger("botocore.credentials").warning("aws_secret_access_key=botoSECRET in %s", "env")
try:
    raise ValueError("Endpoint=sb://ns;SharedAccessKeyName=root;SharedAccessKey=tracebackSECRET=")
except ValueError:
    logging.getLogger("azure.eventhub._pyamqp").exception("link detached")
logging.getLogger("aiokafka.consumer").info("library info chatter is dropped")
logging.getLogger("azure.storage.blob").debug("library debug chatter is dropped")
warnings.warn("deprecated: pass sig=warnSECRET elsewhere")
"""
SECRETS = ("own1", "hunter2", "botoSECRET", "tracebackSECRET", "warnSECRET")


def _run_library_lines(fmt: str) -> list[str]:
    res = subprocess.run([sys.executable, "-c", LIBRARY_LINES, fmt], capture_output=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout == b""
    return res.stderr.decode().splitlines()


def test_scrub_removes_connection_string_keys_and_url_passwords() -> None:
    """Every known secret shape is replaced by *** while the rest of the text stays readable."""
    text = ("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey=abc123XYZ=;"
            " AccountKey=Zm9vYmFy==; redis://user:hunter2@redis:6379/0 ?sv=2020&sig=deadbeef%3D&se=1"
            " SharedAccessSignature sr=x&sig=abc")
    out = scrub(text)
    for secret in ("abc123XYZ", "Zm9vYmFy", "hunter2", "deadbeef"):
        assert secret not in out
    assert "SharedAccessKeyName=root" in out and "redis:6379" in out


def test_redact_processor_masks_secret_named_fields() -> None:
    """A log field whose name says secret or password is masked whatever its value."""
    out = redact(None, "info", {"event": "x", "sasl_password": "pw", "connection_string": "c", "source": "kafka"})
    assert out == {"event": "x", "sasl_password": "***", "connection_string": "***", "source": "kafka"}


def test_library_log_lines_are_json_and_scrubbed_like_the_bridges_own() -> None:
    """Lines logged through stdlib logging (aiokafka, botocore, azure, warnings) come out as scrubbed JSON objects
    with level, timestamp and logger name; tracebacks are scrubbed too; library INFO/DEBUG chatter is dropped."""
    lines = _run_library_lines("json")
    records = [orjson.loads(line) for line in lines]  # every line is one JSON object
    assert all(isinstance(r, dict) and r["timestamp"].endswith("Z") for r in records)
    by_event = {r["event"].split(" ")[0]: r for r in records}
    assert set(by_event) == {"own", "Unable", "aws_secret_access_key=***", "link", "<string>:16:"}, records
    assert by_event["own"]["connection_string"] == "***"
    assert by_event["Unable"] == {**by_event["Unable"], "level": "error", "logger": "aiokafka.conn",
                                  "event": "Unable connect to redis://user:***@redis:6379/0"}
    assert by_event["aws_secret_access_key=***"]["logger"] == "botocore.credentials"
    detached = by_event["link"]
    assert detached["logger"] == "azure.eventhub._pyamqp" and detached["level"] == "error"
    assert "Traceback" in detached["exception"] and "SharedAccessKey=***" in detached["exception"]
    assert by_event["<string>:16:"]["logger"] == "py.warnings" and "sig=***" in by_event["<string>:16:"]["event"]
    text = "\n".join(lines)
    assert not any(secret in text for secret in SECRETS)
    assert "chatter" not in text


def test_console_format_renders_library_lines_through_the_same_chain() -> None:
    """With log.format console, library lines are rendered by the console renderer and scrubbed as well."""
    lines = _run_library_lines("console")
    text = "\n".join(lines)
    assert not any(secret in text for secret in SECRETS)
    unable = next(line for line in lines if "Unable connect" in line)
    assert "[error" in unable and "[aiokafka.conn]" in unable and "redis://user:***@redis" in unable
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(unable)


def test_bridge_run_logs_aiokafka_errors_as_json(tmp_path: Path) -> None:
    """`bridge run` against an unreachable broker: aiokafka's own error lines are JSON like every other line."""
    with RefusedPort() as dead:
        bootstrap = f"127.0.0.1:{dead}"
        cfg: dict[str, Any] = {
            "log": {"level": "info", "format": "json"},
            "sources": [{"type": "kafka", "name": "kafka", "bootstrap_servers": bootstrap, "topics": ["raw"],
                         "group_id": "g"}],
            "sink": {"type": "kafka", "bootstrap_servers": bootstrap},
        }
        with BridgeProcess(cfg, tmp_path) as bridge:
            bridge.wait_http("/healthz", 200)
            wait_for_sync(lambda: "aiokafka" in bridge.log_path.read_text(), within=60, what="aiokafka's own lines")
            assert bridge.terminate() == 0
    records = [orjson.loads(line) for line in bridge.log_path.read_text().splitlines()]
    library = [r for r in records if str(r.get("logger", "")).startswith("aiokafka")]
    assert library, records
    assert all(r["level"] == "error" and "Unable connect" in r["event"] for r in library)


def test_every_event_name_the_bridge_logs_is_component_dot_snake_case() -> None:
    """Each log call in bridge/ names its event with a literal ``component.what_happened`` (snake case), never a
    sentence or an f-string: one style, stable names to search and alert on."""
    pattern = re.compile(r"[a-z]+(\.[a-z0-9_]+)+")
    levels = {"debug", "info", "warning", "error", "exception", "critical"}
    bad: list[str] = []
    calls = 0
    for path in sorted((Path(__file__).resolve().parent.parent / "bridge").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in levels
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "log"):
                continue
            calls += 1
            first = node.args[0] if node.args else None
            name = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None
            if name is None or not pattern.fullmatch(name):
                bad.append(f"{path.name}:{node.lineno}: {ast.unparse(first) if first is not None else '(none)'}")
    assert calls > 60 and bad == []
