"""`hexfleet virtual-devices`: emulated Snapdragon phones, and how the embedded farm starts them.

This is the only module outside the emulated phone's own package and the tests that imports it:
the agent, the runner and the orchestrator never see an emulated phone, only an adb serial.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Annotated

import typer
from pydantic import ValidationError

from hexfleet.bundle import ABIS
from hexfleet.device_agent import adb_server
from hexfleet.errors import InvalidRequest
from hexfleet.settings import Settings
from hexfleet.virtual_phone import fleet
from hexfleet.virtual_phone.faults import FaultCommand
from hexfleet.virtual_phone.profiles import parse_profiles
from hexfleet.virtual_phone.storage import parse_storage

virtual_devices_app = typer.Typer(
    help="Start and stop emulated Snapdragon phones that speak the real ADB protocol.",
    no_args_is_help=True,
)

ALL_PROFILES = "sm8450,sm8550,sm8650,sm8750"


def _plan(
    settings: Settings,
    profiles: str,
    count: int | None,
    *,
    host: str,
    base_port: int,
    compute: str,
    abi: str = "x86_64",
    bandwidth_mb_s: float | None = None,
    faulty_npu: float = 0.0,
    storage: str | None = None,
) -> list[fleet.PhoneSpec]:
    if compute not in ("htp", "cpu"):
        raise InvalidRequest(f"compute must be htp or cpu, not {compute!r}")
    if abi not in ABIS:
        raise InvalidRequest(f"abi must be one of {', '.join(ABIS)}, not {abi!r}")
    parsed = parse_profiles(profiles)
    return fleet.plan(
        settings.ensure_data_dir(),
        parsed,
        count or len(parsed),
        host=host,
        base_port=base_port,
        compute=compute,  # type: ignore[arg-type]
        abi=abi,  # type: ignore[arg-type]
        bandwidth_mb_s=bandwidth_mb_s,
        faulty_npu=faulty_npu,
        storage_bytes=None if storage is None else parse_storage(storage),
    )


def _start(settings: Settings, specs: list[fleet.PhoneSpec], *, connect: bool) -> list:
    records = fleet.start_processes(settings.data_dir, specs)
    if connect:
        adb_server.connect(settings, [record.serial for record in records])
        for record in records:
            fleet.mark_connected(settings.data_dir, record.port)
    return records


def start_phones(
    settings: Settings,
    profiles: str,
    count: int | None,
    *,
    base_port: int,
    compute: str,
    abi: str = "x86_64",
) -> list[str]:
    """Start virtual phones on loopback as detached processes, connected to the adb server."""
    specs = _plan(
        settings, profiles, count, host="127.0.0.1", base_port=base_port, compute=compute, abi=abi
    )
    return [record.serial for record in _start(settings, specs, connect=True)]


def stop_phones(settings: Settings, serials: list[str] | None = None) -> list:
    """Stop virtual phones (all, or those serials) and disconnect them from the adb server."""
    stopped = fleet.stop_processes(settings.data_dir, serials)
    connected = [record.serial for record in stopped if record.connected]
    if connected:
        adb_server.disconnect(settings, connected)
    return stopped


@virtual_devices_app.command("up")
def up(
    count: Annotated[
        int, typer.Option("--count", "-n", min=1, max=64, help="How many phones.")
    ] = 1,
    profile: Annotated[
        str, typer.Option(help="Comma-separated SoCs, cycled over the phones.")
    ] = ALL_PROFILES,
    base_port: Annotated[
        int, typer.Option(help="Port of the first phone; the others follow.", min=1024, max=65535)
    ] = 18500,
    connect: Annotated[bool, typer.Option(help="Run `adb connect` for each phone.")] = False,
    compute: Annotated[str, typer.Option(help="htp (QNN HTP simulator) or cpu.")] = "htp",
    abi: Annotated[
        str,
        typer.Option(help="CPU ABI: x86_64 (runs host builds) or arm64-v8a (under qemu-user)."),
    ] = "x86_64",
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    unsafe_bind: Annotated[
        bool, typer.Option(help="Allow a non-loopback --host (anyone reaching it runs commands).")
    ] = False,
    bandwidth: Annotated[
        float | None, typer.Option(help="Limit each phone's link to this many MB/s.")
    ] = None,
    faulty_npu: Annotated[
        float, typer.Option(help="Perturb model outputs by this relative magnitude.")
    ] = 0.0,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Each phone's storage as marketed, e.g. 128GB or 1TB (default: its profile's). "
            "/data gets this less 8 GiB of system partitions, 1.26 GB of which the phone's own "
            "apps take: a small one (e.g. 12GB) shows how the farm copes with a full phone."
        ),
    ] = None,
    foreground: Annotated[
        bool, typer.Option(help="Serve in this process until Ctrl-C instead of detaching.")
    ] = False,
) -> None:
    """Start N virtual phones, each listening on its own port with its own serial and folder."""
    fleet.check_bind_host(host, unsafe_bind=unsafe_bind)
    settings = Settings()
    specs = _plan(
        settings,
        profile,
        count,
        host=host,
        base_port=base_port,
        compute=compute,
        abi=abi,
        bandwidth_mb_s=bandwidth,
        faulty_npu=faulty_npu,
        storage=storage,
    )
    if foreground:
        _serve_foreground(settings, specs, connect=connect)
        return
    records = _start(settings, specs, connect=connect)
    for record in records:
        typer.echo(
            f"{record.serial}  {record.soc} ({record.model}, htp v{record.htp_arch})  "
            f"serialno {record.serialno}  compute {record.compute}  pid {record.pid}"
        )


def _serve_foreground(settings: Settings, specs: list, *, connect: bool) -> None:
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with fleet.foreground(specs) as phones:
            serials = [phone.serial for phone in phones]
            if connect:
                adb_server.connect(settings, serials)
            for phone in phones:
                typer.echo(f"{phone.serial}  {phone.profile.soc}  serialno {phone.serialno}")
            typer.echo("serving in the foreground; Ctrl-C stops")
            with contextlib.suppress(KeyboardInterrupt):
                while not stop.wait(0.5):
                    pass
            if connect:
                adb_server.disconnect(settings, serials)
    finally:
        signal.signal(signal.SIGTERM, previous)


@virtual_devices_app.command("down")
def down(
    serial: Annotated[
        list[str] | None, typer.Option(help="Stop only this phone (repeatable).")
    ] = None,
) -> None:
    """Stop virtual phones started by `up` (all of them unless --serial is given)."""
    stopped = stop_phones(Settings(), serial or None)
    typer.echo(f"stopped {len(stopped)} virtual phone(s)")


@virtual_devices_app.command("list")
def list_phones(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the running virtual phones."""
    records = fleet.read_records(Settings().data_dir)
    if as_json:
        typer.echo(fleet.records_as_json(records))
        return
    for record in records:
        typer.echo(
            f"{record.serial}  {record.soc}  {record.model}  htp v{record.htp_arch}  "
            f"{record.compute}  serialno {record.serialno}  pid {record.pid}"
        )


@virtual_devices_app.command("fault")
def fault(
    serial: Annotated[str, typer.Argument(help="host:port or ro.serialno of the phone.")],
    kind: Annotated[
        str,
        typer.Argument(
            help="bandwidth | drop_after_bytes | drop_at | stall | offline | online | "
            "crash_runner | faulty_npu | slow_npu | clear"
        ),
    ],
    value: Annotated[float | None, typer.Argument(help="MB/s, bytes or seconds.")] = None,
) -> None:
    """Inject a fault into a running virtual phone (for tests and demos)."""
    try:
        command = FaultCommand(kind=kind, value=value)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise InvalidRequest(f"bad fault: {exc.errors()[0]['msg']}") from exc
    reply = fleet.send_fault(Settings().data_dir, serial, command)
    if not reply.ok:
        raise InvalidRequest(reply.message)
    typer.echo(reply.message)
