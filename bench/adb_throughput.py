"""ADB throughput against virtual phones: 64 MB push and pull via adbutils and via the adb binary.

Run: `.venv/bin/python bench/adb_throughput.py`. It starts a private adb server and two phone
processes (one unthrottled, one limited to 35 MB/s), prints MB/s (1 MB = 10^6 bytes) for each
client and direction, the adbutils/adb ratio, and how close the throttled phone is to its limit.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import adbutils

from hexfleet.virtual_phone import fleet
from hexfleet.virtual_phone.profiles import get_profile

MB = 1_000_000
ADB = adbutils.adb_path()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def adb(port: int, *args: str) -> None:
    result = subprocess.run(  # noqa: S603 - fixed argv
        [ADB, "-P", str(port), *args], capture_output=True, text=True, timeout=600, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"adb {' '.join(args)} failed: {result.stderr.strip()}")


def measure(
    server_port: int, device: adbutils.AdbDevice, source: Path, work: Path, rounds: int
) -> dict[str, float]:
    """Best-of-`rounds` MB/s for each (client, direction); every copy is checked byte for byte."""
    size = source.stat().st_size
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    serial = device.serial
    remote = "/data/local/tmp/bench.bin"
    back = work / "back.bin"
    actions = {
        ("adbutils", "push"): lambda: device.sync.push(source, remote),
        ("adbutils", "pull"): lambda: device.sync.pull(remote, back),
        ("adb", "push"): lambda: adb(server_port, "-s", serial, "push", str(source), remote),
        ("adb", "pull"): lambda: adb(server_port, "-s", serial, "pull", remote, str(back)),
    }
    best: dict[str, float] = {}
    for _ in range(rounds):
        for (client, direction), action in actions.items():
            seconds = timed(action)
            if direction == "pull":
                assert hashlib.sha256(back.read_bytes()).hexdigest() == digest, "pull corrupted"
            else:
                on_phone = device.shell(f"sha256sum {remote}").split()[0]
                assert on_phone == digest, "push corrupted"
            key = f"{client} {direction}"
            best[key] = max(best.get(key, 0.0), size / seconds / MB)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--limit", type=float, default=35.0, help="throttled phone's MB/s")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hexfleet-bench-") as folder:
        work = Path(folder)
        source = work / "payload.bin"
        source.write_bytes(os.urandom(args.size_mb * MB))
        server_port = free_port()
        adb(server_port, "start-server")
        data_dir = work / "data"
        try:
            profiles = [get_profile("sm8650")]
            plain = fleet.plan(data_dir, profiles, 1, host="127.0.0.1", base_port=free_port(),
                               compute="cpu")
            limited = fleet.plan(data_dir, profiles, 1, host="127.0.0.1", base_port=free_port(),
                                 compute="cpu", bandwidth_mb_s=args.limit)
            records = fleet.start_processes(data_dir, plain + limited)
            client = adbutils.AdbClient("127.0.0.1", server_port)
            devices = []
            for record in records:
                client.connect(record.serial, timeout=10)
                devices.append(client.device(record.serial))
            print(f"payload {args.size_mb} MB, best of {args.rounds}, 1 MB = 10^6 bytes, "
                  f"{os.cpu_count()} CPUs, phone in its own process, private adb server")
            unthrottled = measure(server_port, devices[0], source, work, args.rounds)
            throttled = measure(server_port, devices[1], source, work, args.rounds)
        finally:
            fleet.stop_processes(data_dir)
            adb(server_port, "kill-server")

    print(f"\n{'':16}{'unthrottled':>14}{f'limit {args.limit:g} MB/s':>20}{'of limit':>10}")
    for key in ("adbutils push", "adbutils pull", "adb push", "adb pull"):
        share = throttled[key] / args.limit * 100
        print(f"{key:16}{unthrottled[key]:>10.1f} MB/s{throttled[key]:>15.1f} MB/s{share:>9.1f}%")
    for direction in ("push", "pull"):
        ratio = unthrottled[f"adbutils {direction}"] / unthrottled[f"adb {direction}"]
        limited_ratio = throttled[f"adbutils {direction}"] / throttled[f"adb {direction}"]
        print(f"ratio adbutils/adb {direction}: {ratio:.2f} unthrottled, "
              f"{limited_ratio:.2f} throttled")


if __name__ == "__main__":
    main()
