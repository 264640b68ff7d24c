"""Command groups for a host with phones: `hexfleet agent` and `hexfleet virtual-devices`."""

from __future__ import annotations

import typer

from hexfleet.errors import NotImplementedYet

agent_app = typer.Typer(help="Run the device agent for the phones attached to this host.")
virtual_devices_app = typer.Typer(help="Start and stop emulated Snapdragon phones.")


@agent_app.callback(invoke_without_command=True)
def agent() -> None:
    """Run the device agent."""
    raise NotImplementedYet("'hexfleet agent' is not implemented yet")


@virtual_devices_app.callback(invoke_without_command=True)
def virtual_devices() -> None:
    """Start and stop virtual phones."""
    raise NotImplementedYet("'hexfleet virtual-devices' is not implemented yet")
