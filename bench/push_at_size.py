"""Pushing SD 1.5 at w8a16 (about a gigabyte) to a virtual phone: the agent's push path against the
adb binary's `adb push`, side by side on the same phone, and what a second push moves.

Run: `.venv/bin/python bench/push_at_size.py` (about ten minutes). It writes the model's three
files (random bytes: UNet data 860 MB, text encoder 123 MB, VAE decoder 49 MB; `--scale 4` for a
quarter) to a temporary folder and starts a private adb server. Then, for each link in `--links`
(default: `none,125`), one phone in its own process whose link runs at that rate, and
`--rounds` times, who goes first turning round: `adb -s SERIAL push` of the three files into an
empty folder (verifies nothing); the agent's `ArtifactPusher.ensure` into an empty cache (each
file to `.part`, verified on the phone, renamed: a file larger than a piece hashed there piece by
piece during its transfer); and the previous way, each file SENT whole then `sha256sum` on the
phone. It prints the medians in MB/s (1 MB = 10^6 bytes), their ratio to adb's and the median of
each round's ratio (`paired`: pushes back to back, so a change in the machine's load hits all),
the CPU seconds each push cost the adb server, the phone and the client (the agent, or the adb
binary), how busy the rest of the machine was meanwhile, and what a second `ensure` (a new
agent, listing the phone) pushes.

The two links are the two cases a push meets. Unlimited, the phone is a process on this host's
cores, as are the adb server and the agent: the transfer is bound by their CPU, and hashing on
the "phone" takes CPU from it. At 125 MB/s (adb push over USB 3.0 as AOSP measured it when adding
sync compression: 125 MB/s on a Pixel 3; 36 MB/s over USB 2.0) the link bounds the transfer, as
it does for a real phone, and the phone's cores have time to spare for hashing.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import adbutils

from hexfleet.device_agent.host_cache import HostCache
from hexfleet.device_agent.phone import Phone, cache_path
from hexfleet.device_agent.push import ArtifactPusher, PushReport
from hexfleet.manifest import FileRef
from hexfleet.runner_spec import CACHE_DIR, DEVICE_ROOT_DIR
from hexfleet.virtual_phone import fleet
from hexfleet.virtual_phone.profiles import get_profile

sys.path.insert(0, str(Path(__file__).parent))
from farm_rig import adb_servers  # noqa: E402

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


CONTENDERS = {"adb": "adb", "after": "after", "during": "during"}
TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def busy_cpu() -> float:
    """CPU seconds the whole machine spent busy since boot (all cores)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / TICK  # less idle and iowait


@dataclass
class Run:
    """One push: wall seconds, CPU seconds by process, the rest of the machine's busy cores."""

    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    others: float = 0.0
    verify_s: float = 0.0


class Meter:
    """Times a push and the CPU that the adb server, the phone and this process (the agent, or
    the adb client it runs) spent on it."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def _sample(self) -> dict[str, float]:
        own = os.times()
        sample = {name: process_cpu(pid) for name, pid in self.pids.items()}
        sample["client"] = own.user + own.system + own.children_user + own.children_system
        sample["busy"] = busy_cpu()
        sample["wall"] = time.perf_counter()
        return sample

    @contextmanager
    def measure(self) -> Iterator[Run]:
        run = Run()
        before = self._sample()
        yield run
        after = self._sample()
        run.seconds = after["wall"] - before["wall"]
        run.cpu = {name: after[name] - before[name] for name in (*self.pids, "client")}
        run.others = (after["busy"] - before["busy"] - sum(run.cpu.values())) / run.seconds


def parse_links(text: str) -> list[float | None]:
    """`none,125`: the links to measure, in MB/s (`none`: the loopback, unlimited)."""
    links: list[float | None] = []
    for item in text.split(","):
        item = item.strip().lower()
        try:
            links.append(None if item in ("none", "0") else float(item))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a rate in MB/s: {item!r}") from None
        if links[-1] is not None and not 0 < links[-1] < 100_000:
            raise argparse.ArgumentTypeError(f"rate out of range: {item!r}")
    return links


def link_name(link: float | None) -> str:
    return "unlimited (loopback)" if link is None else f"{link:g} MB/s"


@dataclass
class Result:
    """One link's pushes: every round's Run per contender, what was verified in flight, and
    what a second push moved."""

    runs: dict[str, list[Run]]
    in_flight: list[int]
    second: PushReport


def measure(
    work: Path,
    cache: HostCache,
    paths: list[Path],
    refs: list[FileRef],
    link: float | None,
    rounds: int,
) -> Result:
    """`rounds` rounds of the three pushes to one phone whose link runs at `link` MB/s."""
    total = sum(ref.size for ref in refs)
    server_port = free_port()
    adb(server_port, "start-server")
    data_dir = work / f"data-{link}"
    try:
        specs = fleet.plan(
            data_dir,
            [get_profile("sm8550")],
            1,
            host="127.0.0.1",
            base_port=free_port(),
            compute="cpu",
            bandwidth_mb_s=link,
        )
        (record,) = fleet.start_processes(data_dir, specs)
        client = adbutils.AdbClient("127.0.0.1", server_port)
        client.connect(record.serial, timeout=10)
        client.wait_for(record.serial, state="device", timeout=30)
        phone = Phone(client.device(record.serial))
        serial = record.serial
        (server_pid,) = adb_servers(server_port)
        meter = Meter({"adb server": server_pid, "phone": record.pid})
        runs: dict[str, list[Run]] = {name: [] for name in CONTENDERS}
        in_flight: list[int] = []

        def adb_push() -> Run:
            phone.checked("mkdir", "-p", ADB_FOLDER)
            with meter.measure() as run:
                adb(server_port, "-s", serial, "push", *map(str, paths), ADB_FOLDER)
            phone.remove(ADB_FOLDER)
            return run

        def agent_push() -> Run:
            with meter.measure() as run:
                report = ArtifactPusher(phone, cache).ensure(refs)
            assert report.pushed_bytes == total, report
            run.verify_s = report.verify_seconds
            in_flight.append(report.verified_in_flight_bytes)
            phone.remove(CACHE_DIR)
            return run

        def hashed_after() -> Run:
            """The previous way: each file SENT whole, then `sha256sum` on the phone."""
            phone.checked("mkdir", "-p", CACHE_DIR)
            send_s = 0.0
            with meter.measure() as run:
                for ref in refs:
                    partial = f"{cache_path(ref.sha256)}.part"
                    mark = time.perf_counter()
                    phone.push(cache.path(ref), partial)
                    send_s += time.perf_counter() - mark
                    assert phone.sha256(partial) == ref.sha256
                    phone.rename(partial, cache_path(ref.sha256))
            run.verify_s = run.seconds - send_s
            phone.remove(CACHE_DIR)
            return run

        pushes = {"adb": adb_push, "during": agent_push, "after": hashed_after}
        for index in range(rounds):  # who goes first turns round: load drifts
            order = list(CONTENDERS)[index % 3 :] + list(CONTENDERS)[: index % 3]
            for name in order:
                runs[name].append(pushes[name]())
        ArtifactPusher(phone, cache).ensure(refs)
        second = ArtifactPusher(phone, cache).ensure(refs)  # a new agent: lists the phone
    finally:
        fleet.stop_processes(data_dir)
        adb(server_port, "kill-server")
    return Result(runs, in_flight, second)


def report(result: Result, total: int) -> None:
    runs = result.runs

    def rate(seconds: list[float]) -> float:
        return total / statistics.median(seconds) / MB

    adb_s = [run.seconds for run in runs["adb"]]

    def paired(seconds: list[float]) -> float:
        """The median over rounds of agent/adb throughput, each round's pushes back to back."""
        return statistics.median(a / b for a, b in zip(adb_s, seconds, strict=True))

    def cpu(name: str) -> str:
        return " ".join(
            f"{statistics.median(run.cpu[part] for run in runs[name]):5.2f}"
            for part in ("adb server", "phone", "client")
        )

    sends = [run.seconds - run.verify_s for run in runs["after"]]
    print(
        f"{'':52}{'median':>11}{'vs adb':>8}{'paired':>8}   CPU s: adb server, phone, "
        f"client (median)"
    )
    rows = [
        ("adb push (the binary)", adb_s, "adb"),
        ("agent: SEND alone (the transfer, like for like)", sends, ""),
        (
            "agent: verified after the transfer (previous way)",
            [r.seconds for r in runs["after"]],
            "after",
        ),
        (
            "agent: verified during the transfer (ensure)",
            [r.seconds for r in runs["during"]],
            "during",
        ),
    ]
    for label, seconds, name in rows:
        ratios = ""
        if name != "adb":
            ratios = f"{rate(seconds) / rate(adb_s):8.3f}{paired(seconds):8.3f}"
        print(f"{label:52}{rate(seconds):6.1f} MB/s{ratios:16}   {cpu(name) if name else ''}")
    print(
        f"  during: verifying left after the transfer, median "
        f"{statistics.median(r.verify_s for r in runs['during']):.2f} s; verified while "
        f"transferring {statistics.median(result.in_flight) / MB:.0f} MB of {total / MB:.0f} MB"
    )
    print(
        f"  after: sha256sum on the phone, median "
        f"{statistics.median(r.verify_s for r in runs['after']):.2f} s"
    )
    for name in CONTENDERS:
        print(
            f"  per round (s), {CONTENDERS[name]:8} "
            + " ".join(f"{run.seconds:.2f}" for run in runs[name])
        )
    others = [run.others for name in CONTENDERS for run in runs[name]]
    print(
        f"  other processes' CPU while pushing: median {statistics.median(others):.2f} of "
        f"{os.cpu_count()} cores busy (max {max(others):.2f})"
    )
    second = result.second
    print(
        f"  second push: {second.pushed_bytes} bytes in {second.pushed_files} files pushed, "
        f"{second.cached_files} cached, {second.seconds * 1000:.0f} ms (listing the phone)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1, help="push 1/SCALE of the real size")
    parser.add_argument("--rounds", type=int, default=7, help="pairs of pushes; medians shown")
    parser.add_argument(
        "--links",
        type=parse_links,
        default=parse_links("none,125"),
        help="the phone's link rates to measure, MB/s (`none`: unlimited); default none,125",
    )
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
        files = ", ".join(f"{r.name} {r.size / MB:.0f} MB" for r in refs)
        print(
            f"model: {len(refs)} files, {total / MB:.0f} MB ({files}); {args.rounds} rounds "
            f"(who goes first turning round), medians; {os.cpu_count()} CPUs, load {load()}; "
            f"phone in its own process, private adb server"
        )
        print(
            f"host cache: the agent hashed its {total / MB:.0f} MB in {host_hash_s:.1f} s "
            f"(once per agent process, not timed below)"
        )
        for link in args.links:
            print(f"\nlink: {link_name(link)}")
            report(measure(work, cache, paths, refs, link, args.rounds), total)
        cache.close()
    print(f"load at the end: {load()}")


if __name__ == "__main__":
    main()
