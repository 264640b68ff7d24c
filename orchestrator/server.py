"""`hexfleet serve`: the orchestrator — database migrations, model registry, the HTTP API (uvicorn)
and the ingest worker (Celery): both by default, or one role per process (docker-compose).
"""

from __future__ import annotations

import logging
import secrets
import signal
import subprocess
import sys
import threading
import time
from typing import Literal
from urllib.parse import urlsplit

import uvicorn
from pydantic import SecretStr

from hexfleet.broker import make_celery
from hexfleet.children import die_with_parent
from hexfleet.errors import InvalidRequest
from hexfleet.models.store import ModelStore
from hexfleet.orchestrator.api.app import create_app
from hexfleet.orchestrator.db.engine import make_engine, session_factory, upgrade
from hexfleet.orchestrator.dispatch import CeleryDispatcher
from hexfleet.orchestrator.registry import sync_from_store
from hexfleet.orchestrator.worker import run_ingest_worker
from hexfleet.settings import Settings

log = logging.getLogger(__name__)


def bind_address(settings: Settings) -> tuple[str, int]:
    """Host and port to listen on, from HEXFLEET_API_URL."""
    parts = urlsplit(settings.api_url)
    if parts.scheme != "http" or not parts.hostname:
        raise InvalidRequest(f"HEXFLEET_API_URL {settings.api_url!r} must be http://HOST:PORT")
    return parts.hostname, parts.port or 80


def with_tokens(settings: Settings) -> Settings:
    """Make sure some submitting token exists: the configured one, or a new one in the data dir.

    The embedded farm writes its token to `data_dir/api-token` (mode 600) for the local CLI.
    """
    if settings.submit_tokens:
        return settings
    if settings.api_token is not None:
        return settings.model_copy(update={"submit_tokens": [settings.api_token]})
    token = settings.client_token()
    if token is None:
        token = secrets.token_urlsafe(24)
        settings.ensure_data_dir()
        settings.token_file.touch(mode=0o600)
        settings.token_file.write_text(token + "\n")
    return settings.model_copy(update={"submit_tokens": [SecretStr(token)]})


def prepare(settings: Settings) -> Settings:
    """Migrate the database and register the store's models; returns the settings to serve."""
    settings.ensure_data_dir()
    upgrade(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    with session_factory(engine)() as session:
        registered = sync_from_store(session, ModelStore.from_settings(settings))
    engine.dispose()
    log.info("%d model variants registered", len(registered))
    return with_tokens(settings)


Role = Literal["all", "api", "ingest"]


def serve(settings: Settings, role: Role = "all") -> None:
    """Run the API, the ingest worker, or both (`all`: the worker as a child process).

    They are separate processes even in `all`: kombu's embedded filesystem transport does not
    stand a consumer and a publisher sharing one process (the API's sends failed under load).
    In `all`, the API restarts the worker whenever it exits and answers its health check with
    503 until the worker runs again.
    """
    settings = prepare(settings)
    if role == "ingest":
        run_ingest_worker(settings)
        return
    host, port = bind_address(settings)
    app = create_app(settings, CeleryDispatcher(make_celery(settings), settings.outage_wait_s))
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    if role == "api":
        server.run()
        return
    worker = IngestSupervisor()
    app.state.ingest_alive = worker.alive
    worker.start()
    try:
        server.run()
    finally:
        worker.stop()


INGEST_ARGV = [sys.executable, "-m", "hexfleet.cli.app", "serve", "--role", "ingest"]
RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_AFTER_S = 60.0


class IngestSupervisor:
    """Keeps one ingest worker process running: restarted whenever it exits (after 1, 2, 5, 10,
    then every 30 s while it keeps dying within a minute of its start), logged each time."""

    def __init__(self, argv: list[str] | None = None) -> None:
        self.argv = argv or INGEST_ARGV
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # a stop never races a restart into an orphan process
        self._thread = threading.Thread(target=self._watch, name="ingest-supervisor", daemon=True)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _spawn(self) -> bool:
        with self._lock:
            if self._stopping.is_set():
                return False
            # SIGTERM (a warm shutdown: its prefetched messages go back to the queue) when
            # `serve` dies: a restarted `serve` starts its own worker, and an orphan would go on
            # beside it unwatched.
            self.process = subprocess.Popen(  # noqa: S603 - fixed argv
                self.argv,
                preexec_fn=die_with_parent(signal.SIGTERM),  # noqa: PLW1509 - one prctl
            )
            return True

    def _watch(self) -> None:
        failures = 0
        while self.process is not None:
            started = time.monotonic()
            code = self.process.wait()
            if self._stopping.is_set():
                return
            failures = 0 if time.monotonic() - started > STABLE_AFTER_S else failures + 1
            pause = RESTART_BACKOFF_S[min(max(failures - 1, 0), len(RESTART_BACKOFF_S) - 1)]
            log.error("the ingest worker exited with %s: restarting it in %.0f s", code, pause)
            if self._stopping.wait(pause):
                return
            if not self._spawn():
                return
            self.restarts += 1

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
