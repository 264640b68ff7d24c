"""The host cache waits out an orchestrator that does not answer for a moment (`hexfleet serve`
restarting): found in the chaos suite, where every run a phone took while the API restarted
failed on its download (128 of 160)."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from waiting import free_port

from hexfleet.device_agent.host_cache import HostCache
from hexfleet.errors import ServiceUnavailable
from hexfleet.manifest import FileRef


@contextlib.contextmanager
def serve_after(delay_s: float, port: int, blobs: Path) -> Iterator[None]:
    """An orchestrator that starts answering `GET /api/v1/artifacts/<sha256>` after `delay_s`."""

    class Artifacts(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
            data = (blobs / self.path.rsplit("/", 1)[1]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    servers: list[ThreadingHTTPServer] = []
    timer = threading.Timer(
        delay_s,
        lambda: (
            servers.append(ThreadingHTTPServer(("127.0.0.1", port), Artifacts)),
            threading.Thread(target=servers[0].serve_forever, daemon=True).start(),
        ),
    )
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        for server in servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def small_file(tmp_path: Path) -> tuple[FileRef, Path]:
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    data = b"weights" * 1000
    sha = hashlib.sha256(data).hexdigest()
    (blobs / sha).write_bytes(data)
    return FileRef(name="unet.onnx", sha256=sha, size=len(data)), blobs


def test_a_fetch_waits_for_the_orchestrator_to_answer(
    tmp_path: Path, small_file: tuple[FileRef, Path]
) -> None:
    ref, blobs = small_file
    port = free_port()
    cache = HostCache(tmp_path / "cache", f"http://127.0.0.1:{port}", None, outage_wait_s=20)
    with serve_after(1.5, port, blobs):
        assert cache.path(ref).read_bytes() == (blobs / ref.sha256).read_bytes()
    cache.close()


def test_a_fetch_gives_up_after_the_outage_bound(
    tmp_path: Path, small_file: tuple[FileRef, Path]
) -> None:
    ref, _ = small_file
    cache = HostCache(tmp_path / "cache", f"http://127.0.0.1:{free_port()}", None, 1.0)
    with pytest.raises(ServiceUnavailable, match="does not answer"):
        cache.path(ref)
    cache.close()

