"""The `redflag` command: the local product, and the same tool against a real stack."""

from __future__ import annotations

import warnings

import typer

app = typer.Typer(help="Red Flag: know when a user is struggling, while it still matters.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """Local runs use moto (no AWS account needed); rules and events commands can target a real stack."""


@app.command()
def demo(
    users: int = typer.Option(24, min=1, max=2000, help="How many synthetic users"),
    seed: int = typer.Option(7, help="Random seed for the traffic"),
    speed: float = typer.Option(600, min=0, help="Simulated seconds per real second (0 = no waiting)"),
    show: int = typer.Option(3, min=0, help="How many emails to print in full"),
) -> None:
    """Run the whole pipeline on moto, on a simulated clock, and show what it sent."""
    from redflag_local import demo as demo_mod

    warnings.filterwarnings("ignore")
    demo_mod.run(users=users, seed=seed, speed=speed, show=show)


if __name__ == "__main__":
    app()
