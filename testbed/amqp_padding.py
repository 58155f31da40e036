"""A TCP front that pads AMQP performatives to their full field count, for the SDK's pure-python AMQP stack.

Proton (as the AMQP 1.0 spec allows) omits trailing null fields of performative lists; the
``azure-eventhub`` SDK's ``pyamqp`` reads performatives by position (``frame[7]`` of a begin,
``frame[13]`` of an attach, the payload of a transfer at ``frame[11]``) and fails on shortened lists.
The real service always sends every field. This front relays bytes both ways and rewrites each
server-to-client frame's performative list by appending nulls (a spec-neutral change), leaving the
payload untouched.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger(__name__)

# descriptor code -> number of fields of the performative (AMQP 1.0 sections 2.7 and 5.3).
FULL_FIELDS: dict[int, int] = {
    0x10: 10,  # open
    0x11: 8,  # begin
    0x12: 14,  # attach
    0x13: 11,  # flow
    0x14: 11,  # transfer
    0x15: 6,  # disposition
    0x16: 3,  # detach
    0x17: 1,  # end
    0x18: 1,  # close
    0x40: 1,  # sasl-mechanisms
    0x41: 3,  # sasl-init
    0x42: 1,  # sasl-challenge
    0x43: 1,  # sasl-response
    0x44: 2,  # sasl-outcome
}
_NULL = b"\x40"


def pad_frame(frame: bytes) -> bytes:
    """Return the frame with its performative list padded with nulls to the full field count."""
    if len(frame) < 8:
        return frame
    doff = frame[4]
    start = doff * 4
    body = frame[start:]
    if len(body) < 4 or body[0] != 0x00:
        return frame
    if body[1] == 0x53:
        code, pos = body[2], 3
    elif body[1] == 0x80 and len(body) >= 11:
        code, pos = int.from_bytes(body[2:10], "big"), 10
    else:
        return frame
    want = FULL_FIELDS.get(code)
    if want is None:
        return frame
    ctor = body[pos]
    if ctor == 0x45:
        count, elems, end = 0, b"", pos + 1
    elif ctor == 0xC0:
        size, count = body[pos + 1], body[pos + 2]
        elems, end = body[pos + 3 : pos + 2 + size], pos + 2 + size
    elif ctor == 0xD0:
        size, count = struct.unpack(">II", body[pos + 1 : pos + 9])
        elems, end = body[pos + 9 : pos + 5 + size], pos + 5 + size
    else:
        return frame
    if count >= want:
        return frame
    elems = elems + _NULL * (want - count)
    if len(elems) + 1 <= 255:
        new_list = bytes((0xC0, len(elems) + 1, want)) + elems
    else:
        new_list = b"\xd0" + struct.pack(">II", len(elems) + 4, want) + elems
    new_body = body[:pos] + new_list + body[end:]
    return struct.pack(">I", start + len(new_body)) + frame[4:start] + new_body


class FrameRewriter:
    """Splits a byte stream into protocol headers and frames, padding each frame."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> bytes:
        """Consume bytes; return the rewritten bytes of every complete header or frame seen so far."""
        self._buffer += data
        out = bytearray()
        while True:
            if self._buffer[:4] == b"AMQP":
                if len(self._buffer) < 8:
                    break
                out += self._buffer[:8]
                del self._buffer[:8]
                continue
            if len(self._buffer) < 4:
                break
            size = struct.unpack(">I", self._buffer[:4])[0]
            if size < 8 or len(self._buffer) < size:
                if size < 8:  # not AMQP framing: relay untouched
                    out += self._buffer
                    self._buffer.clear()
                break
            out += pad_frame(bytes(self._buffer[:size]))
            del self._buffer[:size]
        return bytes(out)


@dataclass(eq=False)
class _Pipe:
    client: socket.socket
    upstream: socket.socket
    rewriter: FrameRewriter = field(default_factory=FrameRewriter)
    to_client: bytearray = field(default_factory=bytearray)
    to_upstream: bytearray = field(default_factory=bytearray)
    closed: bool = False


class PaddingProxy:
    """Listens on ``(host, port)`` and relays every connection to ``upstream``, padding frames going back."""

    def __init__(self, host: str, port: int, upstream: tuple[str, int]) -> None:
        self.host, self.port, self.upstream = host, port, upstream
        self._selector = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._pipes: set[_Pipe] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None

    def start(self) -> None:
        """Bind, listen and relay in a daemon thread."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        listener.setblocking(False)
        self._listener = listener
        self._wake = socket.socketpair()
        self._selector.register(listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake[0], selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._run, name="amqp-padding-proxy", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the listener and every relayed connection."""
        self._stop.set()
        if self._wake is not None:
            self._wake[1].send(b"x")
        if self._thread is not None:
            self._thread.join(5)
        for pipe in list(self._pipes):
            self._close(pipe)
        if self._listener is not None:
            self._listener.close()
        self._selector.close()
        if self._wake is not None:
            for sock in self._wake:
                sock.close()
            self._wake = None

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, mask in self._selector.select(timeout=0.5):
                if key.data == "accept":
                    self._accept()
                elif key.data == "wake":
                    return
                else:
                    pipe, sock = key.data
                    if not pipe.closed:
                        self._service(pipe, sock, mask)

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            client, _addr = self._listener.accept()
        except BlockingIOError:
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError as exc:
            log.warning("amqp_padding.upstream_unreachable", error=repr(exc))
            client.close()
            return
        for sock in (client, upstream):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pipe = _Pipe(client, upstream)
        self._pipes.add(pipe)
        self._selector.register(client, selectors.EVENT_READ, (pipe, client))
        self._selector.register(upstream, selectors.EVENT_READ, (pipe, upstream))

    def _service(self, pipe: _Pipe, sock: socket.socket, mask: int) -> None:
        from_client = sock is pipe.client
        if mask & selectors.EVENT_READ:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""
            if data == b"":
                self._close(pipe)
                return
            if data:
                if from_client:
                    pipe.to_upstream += data
                else:
                    pipe.to_client += pipe.rewriter.feed(data)
        for target, buffer in ((pipe.upstream, pipe.to_upstream), (pipe.client, pipe.to_client)):
            if buffer:
                try:
                    sent = target.send(buffer)
                    del buffer[:sent]
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    self._close(pipe)
                    return
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if buffer else 0)
            self._selector.modify(target, events, (pipe, target))

    def _close(self, pipe: _Pipe) -> None:
        if pipe.closed:
            return
        pipe.closed = True
        self._pipes.discard(pipe)
        for target, buffer in ((pipe.upstream, pipe.to_upstream), (pipe.client, pipe.to_client)):
            if buffer:  # best effort: deliver what the peer said before it went away (close frames)
                try:
                    target.settimeout(1.0)
                    target.sendall(buffer)
                except OSError:
                    pass
        for sock in (pipe.client, pipe.upstream):
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
            sock.close()
