"""`hexfleet agent`: run the device agent for the phones attached to this host."""

from __future__ import annotations

import signal
from typing import Annotated

import typer

from hexfleet.settings import Settings

agent_app = typer.Typer(help="Run the device agent for the phones attached to this host.")


@agent_app.callback(invoke_without_command=True)
def agent(
    poll: Annotated[float, typer.Option(help="Seconds between looks at the adb server.")] = 1.0,
) -> None:
    """Run the device agent: one worker per online phone of the adb server, until Ctrl-C."""
    import logging

    from hexfleet.device_agent.agent import Agent

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    runner = Agent(Settings(), poll_s=poll)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: runner.stop())
    runner.run()
