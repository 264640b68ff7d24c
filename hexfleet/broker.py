"""The Celery application both sides share: broker settings, task names, delivery guarantees.

The orchestrator sends `hexfleet.run` tasks to device queues and consumes `hexfleet.ingest.*`
from the `ingest` queue; the agent does the reverse. Tasks are addressed by name, so neither side
imports the other's code.
Prefetch 1: a busy phone never hoards work. Ingest tasks are acknowledged late (after their write;
ingest is idempotent, so a redelivery is harmless). A run task is acknowledged when its phone
starts it (`RUN_TASK_OPTIONS`): a run is never delivered twice because it outlived the broker's
visibility timeout, however long its deadline, and a run whose worker died mid-run is noticed and
retried by the orchestrator's reconciliation, not by the broker. So the visibility timeout
(`HEXFLEET_BROKER_VISIBILITY_TIMEOUT_S`, 5 min) only covers a message taken by a worker that died
before starting it, and an ingest message in flight (docs/architecture.md, "Messages").
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from amqp.exceptions import ChannelError
from celery import Celery
from celery.worker.request import Request
from kombu import Connection
from kombu.exceptions import KombuError
from kombu.transport import TRANSPORT_ALIASES, filesystem, virtual
from kombu.transport.redis import PRIORITY_STEPS
from kombu.transport.redis import Channel as RedisChannel
from kombu.utils.json import dumps

from hexfleet.errors import ServiceUnavailable
from hexfleet.settings import EMBEDDED_SCHEME, Settings

log = logging.getLogger(__name__)

RUN_TASK = "hexfleet.run"
INGEST_RESULT_TASK = "hexfleet.ingest.result"
INGEST_PROGRESS_TASK = "hexfleet.ingest.progress"
INGEST_HEARTBEAT_TASK = "hexfleet.ingest.heartbeat"
INGEST_QUEUE = "ingest"


ANY_QUEUE = "any"


_QUEUE_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


def device_queue(serial: str) -> str:
    """A phone's own queue. Serials like `127.0.0.1:5555` are made safe for every transport (the
    embedded one allows only [A-Za-z0-9._-]) with a hash suffix, so two serials never collide."""
    if _QUEUE_SAFE.match(serial):
        return f"device.{serial}"
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", serial)[:80]
    return f"device.{safe}-{hashlib.sha256(serial.encode()).hexdigest()[:8]}"


def soc_queue(soc: str) -> str:
    return f"soc.{soc.upper()}"


def arch_queue(htp_arch: int) -> str:
    return f"arch.{htp_arch}"


def queues_for_device(facts: Mapping[str, object]) -> list[str]:
    """Every queue a phone's consumer listens to: its own first, then its capabilities."""
    queues = [device_queue(str(facts["serial"]))]
    if facts.get("soc"):
        queues.append(soc_queue(str(facts["soc"])))
    if facts.get("htp_arch") is not None:
        queues.append(arch_queue(int(facts["htp_arch"])))  # type: ignore[call-overload]
    queues.append(ANY_QUEUE)
    return queues


class _AtomicFilesystemChannel(filesystem.Channel):
    """kombu's filesystem channel, but a message file or an exchange table appears only once it
    is complete.

    kombu writes the message file in place, so a consumer listing the folder can take it half
    written and die on the JSON (celery/kombu#1551): write elsewhere in the folder, then rename.
    Its exchange tables have the same flaw: a process declaring a new queue truncates the table
    (`open("wb")`) before it locks it, and a process publishing at that moment reads an empty
    table and fails its send. Tables are rewritten by rename here too, read-modify-write under a
    lock file of their own, so a reader always sees a whole table.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Resolved now: kombu retries a failed publish after closing the channel, and these
        # read the closed channel's connection on first use ('NoneType' has no 'client').
        self.data_folder_in, self.data_folder_out  # noqa: B018

    @contextmanager
    def _table_lock(self, file: Path) -> Iterator[None]:
        with open(file.with_name(f".{file.name}.lock"), "a") as lock_file:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)

    def _update_table(self, exchange: str, change: Callable[[list[Any]], bool]) -> None:
        """Apply `change` to the exchange's table; write it back (atomically) if it says so."""
        file = self._exchange_file(exchange)
        self.control_folder.mkdir(exist_ok=True)
        try:
            with self._table_lock(file):
                table = self.get_table(exchange)
                if not change(table):
                    return
                partial = file.with_name(f".{file.name}.{uuid.uuid4()}")
                partial.write_bytes(dumps(table).encode())
                os.replace(partial, file)
        except OSError as exc:
            raise ChannelError(f"cannot update {file}: {exc}") from exc

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")

        def add(table: list[Any]) -> bool:
            if entry in table:
                return False
            table.insert(0, entry)
            return True

        self._update_table(exchange, add)

    def _delete(
        self, queue: str, exchange: str, routing_key: str, pattern: str, *args: Any, **kwargs: Any
    ) -> None:
        virtual.Channel._delete(self, queue, exchange, routing_key, pattern, *args, **kwargs)
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")

        def remove(table: list[Any]) -> bool:
            if entry not in table:
                return False
            table.remove(entry)
            return True

        self._update_table(exchange, remove)

    def _put(self, queue: str, payload: dict[str, object], **kwargs: object) -> None:
        # Consumers take files in name order: a zero-padded nanosecond clock shared by every
        # process keeps one sender's messages in order (a progress before its run's result).
        name = f"{time.monotonic_ns():020d}_{uuid.uuid4()}.{queue}.msg"
        folder = Path(self.data_folder_out)
        partial = folder / f".incoming-{uuid.uuid4()}"
        try:
            partial.write_bytes(dumps(payload).encode())
            os.replace(partial, folder / name)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise ChannelError(f"cannot add a message to {folder}: {exc}") from exc


class AtomicFilesystemTransport(filesystem.Transport):
    Channel = _AtomicFilesystemChannel


TRANSPORT_ALIASES.setdefault(EMBEDDED_SCHEME, f"{__name__}:AtomicFilesystemTransport")


class AckOnStart(Request):
    """A task request acknowledged the moment its task starts, not when the event loop next turns.

    Celery acknowledges a task that is not `acks_late` on start, but through the event loop
    (`hub.call_soon`), and a solo pool (a phone's worker) turns the loop only after the task
    returns: the acknowledgement would wait for the whole run. The pool calls this in the
    consumer's own thread, where writing to the channel is safe.
    """

    def acknowledge(self) -> None:
        if not self.acknowledged:
            self.message.ack_log_error(log, self.connection_errors)
            self.acknowledged = True


# How a phone's worker registers `hexfleet.run`: acknowledged on start, not after the run.
RUN_TASK_OPTIONS: dict[str, object] = {"acks_late": False, "Request": AckOnStart}


def make_celery(settings: Settings, name: str = "hexfleet") -> Celery:
    app = Celery(name, broker=settings.resolved_broker_url)
    options = dict(settings.broker_transport_options())
    if settings.resolved_broker_url.startswith(("redis://", "rediss://")):
        options["visibility_timeout"] = settings.broker_visibility_timeout_s
    app.conf.update(
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        task_default_queue="any",
        task_routes={"hexfleet.ingest.*": {"queue": INGEST_QUEUE}},
        worker_hijack_root_logger=False,
    )
    return app


def queue_depths(settings: Settings, queues: Iterable[str]) -> dict[str, int]:
    """How many messages wait on each of `queues` (delivered but unacknowledged ones excluded).

    Redis: the length of the queue's lists (kombu keeps one list per priority step). The embedded
    transport: the message files named for the queue in its folder. Raises redis's ConnectionError
    when Redis does not answer.
    """
    names = sorted(set(queues))
    url = settings.resolved_broker_url
    if url.startswith(("redis://", "rediss://")):
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            with client.pipeline(transaction=False) as pipe:
                for name in names:
                    for step in PRIORITY_STEPS:
                        pipe.llen(f"{name}{RedisChannel.sep}{step}" if step else name)
                lengths = pipe.execute()
        finally:
            client.close()
        per = len(PRIORITY_STEPS)
        return {n: sum(lengths[i * per : (i + 1) * per]) for i, n in enumerate(names)}
    folder = Path(settings.broker_transport_options().get("data_folder_in", ""))
    counts: Counter[str] = Counter()
    if folder.is_dir():
        # kombu names each message file `<time>_<uuid>.<queue>.msg` (see its Channel._get).
        for entry in os.scandir(folder):
            if entry.name.endswith(".msg"):
                counts[entry.name.partition(".")[2].removesuffix(".msg")] += 1
    return {name: counts[name] for name in names}


# What a publish raises while the broker is away. AttributeError too: after Redis restarts,
# kombu's Redis transport may be left without its connection ('NoneType' object has no
# attribute 'hostname' in Transport.supports_batch_publish), and only a new connection mends it.
PUBLISH_ERRORS: tuple[type[BaseException], ...] = (
    KombuError,
    redis.RedisError,
    OSError,
    ChannelError,
    AttributeError,
)
PUBLISH_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)


class Publisher:
    """Sends tasks on a broker connection of each calling thread's own, through broker outages.

    A failed send closes that connection, waits (0.5, 1, 2, then 5 s between tries), logs, and
    tries again on a new one, for at most `wait_s`; then it raises ServiceUnavailable. A process
    whose sends go through this survives a broker restart instead of dying on kombu's reconnect
    path, and never retries without a bound.
    """

    def __init__(self, app: Celery, wait_s: float) -> None:
        self.app = app
        self.wait_s = wait_s
        self._local = threading.local()

    def _connection(self) -> Connection:
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self.app.connection_for_write()
        return connection

    def _drop_connection(self) -> None:
        connection: Connection | None = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            try:
                connection.release()
            except PUBLISH_ERRORS as exc:
                log.debug("closing a broken broker connection: %s", exc)

    def send(
        self, name: str, body: str, queue: str, wait_s: float | None = None, **options: Any
    ) -> None:
        """Publish task `name` with the one argument `body` to `queue` (`options`: send_task's)."""
        bound = self.wait_s if wait_s is None else wait_s
        give_up = time.monotonic() + bound
        tries = 0
        while True:
            try:
                connection = self._connection()
                self.app.send_task(name, args=[body], queue=queue, connection=connection, **options)
                if tries:
                    log.info("broker reachable again: %s sent after %d failed tries", name, tries)
                return
            except PUBLISH_ERRORS as exc:
                self._drop_connection()
                pause = PUBLISH_BACKOFF_S[min(tries, len(PUBLISH_BACKOFF_S) - 1)]
                tries += 1
                if time.monotonic() + pause > give_up:
                    raise ServiceUnavailable(
                        f"the broker did not take {name} for {bound:.0f} s: {exc}"
                    ) from exc
                log.warning("sending %s failed (%s): try %d in %.1f s", name, exc, tries + 1, pause)
                time.sleep(pause)
