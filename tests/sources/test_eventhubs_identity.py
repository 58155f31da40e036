"""Event Hubs without keys: fully_qualified_namespace + an Entra ID token credential over TLS, the AMQP test
server checking the CBS put-token's token, and DefaultAzureCredential through a managed-identity endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore
from pydantic import ValidationError

import bridge.sources.eventhubs
from bridge.model import SourceBatch
from bridge.sources.eventhubs import EventHubsSource, EventHubsSourceConfig
from testbed.azurite import Azurite, AzuriteNotInstalled
from testbed.entra import EVENTHUBS_AUDIENCE, ManagedIdentityEndpoint, TestCredential, entra_token
from testbed.eventhubs_server import EventHubsServer
from testbed.logcapture import capture_module_logs
from testbed.servers import free_port
from testbed.tls import TestCA, TlsProxy
from tests.sources.test_eventhubs import wait_for

NAMESPACE = "bridge-test.servicebus.windows.net"
TIMEOUT = 30.0


@pytest.fixture
async def tls_front(tmp_path: Path, eventhubs_server: EventHubsServer) -> AsyncIterator[tuple[TlsProxy, Path]]:
    """A TLS endpoint in front of the AMQP test server whose certificate names the namespace (as a private
    endpoint or gateway would present it); yields the proxy and the CA file."""
    ca = TestCA(tmp_path / "eventhubs-tls")
    server_cert = ca.server((NAMESPACE, "127.0.0.1"))
    proxy = await TlsProxy(free_port(), (eventhubs_server.host, eventhubs_server.port), ca.server_context(server_cert)
                           ).start()
    try:
        yield proxy, ca.path
    finally:
        await proxy.stop()


def keyless_config(hub: str, proxy: TlsProxy, ca: Path, **extra: Any) -> EventHubsSourceConfig:
    return EventHubsSourceConfig.model_validate({
        "type": "eventhubs", "name": "eh-entra", "fully_qualified_namespace": NAMESPACE, "eventhub_name": hub,
        "custom_endpoint_address": f"sb://127.0.0.1:{proxy.port}", "connection_verify": str(ca),
        "max_wait_time": 0.2, "load_balancing_interval": 1.0, **extra,
    })


async def take(batches: AsyncIterator[SourceBatch], count: int) -> list[bytes]:
    bodies: list[bytes] = []

    async def run() -> None:
        while len(bodies) < count:
            batch = await anext(batches)
            bodies.extend(m.body for m in batch.messages)

    await asyncio.wait_for(run(), TIMEOUT)
    return bodies


async def test_token_credential_over_tls_receives_and_the_server_checks_the_token(
    eventhub: Callable[..., str], eventhubs_server: EventHubsServer, tls_front: tuple[TlsProxy, Path]
) -> None:
    """With fully_qualified_namespace and a token credential the SDK puts the credential's JWT on $cbs (audience
    sb://<namespace>/<hub>..., over TLS verified against the test CA and the namespace name); the server accepts
    exactly that token and events flow."""
    proxy, ca = tls_front
    hub = eventhub(1)
    token = entra_token(EVENTHUBS_AUDIENCE)
    eventhubs_server.accepted_jwts.add(token)
    eventhubs_server.publish(hub, [b"keyless-1", b"keyless-2"], partition_id="0")
    credential = TestCredential(fixed={EVENTHUBS_AUDIENCE: token})
    source = EventHubsSource(keyless_config(hub, proxy, ca), credential=credential)
    await source.start()
    try:
        assert await take(source.batches(), 2) == [b"keyless-1", b"keyless-2"]
    finally:
        await source.stop()
    mine = [p for p in eventhubs_server.put_tokens if p.token == token]
    assert mine and all(p.type == "jwt" and p.accepted for p in mine)
    assert mine[0].audience == f"sb://{NAMESPACE}/{hub}"  # management link, then the receiver's own
    assert all(p.audience.startswith(f"sb://{NAMESPACE}/{hub}") for p in mine)
    assert credential.issued and all(scope == "https://eventhubs.azure.net//.default" for scope, _ in credential.issued)
    assert not credential.closed  # a credential passed in stays the caller's


async def test_a_wrong_token_is_rejected_and_nothing_is_received_nor_logged(
    eventhub: Callable[..., str], eventhubs_server: EventHubsServer, tls_front: tuple[TlsProxy, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A token the server does not accept gets status 401 on $cbs: the source reports receive errors (not
    ready), receives nothing, and the token appears in no log line."""
    proxy, ca = tls_front
    hub = eventhub(1)
    eventhubs_server.publish(hub, [b"secret-event"], partition_id="0")
    wrong = entra_token(EVENTHUBS_AUDIENCE, tag="wrong")
    credential = TestCredential(fixed={EVENTHUBS_AUDIENCE: wrong})
    source = EventHubsSource(keyless_config(hub, proxy, ca), credential=credential)
    logs = capture_module_logs(monkeypatch, bridge.sources.eventhubs)
    await source.start()
    try:
        await wait_for(lambda: any(p.token == wrong for p in eventhubs_server.put_tokens))
        await wait_for(lambda: not source.ready)
        assert source.buffered_batches == 0
    finally:
        await source.stop()
    assert all(not p.accepted for p in eventhubs_server.put_tokens if p.token == wrong)
    errors = [e for e in logs.events if e["event"] == "eventhubs.receive_error"]
    assert errors and any("401" in e["error"] or "auth" in e["error"].lower() for e in errors)
    assert wrong not in repr(logs.events)


async def test_default_azure_credential_through_a_managed_identity_endpoint(
    eventhub: Callable[..., str], eventhubs_server: EventHubsServer, tls_front: tuple[TlsProxy, Path],
    managed_identity: ManagedIdentityEndpoint,
) -> None:
    """The default config (credential kind ``default``: DefaultAzureCredential) finds the managed identity from
    IDENTITY_ENDPOINT/IDENTITY_HEADER, asks it for the Event Hubs audience, and the server accepts that token."""
    proxy, ca = tls_front
    hub = eventhub(1)
    msi = managed_identity
    eventhubs_server.publish(hub, [b"via-msi"], partition_id="0")
    # the server trusts what the identity issues for Event Hubs, from the moment it issues it
    msi.on_issue.append(lambda resource, token: eventhubs_server.accepted_jwts.add(token)
                        if resource.rstrip("/") == EVENTHUBS_AUDIENCE else None)
    source = EventHubsSource(keyless_config(hub, proxy, ca))
    try:
        await source.start()
        assert await take(source.batches(), 1) == [b"via-msi"]
    finally:
        await source.stop()
    assert msi.issued and {r for r, _ in msi.issued} == {"https://eventhubs.azure.net/"}
    assert any(p.accepted and p.token in msi.tokens_for(EVENTHUBS_AUDIENCE) for p in eventhubs_server.put_tokens)


def test_config_needs_exactly_one_way_in() -> None:
    """A connection string or a namespace, not both nor neither; the namespace needs eventhub_name; a checkpoint
    account URL must be https (bearer tokens never travel in clear)."""
    base = {"type": "eventhubs", "eventhub_name": "h"}
    with pytest.raises(ValidationError, match="exactly one of connection_string or fully_qualified_namespace"):
        EventHubsSourceConfig.model_validate(base)
    with pytest.raises(ValidationError, match="exactly one"):
        EventHubsSourceConfig.model_validate({**base, "connection_string": "Endpoint=sb://x/;EntityPath=h",
                                              "fully_qualified_namespace": NAMESPACE})
    with pytest.raises(ValidationError, match="eventhub_name is required"):
        EventHubsSourceConfig.model_validate({"type": "eventhubs", "fully_qualified_namespace": NAMESPACE})
    with pytest.raises(ValidationError, match="host name"):
        EventHubsSourceConfig.model_validate({**base, "fully_qualified_namespace": f"sb://{NAMESPACE}/"})
    with pytest.raises(ValidationError, match="https://"):
        EventHubsSourceConfig.model_validate({**base, "fully_qualified_namespace": NAMESPACE, "checkpoint_store": {
            "account_url": "http://acct.blob.core.windows.net", "container": "c"}})
    ok = EventHubsSourceConfig.model_validate({**base, "fully_qualified_namespace": NAMESPACE, "checkpoint_store": {
        "account_url": "https://acct.blob.core.windows.net", "container": "c"}})
    assert ok.uses_credential and ok.credential.kind == "default"


@pytest.fixture
async def azurite_oauth(tmp_path: Path) -> AsyncIterator[tuple[Azurite, Path]]:
    """A private azurite serving HTTPS with ``--oauth basic`` (bearer tokens checked for issuer, audience and
    lifetime); yields it and the CA file its certificate is signed by."""
    ca = TestCA(tmp_path / "azurite-tls")
    cert = ca.server(("127.0.0.1", "localhost"), stem="azurite")
    server = Azurite(port=free_port(), https=(cert.cert, cert.key), oauth=True)
    try:
        await asyncio.to_thread(server.start)
    except AzuriteNotInstalled as exc:
        pytest.fail(f"Azurite is required: {exc}", pytrace=False)
    try:
        yield server, ca.path
    finally:
        await asyncio.to_thread(server.stop)


async def test_checkpoints_in_blob_storage_with_a_bearer_token(
    eventhub: Callable[..., str], eventhubs_server: EventHubsServer, tls_front: tuple[TlsProxy, Path],
    azurite_oauth: tuple[Azurite, Path],
) -> None:
    """checkpoint_store.account_url uses the source's credential: azurite (HTTPS, --oauth basic) accepts the
    Entra-shaped storage token, the container is created and the acked position is checkpointed there."""
    proxy, ca = tls_front
    azurite, azurite_ca = azurite_oauth
    hub = eventhub(1)
    eh_token = entra_token(EVENTHUBS_AUDIENCE)
    eventhubs_server.accepted_jwts.add(eh_token)
    eventhubs_server.publish(hub, [b"cp-1", b"cp-2"], partition_id="0")
    credential = TestCredential(fixed={EVENTHUBS_AUDIENCE: eh_token})
    store = {"account_url": azurite.account_url, "container": "keyless-checkpoints",
             "connection_verify": str(azurite_ca)}
    source = EventHubsSource(keyless_config(hub, proxy, ca, checkpoint_store=store), credential=credential)
    await source.start()
    try:
        batches = source.batches()
        received: list[SourceBatch] = []
        while sum(len(b.messages) for b in received) < 2:
            received.append(await asyncio.wait_for(anext(batches), TIMEOUT))
        for batch in received:
            assert batch.ack is not None
            await batch.ack()
    finally:
        await source.stop()
    assert any(scope == "https://storage.azure.com/.default" for scope, _ in credential.issued)
    async with BlobCheckpointStore(azurite.account_url, "keyless-checkpoints", credential=TestCredential(),
                                   connection_verify=str(azurite_ca)) as reader:
        found = await reader.list_checkpoints(NAMESPACE, hub, "$Default")
    last_offset = str(eventhubs_server.events(hub, "0")[-1].offset)
    assert [(c["partition_id"], c["offset"]) for c in found] == [("0", last_offset)]


async def test_blob_storage_refuses_a_token_for_another_audience(
    eventhub: Callable[..., str], tls_front: tuple[TlsProxy, Path], azurite_oauth: tuple[Azurite, Path],
) -> None:
    """A token whose audience is not storage is refused by azurite: start fails with an authentication error
    that does not contain the token."""
    proxy, ca = tls_front
    azurite, azurite_ca = azurite_oauth
    wrong = entra_token("https://management.azure.com")
    credential = TestCredential(fixed={"https://storage.azure.com": wrong})
    store = {"account_url": azurite.account_url, "container": "refused", "connection_verify": str(azurite_ca)}
    source = EventHubsSource(keyless_config(eventhub(1), proxy, ca, checkpoint_store=store), credential=credential)
    with pytest.raises(ClientAuthenticationError) as info:
        await source.start()
    await source.stop()
    assert "audience" in str(info.value).lower() and wrong not in str(info.value)
