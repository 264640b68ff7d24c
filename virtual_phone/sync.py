"""The `sync:` service: STAT/LIST/SEND/RECV (and STA2/LST2/LIS2) on the phone's confined filesystem.

Written from AOSP's SYNC.TXT and the v2 stat/dirent layouts of file_sync_protocol.h; every path
goes through `PhoneFilesystem.resolve`, so nothing outside the phone's folder is reachable. A SEND
fills /data no further than its free space (`storage.py`): past it, adbd's answer on a full phone
(`write failed: No space left on device`), and the file it created is removed, as adbd does.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat
import struct
from typing import BinaryIO

from hexfleet.virtual_phone.adbd import Stream
from hexfleet.virtual_phone.filesystem import PhoneFilesystem, check_writable, fs_error
from hexfleet.virtual_phone.storage import Storage

log = logging.getLogger(__name__)

REQUEST = struct.Struct("<4sI")
STAT_V1 = struct.Struct("<4sIII")
STAT_V2 = struct.Struct("<4sIQQIIIIQqqq")
DENT_V1 = struct.Struct("<4sIIII")
DENT_V2 = struct.Struct("<4sIQQIIIIQqqqI")
SYNC_DATA_MAX = 64 * 1024
MAX_PATH = 1024
class SyncService:
    """One `sync:` session: requests are served in order until QUIT or end of stream."""

    def __init__(self, stream: Stream, fs: PhoneFilesystem, storage: Storage) -> None:
        self._stream = stream
        self._fs = fs
        self._storage = storage

    async def serve(self) -> None:
        while True:
            try:
                request = await self._stream.read_exactly(REQUEST.size)
            except EOFError:
                return
            ident, length = REQUEST.unpack(request)
            if length > MAX_PATH:
                await self._fail("path too long")
                return
            path = bytes(await self._stream.read_exactly(length)).decode(
                "utf-8", errors="surrogateescape"
            )
            log.debug("sync %s %r", ident, path)
            keep_going = await self._handle(ident, path)
            await self._stream.flush()
            if not keep_going:
                return

    async def _handle(self, ident: bytes, path: str) -> bool:
        if ident == b"STAT":
            await self._stat_v1(path)
        elif ident in (b"STA2", b"LST2"):
            await self._stat_v2(ident, path, follow=ident == b"STA2")
        elif ident in (b"LIST", b"LIS2"):
            await self._list(path, v2=ident == b"LIS2")
        elif ident == b"SEND":
            return await self._send(path)
        elif ident == b"RECV":
            return await self._recv(path)
        elif ident == b"QUIT":
            return False
        else:
            await self._fail(f"unknown command {ident!r}")
            return False
        return True

    def _lstat(self, path: str, *, follow: bool) -> os.stat_result:
        resolved = self._fs.resolve(path, follow_final=follow)
        try:
            return os.stat(resolved.host, follow_symlinks=follow)
        except OSError as exc:
            raise fs_error(exc.errno or errno.EIO, resolved.device) from exc

    async def _stat_v1(self, path: str) -> None:
        try:
            info = self._lstat(path, follow=False)
        except OSError:
            await self._stream.write(STAT_V1.pack(b"STAT", 0, 0, 0))
            return
        await self._stream.write(
            STAT_V1.pack(b"STAT", info.st_mode, info.st_size & 0xFFFFFFFF, int(info.st_mtime))
        )

    async def _stat_v2(self, ident: bytes, path: str, *, follow: bool) -> None:
        try:
            info = self._lstat(path, follow=follow)
        except OSError as exc:
            await self._stream.write(STAT_V2.pack(ident, exc.errno or errno.EIO, *([0] * 10)))
            return
        await self._stream.write(STAT_V2.pack(ident, 0, *_v2_fields(info)))

    async def _list(self, path: str, *, v2: bool) -> None:
        try:
            folder = self._fs.resolve(path).host
            names = sorted(os.listdir(folder))
        except OSError:
            await self._stream.write(_list_done(v2))
            return
        parent = folder.parent if folder != self._fs.root else folder
        entries = [(".", folder), ("..", parent)] + [(name, folder / name) for name in names]
        for name, entry in entries:
            encoded = name.encode("utf-8", errors="surrogateescape")
            try:
                info = os.lstat(entry)
            except OSError as exc:
                if v2:
                    error = exc.errno or errno.EIO
                    await self._stream.write(
                        DENT_V2.pack(b"DNT2", error, *([0] * 10), len(encoded)) + encoded
                    )
                continue
            if v2:
                record = DENT_V2.pack(b"DNT2", 0, *_v2_fields(info), len(encoded))
            else:
                size, mtime = info.st_size & 0xFFFFFFFF, int(info.st_mtime)
                record = DENT_V1.pack(b"DENT", info.st_mode, size, mtime, len(encoded))
            await self._stream.write(record + encoded)
        await self._stream.write(_list_done(v2))

    async def _send(self, spec: str) -> bool:
        path, comma, mode_text = spec.rpartition(",")
        if not comma:
            await self._fail("missing , in ID_SEND")
            return False
        try:
            mode = int(mode_text)
        except ValueError:
            await self._fail("bad mode")
            return False
        if stat.S_ISLNK(mode):
            await self._discard_upload()
            await self._fail("couldn't create symlink: a virtual phone does not store symlinks")
            return False
        created = False
        try:
            resolved = self._fs.resolve(path)
            check_writable(resolved.device)
            if resolved.host.is_dir() or path.endswith("/"):
                raise fs_error(errno.EISDIR, resolved.device)
            created = not resolved.host.exists()
            room = await asyncio.to_thread(self._storage.room_for, resolved.host)
            resolved.host.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(resolved.host, flags, (mode & 0o777) or 0o644)
        except OSError as exc:
            await self._discard_upload()
            await self._fail(f"couldn't create file: {exc.strerror}")
            return False
        complete = False
        try:
            with os.fdopen(fd, "wb", buffering=1024 * 1024) as handle:
                mtime = await self._receive_into(handle, room)
            os.chmod(resolved.host, (mode & 0o777) or 0o644)
            os.utime(resolved.host, (mtime, mtime))
            complete = True
        except _DiskFull:
            # adbd reports the failed write at once, then swallows what the host still sends.
            await self._fail(f"write failed: {os.strerror(errno.ENOSPC)}")
            await self._stream.flush()
            await self._discard_upload()
            return False
        except _UploadError as exc:
            await self._fail(str(exc))
            return False
        finally:
            if not complete and created:
                resolved.host.unlink(missing_ok=True)
        await self._stream.write(REQUEST.pack(b"OKAY", 0))
        return True

    async def _receive_into(self, handle: BinaryIO, room: int) -> int:
        """Write the DATA that follows a SEND, up to `room` bytes; the DONE's mtime."""
        write = handle.write
        while True:
            ident, length = REQUEST.unpack(await self._stream.read_exactly(REQUEST.size))
            if ident == b"DONE":
                return length
            if ident != b"DATA":
                raise _UploadError("invalid data message")
            if length > SYNC_DATA_MAX:
                raise _UploadError("oversize data message")
            room -= length
            if room < 0:
                await self._stream.read_exactly(length)
                raise _DiskFull
            write(await self._stream.read_exactly(length))

    async def _discard_upload(self) -> None:
        """After refusing a SEND, swallow the DATA the host already sent, up to its DONE."""
        while True:
            ident, length = REQUEST.unpack(await self._stream.read_exactly(REQUEST.size))
            if ident != b"DATA" or length > SYNC_DATA_MAX:
                return
            await self._stream.read_exactly(length)

    async def _recv(self, path: str) -> bool:
        try:
            resolved = self._fs.resolve(path)
            handle = open(resolved.host, "rb", buffering=0)
        except OSError as exc:
            await self._fail(f"open failed: {exc.strerror}")
            return False
        with handle:
            while True:
                try:
                    chunk = handle.read(SYNC_DATA_MAX)
                except OSError as exc:
                    await self._fail(f"read failed: {exc.strerror}")
                    return False
                if not chunk:
                    break
                await self._stream.write(REQUEST.pack(b"DATA", len(chunk)))
                await self._stream.write(chunk)
        await self._stream.write(REQUEST.pack(b"DONE", 0))
        return True

    async def _fail(self, message: str) -> None:
        encoded = message.encode()
        await self._stream.write(REQUEST.pack(b"FAIL", len(encoded)) + encoded)


class _UploadError(Exception):
    """The host broke the SEND sub-protocol."""


class _DiskFull(Exception):
    """The file being sent does not fit in /data."""


def _list_done(v2: bool) -> bytes:
    """The end of a listing: a whole (zeroed) dirent of the listing's version, with id DONE."""
    if v2:
        return DENT_V2.pack(b"DONE", 0, *([0] * 10), 0)
    return DENT_V1.pack(b"DONE", 0, 0, 0, 0)


def _v2_fields(info: os.stat_result) -> tuple[int, ...]:
    return (
        info.st_dev,
        info.st_ino,
        info.st_mode,
        info.st_nlink,
        2000,
        2000,
        info.st_size,
        int(info.st_atime),
        int(info.st_mtime),
        int(info.st_ctime),
    )


async def serve_sync(stream: Stream, fs: PhoneFilesystem, storage: Storage) -> None:
    """The `sync:` service handler."""
    await SyncService(stream, fs, storage).serve()
