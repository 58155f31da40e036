"""The Event Hubs AMQP test server, driven by the real azure-eventhub SDK (pure-python pyamqp transport)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from azure.eventhub import EventData
from azure.eventhub._pyamqp._decode import decode_frame
from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient
from azure.eventhub.exceptions import EventHubError
from proton import Message

from testbed.amqp_padding import pad_frame
from testbed.eventhubs_server import EventHubsServer, emulator_connection_string, free_port
from testbed.eventhubs_store import EventStore, encode_event, parse_selector, start_index, unpack_batch
from testbed.waiting import wait_for

TIMEOUT = 20.0


async def receive(conn: str, partition_id: str, count: int, **kwargs: Any) -> list[EventData]:
    """Receive ``count`` events from one partition with a plain (non load-balanced) consumer."""
    got: list[EventData] = []
    done = asyncio.Event()

    async def on_event(_context: Any, event: EventData | None) -> None:
        if event is not None:
            got.append(event)
            if len(got) >= count:
                done.set()

    client = EventHubConsumerClient.from_connection_string(conn, consumer_group="$Default")
    task = asyncio.create_task(client.receive(on_event, partition_id=partition_id, **kwargs))
    try:
        await asyncio.wait_for(done.wait(), TIMEOUT)
    finally:
        await client.close()
        task.cancel()
    return got


def body(event: EventData) -> bytes:
    """The event's data body as bytes."""
    return b"".join(event.body)


@pytest.fixture
def hub(eventhub: Callable[..., str], eventhubs_server: EventHubsServer) -> tuple[str, str]:
    """A fresh two-partition hub and its connection string."""
    name = eventhub(2)
    return name, eventhubs_server.connection_string(name)


async def test_management_reads_report_hub_and_partition_properties(hub: tuple[str, str]) -> None:
    """get_eventhub_properties / get_partition_properties reflect the hub's partitions and what was sent."""
    name, conn = hub
    async with EventHubProducerClient.from_connection_string(conn) as producer:
        props = await producer.get_eventhub_properties()
        assert (props["eventhub_name"], props["partition_ids"]) == (name, ["0", "1"])
        assert await producer.get_partition_ids() == ["0", "1"]
        empty = await producer.get_partition_properties("1")
        assert (empty["is_empty"], empty["last_enqueued_sequence_number"], empty["last_enqueued_offset"]) == (
            True, -1, "-1",
        )  # fmt: skip
        await producer.send_event(EventData(b"x"), partition_id="1")
        await producer.send_event(EventData(b"y"), partition_id="1")
        full = await producer.get_partition_properties("1")
    assert (full["id"], full["is_empty"], full["beginning_sequence_number"]) == ("1", False, 0)
    assert full["last_enqueued_sequence_number"] == 1
    assert int(full["last_enqueued_offset"]) > 0
    assert full["last_enqueued_time_utc"] > dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)


async def test_unknown_hub_is_reported_as_an_error(eventhubs_server: EventHubsServer) -> None:
    """A management read of a hub that does not exist fails instead of inventing one."""
    conn = eventhubs_server.connection_string("no-such-hub")
    async with EventHubProducerClient.from_connection_string(conn, retry_total=0) as producer:
        with pytest.raises(EventHubError):
            await producer.get_eventhub_properties()


async def test_producer_routes_by_partition_id_partition_key_and_round_robin(
    hub: tuple[str, str], eventhubs_server: EventHubsServer
) -> None:
    """Sends to a partition land there; one partition key maps to one partition; keyless sends spread."""
    name, conn = hub
    async with EventHubProducerClient.from_connection_string(conn) as producer:
        await producer.send_event(EventData(b"to-1"), partition_id="1")
        for body in (b"k1", b"k2", b"k3"):
            await producer.send_event(EventData(body), partition_key="subject-a")
        await producer.send_event(EventData(b"rr1"))
        await producer.send_event(EventData(b"rr2"))
    bodies = {p: [e.body for e in eventhubs_server.events(name, p)] for p in ("0", "1")}
    assert b"to-1" in bodies["1"]
    keyed = [p for p in ("0", "1") if b"k1" in bodies[p]]
    assert len(keyed) == 1 and [b for b in bodies[keyed[0]] if b.startswith(b"k")] == [b"k1", b"k2", b"k3"]
    assert {p for p in ("0", "1") if {b"rr1", b"rr2"} & set(bodies[p])} == {"0", "1"}


async def test_received_events_carry_broker_annotations_properties_and_body(
    hub: tuple[str, str], eventhubs_server: EventHubsServer
) -> None:
    """Events arrive with sequence number, offset, enqueued time, partition key, properties and body."""
    name, conn = hub
    async with EventHubProducerClient.from_connection_string(conn) as producer:
        batch = await producer.create_batch(partition_key="subject-b")
        for i in range(3):
            event = EventData(f"body-{i}")
            event.properties = {"n": i, "kind": "ml"}
            batch.add(event)
        await producer.send_batch(batch)
    partition = next(p for p in ("0", "1") if eventhubs_server.events(name, p))
    stored = eventhubs_server.events(name, partition)
    got = await receive(conn, partition, 3, starting_position="-1")
    assert [e.body_as_str() for e in got] == ["body-0", "body-1", "body-2"]
    assert [e.sequence_number for e in got] == [0, 1, 2]
    assert [e.offset for e in got] == [str(s.offset) for s in stored]
    assert all(e.partition_key == b"subject-b" for e in got)
    assert got[1].properties == {b"n": 1, b"kind": b"ml"}
    assert all(abs((e.enqueued_time - dt.datetime.now(dt.UTC)).total_seconds()) < 60 for e in got)


async def test_consumer_position_filters_offset_sequence_time_and_latest(
    hub: tuple[str, str], eventhubs_server: EventHubsServer
) -> None:
    """The selector filter starts a receiver after an offset, at a sequence number, after a time, at end."""
    name, conn = hub
    first = eventhubs_server.publish(name, [b"a", b"b", b"c"], partition_id="0")
    await asyncio.sleep(0.05)
    later = eventhubs_server.publish(name, [b"d"], partition_id="0")
    by_offset = await receive(conn, "0", 2, starting_position=str(first[1].offset))
    assert [body(e) for e in by_offset] == [b"c", b"d"]
    by_sequence = await receive(conn, "0", 2, starting_position=2, starting_position_inclusive=True)
    assert [body(e) for e in by_sequence] == [b"c", b"d"]
    since = dt.datetime.fromtimestamp((later[0].enqueued_time_ms - 1) / 1000, dt.UTC)
    by_time = await receive(conn, "0", 1, starting_position=since)
    assert [body(e) for e in by_time] == [b"d"]

    async def publish_when_attached() -> None:
        await wait_for(lambda: eventhubs_server.receivers(name).get("0", 0), within=20, what="the receiver attached")
        eventhubs_server.publish(name, [b"e"], partition_id="0")

    publisher = asyncio.create_task(publish_when_attached())
    latest = await receive(conn, "0", 1, starting_position="@latest")
    await publisher
    assert [body(e) for e in latest] == [b"e"]


async def test_higher_owner_level_receiver_steals_the_partition(
    hub: tuple[str, str], eventhubs_server: EventHubsServer
) -> None:
    """An exclusive receiver with a higher owner level disconnects the older one (amqp:link:stolen)."""
    name, conn = hub
    errors: list[Exception] = []
    got: list[bytes] = []

    async def on_event(_context: Any, event: EventData | None) -> None:
        if event is not None:
            got.append(event.body_as_str().encode())

    async def on_error(_context: Any, error: Exception) -> None:
        errors.append(error)

    low = EventHubConsumerClient.from_connection_string(conn, consumer_group="$Default")
    high = EventHubConsumerClient.from_connection_string(conn, consumer_group="$Default")
    low_task = asyncio.create_task(
        low.receive(on_event, partition_id="0", owner_level=1, on_error=on_error, starting_position="@latest")
    )
    try:
        await wait_for(lambda: eventhubs_server.receivers(name).get("0") == 1, within=20, what="the receiver attached")
        high_task = asyncio.create_task(
            high.receive(on_event, partition_id="0", owner_level=2, starting_position="@latest")
        )
        await wait_for(lambda: errors, within=20, what="the lower owner level receiver disconnected")
        text = repr(errors[0]).lower()
        assert "stolen" in text or "disconnect" in text
        assert eventhubs_server.receivers(name) == {"0": 1}
    finally:
        await low.close()
        await high.close()
        low_task.cancel()
        high_task.cancel()


async def test_publish_api_stores_events_with_growing_offsets(eventhubs_server: EventHubsServer) -> None:
    """The in-process publish API enqueues like a producer: consecutive sequence numbers, byte offsets."""
    name = eventhubs_server.create_hub("api-hub", 1)
    stored = eventhubs_server.publish(name, [b"one", b"two"], properties={"p": "v"}, partition_key="k")
    assert [s.sequence_number for s in stored] == [0, 1]
    assert stored[0].offset == 0 < stored[1].offset
    message = stored[1].message()
    assert (stored[1].body, message.properties, stored[1].partition_key) == (b"two", {"p": "v"}, "k")
    assert eventhubs_server.events(name, "0") == stored


def test_selector_parsing_and_start_index() -> None:
    """Selector filters map to the first matching event index (exclusive >, inclusive >=, @latest = end)."""
    server_events = EventStore({"h": 1})
    stored = server_events.append("h", "0", [encode_event(b"x"), encode_event(b"y"), encode_event(b"z")])
    assert parse_selector("amqp.annotation.x-opt-offset > '-1'") == ("x-opt-offset", ">", "-1")
    assert start_index(stored, "amqp.annotation.x-opt-offset > '-1'") == 0
    assert start_index(stored, f"amqp.annotation.x-opt-offset > '{stored[0].offset}'") == 1
    assert start_index(stored, "amqp.annotation.x-opt-sequence-number >= '2'") == 2
    assert start_index(stored, "amqp.annotation.x-opt-offset > '@latest'") == 3
    assert start_index(stored, None) == 0
    with pytest.raises(ValueError, match="unsupported"):
        parse_selector("amqp.annotation.x-opt-nothing > '1'")


def test_batch_messages_are_split_and_plain_messages_kept() -> None:
    """A batch transfer (data sections holding messages) yields its events; a plain message stays one."""
    inner = [encode_event(b"a"), encode_event(b"b", {"k": "v"})]
    sections = b"".join(b"\x00\x53\x75\xa0" + bytes([len(i)]) + i for i in inner)
    assert unpack_batch(sections) == inner
    plain = encode_event(b'{"json": true}')
    assert unpack_batch(plain) == [plain]
    assert Message(body=b"v").encode() != plain  # an amqp-value body is not mistaken for a batch either
    assert unpack_batch(bytes(Message(body=b"v").encode())) == [bytes(Message(body=b"v").encode())]


def test_pad_frame_fills_every_performative_field() -> None:
    """Short performative lists are padded with nulls to the field count pyamqp indexes by position."""
    fields = b"\x40\x43" + b"\x70\x00\x01\x00\x00" * 2  # begin: remote-channel .. outgoing-window
    body = b"\x00\x53\x11" + bytes([0xC0, len(fields) + 1, 4]) + fields
    begin = (8 + len(body)).to_bytes(4, "big") + b"\x02\x00\x00\x00" + body
    padded = pad_frame(begin)
    frame_type, decoded = decode_frame(memoryview(padded)[8:])
    assert (frame_type, len(decoded)) == (0x11, 8)
    assert decoded[:4] == [None, 0, 65536, 65536] and decoded[4:] == [None] * 4
    assert int.from_bytes(padded[:4], "big") == len(padded)
    assert pad_frame(padded) == padded


@pytest.mark.broker
async def test_command_line_server_serves_the_sdk_and_stops_on_sigterm() -> None:
    """``python -m testbed.eventhubs_server`` serves the given hub and partitions, exits on SIGTERM."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "testbed.eventhubs_server", "--host", "127.0.0.1"],
        *["--port", str(port), "--hub", "cli", "--partitions", "3"],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    seen = b""
    try:
        while b"connection string" not in seen:
            line = await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)
            assert line, f"server exited early: {seen.decode(errors='replace')}"
            seen += line
        conn = emulator_connection_string("127.0.0.1", port, "cli")
        async with EventHubProducerClient.from_connection_string(conn) as producer:
            assert await producer.get_partition_ids() == ["0", "1", "2"]
    finally:
        proc.terminate()
        rest = await asyncio.wait_for(proc.stdout.read(), TIMEOUT)
        await asyncio.wait_for(proc.wait(), TIMEOUT)
    assert proc.returncode == 0, (seen + rest).decode(errors="replace")


async def test_large_events_and_big_batches_cross_multi_frame_transfers(hub: tuple[str, str]) -> None:
    """An event larger than a frame and a batch of hundreds of events round-trip byte for byte."""
    _name, conn = hub
    big = bytes(range(256)) * 3000
    async with EventHubProducerClient.from_connection_string(conn) as producer:
        await producer.send_event(EventData(big), partition_id="0")
        batch = await producer.create_batch(partition_id="0")
        for i in range(300):
            batch.add(EventData(b"%04d" % i * 100))
        await producer.send_batch(batch)
    got = await receive(conn, "0", 301, starting_position="-1")
    assert body(got[0]) == big
    assert [body(e) for e in got[1:]] == [b"%04d" % i * 100 for i in range(300)]


@pytest.mark.broker
def test_stop_closes_the_listener_and_the_reactor_thread() -> None:
    """stop() closes the public port and joins the reactor thread, so servers can come and go in tests."""
    before = set(threading.enumerate())
    server = EventHubsServer({"h": 1}).start()
    with socket.create_connection(("127.0.0.1", server.port), timeout=2):
        pass
    started = set(threading.enumerate()) - before
    assert {t.name for t in started} == {"eventhubs-server", "amqp-padding-proxy"}
    server.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=2):
        pass
    assert not any(t.is_alive() for t in started)


_KILLED_CONSUMER = """
import asyncio, sys
from azure.eventhub.aio import EventHubConsumerClient

async def main():
    client = EventHubConsumerClient.from_connection_string(sys.argv[1], consumer_group="$Default")
    async def on_event(context, event):
        pass
    await client.receive(on_event, partition_id="0", owner_level=5, starting_position="-1")

asyncio.run(main())
"""


async def test_receivers_of_a_killed_client_are_forgotten(
    hub: tuple[str, str], eventhubs_server: EventHubsServer
) -> None:
    """A consumer process killed with SIGKILL leaves no receiver behind to block a plain receiver."""
    name, conn = hub
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", _KILLED_CONSUMER, conn)
    try:
        await wait_for(lambda: eventhubs_server.receivers(name).get("0"), within=20, what="the receiver attached")
        assert eventhubs_server.receivers(name) == {"0": 1}
    finally:
        proc.kill()
        await proc.wait()
    await wait_for(lambda: not eventhubs_server.receivers(name), within=10, what="the killed client's receiver gone")
    eventhubs_server.publish(name, [b"after"], partition_id="0")
    got = await receive(conn, "0", 1, starting_position="-1")
    assert [body(e) for e in got] == [b"after"]
