"""The Azurite launcher: a real blob service that the Event Hubs checkpoint store can use."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore
from azure.storage.blob.aio import ContainerClient

from testbed import azurite as azurite_module
from testbed.azurite import Azurite, AzuriteNotInstalled, find_executable
from testbed.eventhubs_server import free_port


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.broker
async def test_launcher_serves_checkpoints_and_frees_the_port_on_stop() -> None:
    """A launched Azurite stores and lists checkpoints, and stop() ends the process and frees the port."""
    port = free_port()
    with Azurite(port=port) as service:
        assert _listening(port)
        async with ContainerClient.from_connection_string(service.connection_string, "cps") as container:
            await container.create_container()
        checkpoint = {
            "fully_qualified_namespace": "ns",
            "eventhub_name": "hub",
            "consumer_group": "$default",
            "partition_id": "0",
            "offset": "42",
            "sequence_number": 7,
        }
        async with BlobCheckpointStore.from_connection_string(service.connection_string, "cps") as store:
            await store.update_checkpoint(checkpoint)
            listed = await store.list_checkpoints("ns", "hub", "$default")
    assert [(c["partition_id"], str(c["offset"]), c["sequence_number"]) for c in listed] == [("0", "42", 7)]
    assert not _listening(port)


def test_launcher_refuses_a_busy_port(azurite: Azurite) -> None:
    """Starting on a port that is already taken fails clearly instead of talking to the wrong server."""
    with pytest.raises(RuntimeError, match="already in use"):
        Azurite(port=azurite.port).start()


def test_missing_install_names_the_install_script(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without an azurite-blob executable the error says how to install it."""
    monkeypatch.setenv("AZURITE_BLOB", str(tmp_path / "nothing"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(azurite_module, "DEFAULT_PREFIX", tmp_path / "none")
    with pytest.raises(AzuriteNotInstalled, match=r"install-azurite\.sh"):
        find_executable()
