"""Amazon SQS source (EventBridge rule or SNS subscription -> SQS queue) on aiobotocore.

Several receive loops long-poll the queue concurrently; each non-empty ``ReceiveMessage`` answer becomes one
``SourceBatch`` whose messages carry the raw ``Body`` (an EventBridge event, or an SNS notification envelope:
the normalizer unwraps it) and ``position = "<queue name>#<MessageId>"``; message attributes become headers.
A batch's release (``bridge.model.Release``) marks it settled; ``flush`` (the source is its batches'
``PositionWriter``) deletes every marked message at once (``DeleteMessageBatch`` in chunks of 10, retrying failed
entries; what still fails is logged and will be redelivered, which dedup absorbs). Until a batch is settled a
heartbeat extends its visibility (``ChangeMessageVisibilityBatch``) before it expires, so slow batches are not
redelivered to competing consumers. ``nack`` (the pipeline gave the batch up) gives it back at once (visibility 0);
``stop`` releases every batch still unsettled. A batch is settled once: by its ack, its nack or the stop. ``lag()``
reports the queue's backlog (``ApproximateNumberOfMessages``: visible messages no consumer has received yet), polled
every ``backlog_poll_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from bridge.aio import reraise_if_cancelled
from bridge.limits import MemoryBudget, batch_bytes
from bridge.model import Probe, RawMessage, Release, SourceBatch
from bridge.retry import SQS_DELETE, SQS_RECEIVE
from bridge.sources.registry import SourceConnector, SourceResources, register

log = structlog.get_logger(__name__)

SQS_BATCH_LIMIT = 10


class SqsSourceConfig(BaseModel):
    """Configuration of the SQS source. Without explicit keys the default AWS credential chain applies."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["sqs"] = Field("sqs", description="source type")
    name: str = Field("sqs", description="source name (metrics label, trust.sources key)")
    queue_url: str = Field(description="URL of the queue (https://sqs.<region>.amazonaws.com/<account>/<queue>)")
    region: str = Field("us-east-1", description="AWS region of the queue")
    endpoint_url: str | None = Field(
        None, description="SQS endpoint override (else AWS_ENDPOINT_URL_SQS / AWS_ENDPOINT_URL, else AWS's)"
    )
    aws_access_key_id: SecretStr | None = Field(
        None,
        description="static key (use ${VAR}); leave out to use the AWS default credential chain: environment, "
        "web identity (IRSA: AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE), container/instance roles",
    )
    aws_secret_access_key: SecretStr | None = Field(None, description="secret of aws_access_key_id (use ${VAR})")
    aws_session_token: SecretStr | None = Field(None, description="session token of temporary static keys")
    wait_time_seconds: int = Field(20, ge=0, le=20, description="long-poll wait of one ReceiveMessage call")
    max_messages: int = Field(10, ge=1, le=10, description="messages one ReceiveMessage call returns at most")
    receivers: int = Field(4, ge=1, le=64, description="receive loops long-polling the queue concurrently")
    visibility_timeout: int = Field(
        30, ge=1, le=43_200, description="seconds a received message stays hidden from other consumers"
    )
    extend_visibility: bool = Field(
        True, description="extend the visibility of batches still in the pipeline before it runs out (heartbeat)"
    )
    delete_retries: int = Field(
        3, ge=0, description="retries of DeleteMessageBatch entries that failed (then redelivered, dedup absorbs)"
    )
    error_backoff_seconds: float = Field(
        1.0, gt=0,
        description="first wait after a failed ReceiveMessage; doubles up to 30 s (docs/operations.md, Retries)",
    )
    backlog_poll_seconds: float = Field(
        15.0, ge=0, description="how often to read the queue backlog for the consumer lag metric; 0 = never"
    )


@dataclass(eq=False, slots=True)
class _Inflight:
    """The receipt handles of one received batch and when their visibility runs out (loop time)."""

    handles: list[str]
    deadline: float
    settled: bool = False
    lost: set[str] = field(default_factory=set)


def _headers(message: Mapping[str, Any]) -> dict[str, bytes]:
    headers: dict[str, bytes] = {}
    for key, attr in (message.get("MessageAttributes") or {}).items():
        if "StringValue" in attr:
            headers[key] = str(attr["StringValue"]).encode()
        elif "BinaryValue" in attr:
            headers[key] = bytes(attr["BinaryValue"])
    return headers


def _chunks(items: Sequence[str]) -> list[Sequence[str]]:
    return [items[i : i + SQS_BATCH_LIMIT] for i in range(0, len(items), SQS_BATCH_LIMIT)]


class SqsSource:
    """Competing-consumer SQS source; see the module docstring."""

    def __init__(
        self, config: SqsSourceConfig, *, session: AioSession | None = None, budget: MemoryBudget | None = None
    ) -> None:
        self.config = config
        self.name = config.name
        self._budget = budget
        self.queue_name = config.queue_url.rstrip("/").rsplit("/", 1)[-1]
        self._session = session or get_session()
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._queue: asyncio.Queue[SourceBatch] = asyncio.Queue(maxsize=config.receivers)
        self._inflight: set[_Inflight] = set()
        self._to_delete: list[str] = []  # receipt handles of batches marked done, deleted by the next flush
        self._receivers: list[asyncio.Task[None]] = []
        self._heartbeat: asyncio.Task[None] | None = None
        self._backlog_task: asyncio.Task[None] | None = None
        self._backlog: int | None = None
        self._stopping = False
        self._healthy = True

    @property
    def ready(self) -> bool:
        return self._client is not None and not self._stopping and self._healthy

    @property
    def inflight(self) -> int:
        """Received messages not yet deleted or released."""
        return sum(len(f.handles) for f in self._inflight)

    def probe(self) -> Probe | None:
        return None  # a failing receive makes the source not ready; there is no separate broker check

    def lag(self) -> dict[str, int]:
        """The queue's backlog (visible messages not yet received by any consumer), once it has been read."""
        return {} if self._backlog is None else {self.queue_name: self._backlog}

    async def _backlog_loop(self) -> None:
        while True:
            try:
                response = await self._client.get_queue_attributes(
                    QueueUrl=self.config.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
                )
                self._backlog = int(response["Attributes"]["ApproximateNumberOfMessages"])
            except (asyncio.CancelledError, Exception) as exc:  # a metric only: log and try again next time
                reraise_if_cancelled(exc, self._stopping)
                log.debug("sqs.backlog_unavailable", source=self.name, error=repr(exc))
            await asyncio.sleep(self.config.backlog_poll_seconds)

    def _client_kwargs(self) -> dict[str, Any]:
        cfg = self.config
        kwargs: dict[str, Any] = {
            "region_name": cfg.region,
            "config": AioConfig(max_pool_connections=cfg.receivers + 8, retries={"mode": "standard"}),
        }
        if cfg.endpoint_url:
            kwargs["endpoint_url"] = cfg.endpoint_url
        if cfg.aws_access_key_id is not None and cfg.aws_secret_access_key is not None:
            kwargs["aws_access_key_id"] = cfg.aws_access_key_id.get_secret_value()
            kwargs["aws_secret_access_key"] = cfg.aws_secret_access_key.get_secret_value()
            if cfg.aws_session_token is not None:
                kwargs["aws_session_token"] = cfg.aws_session_token.get_secret_value()
        return kwargs

    async def start(self) -> None:
        self._stopping = False
        self._healthy = True
        self._stack = contextlib.AsyncExitStack()
        self._client = await self._stack.enter_async_context(
            self._session.create_client("sqs", **self._client_kwargs())
        )
        try:  # fail fast on a wrong queue URL or credentials
            await self._client.get_queue_attributes(
                QueueUrl=self.config.queue_url, AttributeNames=["QueueArn"]
            )
        except BaseException:
            self._client = None
            await self._stack.aclose()
            raise
        if self.config.extend_visibility:
            self._heartbeat = asyncio.create_task(self._heartbeat_loop(), name=f"sqs-heartbeat-{self.name}")
        if self.config.backlog_poll_seconds > 0:
            self._backlog_task = asyncio.create_task(self._backlog_loop(), name=f"sqs-backlog-{self.name}")
        log.info(
            "sqs.source_started", source=self.name, queue=self.queue_name, receivers=self.config.receivers,
            auth=await self._credential_method(),
        )

    async def _credential_method(self) -> str:
        """How the client got its credentials (``static`` from the config, else botocore's chain method such as
        ``assume-role-with-web-identity`` for IRSA or ``env``): names only, never key material."""
        if self.config.aws_access_key_id is not None:
            return "static"
        try:
            creds = await self._session.get_credentials()
        except Exception as exc:  # informational only
            return f"unknown ({type(exc).__name__})"
        return str(getattr(creds, "method", None) or "none")

    async def batches(self) -> AsyncGenerator[SourceBatch, None]:
        if self._client is None:
            raise RuntimeError(f"SQS source {self.name} is not started")
        if not self._receivers:
            self._receivers = [
                asyncio.create_task(self._receive_loop(), name=f"sqs-receive-{self.name}-{i}")
                for i in range(self.config.receivers)
            ]
        while not self._stopping:
            try:
                batch = await asyncio.wait_for(self._queue.get(), timeout=0.5)
            except TimeoutError:
                continue
            yield batch

    async def _receive_loop(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        retries = SQS_RECEIVE.starting_at(cfg.error_backoff_seconds).retries()
        budget = self._budget
        while not self._stopping:
            if budget is not None:
                await budget.wait_for_room()  # no receive while the memory budget is full
            try:
                response = await self._client.receive_message(
                    QueueUrl=cfg.queue_url,
                    MaxNumberOfMessages=cfg.max_messages,
                    WaitTimeSeconds=cfg.wait_time_seconds,
                    VisibilityTimeout=cfg.visibility_timeout,
                    MessageAttributeNames=["All"],
                )
            except (asyncio.CancelledError, Exception) as exc:
                reraise_if_cancelled(exc, self._stopping)
                self._healthy = False
                delay = retries.failed()
                log.warning("sqs.receive_failed", source=self.name, error=repr(exc), retry_in=delay)
                await asyncio.sleep(delay)
                continue
            self._healthy = True
            retries.succeeded()
            messages = response.get("Messages") or []
            if messages:
                batch = self._make_batch(messages, loop.time() + cfg.visibility_timeout)
                if budget is not None:
                    budget.charge("source", batch.nbytes)
                await self._queue.put(batch)

    def _make_batch(self, messages: Sequence[Mapping[str, Any]], deadline: float) -> SourceBatch:
        prefix = f"{self.queue_name}#"
        raw = [
            RawMessage(
                body=str(m.get("Body", "")).encode(),
                headers=_headers(m),
                source=self.name,
                position=prefix + str(m["MessageId"]),
            )
            for m in messages
        ]
        inflight = _Inflight(handles=[str(m["ReceiptHandle"]) for m in messages], deadline=deadline)
        self._inflight.add(inflight)

        def mark() -> None:
            self._mark_done(inflight)

        async def nack() -> None:
            await self._release_settled(inflight)

        return SourceBatch(messages=raw, source=self.name, release=Release(mark, self),
                           nbytes=batch_bytes(sum(len(m.body) for m in raw), len(raw)), nack=nack)

    def _mark_settled(self, inflight: _Inflight) -> bool:
        """Mark a batch settled (no more heartbeats); False if it already was (released by a nack or the stop)."""
        if inflight.settled:
            return False
        inflight.settled = True
        self._inflight.discard(inflight)
        return True

    def _mark_done(self, inflight: _Inflight) -> None:
        if not self._mark_settled(inflight):
            log.warning("sqs.ack_after_release", source=self.name, messages=len(inflight.handles),
                        note="already given back: will be redelivered")
            return
        self._to_delete.extend(inflight.handles)

    async def flush(self) -> None:
        """Delete every message of the batches marked done since the last call (``PositionWriter``)."""
        handles, self._to_delete = self._to_delete, []
        if not handles:
            return
        if self._client is None:
            log.warning("sqs.ack_after_stop", source=self.name, messages=len(handles))
            return
        await self._delete(handles)

    async def _release_settled(self, inflight: _Inflight) -> None:
        """Give a batch back to the queue now (visibility 0) instead of deleting it."""
        if self._mark_settled(inflight) and self._client is not None:
            await self._change_visibility(inflight.handles, 0)

    async def _delete(self, handles: Sequence[str]) -> None:
        pending = list(handles)
        retries = SQS_DELETE.retries()
        for attempt in range(self.config.delete_retries + 1):
            results = await asyncio.gather(*(self._delete_chunk(chunk) for chunk in _chunks(pending)))
            failures = [f for chunk_failures in results for f in chunk_failures]
            retry = [handle for handle, code, sender_fault in failures if not sender_fault]
            for _, code, sender_fault in failures:
                if sender_fault:
                    log.error("sqs.delete_rejected", source=self.name, code=code)
            if not retry:
                return
            if attempt < self.config.delete_retries:
                await asyncio.sleep(retries.failed())
            pending = retry
        log.error("sqs.delete_failed", source=self.name, messages=len(pending), note="will be redelivered")

    async def _delete_chunk(self, handles: Sequence[str]) -> list[tuple[str, str, bool]]:
        """Delete up to 10 messages; return (handle, code, sender_fault) of those that failed."""
        entries = [{"Id": f"m{i}", "ReceiptHandle": handle} for i, handle in enumerate(handles)]
        try:
            response = await self._client.delete_message_batch(
                QueueUrl=self.config.queue_url, Entries=entries
            )
        except Exception as exc:
            log.warning("sqs.delete_call_failed", source=self.name, error=repr(exc))
            return [(handle, type(exc).__name__, False) for handle in handles]
        by_id = {e["Id"]: e["ReceiptHandle"] for e in entries}
        return [
            (by_id[f["Id"]], str(f.get("Code", "")), bool(f.get("SenderFault", False)))
            for f in response.get("Failed") or []
        ]

    async def _change_visibility(self, handles: Sequence[str], seconds: int) -> set[str]:
        """Set the visibility of ``handles``; return the handles that failed."""

        async def chunk_call(chunk: Sequence[str]) -> set[str]:
            entries = [
                {"Id": f"m{i}", "ReceiptHandle": h, "VisibilityTimeout": seconds} for i, h in enumerate(chunk)
            ]
            try:
                response = await self._client.change_message_visibility_batch(
                    QueueUrl=self.config.queue_url, Entries=entries
                )
            except Exception as exc:
                log.warning("sqs.visibility_call_failed", source=self.name, error=repr(exc))
                return set(chunk)
            failed = response.get("Failed") or []
            if failed:
                log.warning("sqs.visibility_failed", source=self.name, codes=[f.get("Code") for f in failed])
            return {chunk[int(f["Id"][1:])] for f in failed}

        results = await asyncio.gather(*(chunk_call(c) for c in _chunks(list(handles))))
        return set().union(*results) if results else set()

    async def _heartbeat_loop(self) -> None:
        vt = self.config.visibility_timeout
        tick = max(0.2, vt / 4)
        threshold = max(vt / 2, 2 * tick)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            due = [f for f in self._inflight if not f.settled and f.deadline - now < threshold]
            if not due:
                continue
            handles = [h for f in due for h in f.handles if h not in f.lost]
            try:
                failed = await self._change_visibility(handles, vt)
            except (asyncio.CancelledError, Exception) as exc:  # never let the heartbeat die; the next tick retries
                reraise_if_cancelled(exc, self._stopping)
                log.warning("sqs.heartbeat_failed", source=self.name, error=repr(exc))
                continue
            for f in due:
                f.deadline = now + vt
                f.lost.update(h for h in f.handles if h in failed)
            log.debug("sqs.visibility_extended", source=self.name, messages=len(handles), failed=len(failed))

    async def stop(self) -> None:
        """Stop receiving, release every unsettled batch, close the client."""
        self._stopping = True
        tasks = [*self._receivers, *(t for t in (self._heartbeat, self._backlog_task) if t is not None)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._receivers, self._heartbeat, self._backlog_task, self._backlog = [], None, None, None
        unsettled = list(self._inflight)
        for inflight in unsettled:
            inflight.settled = True
        self._inflight.clear()
        handles = [h for f in unsettled for h in f.handles]
        if handles and self._client is not None:
            await self._change_visibility(handles, 0)
        while not self._queue.empty():
            dropped = self._queue.get_nowait()  # released above; give its bytes back to the budget
            if self._budget is not None:
                self._budget.refund("source", dropped.nbytes)
        self._client = None
        await self._stack.aclose()
        log.info("sqs.source_stopped", source=self.name, released=len(handles))


def _build(config: SqsSourceConfig, resources: SourceResources) -> SqsSource:
    return SqsSource(config, budget=resources.budget)


CONNECTOR = register(SourceConnector(
    tag="sqs",
    config=SqsSourceConfig,
    build=_build,
    summary="SQS queue fed by EventBridge rules (raw or SNS-wrapped bodies).",
))
