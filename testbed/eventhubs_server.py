"""A small AMQP 1.0 server speaking the part of the Azure Event Hubs protocol the ``azure-eventhub`` SDK uses.

For tests and the local stack (there is no Event Hubs emulator to run here). Supported:

- SASL ANONYMOUS over plain TCP: the SDK authenticates with SASL ANONYMOUS and puts a token on ``$cbs``;
  ``UseDevelopmentEmulator=true`` in the connection string makes it drop TLS and use the port of
  ``Endpoint=sb://host:port`` (default 5672). For TLS (Entra ID tokens are never sent in clear), put
  ``testbed.tls.TlsProxy`` in front and point the SDK's ``custom_endpoint_address`` at it.
- ``$cbs`` put-token: every token is recorded in ``put_tokens`` (type, audience, token). SAS tokens are
  accepted without a signature check; Entra ID tokens (type ``jwt``) only when listed in ``accepted_jwts``
  (status 401 otherwise, which the SDK raises as an authentication error).
- ``$management`` READ of ``com.microsoft:eventhub`` and
  ``com.microsoft:partition`` (the SDK's ``get_eventhub_properties`` / ``get_partition_ids`` /
  ``get_partition_properties``).
- Consumers on ``<hub>/ConsumerGroups/<cg>/Partitions/<id>`` with the ``apache.org:selector-filter:string``
  position filter (offset, sequence number, enqueued time, ``@latest``) and owner-level (epoch) exclusivity:
  a receiver with an owner level >= the current one steals the link (``amqp:link:stolen``).
- Receiver runtime metrics: every delivery carries the ``last_enqueued_*`` delivery annotations the SDK
  reads for ``track_last_enqueued_event_properties`` (the real service sends them only when the receiver asks
  for ``com.microsoft:enable-receiver-runtime-metric``; proton 0.40 does not expose a link's desired
  capabilities, so this server always sends them, which a receiver that did not ask ignores).
- Producers on ``<hub>`` (partition by key hash, else round robin) and ``<hub>/Partitions/<id>``, single
  events and batches.

Proton omits trailing null performative fields, which the SDK's pyamqp cannot parse; clients therefore
connect through ``amqp_padding.PaddingProxy`` (the public port), which relays to proton on an internal port.

Run: ``python -m testbed.eventhubs_server --port 5672 --hub NAME --partitions 2``, or in process with
``EventHubsServer(...).start()`` / ``.stop()`` (it runs the proton reactor in a daemon thread).
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlparse

import structlog
from proton import Condition, Delivery, Endpoint, Message, symbol
from proton.handlers import IncomingMessageHandler, MessagingHandler
from proton.reactor import ApplicationEvent, Container, EventInjector

from testbed.amqp_padding import PaddingProxy
from testbed.eventhubs_store import (
    EventStore,
    StoredEvent,
    encode_event,
    start_index,
    unpack_batch,
    with_runtime_metrics,
)
from testbed.servers import free_port

log = structlog.get_logger(__name__)

SELECTOR_FILTER = symbol("apache.org:selector-filter:string")
EPOCH = symbol("com.microsoft:epoch")
SAS_KEY_NAME = "RootManageSharedAccessKey"
SAS_KEY = "SAS_KEY_VALUE"




def emulator_connection_string(host: str, port: int, hub: str | None = None) -> str:
    """SDK connection string for a server on ``host:port``; ``UseDevelopmentEmulator=true`` means plain AMQP
    (no TLS) on exactly that port. Any key works: the server accepts every token."""
    entity = f"EntityPath={hub};" if hub else ""
    return (
        f"Endpoint=sb://{host}:{port};SharedAccessKeyName={SAS_KEY_NAME};"
        f"SharedAccessKey={SAS_KEY};UseDevelopmentEmulator=true;{entity}"
    )


def _path(address: str | None) -> str:
    if not address:
        return ""
    if "://" in address:
        return urlparse(address).path.lstrip("/")
    return address.lstrip("/")


def _data_object(data: Any) -> Any:
    data.rewind()
    return data.get_object() if data.next() is not None else None


def _selector(filters: Any) -> str | None:
    if not isinstance(filters, Mapping):
        return None
    entry = filters.get(SELECTOR_FILTER)
    value = getattr(entry, "value", entry)
    if isinstance(value, bytes):
        return value.decode()
    return str(value) if value is not None else None


@dataclass(frozen=True)
class PutToken:
    """One ``$cbs`` put-token request as the server saw it, and whether it was accepted."""

    type: str
    audience: str
    token: str
    accepted: bool


class _Handler(MessagingHandler):  # type: ignore[misc]
    """All AMQP callbacks; runs only on the reactor thread."""

    def __init__(self, server: EventHubsServer) -> None:
        super().__init__(prefetch=100, auto_accept=False, auto_settle=True)
        # Incoming transfers are handled in on_delivery from raw bytes (batches need the raw sections).
        self.handlers = [
            h for h in cast(list[Any], self.handlers) if not isinstance(h, IncomingMessageHandler)
        ]
        self.server = server
        self.store = server.store
        self.consumers: dict[tuple[str, str, str], list[Any]] = {}
        self.consumers_lock = threading.Lock()  # receivers() reads it from other threads
        self.acceptor: Any = None

    # -- lifecycle -----------------------------------------------------------------------------------------
    def on_start(self, event: Any) -> None:
        self.acceptor = event.container.listen(f"127.0.0.1:{self.server.internal_port}")
        self.server.listening.set()

    def on_connection_bound(self, event: Any) -> None:
        sasl = event.transport.sasl()
        sasl.allow_insecure_mechs = True
        sasl.allowed_mechs("ANONYMOUS")  # proton's builtin SASL cannot serve PLAIN; the SDK sends ANONYMOUS

    def on_transport_error(self, event: Any) -> None:
        # pyamqp detaches links after ending their session when it closes ("no such channel"): not worth an
        # ERROR line per client shutdown; the connection is being torn down by the client anyway.
        condition = event.transport.condition
        log.debug("eventhubs_server.transport_error", condition=str(condition) if condition else None)
        if condition is not None and condition.name in self.fatal_conditions:
            event.connection.close()

    def on_eh_publish(self, event: Any) -> None:
        hub, partition_id, encoded, done = event.subject
        try:
            done.append(self.store.append(hub, partition_id, encoded))
        finally:
            done_event: threading.Event = done[0]
            done_event.set()
        self._pump_partition(hub)

    def on_eh_stop(self, event: Any) -> None:
        if self.acceptor is not None:
            self.acceptor.close()
        self.server._container.stop()

    # -- links -----------------------------------------------------------------------------------------------
    def on_link_remote_open(self, event: Any) -> None:
        link = event.link
        if not (link.state & Endpoint.LOCAL_UNINIT):
            return
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        error = self._classify(link)
        link.open()
        if error is not None:
            link.close()
            return
        if link.eh_kind == "consumer":
            self._claim(link)

    def _classify(self, link: Any) -> Condition | None:
        link.eh_kind = "unknown"
        address = _path(link.remote_source.address if link.is_sender else link.remote_target.address)
        if address in ("$cbs", "$management"):
            link.eh_kind = "reply" if link.is_sender else "request"
            link.eh_node = address
            return None
        parts = address.split("/")
        hub = parts[0]
        if not self.store.has_hub(hub):
            return self._reject(link, "amqp:not-found", f"The messaging entity '{hub}' could not be found.")
        ids = self.store.hub_partitions[hub]
        if link.is_sender:
            if len(parts) != 5 or parts[1].lower() != "consumergroups" or parts[3].lower() != "partitions":
                return self._reject(link, "amqp:not-found", f"unsupported consumer address {address!r}")
            if parts[4] not in ids:
                return self._reject(link, "amqp:not-found", f"partition {parts[4]!r} not in {ids}")
            try:
                selector = _selector(_data_object(link.remote_source.filter))
                start = start_index(self.store.snapshot(hub, parts[4]), selector)
            except ValueError as exc:
                return self._reject(link, "amqp:not-implemented", str(exc))
            props = link.remote_properties or {}
            log.debug("eventhubs_server.receiver_attached", address=address, selector=selector, start=start)
            link.eh_kind = "consumer"
            link.eh_key = (hub, parts[2].lower(), parts[4])
            link.eh_cursor = start
            link.eh_epoch = props.get(EPOCH)
            link.eh_tag = 0
            return None
        if len(parts) == 1:
            partition_id = None
        elif len(parts) == 3 and parts[1].lower() == "partitions" and parts[2] in ids:
            partition_id = parts[2]
        else:
            return self._reject(link, "amqp:not-found", f"unsupported producer address {address!r}")
        link.eh_kind = "producer"
        link.eh_hub = hub
        link.eh_partition = partition_id
        return None

    @staticmethod
    def _reject(link: Any, name: str, description: str) -> Condition:
        condition = Condition(name, description)
        link.condition = condition
        log.info("eventhubs_server.link_rejected", reason=description)
        return condition

    def _claim(self, link: Any) -> None:
        """Owner-level (epoch) exclusivity: the higher (or equal, newer) owner level wins the partition."""
        key = link.eh_key
        current = [c for c in self.consumers.get(key, []) if not (c.state & Endpoint.LOCAL_CLOSED)]
        epoch = link.eh_epoch
        if epoch is not None:
            if any(c.eh_epoch is not None and c.eh_epoch > epoch for c in current):
                link.condition = Condition("amqp:link:stolen", "a receiver with a higher owner level exists")
                link.close()
                return
            for other in current:
                other.condition = Condition("amqp:link:stolen", "a receiver with an owner level took over")
                other.close()
            current = []
        elif any(c.eh_epoch is not None for c in current):
            link.condition = Condition("amqp:link:stolen", "an exclusive (owner level) receiver exists")
            link.close()
            return
        current.append(link)
        with self.consumers_lock:
            self.consumers[key] = current
        self._pump(link)

    def on_link_closed(self, event: Any) -> None:
        self._forget(event.link)

    def on_link_remote_close(self, event: Any) -> None:
        link = event.link
        self._forget(link)
        if not (link.state & Endpoint.LOCAL_CLOSED):
            link.close()

    def on_transport_closed(self, event: Any) -> None:
        # A client that vanished (socket dropped, process killed) never detaches: forget its receivers.
        connection = event.connection
        with self.consumers_lock:
            for key, links in list(self.consumers.items()):
                self.consumers[key] = [c for c in links if c.connection != connection]

    def _forget(self, link: Any) -> None:
        if getattr(link, "eh_kind", None) == "consumer":
            with self.consumers_lock:
                links = self.consumers.get(link.eh_key, [])
                self.consumers[link.eh_key] = [c for c in links if c != link]

    # -- deliveries -----------------------------------------------------------------------------------------
    def on_sendable(self, event: Any) -> None:
        if getattr(event.link, "eh_kind", None) == "consumer":
            self._pump(event.link)

    def _pump_partition(self, hub: str) -> None:
        for (h, _cg, _pid), links in list(self.consumers.items()):
            if h == hub:
                for link in list(links):
                    self._pump(link)

    def _pump(self, link: Any) -> None:
        if link.state & (Endpoint.LOCAL_CLOSED | Endpoint.REMOTE_CLOSED):
            return
        hub, _cg, partition_id = link.eh_key
        while link.credit > 0:
            stored: StoredEvent | None = self.store.event_at(hub, partition_id, link.eh_cursor)
            if stored is None:
                break
            last = self.store.last_event(hub, partition_id) or stored
            link.eh_tag += 1
            link.delivery(str(link.eh_tag).encode())
            link.stream(with_runtime_metrics(stored, last, int(time.time() * 1000)))
            link.advance()
            link.eh_cursor += 1

    def on_delivery(self, event: Any) -> None:
        dlv = event.delivery
        link = dlv.link
        if not link.is_receiver:
            return
        if dlv.aborted:
            dlv.settle()
            return
        if not dlv.readable or dlv.partial:
            return
        raw = bytes(link.recv(dlv.pending))
        link.advance()
        try:
            if link.eh_kind == "producer":
                stored = self.store.append(link.eh_hub, link.eh_partition, unpack_batch(raw))
                self._pump_partition(link.eh_hub)
                log.debug("eventhubs_server.enqueued", hub=link.eh_hub, count=len(stored))
            elif link.eh_kind == "request":
                request = Message()
                request.decode(raw)
                self._answer(link, request)
            dlv.update(Delivery.ACCEPTED)
        except Exception as exc:  # a bad transfer is rejected, the server keeps going
            log.warning("eventhubs_server.delivery_rejected", error=repr(exc))
            dlv.local.condition = Condition("amqp:internal-error", repr(exc))
            dlv.update(Delivery.REJECTED)
        dlv.settle()

    def _answer(self, link: Any, request: Message) -> None:
        props: dict[str, Any] = dict(request.properties or {})
        operation = props.get("operation")
        status, description, body = 200, "OK", None
        if link.eh_node == "$cbs":
            if operation != "put-token":
                status, description = 400, f"unsupported $cbs operation {operation!r}"
            elif not self.server.check_put_token(str(props.get("type")), str(props.get("name")), request.body):
                status, description = 401, "Unauthorized: the token was not accepted"
        elif operation != "READ":
            status, description = 400, f"unsupported $management operation {operation!r}"
        else:
            hub = str(props.get("name", ""))
            kind = props.get("type")
            partition_id = str(props.get("partition", ""))
            if not self.store.has_hub(hub):
                status, description = 404, f"The messaging entity '{hub}' could not be found."
            elif kind == "com.microsoft:eventhub":
                body = self.store.hub_info(hub)
            elif kind == "com.microsoft:partition" and partition_id in self.store.hub_partitions[hub]:
                body = self.store.partition_info(hub, partition_id)
            elif kind == "com.microsoft:partition":
                status, description = 404, f"partition {partition_id!r} not found"
            else:
                status, description = 400, f"unsupported type {kind!r}"
        reply = Message(
            body=body,
            correlation_id=request.id,
            address=request.reply_to,
            properties={"status-code": status, "status-description": description},
        )
        sender = self._reply_link(link, request.reply_to)
        if sender is None:
            log.warning("eventhubs_server.no_reply_link", node=link.eh_node)
            return
        sender.send(reply)

    @staticmethod
    def _reply_link(request_link: Any, reply_to: str | None) -> Any:
        fallback = None
        candidate = request_link.connection.link_head(Endpoint.LOCAL_ACTIVE)
        while candidate is not None:
            if getattr(candidate, "eh_kind", None) == "reply" and candidate.eh_node == request_link.eh_node:
                if reply_to and candidate.remote_target.address == reply_to:
                    return candidate
                if fallback is None or candidate.session == request_link.session:
                    fallback = candidate
            candidate = candidate.next(Endpoint.LOCAL_ACTIVE)
        return fallback


class EventHubsServer:
    """The Event Hubs test server, run in a background thread; ``hubs`` maps hub name to partition count."""

    def __init__(self, hubs: Mapping[str, int] | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.internal_port = free_port()
        self._proxy = PaddingProxy(host, self.port, ("127.0.0.1", self.internal_port))
        self.store = EventStore({"hub": 2} if hubs is None else hubs)
        self.listening = threading.Event()
        self._injector: Any = None
        self._container: Any = None
        self._handler: _Handler | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.accepted_jwts: set[str] = set()
        self.put_tokens: list[PutToken] = []

    def check_put_token(self, token_type: str, audience: str, token: object) -> bool:
        """Record a put-token and decide it: SAS tokens pass, JWTs only when in ``accepted_jwts``."""
        text = token.decode() if isinstance(token, bytes) else str(token)
        accepted = text in self.accepted_jwts if token_type == "jwt" else True
        self.put_tokens.append(PutToken(token_type, audience, text, accepted))
        return accepted

    def connection_string(self, hub: str | None = None) -> str:
        """An SDK connection string for this server (``UseDevelopmentEmulator=true``: plain AMQP)."""
        return emulator_connection_string(self.host, self.port, hub)

    def start(self, timeout: float = 10.0) -> EventHubsServer:
        """Start listening; returns once the port accepts connections."""
        self._handler = _Handler(self)
        self._container = Container(self._handler)
        self._injector = EventInjector()
        self._container.selectable(self._injector)
        self._container.container_id = f"eventhubs-test-{uuid.uuid4().hex[:8]}"
        self._thread = threading.Thread(target=self._run, name="eventhubs-server", daemon=True)
        self._thread.start()
        if not self.listening.wait(timeout) or self._error is not None:
            raise RuntimeError(f"Event Hubs test server did not start: {self._error!r}")
        try:
            self._proxy.start()
        except OSError:
            self._injector.trigger(ApplicationEvent("eh_stop"))
            self._thread.join(timeout)
            self._thread = None
            raise
        log.info("eventhubs_server.listening", host=self.host, port=self.port, hubs=self.store.hub_partitions)
        return self

    def _run(self) -> None:
        try:
            self._container.run()
        except BaseException as exc:
            self._error = exc
            log.error("eventhubs_server.crashed", error=repr(exc))
            self.listening.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Close every connection and the listener, and join the reactor thread."""
        if self._thread is None:
            return
        self._proxy.stop()
        self._injector.trigger(ApplicationEvent("eh_stop"))
        self._thread.join(timeout)
        self._injector.close()
        self._thread = None

    def publish(
        self,
        hub: str,
        bodies: Sequence[bytes],
        partition_id: str | None = None,
        properties: Mapping[str, Any] | None = None,
        partition_key: str | None = None,
        timeout: float = 10.0,
    ) -> list[StoredEvent]:
        """Enqueue events directly (no AMQP client needed), as a producer would; returns them as stored."""
        encoded = [encode_event(body, properties, partition_key) for body in bodies]
        done: list[Any] = [threading.Event()]
        if self._injector is None or self._thread is None:
            raise RuntimeError("publish() needs a started server")
        self._injector.trigger(ApplicationEvent("eh_publish", subject=(hub, partition_id, encoded, done)))
        if not done[0].wait(timeout) or len(done) < 2:
            raise RuntimeError("publish failed")
        stored: list[StoredEvent] = done[1]
        return stored

    def create_hub(self, name: str, partitions: int = 2) -> str:
        """Add an event hub at run time (tests use one hub each); returns its name."""
        self.store.add_hub(name, partitions)
        return name

    def receivers(self, hub: str) -> dict[str, int]:
        """Open receiver links per partition of the hub (``{partition_id: count}``), for tests to sync on."""
        counts: dict[str, int] = {}
        if self._handler is None:
            return counts
        with self._handler.consumers_lock:
            items = list(self._handler.consumers.items())
        for (h, _cg, pid), links in items:
            if h == hub and links:
                counts[pid] = counts.get(pid, 0) + len(links)
        return counts

    def events(self, hub: str, partition_id: str) -> list[StoredEvent]:
        """The partition's events so far."""
        return self.store.snapshot(hub, partition_id)

    def __enter__(self) -> EventHubsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry point: serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description="Event Hubs AMQP test server (in-memory)")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=5672)
    parser.add_argument("--hub", action="append", help="event hub name (repeatable; default: hub)")
    parser.add_argument("--partitions", type=int, default=2, help="partitions per hub")
    args = parser.parse_args(argv)
    hubs = {name: args.partitions for name in (args.hub or ["hub"])}
    server = EventHubsServer(hubs, host=args.host, port=args.port)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    server.start()
    shown_host = "localhost" if args.host in ("0.0.0.0", "") else args.host
    print(f"Event Hubs test server on {args.host}:{args.port}, hubs {hubs}", flush=True)
    print(f"connection string: {emulator_connection_string(shown_host, args.port)}", flush=True)
    stopping.wait()
    server.stop()


if __name__ == "__main__":
    main()
