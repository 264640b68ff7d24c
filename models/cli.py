"""`hexfleet models ...`: list, train, quantize, compile, evaluate and import models."""

from __future__ import annotations

import typer

from hexfleet.errors import NotImplementedYet

models_app = typer.Typer(help="Manage the model zoo: train, quantize, compile, evaluate, import.")


@models_app.callback(invoke_without_command=True)
def models() -> None:
    """Manage models."""
    raise NotImplementedYet("'hexfleet models' is not implemented yet")
