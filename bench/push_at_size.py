"""Pushing SD 1.5 at w8a16 (about a gigabyte) to a virtual phone: the agent's push path against the
adb binary's `adb push`, side by side on the same phone, and what a second push moves.

Run: `.venv/bin/python bench/push_at_size.py` (about six minutes). It writes the model's three
files (random bytes: UNet data 860 MB, text encoder 123 MB, VAE decoder 49 MB; `--scale 4` for a
quarter) to a temporary folder, starts a private adb server and one phone in its own process, then
alternates `--rounds` times: `adb -s SERIAL push` of the three files into an empty folder, and the
agent's `ArtifactPusher.ensure` into an empty cache (each file to `.part`, sha256 on the phone,
renamed). It prints the medians in MB/s (1 MB = 10^6 bytes), the ratio agent/adb of those
medians and the median of each round's ratio (its two pushes back to back, who goes first
alternating, so a change in the machine's load hits both), for the transfer alone (the
like-for-like figure) and for the whole verified push, and what a second `ensure` (a new agent,
listing the phone) pushes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import adbutils

from hexfleet.device_agent.host_cache import HostCache
from hexfleet.device_agent.phone import Phone
from hexfleet.device_agent.push import ArtifactPusher
from hexfleet.manifest import FileRef
from hexfleet.runner_spec import CACHE_DIR, DEVICE_ROOT_DIR
from hexfleet.virtual_phone import fleet
from hexfleet.virtual_phone.profiles import get_profile

MB = 1_000_000
ADB = adbutils.adb_path()
SD15_W8A16 = {
    "unet.onnx.data": 860 * MB,
    "text_encoder.onnx": 123 * MB,
    "vae_decoder.onnx": 49 * MB,
}
ADB_FOLDER = f"{DEVICE_ROOT_DIR}/bench-adb"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def adb(port: int, *args: str) -> None:
    result = subprocess.run(  # fixed argv: the bench's own paths and the phone's serial
        [ADB, "-P", str(port), *args], capture_output=True, text=True, timeout=900, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"adb {' '.join(args)} failed: {result.stderr.strip()}")


def write_model(folder: Path, cache: Path, scale: int) -> tuple[list[Path], list[FileRef]]:
    """The model's files under their names in `folder`, hard-linked into the host cache by
    sha256 (where the agent's HostCache keeps what it fetched)."""
    paths, refs = [], []
    for name, size in SD15_W8A16.items():
        path, digest = folder / name, hashlib.sha256()
        with path.open("wb") as handle:
            for start in range(0, size // scale, 8 * MB):
                chunk = os.urandom(min(8 * MB, size // scale - start))
                digest.update(chunk)
                handle.write(chunk)
        os.link(path, cache / digest.hexdigest())
        paths.append(path)
        refs.append(FileRef(name=name, sha256=digest.hexdigest(), size=size // scale))
    return paths, refs


def load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1, help="push 1/SCALE of the real size")
    parser.add_argument("--rounds", type=int, default=7, help="pairs of pushes; medians shown")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hexfleet-push-") as folder:
        work = Path(folder)
        (work / "model").mkdir()
        cache = HostCache(work / "agent-cache", f"http://127.0.0.1:{free_port()}", None)
        paths, refs = write_model(work / "model", cache.root, args.scale)
        total = sum(ref.size for ref in refs)
        started = time.perf_counter()
        for ref in refs:  # the agent hashes a host file once per process before trusting it
            cache.path(ref)
        host_hash_s = time.perf_counter() - started

        server_port = free_port()
        adb(server_port, "start-server")
        data_dir = work / "data"
        try:
            specs = fleet.plan(data_dir, [get_profile("sm8550")], 1, host="127.0.0.1",
                               base_port=free_port(), compute="cpu")
            (record,) = fleet.start_processes(data_dir, specs)
            client = adbutils.AdbClient("127.0.0.1", server_port)
            client.connect(record.serial, timeout=10)
            client.wait_for(record.serial, state="device", timeout=30)
            phone = Phone(client.device(record.serial))
            serial = record.serial
            files = ", ".join(f"{r.name} {r.size / MB:.0f} MB" for r in refs)
            print(f"model: {len(refs)} files, {total / MB:.0f} MB ({files}); {args.rounds} rounds "
                  f"alternating, medians; {os.cpu_count()} CPUs, load {load()}; phone in its own "
                  f"process, private adb server")
            print(f"host cache: the agent hashed its {total / MB:.0f} MB in {host_hash_s:.1f} s "
                  f"(once per agent process, not timed below)")
            adb_s, transfer_s, ensure_s, verify_s = [], [], [], []

            def adb_push() -> None:
                phone.checked("mkdir", "-p", ADB_FOLDER)
                mark = time.perf_counter()
                adb(server_port, "-s", serial, "push", *map(str, paths), ADB_FOLDER)
                adb_s.append(time.perf_counter() - mark)
                phone.remove(ADB_FOLDER)

            def agent_push() -> None:
                report = ArtifactPusher(phone, cache).ensure(refs)
                assert report.pushed_bytes == total, report
                ensure_s.append(report.seconds)
                verify_s.append(report.verify_seconds)
                transfer_s.append(report.push_seconds - report.verify_seconds)
                phone.remove(CACHE_DIR)

            for index in range(args.rounds):  # adb first, then the agent first: load drifts
                for push in (adb_push, agent_push) if index % 2 == 0 else (agent_push, adb_push):
                    push()
            ArtifactPusher(phone, cache).ensure(refs)
            second = ArtifactPusher(phone, cache).ensure(refs)  # a new agent: lists the phone
        finally:
            fleet.stop_processes(data_dir)
            adb(server_port, "kill-server")
        cache.close()

    def rate(seconds: list[float]) -> float:
        return total / statistics.median(seconds) / MB

    def paired(agent: list[float]) -> float:
        """The median over rounds of agent/adb throughput, each pair measured back to back."""
        return statistics.median(a / b for a, b in zip(adb_s, agent, strict=True))

    print(f"\n{'':46}{'median':>11}{'agent/adb':>11}{'paired':>8}")
    print(f"{'adb push (the binary)':46}{rate(adb_s):6.1f} MB/s")
    for label, seconds in (
        ("agent push, transfer (SEND to .part, mv)", transfer_s),
        ("agent push, verified (+ sha256 on the phone)", ensure_s),
    ):
        print(f"{label:46}{rate(seconds):6.1f} MB/s{rate(seconds) / rate(adb_s):11.3f}"
              f"{paired(seconds):8.3f}")
    print(f"{'  of which sha256 on the phone':46}{statistics.median(verify_s):6.1f} s   "
          f"({rate(verify_s):.0f} MB/s)")
    print(f"per round (s): adb {' '.join(f'{s:.1f}' for s in adb_s)} | "
          f"agent transfer {' '.join(f'{s:.1f}' for s in transfer_s)}")
    print(f"second push: {second.pushed_bytes} bytes in {second.pushed_files} files pushed, "
          f"{second.cached_files} cached, {second.seconds * 1000:.0f} ms (listing the phone)")
    print(f"load at the end: {load()}")


if __name__ == "__main__":
    main()
