"""One virtual Snapdragon phone: profile, root folder, health, processes and its adbd, assembled.

It can stop and start again on the same port (same serial), go offline for a while as a phone
on flaky Wi-Fi does, reboot, and take fault commands.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from hexfleet.runner_env import ComputeMode, ComputeSettings
from hexfleet.virtual_phone.adbd import AdbDaemon, ServiceHandler, Stream
from hexfleet.virtual_phone.faults import FaultCommand, LinkFaults
from hexfleet.virtual_phone.filesystem import PhoneFilesystem
from hexfleet.virtual_phone.health import Health, ThermalSettings
from hexfleet.virtual_phone.processes import ProcessTable
from hexfleet.virtual_phone.profiles import FEATURES, Profile
from hexfleet.virtual_phone.programs import Programs
from hexfleet.virtual_phone.protocol import device_banner
from hexfleet.virtual_phone.shell_service import serve_shell
from hexfleet.virtual_phone.storage import Capacity, Storage
from hexfleet.virtual_phone.sync import serve_sync
from hexfleet.virtual_phone.toolbox import PhoneContext, Toolbox

log = logging.getLogger(__name__)


@dataclass
class PhoneConfig:
    """Everything that makes one phone: which SoC, where its files live, where it listens."""

    profile: Profile
    root: Path
    index: int = 1
    host: str = "127.0.0.1"
    port: int = 0
    compute: ComputeMode = "htp"
    # The CPU ABI it reports and runs programs for (virtual_phone.executables.ABIS).
    abi: str = "x86_64"
    thermal: ThermalSettings = field(default_factory=ThermalSettings)
    reboot_s: float = 3.0
    bandwidth_mb_s: float | None = None
    faulty_npu: float = 0.0
    # The /data partition (None: the profile's capacity).
    capacity: Capacity | None = None


class VirtualPhone:
    """A virtual phone; all coroutine methods run on the loop that serves it."""

    def __init__(self, config: PhoneConfig) -> None:
        self.config = config
        self.profile = config.profile
        self.serialno = config.profile.serialno(config.index)
        self.props = config.profile.properties(self.serialno, config.abi)
        self.fs = PhoneFilesystem(config.root)
        self.storage = Storage(self.fs, config.capacity or Capacity.of(config.profile))
        self.health = Health(config.thermal)
        self.processes = ProcessTable()
        self.faults = LinkFaults()
        self.faults.limit_bandwidth(config.bandwidth_mb_s)
        self.faults.faulty_npu = config.faulty_npu
        self.programs = Programs(
            self.fs,
            self.processes,
            self.faults,
            self.compute_settings,
            self.serialno,
            abi=config.abi,
        )
        self.context = PhoneContext(
            fs=self.fs,
            storage=self.storage,
            profile=self.profile,
            props=self.props,
            health=self.health,
            processes=self.processes,
            programs=self.programs,
            reboot=self.reboot,
        )
        self.toolbox = Toolbox(self.context)
        self.fs.add_refresher("/sys/", self.health.write_sysfs)
        self.processes.on_change(self._update_load)
        self.daemon = AdbDaemon(
            banner=device_banner(self.props, FEATURES), resolve=self.resolve, faults=self.faults
        )
        self.port = config.port
        self._offline_timer: asyncio.TimerHandle | None = None
        self._sysfs_refresh: asyncio.Task[None] | None = None

    @property
    def serial(self) -> str:
        """The serial the adb server gives this phone once connected (host:port)."""
        return f"{self.config.host}:{self.port}"

    @property
    def online(self) -> bool:
        return self.daemon.listening

    def compute_settings(self) -> ComputeSettings:
        return ComputeSettings(
            mode=self.config.compute,
            htp_arch=self.profile.htp_arch,
            soc=self.profile.soc,
            faulty_npu=self.faults.faulty_npu,
            slow_npu=self.faults.slow_npu,
        )

    def _update_load(self) -> None:
        computing = self.processes.computing()
        self.health.set_load(1.0 if computing else 0.0)
        if computing and self._sysfs_refresh is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not on the phone's loop (a test driving the table directly)
                return
            self._sysfs_refresh = loop.create_task(self._refresh_sysfs())

    async def _refresh_sysfs(self) -> None:
        """Keep /sys current while something computes (a shell `cat` refreshes it anyway)."""
        try:
            while self.processes.computing():
                self.health.write_sysfs(self.fs)
                await asyncio.sleep(self.health.settings.poll_s)
            self.health.write_sysfs(self.fs)
        except OSError as exc:  # the phone's folder went away (a test tearing it down)
            log.warning("%s: /sys not refreshed: %s", self.serialno, exc)
        finally:
            self._sysfs_refresh = None

    async def start(self) -> None:
        """Create the phone's folders (kept across restarts) and start listening."""
        self.fs.create_layout()
        self.health.write_sysfs(self.fs)
        self.port = await self.daemon.start(self.config.host, self.port)
        self.config.port = self.port
        log.info("%s (%s) listening on %s", self.serialno, self.profile.soc, self.serial)

    async def stop(self) -> None:
        """Stop listening, cut connections, end every process (a phone switched off)."""
        if self._offline_timer is not None:
            self._offline_timer.cancel()
            self._offline_timer = None
        await self.daemon.stop()
        for task in list(self.context.background):
            task.cancel()
        if self.context.background:
            await asyncio.gather(*list(self.context.background), return_exceptions=True)
        self.processes.kill_all()
        if self._sysfs_refresh is not None:
            self._sysfs_refresh.cancel()
            await asyncio.gather(self._sysfs_refresh, return_exceptions=True)

    async def go_offline(self, seconds: float | None = None) -> None:
        """Disappear from the network; come back on the same port after `seconds` (if given)."""
        await self.daemon.stop()
        log.info("%s offline%s", self.serialno, f" for {seconds}s" if seconds else "")
        if seconds is not None:
            loop = asyncio.get_running_loop()
            self._offline_timer = loop.call_later(
                seconds, lambda: asyncio.ensure_future(self.come_online())
            )

    async def come_online(self) -> None:
        """Listen again on the same port, so the adb server sees the same serial."""
        self._offline_timer = None
        if not self.daemon.listening:
            await self.daemon.start(self.config.host, self.port)
            log.info("%s back online on %s", self.serialno, self.serial)

    def reboot(self) -> None:
        """What `adb reboot` does: every process ends, the phone is gone for `reboot_s`."""

        async def cycle() -> None:
            await asyncio.sleep(0.05)
            await self.stop()
            await self.go_offline(self.config.reboot_s)

        asyncio.ensure_future(cycle())

    def resolve(self, destination: str) -> ServiceHandler | None:
        """The handler of a service the host opens, or None (the host then sees CLSE)."""
        if destination.startswith(("shell:", "shell,", "exec:")):
            return lambda stream: serve_shell(stream, self.toolbox, destination)
        if destination == "sync:":
            return lambda stream: serve_sync(stream, self.fs, self.storage)
        if destination.startswith("reboot:"):
            return self._reboot_service
        return None

    async def _reboot_service(self, stream: Stream) -> None:
        self.reboot()

    async def apply(self, command: FaultCommand) -> None:
        """Apply a fault command (from a test, or another process through the fleet)."""
        value = command.value
        kind = command.kind
        if kind == "bandwidth":
            self.faults.limit_bandwidth(value)
        elif kind == "drop_after_bytes":
            self.faults.drop_after_bytes(int(value or 0))
        elif kind == "drop_at":
            self.faults.drop_in(value or 0.0)
        elif kind == "stall":
            self.faults.stall(value)
        elif kind == "offline":
            await self.go_offline(value)
        elif kind == "online":
            await self.come_online()
        elif kind == "crash_runner":
            self.faults.crash_runner(after_s=value or 0.0)
        elif kind == "faulty_npu":
            self.faults.faulty_npu = value or 0.0
        elif kind == "slow_npu":
            self.faults.slow_npu = value or 0.0
        elif kind == "clear":
            self.faults.clear_link()
            self.faults.faulty_npu = 0.0
            self.faults.slow_npu = 0.0
        log.info("%s: fault %s %s applied", self.serialno, kind, value)

    def describe(self) -> dict[str, object]:
        """A JSON-able summary for `virtual-devices list`."""
        return {
            "serial": self.serial,
            "serialno": self.serialno,
            "soc": self.profile.soc,
            "model": self.profile.model,
            "htp_arch": self.profile.htp_arch,
            "compute": self.config.compute,
            "online": self.online,
            "bandwidth_mb_s": self.faults.bandwidth_mb_s,
        }
