"""Secrets never reach logs: connection strings, keys, SAS signatures, URL passwords are scrubbed."""

from __future__ import annotations

from bridge.logs import redact, scrub


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
