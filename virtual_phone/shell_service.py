"""The `shell:` and `exec:` services: run a script of the virtual shell on an ADB stream.

v1 (`shell:CMD`, `exec:CMD`) is raw: stdout and stderr share the stream, no exit code. v2
(`shell,v2,...:CMD`) frames data as shell-protocol packets (1-byte id, u32 length) with separate
stdout/stderr, stdin and close-stdin from the host, and an exit packet (shell_protocol.h).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable

from hexfleet.virtual_phone.adbd import Stream
from hexfleet.virtual_phone.pipes import Input, Output, Pipe
from hexfleet.virtual_phone.shell import IO, Interpreter
from hexfleet.virtual_phone.toolbox import Toolbox

log = logging.getLogger(__name__)

ID_STDIN, ID_STDOUT, ID_STDERR, ID_EXIT, ID_CLOSE_STDIN, ID_WINDOW_SIZE = range(6)
PACKET = struct.Struct("<BI")


class StreamOutput(Output):
    """Raw bytes onto the stream (v1)."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream

    async def write(self, data: bytes) -> None:
        await self._stream.write(data)

    async def flush(self) -> None:
        await self._stream.flush()


class PacketOutput(Output):
    """Shell-protocol packets of one id onto the stream (v2)."""

    def __init__(self, stream: Stream, packet_id: int) -> None:
        self._stream = stream
        self._id = packet_id

    async def write(self, data: bytes) -> None:
        if data:
            await self._stream.write(PACKET.pack(self._id, len(data)) + bytes(data))

    async def flush(self) -> None:
        await self._stream.flush()


class StreamInput(Input):
    """Raw bytes from the stream as stdin (v1)."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream

    async def read(self) -> bytes:
        return bytes(await self._stream.read())


async def _demultiplex(stream: Stream, stdin: Pipe) -> None:
    """Route the host's v2 packets: stdin data into the pipe, close-stdin ends it."""
    try:
        while True:
            try:
                header = await stream.read_exactly(PACKET.size)
            except EOFError:
                return
            packet_id, length = PACKET.unpack(header)
            data = bytes(await stream.read_exactly(length)) if length else b""
            if packet_id == ID_STDIN:
                try:
                    await stdin.writer.write(data)
                except BrokenPipeError:
                    continue
            elif packet_id == ID_CLOSE_STDIN:
                stdin.writer.close()
            elif packet_id != ID_WINDOW_SIZE:
                log.info("shell v2: ignoring packet id %d from the host", packet_id)
    finally:
        stdin.writer.close()


def parse_destination(destination: str) -> tuple[bool, bool, str]:
    """(shell protocol v2, terminal wanted, command) from `shell,v2,TERM=xterm,raw:CMD` etc.

    As adbd decides: a terminal when `pty` is asked for, or for an interactive shell (no command)
    unless `raw` is; `exec:` never has one.
    """
    service, _, command = destination.partition(":")
    name, *options = service.split(",")
    pty = name == "shell" and ("pty" in options or (not command and "raw" not in options))
    return name == "shell" and "v2" in options, pty, command


async def serve_shell(stream: Stream, toolbox: Toolbox, destination: str) -> None:
    """Run the command the destination names (or an interactive shell) and report its status."""
    v2, pty, command = parse_destination(destination)
    demux: asyncio.Task[None] | None = None
    if v2:
        stdin_pipe = Pipe()
        demux = asyncio.create_task(_demultiplex(stream, stdin_pipe))
        io = IO(stdin_pipe.reader, PacketOutput(stream, ID_STDOUT), PacketOutput(stream, ID_STDERR))
    else:
        raw = StreamOutput(stream)
        io = IO(StreamInput(stream), raw, raw)
    state = toolbox.new_state()
    processes = toolbox.phone.processes
    interpreter = toolbox.interpreter(state)
    try:
        if command.strip():
            status = await _run_killable(interpreter.run(command, io), toolbox, state.pid)
        else:
            status = await _interactive(toolbox, interpreter, io, prompt=pty)
        await io.stdout.flush()
        if v2:
            await stream.write(PACKET.pack(ID_EXIT, 1) + bytes([status & 0xFF]))
        await stream.flush()
    finally:
        processes.exit(state.pid)
        if demux is not None:
            demux.cancel()


async def _run_killable(job: Awaitable[int], toolbox: Toolbox, pid: int) -> int:
    """Run a script so that `kill <its shell pid>` ends it with status 128 + signal."""
    task = asyncio.ensure_future(job)
    signals: list[int] = []

    def deliver(signum: int) -> None:
        signals.append(signum)
        task.cancel()

    entry = toolbox.phone.processes.get(pid)
    if entry is not None:
        entry.signal_fn = deliver
    try:
        return await task
    except asyncio.CancelledError:
        if signals and not _cancelling():
            return 128 + signals[0]
        raise


def _cancelling() -> bool:
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0


async def _interactive(toolbox: Toolbox, interpreter: Interpreter, io: IO, *, prompt: bool) -> int:
    """A shell reading commands from stdin a line at a time until EOF or `exit`; it prompts
    (like mksh on a terminal) only when the host asked for one."""
    pending = b""
    status = 0
    device = toolbox.phone.profile.device
    while True:
        if prompt:
            await io.stdout.write(f"{device}:{interpreter.state.cwd} $ ".encode())
            await io.stdout.flush()
        while b"\n" not in pending:
            chunk = await io.stdin.read()
            if not chunk:
                return status
            pending += chunk
        line, _, pending = pending.partition(b"\n")
        text = line.decode(errors="replace").strip()
        if text in ("exit", "logout"):
            return status
        log.info("sh %d reads: %s", interpreter.state.pid, text)
        status = await _run_killable(interpreter.run(text, io), toolbox, interpreter.state.pid)
