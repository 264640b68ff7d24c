"""The embedded broker (kombu's filesystem transport, made atomic): processes that declare queues
while others publish never see a half-written exchange table, and every message arrives whole."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from kombu import Connection

import hexfleet.broker  # noqa: F401  (registers the embedded transport)
from hexfleet.settings import Settings

PROCESSES = 6
BINDS_EACH = 40


def _connection(data_dir: Path) -> Connection:
    settings = Settings(data_dir=data_dir)
    return Connection(
        settings.resolved_broker_url, transport_options=settings.broker_transport_options()
    )


def _bind_many(data_dir: str, worker: int) -> None:
    with _connection(Path(data_dir)) as conn:
        channel = conn.channel()
        for n in range(BINDS_EACH):
            # All processes create the same new exchanges at once: where kombu's own tables were
            # truncated before they were locked, and one process's entry could be lost.
            channel._queue_bind(f"ex-{n}", f"key-{worker}", "", f"queue-{worker}")
            channel._queue_bind("shared", f"key-{worker}-{n}", "", f"queue-{worker}-{n}")


def _read_many(data_dir: str, rounds: int) -> None:
    with _connection(Path(data_dir)) as conn:
        channel = conn.channel()
        for n in range(rounds):
            channel.get_table(f"ex-{n % BINDS_EACH}")
            channel.get_table("shared")


def test_exchange_tables_stay_whole_while_processes_bind_and_read(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(PROCESSES + 2) as pool:
        binders = [
            pool.apply_async(_bind_many, (str(tmp_path), worker)) for worker in range(PROCESSES)
        ]
        readers = [pool.apply_async(_read_many, (str(tmp_path), 400)) for _ in range(2)]
        for job in binders + readers:
            job.get(timeout=120)  # a torn table raises here (JSON decode error)
    with _connection(tmp_path) as conn:
        channel = conn.channel()
        table = channel.get_table("shared")
        assert len(table) == PROCESSES * BINDS_EACH == len(set(table))
        for n in range(BINDS_EACH):
            assert len(channel.get_table(f"ex-{n}")) == PROCESSES
    with _connection(tmp_path) as conn:
        channel = conn.channel()
        channel._delete("queue-0-0", "shared", "key-0-0", "")
        assert len(channel.get_table("shared")) == PROCESSES * BINDS_EACH - 1


def test_messages_published_by_several_processes_all_arrive(tmp_path: Path) -> None:
    with _connection(tmp_path) as conn:
        queue = conn.SimpleQueue("work")
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(4) as pool:
            pool.starmap(_publish, [(str(tmp_path), n) for n in range(4)])
        got = sorted(queue.get(timeout=10).payload for _ in range(4 * 25))
        queue.close()
    assert got == sorted(f"{p}-{i}" for p in range(4) for i in range(25))


def _publish(data_dir: str, publisher: int) -> None:
    with _connection(Path(data_dir)) as conn:
        queue = conn.SimpleQueue("work")
        for i in range(25):
            queue.put(f"{publisher}-{i}")
        queue.close()
