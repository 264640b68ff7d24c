"""The virtual phone's adbd: an asyncio TCP server speaking the ADB transport protocol.

It answers the host's CNXN directly (no AUTH), multiplexes streams (OPEN/OKAY/WRTE/CLSE) with
one WRTE in flight per stream until the peer's OKAY, and hands each stream to a service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from hexfleet.virtual_phone import protocol as proto
from hexfleet.virtual_phone.faults import LinkFaults

log = logging.getLogger(__name__)

# How many received bytes a stream may hold unread before it withholds its OKAY.
INBOUND_HIGH_WATER = 2 * 1024 * 1024
# asyncio's per-connection read buffer: room for a couple of maximum-size messages.
READ_BUFFER_LIMIT = 4 * 1024 * 1024
# How often the daemon checks timed faults (a drop at a given time).
FAULT_TICK_S = 0.02

ServiceHandler = Callable[["Stream"], Awaitable[None]]
ServiceResolver = Callable[[str], "ServiceHandler | None"]


class StreamClosed(Exception):
    """The stream (or its whole connection) is closed; no more data can cross it."""


class Stream:
    """One ADB stream: the device end of a service the host opened."""

    def __init__(self, conn: Connection, local_id: int, remote_id: int, destination: str) -> None:
        self.conn = conn
        self.local_id = local_id
        self.remote_id = remote_id
        self.destination = destination
        self.closed = False
        self.close_sent = False
        self._may_send = asyncio.Event()
        self._may_send.set()  # The host's OPEN implies its first OKAY (protocol.txt).
        # Several writers share a stream (shell v2's stdout and stderr pumps): one WRTE at a time.
        self._send_lock = asyncio.Lock()
        self._out = bytearray()
        self._inbound: deque[bytes] = deque()
        self._inbound_size = 0
        self._head: memoryview | None = None
        self._data = asyncio.Event()
        self._eof = False
        self._ack_owed = False

    # --- sending ---------------------------------------------------------------------------

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue `data`; full-size WRTE messages go out as soon as the host acknowledges."""
        if self.closed:
            raise StreamClosed(self.destination)
        self._out += data
        limit = self.conn.max_send
        while len(self._out) >= limit:
            await self._send_chunk(limit)

    async def flush(self) -> None:
        """Send everything queued, in WRTE messages of at most the negotiated payload size."""
        while self._out:
            await self._send_chunk(min(len(self._out), self.conn.max_send))

    async def _send_chunk(self, size: int) -> None:
        async with self._send_lock:
            await self._may_send.wait()
            if self.closed:
                raise StreamClosed(self.destination)
            if not self._out:
                return
            chunk = bytes(self._out[:size])
            del self._out[:size]
            self._may_send.clear()
            await self.conn.send(proto.A_WRTE, self.local_id, self.remote_id, chunk)

    def on_okay(self) -> None:
        self._may_send.set()

    # --- receiving -------------------------------------------------------------------------

    async def on_data(self, data: bytes) -> None:
        """A WRTE for this stream arrived: buffer it and acknowledge unless the buffer is full."""
        if self.closed:
            return
        self._inbound.append(data)
        self._inbound_size += len(data)
        self._data.set()
        if self._inbound_size <= INBOUND_HIGH_WATER:
            await self.conn.send(proto.A_OKAY, self.local_id, self.remote_id)
        else:
            self._ack_owed = True

    async def read(self) -> bytes | memoryview:
        """The next received bytes (any amount); empty at end of stream."""
        if self._head is not None:
            head, self._head = self._head, None
            return head
        while not self._inbound:
            if self._eof or self.closed:
                return b""
            self._data.clear()
            await self._data.wait()
        data = self._inbound.popleft()
        self._inbound_size -= len(data)
        if self._ack_owed and self._inbound_size <= INBOUND_HIGH_WATER and not self.closed:
            self._ack_owed = False
            await self.conn.send(proto.A_OKAY, self.local_id, self.remote_id)
        return data

    async def read_exactly(self, size: int) -> bytes | memoryview:
        """Exactly `size` bytes; raise EOFError if the stream ends first."""
        parts: list[bytes | memoryview] = []
        needed = size
        while needed:
            chunk = memoryview(await self.read())
            if not chunk:
                raise EOFError(f"stream ended {needed} bytes short of {size}")
            if len(chunk) > needed:
                self._head = chunk[needed:]
                chunk = chunk[:needed]
            parts.append(chunk)
            needed -= len(chunk)
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    # --- closing ---------------------------------------------------------------------------

    def on_remote_close(self) -> None:
        """The host closed the stream: wake everyone waiting on it."""
        self.closed = True
        self.close_sent = True
        self._eof = True
        self._data.set()
        self._may_send.set()

    async def close(self) -> None:
        """Flush what is queued and tell the host this end is closed."""
        if self.closed:
            return
        with contextlib.suppress(StreamClosed, ConnectionError):
            await self.flush()
        if not self.closed:
            self.closed = True
            self.close_sent = True
            self._may_send.set()
            with contextlib.suppress(ConnectionError):
                await self.conn.send(proto.A_CLSE, self.local_id, self.remote_id)


class Connection:
    """One TCP connection from an adb host (server or client library)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        banner: bytes,
        resolve: ServiceResolver,
        faults: LinkFaults,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._banner = banner
        self._resolve = resolve
        self._faults = faults
        self._write_lock = asyncio.Lock()
        self._streams: dict[int, Stream] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._next_id = 1
        self._connected = False
        self._checksums = True
        self.version = proto.VERSION_MIN
        self.max_send = proto.MAX_PAYLOAD_LEGACY
        self.host_features: frozenset[str] = frozenset()
        self.closed = False
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    async def send(self, command: int, arg0: int, arg1: int, payload: bytes = b"") -> None:
        """Write one message; raises ConnectionError once the connection is gone."""
        header = proto.encode_header(
            command, arg0, arg1, payload, with_checksum=self._checksums or command == proto.A_CNXN
        )
        async with self._write_lock:
            if self.closed:
                raise ConnectionResetError("connection closed")
            size = proto.HEADER_SIZE + len(payload)
            allowed = await self._faults.pass_bytes(size, outgoing=True)
            if allowed < size:
                self._writer.write((header + payload)[:allowed])
                self.abort()
                raise ConnectionResetError("connection dropped by fault injection")
            self._writer.write(header)
            if payload:
                self._writer.write(payload)
            await self._writer.drain()

    def abort(self) -> None:
        """Cut the TCP connection at once (as a cable pull or a crashed adbd would)."""
        self.closed = True
        transport = self._writer.transport
        if not transport.is_closing():
            transport.abort()

    async def serve(self) -> None:
        """Read and dispatch messages until the connection ends, then stop every stream."""
        try:
            while True:
                raw = await self._reader.readexactly(proto.HEADER_SIZE)
                header = proto.decode_header(raw, max_payload=proto.MAX_PAYLOAD)
                payload = await self._reader.readexactly(header.length) if header.length else b""
                size = proto.HEADER_SIZE + header.length
                if await self._faults.pass_bytes(size, outgoing=False) < size:
                    log.info("%s: dropped by fault injection", self.peer)
                    break
                if self._checksums and self._connected and header.command != proto.A_CNXN:
                    proto.verify_checksum(header, payload)
                await self._dispatch(header, payload)
        except proto.ProtocolError as exc:
            log.warning("%s: protocol error, closing: %s", self.peer, exc)
        except (asyncio.IncompleteReadError, ConnectionError):
            log.debug("%s: connection ended", self.peer)
        finally:
            await self._shutdown()

    async def _dispatch(self, header: proto.Header, payload: bytes) -> None:
        command = header.command
        if command == proto.A_CNXN:
            await self._on_connect(header, payload)
            return
        if not self._connected:
            log.debug("%s: ignoring %s before CNXN", self.peer, header.name)
            return
        if command == proto.A_OPEN:
            await self._on_open(header.arg0, payload)
        elif command == proto.A_OKAY:
            stream = self._streams.get(header.arg1)
            if stream is not None and stream.remote_id == header.arg0:
                stream.on_okay()
        elif command == proto.A_WRTE:
            stream = self._streams.get(header.arg1)
            if stream is not None and stream.remote_id == header.arg0:
                await stream.on_data(payload)
        elif command == proto.A_CLSE:
            stream = self._streams.get(header.arg1)
            if stream is not None and stream.remote_id == header.arg0:
                self._forget(stream)
                answer = not stream.close_sent
                stream.on_remote_close()
                task = self._tasks.pop(stream.local_id, None)
                if task is not None:
                    task.cancel()
                if answer:
                    # adbd answers a CLSE with its own; clients such as adb-shell wait for it.
                    await self.send(proto.A_CLSE, stream.local_id, stream.remote_id)
        else:
            log.info("%s: ignoring %s", self.peer, header.name)

    async def _on_connect(self, header: proto.Header, payload: bytes) -> None:
        if header.arg0 < proto.VERSION_MIN:
            raise proto.ProtocolError(f"host protocol version 0x{header.arg0:08x} too old")
        if self._connected:
            log.info("%s: CNXN again, resetting every stream", self.peer)
            await self._close_streams()
        identity = proto.parse_identity(payload)
        self.host_features = identity.features
        self.version = min(proto.VERSION, header.arg0)
        self.max_send = max(proto.MAX_PAYLOAD_LEGACY, min(proto.MAX_PAYLOAD, header.arg1))
        log.info(
            "%s: CNXN from %s, version 0x%08x, max payload %d, features %s",
            self.peer,
            identity.system_type,
            header.arg0,
            header.arg1,
            ",".join(sorted(identity.features)),
        )
        await self.send(proto.A_CNXN, proto.VERSION, proto.MAX_PAYLOAD, self._banner)
        self._checksums = self.version < proto.VERSION_SKIP_CHECKSUM
        self._connected = True

    async def _on_open(self, remote_id: int, payload: bytes) -> None:
        destination = payload.rstrip(b"\0").decode("utf-8", errors="surrogateescape")
        if remote_id == 0:
            return
        handler = self._resolve(destination)
        log.info("%s: OPEN %r -> %s", self.peer, destination, "ok" if handler else "refused")
        if handler is None:
            await self.send(proto.A_CLSE, 0, remote_id)
            return
        local_id = self._next_id
        self._next_id += 1
        stream = Stream(self, local_id, remote_id, destination)
        self._streams[local_id] = stream
        await self.send(proto.A_OKAY, local_id, remote_id)
        self._tasks[local_id] = asyncio.create_task(
            self._run_service(stream, handler), name=f"adb-stream-{local_id}:{destination[:40]}"
        )

    async def _run_service(self, stream: Stream, handler: ServiceHandler) -> None:
        try:
            await handler(stream)
        except (StreamClosed, ConnectionError, EOFError):
            log.debug("%s: stream %d (%s) ended early", self.peer, stream.local_id,
                      stream.destination)
        except Exception:
            log.exception("%s: service %r failed", self.peer, stream.destination)
        finally:
            self._tasks.pop(stream.local_id, None)
            self._forget(stream)
            if not self.closed:
                await stream.close()

    def _forget(self, stream: Stream) -> None:
        self._streams.pop(stream.local_id, None)

    async def _close_streams(self) -> None:
        tasks = list(self._tasks.values())
        for stream in list(self._streams.values()):
            stream.on_remote_close()
        self._streams.clear()
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _shutdown(self) -> None:
        self.closed = True
        await self._close_streams()
        self.abort()


class AdbDaemon:
    """A TCP listener on one port; each accepted connection is an independent ADB transport."""

    def __init__(self, *, banner: bytes, resolve: ServiceResolver, faults: LinkFaults) -> None:
        self._banner = banner
        self._resolve = resolve
        self._faults = faults
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        return self._server is not None

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (0 = any free port) and return the port."""
        self._server = await asyncio.start_server(
            self._on_client, host, port, limit=READ_BUFFER_LIMIT, reuse_address=True
        )
        self._ticker = asyncio.create_task(self._tick_faults(), name="adbd-fault-ticker")
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and cut every connection (their services are cancelled)."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._server is not None:
            self._server.close()
            self._server = None
        self.drop_connections()
        if self._handlers:
            await asyncio.gather(*list(self._handlers), return_exceptions=True)

    def drop_connections(self) -> None:
        """Abort every open connection; the listener keeps accepting new ones."""
        for conn in list(self._connections):
            conn.abort()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(
            reader, writer, banner=self._banner, resolve=self._resolve, faults=self._faults
        )
        self._connections.add(conn)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        log.info("%s: connected", conn.peer)
        try:
            await conn.serve()
        finally:
            self._connections.discard(conn)
            if task is not None:
                self._handlers.discard(task)
            log.info("%s: disconnected", conn.peer)

    async def _tick_faults(self) -> None:
        while True:
            await asyncio.sleep(FAULT_TICK_S)
            if self._faults.drop_due():
                log.info("dropping %d connection(s) by fault injection", len(self._connections))
                self.drop_connections()
