"""The `hexfleet` command: composes every package's command group into one typer app.

Errors that derive from HexfleetError become one line on stderr and the error's exit code;
never a traceback for a user's mistake.
"""

from __future__ import annotations

import sys

import typer

from device_agent.cli import agent_app, virtual_devices_app
from hexfleet import __version__
from hexfleet.errors import HexfleetError, NotImplementedYet
from models.cli import models_app

app = typer.Typer(
    name="hexfleet",
    help="Run generative-AI jobs on a fleet of Snapdragon phones (real or virtual).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.add_typer(models_app, name="models")
app.add_typer(virtual_devices_app, name="virtual-devices")
app.add_typer(agent_app, name="agent")


@app.command()
def version() -> None:
    """Print hexfleet's version."""
    typer.echo(f"hexfleet {__version__}")


def _not_yet(what: str) -> None:
    raise NotImplementedYet(f"'hexfleet {what}' is not implemented yet")


@app.command()
def devices() -> None:
    """List the fleet's phones with SoC, Hexagon arch, state, battery and temperature."""
    _not_yet("devices")


@app.command()
def generate() -> None:
    """Generate images from a prompt on the selected phones."""
    _not_yet("generate")


@app.command()
def bench() -> None:
    """Benchmark a model on the selected phones."""
    _not_yet("bench")


@app.command()
def validate() -> None:
    """Check that every selected phone gives the same answer as the reference."""
    _not_yet("validate")


@app.command()
def jobs() -> None:
    """List jobs."""
    _not_yet("jobs")


@app.command()
def serve() -> None:
    """Run the orchestrator API and ingest worker."""
    _not_yet("serve")


@app.command()
def demo() -> None:
    """Bring up a farm of virtual phones, generate and benchmark, print the results, tear down."""
    _not_yet("demo")


def main() -> None:
    """Console-script entry point: run the app, turning hexfleet errors into one-line messages."""
    try:
        app()
    except HexfleetError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
