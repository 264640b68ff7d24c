"""Byte sources and sinks the virtual shell wires commands to: pipes, buffers, files, /dev/null.

A command writes to an `Output` and reads an `Input`; the shell service supplies ones backed by
the ADB stream, redirections supply files, and `a | b` a bounded in-memory pipe.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections import deque
from typing import BinaryIO

CHUNK = 64 * 1024


class Output:
    """Where a command's stdout or stderr goes. The base class discards everything."""

    async def write(self, data: bytes) -> None:
        """Write `data`; raise BrokenPipeError when nobody reads any more."""

    async def flush(self) -> None:
        """Push buffered bytes towards the reader (the ADB stream)."""

    def close(self) -> None:
        """The writer is done (end of file for a pipe, a closed file for a redirection)."""


class NullOutput(Output):
    """/dev/null."""


class BufferOutput(Output):
    """Collects everything written (command substitution, tests)."""

    def __init__(self) -> None:
        self.data = bytearray()

    async def write(self, data: bytes) -> None:
        self.data += data


class FileOutput(Output):
    """A redirection to a file on the phone (already resolved to its host path and opened).

    `room`: how many more bytes the phone's disk takes (None: no limit). Past it, what fits is
    written and the write fails with ENOSPC, as a kernel's write on a full partition does."""

    def __init__(self, handle: BinaryIO, room: int | None = None) -> None:
        self._handle = handle
        self._room = room

    async def write(self, data: bytes) -> None:
        if self._room is not None and len(data) > self._room:
            self._handle.write(data[: self._room])
            self._handle.flush()
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if self._room is not None:
            self._room -= len(data)
        self._handle.write(data)

    def close(self) -> None:
        self._handle.close()


class Input:
    """Where a command's stdin comes from. The base class is empty (immediate end of file)."""

    async def read(self) -> bytes:
        """The next chunk, or b'' at end of file."""
        return b""

    def close(self) -> None:
        """The reader is done; writers into it get BrokenPipeError."""


class BytesInput(Input):
    def __init__(self, data: bytes) -> None:
        self._data = data

    async def read(self) -> bytes:
        data, self._data = self._data, b""
        return data


class FileInput(Input):
    """A `< file` redirection."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle

    async def read(self) -> bytes:
        return self._handle.read(CHUNK)

    def close(self) -> None:
        self._handle.close()


class Pipe:
    """A bounded pipe between two commands running at once (`a | b`)."""

    def __init__(self, depth: int = 16) -> None:
        self._chunks: deque[bytes] = deque()
        self._depth = depth
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._reader_closed = False
        self._writer_closed = False
        self.reader = _PipeReader(self)
        self.writer = _PipeWriter(self)

    async def put(self, data: bytes) -> None:
        while True:
            if self._reader_closed:
                raise BrokenPipeError("pipe reader closed")
            if len(self._chunks) < self._depth:
                break
            self._writable.clear()
            await self._writable.wait()
        if data:
            self._chunks.append(bytes(data))
            self._readable.set()

    async def get(self) -> bytes:
        while not self._chunks:
            if self._writer_closed:
                return b""
            self._readable.clear()
            await self._readable.wait()
        data = self._chunks.popleft()
        self._writable.set()
        return data

    def close_writer(self) -> None:
        self._writer_closed = True
        self._readable.set()

    def close_reader(self) -> None:
        self._reader_closed = True
        self._chunks.clear()
        self._writable.set()


class _PipeWriter(Output):
    def __init__(self, pipe: Pipe) -> None:
        self._pipe = pipe

    async def write(self, data: bytes) -> None:
        await self._pipe.put(data)

    def close(self) -> None:
        self._pipe.close_writer()


class _PipeReader(Input):
    def __init__(self, pipe: Pipe) -> None:
        self._pipe = pipe

    async def read(self) -> bytes:
        return await self._pipe.get()

    def close(self) -> None:
        self._pipe.close_reader()


async def read_all(source: Input) -> bytes:
    """Everything until end of file."""
    parts = []
    while chunk := await source.read():
        parts.append(chunk)
    return b"".join(parts)
