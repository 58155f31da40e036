"""Azure Event Hubs source: ``EventHubConsumerClient.receive_batch`` with blob checkpoints, released on ack.

Each SDK callback batch becomes one ``SourceBatch``. The SDK callback only enqueues (a bounded
``asyncio.Queue``: when the pipeline falls behind, the callback waits for room, which is the backpressure);
it never waits for delivery. A batch's release (``bridge.model.Release``) marks it done in the source's
``Checkpointer`` (``bridge.sources.checkpoint``): per partition, the checkpoint advances to the last event of the
highest contiguous run of acked batches, so an out-of-order ack never releases a position ahead of an undelivered
batch. ``flush`` (the source is its batches' ``PositionWriter``) writes the checkpoints that moved before it
returns; a write that fails is retried with backoff. Replicas
sharing the consumer group and checkpoint container split the partitions through the SDK's ownership load
balancing; when a partition moves away its pending state is dropped (its unacked batches will be redelivered
to the new owner from the last checkpoint).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from bridge.azure_auth import AzureCredentialConfig, build_credential
from bridge.limits import MemoryBudget, batch_bytes
from bridge.model import Probe, RawMessage, Release, SourceBatch
from bridge.retry import COMMIT
from bridge.sources.checkpoint import Checkpointer, Ticket
from bridge.sources.registry import SourceConnector, SourceResources, register

log = structlog.get_logger(__name__)


class CheckpointStoreConfig(BaseModel):
    """Azure Blob container holding checkpoints and partition ownership (shared by replicas): either a
    ``connection_string`` or an ``account_url`` reached with the source's Entra ID ``credential``."""

    model_config = ConfigDict(extra="forbid")

    connection_string: SecretStr | None = Field(
        None, description="storage connection string (holds the account key: use ${VAR}); or account_url"
    )
    account_url: str | None = Field(
        None,
        description="https://<account>.blob.core.windows.net, authenticated with the source's credential "
        "(role Storage Blob Data Contributor on the container); instead of connection_string",
    )
    container: str = Field(description="container of checkpoints and ownership records")
    create_container: bool = Field(True, description="create the container when missing (needs the right to)")
    connection_verify: str | None = Field(
        None, description="CA bundle file to verify the storage endpoint's certificate (default: system CAs)"
    )

    @model_validator(mode="after")
    def _one_way_in(self) -> CheckpointStoreConfig:
        if (self.connection_string is None) == (self.account_url is None):
            raise ValueError("give exactly one of connection_string or account_url")
        if self.account_url is not None and not self.account_url.startswith("https://"):
            raise ValueError("account_url must be an https:// URL (bearer tokens are never sent in clear)")
        return self


class EventHubsSourceConfig(BaseModel):
    """Configuration of an Event Hubs source: a ``connection_string`` (SAS key), or a
    ``fully_qualified_namespace`` reached with an Entra ID ``credential`` (no key at all)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["eventhubs"] = Field(description="source type")
    name: str = Field("eventhubs", description="source name (metrics label, trust.sources key)")
    connection_string: SecretStr | None = Field(
        None, description="Event Hubs connection string with a Listen policy (use ${VAR}); or fully_qualified_namespace"
    )
    fully_qualified_namespace: str | None = Field(
        None,
        description="<namespace>.servicebus.windows.net, authenticated with `credential` (role Azure Event Hubs "
        "Data Receiver); instead of connection_string",
    )
    credential: AzureCredentialConfig = Field(
        default_factory=AzureCredentialConfig,
        description="Entra ID credential for fully_qualified_namespace and checkpoint_store.account_url",
    )
    custom_endpoint_address: str | None = Field(
        None,
        description="sb://host:port to connect to instead of the namespace (private endpoint, gateway); TLS and "
        "the token audience still use fully_qualified_namespace",
    )
    connection_verify: str | None = Field(
        None, description="CA bundle file to verify the Event Hubs endpoint's certificate (default: system CAs)"
    )
    eventhub_name: str | None = Field(
        None, description="event hub (required unless the connection string has EntityPath)"
    )
    consumer_group: str = Field(
        "$Default", description="consumer group: replicas sharing it (and the checkpoint store) split the partitions"
    )
    checkpoint_store: CheckpointStoreConfig | None = Field(
        None,
        description="blob checkpoints and partition ownership (see below); none: positions are lost on restart and "
        "replicas do not share partitions",
    )
    starting_position: str = Field(
        default="earliest", description="earliest, latest, an offset, or an ISO 8601 enqueued time"
    )
    max_batch_size: int = Field(default=500, gt=0, description="events per batch handed to the pipeline at most")
    max_wait_time: float = Field(
        default=1.0, gt=0, description="seconds the SDK waits to fill a batch before handing over what it has"
    )
    load_balancing_interval: float = Field(
        default=10.0, gt=0, description="seconds between the SDK's partition ownership rounds (claim, renew, balance)"
    )
    partition_ownership_expiration_interval: float | None = Field(
        default=None, gt=0,
        description="seconds after which an ownership not renewed may be claimed by another replica; none: the "
        "SDK's 6 x load_balancing_interval",
    )
    prefetch: int | None = Field(
        default=None,
        gt=0,
        description="events the SDK buffers per partition; unset: from the memory budget, assuming events up to "
        "1 MiB (at most 300); set it higher for small events and high throughput",
    )
    queue_batches: int = Field(default=16, gt=0, description="batches buffered between SDK and pipeline")
    track_last_enqueued: bool = Field(
        default=True,
        description="ask the service for each partition's last enqueued event (feeds the consumer lag metric)",
    )

    @model_validator(mode="after")
    def _check(self) -> EventHubsSourceConfig:
        if (self.connection_string is None) == (self.fully_qualified_namespace is None):
            raise ValueError("give exactly one of connection_string or fully_qualified_namespace")
        if self.fully_qualified_namespace is not None:
            if "://" in self.fully_qualified_namespace or "/" in self.fully_qualified_namespace:
                raise ValueError("fully_qualified_namespace is a host name like mynamespace.servicebus.windows.net")
            if self.eventhub_name is None:
                raise ValueError("eventhub_name is required with fully_qualified_namespace")
        elif (
            self.eventhub_name is None
            and self.connection_string is not None
            and "entitypath=" not in self.connection_string.get_secret_value().lower()
        ):
            raise ValueError("eventhub_name is required when the connection string has no EntityPath")
        parse_starting_position(self.starting_position)
        return self

    @property
    def uses_credential(self) -> bool:
        """True when an Entra ID credential is needed (namespace or checkpoint account without keys)."""
        store = self.checkpoint_store
        return self.fully_qualified_namespace is not None or (store is not None and store.account_url is not None)


def prefetch_for(prefetch_bytes: int | None, partitions: int = 4, event_bytes: int = 1024 * 1024) -> int:
    """The SDK prefetch (events per partition) that keeps ``partitions`` partitions of events as large as
    Event Hubs allows within ``prefetch_bytes``: between 10 and 300."""
    if prefetch_bytes is None:
        return 300
    return max(10, min(300, prefetch_bytes // (partitions * event_bytes)))


def parse_starting_position(value: str) -> str | dt.datetime:
    """Map ``earliest``/``latest``/offset/ISO time to the SDK's ``starting_position`` argument."""
    lowered = value.strip().lower()
    if lowered == "earliest":
        return "-1"
    if lowered == "latest":
        return "@latest"
    if lowered.lstrip("-").isdigit():
        return lowered
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(
            f"starting_position {value!r}: expected earliest, latest, an offset or an ISO time"
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def namespace_of(connection_string: str) -> str:
    """The ``Endpoint=sb://host[:port]/`` host of a connection string, as the SDK keys checkpoints by it."""
    for part in connection_string.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == "endpoint":
            return value.strip().split("://", 1)[-1].rstrip("/")
    return ""


def _header_value(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    return orjson.dumps(value, default=str)


def _event_body(event: Any) -> bytes:
    body = event.body
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, Iterable) and not isinstance(body, Mapping | list):
        parts = list(body)
        if all(isinstance(p, bytes | bytearray | memoryview) for p in parts):
            return b"".join(bytes(p) for p in parts)
        body = parts
    return orjson.dumps(body, default=str)


@dataclass(slots=True, eq=False)
class _Claim:
    """One ownership of a partition (from ``on_partition_initialize`` to ``on_partition_close``): the SDK context
    that writes its checkpoints, and the checkpointer's key for its batches (a partition claimed again is a new
    claim: acks of the old one are ignored)."""

    context: Any
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one checkpoint writer per claim
    written_sequence: int = -1


class EventHubsSource:
    """Source protocol implementation over the ``azure-eventhub`` consumer client."""

    def __init__(
        self,
        config: EventHubsSourceConfig,
        *,
        credential: Any = None,
        budget: MemoryBudget | None = None,
        prefetch_bytes: int | None = None,
    ) -> None:
        """``credential``: an async ``azure-identity``-style token credential to use instead of building one
        from ``config.credential`` (the caller keeps ownership and closes it). ``budget`` and ``prefetch_bytes``
        bound what the source holds (``bridge.limits``)."""
        self.config = config
        self.name = config.name
        self._given_credential = credential
        self._credential: Any = None
        self._budget = budget
        self.prefetch = config.prefetch or prefetch_for(prefetch_bytes)
        self._queue: asyncio.Queue[SourceBatch] = asyncio.Queue(maxsize=config.queue_batches)
        self._stash: deque[SourceBatch] = deque()
        self._partitions: dict[str, _Claim] = {}
        self._checkpoints: Checkpointer[_Claim, Any] = Checkpointer()  # positions: the last event of a batch
        self._retry_task: asyncio.Task[None] | None = None
        self._client: Any = None
        self._store: Any = None
        self._task: asyncio.Task[None] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._stopping = False
        self._healthy = True
        self._lag: dict[str, int] = {}
        self.eventhub_name = ""

    # -- lifecycle -------------------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """True while the client runs and its last report was good (a callback, not an error)."""
        running = self._task is not None and not self._task.done() and not self._stopping
        return running and self._healthy

    @property
    def fully_qualified_namespace(self) -> str:
        """The namespace (host[:port]) the client talks to; checkpoints are keyed by it."""
        if self.config.fully_qualified_namespace is not None:
            return self.config.fully_qualified_namespace
        assert self.config.connection_string is not None
        return namespace_of(self.config.connection_string.get_secret_value())

    @property
    def buffered_batches(self) -> int:
        """Batches received from the SDK and not yet taken by ``batches()`` (bounded by ``queue_batches``)."""
        return self._queue.qsize() + len(self._stash)

    @property
    def owned_partitions(self) -> list[str]:
        """Partitions this instance currently receives from."""
        return sorted(self._partitions)

    def probe(self) -> Probe | None:
        """The hub's partition ids through the client, once started: a namespace that cannot be reached (the SDK
        retries its connect quietly and calls ``on_error`` late, or not at all) shows in /readyz and in the logs
        (``health.broker_unreachable``) like a Kafka broker does."""
        client = self._client
        return client.get_partition_ids if client is not None else None

    def lag(self) -> dict[str, int]:
        """Events enqueued but not yet received, per owned partition, as of the last batch the SDK delivered
        (needs ``track_last_enqueued``; an empty batch means the receiver has caught up)."""
        return {pid: lag for pid, lag in self._lag.items() if pid in self._partitions}

    async def start(self) -> None:
        """Connect the checkpoint store and start receiving in a background task."""
        from azure.eventhub import TransportType
        from azure.eventhub.aio import EventHubConsumerClient

        cfg = self.config
        self._closed = asyncio.get_running_loop().create_future()
        if cfg.uses_credential and self._credential is None:
            self._credential = self._given_credential or build_credential(cfg.credential)
        if cfg.checkpoint_store is not None:
            self._store = await self._open_checkpoint_store(cfg.checkpoint_store, self._credential)
        else:
            log.warning(
                "eventhubs.in_memory_checkpoints",
                source=self.name,
                detail="no checkpoint_store: positions are lost on restart and replicas do not share",
            )
        kwargs: dict[str, Any] = {"load_balancing_interval": cfg.load_balancing_interval}
        if cfg.partition_ownership_expiration_interval is not None:
            kwargs["partition_ownership_expiration_interval"] = cfg.partition_ownership_expiration_interval
        if cfg.eventhub_name is not None:
            kwargs["eventhub_name"] = cfg.eventhub_name
        if cfg.connection_verify is not None:
            kwargs["connection_verify"] = cfg.connection_verify
        if cfg.custom_endpoint_address is not None:
            kwargs["custom_endpoint_address"] = cfg.custom_endpoint_address
            kwargs["transport_type"] = TransportType.Amqp  # the SDK would switch to websockets otherwise
        if cfg.connection_string is not None:
            self._client = EventHubConsumerClient.from_connection_string(
                cfg.connection_string.get_secret_value(),
                consumer_group=cfg.consumer_group,
                checkpoint_store=self._store,
                **kwargs,
            )
        else:
            self._client = EventHubConsumerClient(
                fully_qualified_namespace=self.fully_qualified_namespace,
                credential=self._credential,
                consumer_group=cfg.consumer_group,
                checkpoint_store=self._store,
                **kwargs,
            )
        self.eventhub_name = str(self._client.eventhub_name)
        self._task = asyncio.create_task(self._receive(), name=f"eventhubs-source-{self.name}")
        log.info("eventhubs.started", source=self.name, eventhub=self.eventhub_name, group=cfg.consumer_group)

    @staticmethod
    async def _open_checkpoint_store(cfg: CheckpointStoreConfig, credential: Any) -> Any:
        from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

        kwargs: dict[str, Any] = {}
        if cfg.connection_verify is not None:
            kwargs["connection_verify"] = cfg.connection_verify
        account_url = cfg.account_url or ""
        if cfg.create_container:
            from azure.core.exceptions import ResourceExistsError
            from azure.storage.blob.aio import ContainerClient

            if cfg.connection_string is not None:
                container = ContainerClient.from_connection_string(
                    cfg.connection_string.get_secret_value(), cfg.container, **kwargs
                )
            else:
                container = ContainerClient(account_url, cfg.container, credential=credential, **kwargs)
            async with container:
                with contextlib.suppress(ResourceExistsError):
                    await container.create_container()
        if cfg.connection_string is not None:
            return BlobCheckpointStore.from_connection_string(
                cfg.connection_string.get_secret_value(), cfg.container, **kwargs
            )
        return BlobCheckpointStore(account_url, cfg.container, credential=credential, **kwargs)

    async def _receive(self) -> None:
        cfg = self.config
        try:
            await self._client.receive_batch(
                on_event_batch=self._on_event_batch,
                max_batch_size=min(cfg.max_batch_size, max(self.prefetch, 10)),
                max_wait_time=cfg.max_wait_time,
                prefetch=self.prefetch,
                starting_position=parse_starting_position(cfg.starting_position),
                on_partition_initialize=self._on_partition_initialize,
                on_partition_close=self._on_partition_close,
                on_error=self._on_error,
                track_last_enqueued_event_properties=cfg.track_last_enqueued,
            )
        finally:
            if self._closed is not None and not self._closed.done():
                self._closed.set_result(None)

    async def stop(self) -> None:
        """Stop receiving, release ownership, and end ``batches()``; unacked positions stay unreleased."""
        if self._retry_task is not None:
            self._retry_task.cancel()
            await asyncio.gather(self._retry_task, return_exceptions=True)
            self._retry_task = None
        if self._checkpoints.has_ready:  # writes that failed so far: one last try while the client is open
            await self._write_checkpoints()
        self._stopping = True
        if self._client is not None:
            await self._client.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._store is not None:
            await self._store.close()
            self._store = None
        if self._credential is not None:
            if self._credential is not self._given_credential:
                with contextlib.suppress(Exception):
                    await self._credential.close()
            self._credential = None
        self._partitions.clear()
        self._checkpoints.revoke(self._checkpoints.partitions)  # acks arriving after the stop are ignored
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        log.info("eventhubs.stopped", source=self.name)

    async def batches(self) -> AsyncIterator[SourceBatch]:
        """Yield batches until ``stop()``; raises if the receiver task failed."""
        if self._closed is None:
            raise RuntimeError("EventHubsSource.batches() before start()")
        closed = self._closed
        while True:
            if self._stash:
                yield self._stash.popleft()
                continue
            if not self._queue.empty():
                yield self._queue.get_nowait()
                continue
            if closed.done():
                break
            getter = asyncio.ensure_future(self._queue.get())
            waiters: set[asyncio.Future[Any]] = {getter, closed}
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:  # also when the consumer is cancelled here: a batch already taken is kept, not lost
                if not getter.done():
                    getter.cancel()
                elif not getter.cancelled():
                    self._stash.append(getter.result())
        if self._task is not None and self._task.done() and not self._task.cancelled():
            exc = self._task.exception()
            if exc is not None and not self._stopping:
                raise exc

    # -- SDK callbacks (run on the client's task) ---------------------------------------------------------
    async def _on_partition_initialize(self, context: Any) -> None:
        self._healthy = True
        self._claim(context)
        log.info("eventhubs.partition_claimed", source=self.name, partition=context.partition_id)

    async def _on_partition_close(self, context: Any, reason: Any) -> None:
        claim = self._partitions.get(context.partition_id)
        if claim is not None and claim.context is context:
            del self._partitions[context.partition_id]
            self._checkpoints.revoke([claim])  # its unacked batches are redelivered to the next owner
            self._lag.pop(context.partition_id, None)
        log.info(
            "eventhubs.partition_released",
            source=self.name,
            partition=context.partition_id,
            reason=str(reason),
        )

    async def _on_error(self, context: Any, error: Exception) -> None:
        partition = getattr(context, "partition_id", None)
        self._healthy = False
        log.warning("eventhubs.receive_error", source=self.name, partition=partition, error=repr(error))

    def _claim(self, context: Any) -> _Claim:
        old = self._partitions.get(context.partition_id)
        if old is not None:
            self._checkpoints.revoke([old])
        claim = self._partitions[context.partition_id] = _Claim(context)
        return claim

    async def _on_event_batch(self, context: Any, events: list[Any]) -> None:
        self._healthy = True  # also called with no events every max_wait_time: a liveness signal
        if not events:  # nothing arrived within max_wait_time: the receiver has caught up
            if self.config.track_last_enqueued:
                self._lag[context.partition_id] = 0
            return
        self._record_lag(context, events[-1])
        claim = self._partitions.get(context.partition_id)
        if claim is None or claim.context is not context:
            claim = self._claim(context)
        ticket = self._checkpoints.track(claim, events[-1])
        prefix = f"{self.eventhub_name}/{context.partition_id}@"
        messages = [
            RawMessage(
                body=_event_body(event),
                headers={
                    (k.decode() if isinstance(k, bytes) else str(k)): _header_value(v)
                    for k, v in (event.properties or {}).items()
                },
                source=self.name,
                position=f"{prefix}{event.offset}",
            )
            for event in events
        ]
        batch = SourceBatch(messages=messages, source=self.name, release=self._release(ticket),
                            nbytes=batch_bytes(sum(len(m.body) for m in messages), len(messages)))
        budget = self._budget
        if budget is not None:  # the SDK stops receiving this partition while its callback waits
            await budget.wait_for_room()
            budget.charge("source", batch.nbytes)
        await self._queue.put(batch)

    def _record_lag(self, context: Any, last: Any) -> None:
        if not self.config.track_last_enqueued:
            return
        props = context.last_enqueued_event_properties
        enqueued = props.get("sequence_number") if props else None
        if isinstance(enqueued, int) and isinstance(last.sequence_number, int):
            self._lag[context.partition_id] = max(0, enqueued - last.sequence_number)

    # -- acks -----------------------------------------------------------------------------------------------
    def _release(self, ticket: Ticket[_Claim, Any]) -> Release:
        def mark() -> None:
            self._checkpoints.done([ticket])

        return Release(mark, self)

    async def flush(self) -> None:
        """Write the checkpoints that marks moved (``PositionWriter``)."""
        if self._checkpoints.has_ready:
            await self._write_checkpoints()

    async def _write_checkpoints(self) -> bool:
        """Write every checkpoint that acks made ready; False if one failed (it is retried with backoff)."""
        ok = True
        for claim, event in self._checkpoints.take_ready().items():
            ok = await self._write(claim, event) and ok
        if not ok and (self._retry_task is None or self._retry_task.done()) and not self._stopping:
            self._retry_task = asyncio.create_task(self._retry_checkpoints(), name=f"eventhubs-checkpoint-{self.name}")
        return ok

    async def _write(self, claim: _Claim, event: Any) -> bool:
        # One writer per claim, so an earlier position never overwrites a later one.
        async with claim.lock:
            if event.sequence_number <= claim.written_sequence or self._partitions.get(claim.context.partition_id) \
                    is not claim:
                return True  # superseded, or the partition moved on (its next owner checkpoints it)
            try:
                await claim.context.update_checkpoint(event)
            except Exception as exc:
                self._checkpoints.restore({claim: event})
                log.warning("eventhubs.checkpoint_failed", source=self.name, partition=claim.context.partition_id,
                            error=repr(exc))
                return False
            claim.written_sequence = event.sequence_number
            return True

    async def _retry_checkpoints(self) -> None:
        """Retry failed checkpoint writes with backoff (``retry.COMMIT``) until they succeed, the partitions move
        away or the source stops; later acks write (and so retry) them too."""
        retries = COMMIT.retries()
        while self._checkpoints.has_ready and not self._stopping:
            await asyncio.sleep(retries.failed())
            await self._write_checkpoints()


def _build(config: EventHubsSourceConfig, resources: SourceResources) -> EventHubsSource:
    return EventHubsSource(config, budget=resources.budget, prefetch_bytes=resources.prefetch_bytes)


CONNECTOR = register(SourceConnector(
    tag="eventhubs",
    config=EventHubsSourceConfig,
    build=_build,
    summary="Azure Event Hubs with blob checkpoints: a connection string, or `fully_qualified_namespace` with an "
    "Entra ID `credential` (no keys).",
    docs=(
        ("checkpoint_store", CheckpointStoreConfig, "Blob container of checkpoints and partition ownership: "
         "`connection_string`, or `account_url` with the source's `credential`."),
        ("credential", AzureCredentialConfig, "Entra ID credential (azure-identity)."),
    ),
))
