"""The `redflag` command: the local product, and the same tool against a real stack."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer

from redflag.events import EventType
from redflag_local.events_send import RETRY_DELAYS
from redflag_local.rules_cli import app as rules_app
from redflag_local.rules_files import RULES_DIR

app = typer.Typer(help="Red Flag: know when a user is struggling, while it still matters.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
OUTBOX = Path("outbox")


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


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on (keep it local: no auth)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on")] = 3000,
    outbox: Annotated[Path, typer.Option(file_okay=False, help="Folder for alerts: .eml emails, .json CS")] = OUTBOX,
    rules_dir: Annotated[Path, typer.Option(exists=True, file_okay=False, help="Rules to put in SSM")] = RULES_DIR,
    api_key: Annotated[str | None, typer.Option(help="Require this x-api-key, like the deployed API")] = None,
    tick: Annotated[float, typer.Option(min=0.1, max=60, help="Seconds between sweeps and stream deliveries")] = 1.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the functions' Powertools logs")] = False,
) -> None:
    """POST /v1/events on 127.0.0.1, answered by the real handler; alerts arrive in real time in --outbox."""
    from redflag_local import serve as serve_mod

    warnings.filterwarnings("ignore")
    try:
        serve_mod.run(host, port, outbox, rules_dir, api_key, tick, verbose)
    except serve_mod.ServeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def events(
    url: Annotated[str, typer.Option(help="http://127.0.0.1:3000/v1/events, or the stack's EventsApiUrl")],
    file: Annotated[
        str | None, typer.Argument(help='JSON: a list of events, {"events": [...]} or one event; - = stdin')
    ] = None,
    api_key: Annotated[str | None, typer.Option(envvar="REDFLAG_API_KEY", help="Sent as x-api-key")] = None,
    type_: Annotated[EventType | None, typer.Option("--type", help="One event from flags: its type")] = None,
    task: Annotated[str | None, typer.Option(help="Task name (names a rule)")] = None,
    user_id: Annotated[str | None, typer.Option(help="User id")] = None,
    email: Annotated[str | None, typer.Option(help="user.email: where the alert email goes")] = None,
    name: Annotated[str | None, typer.Option(help="user.name")] = None,
    instance_id: Annotated[str | None, typer.Option(help="Task instance (default: default)")] = None,
    event_id: Annotated[str | None, typer.Option(help="Applied once, however often it is sent")] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for each request")] = 30,
    event_ids: Annotated[
        bool, typer.Option("--event-ids/--no-event-ids", help="Give each event without an event_id a new one")
    ] = True,
    retries: Annotated[
        int, typer.Option(min=0, max=10, help="Resends of events answered retry (backoff 0.5 s, 1 s, 2 s, ...)")
    ] = len(RETRY_DELAYS),
) -> None:
    """Send events (a file, or one built from flags) and print each event's result; exit 1 if any failed.

    Events without an event_id get one (unless --no-event-ids), so what is answered retry is resent safely."""
    from rich.console import Console

    from redflag_local import events_send as es

    flags = [type_, task, user_id, email, name, instance_id, event_id]
    try:
        target = es.events_url(url)
        if file is not None:
            if any(v is not None for v in flags):
                raise es.EventsInputError("give a FILE or --type/--task/--user-id, not both")
            batch = es.load_events(file)
        elif type_ is None or task is None or user_id is None:
            raise es.EventsInputError("give a FILE, or --type, --task and --user-id for one event")
        else:
            batch = [es.build_event(type_.value, task, user_id, email, name, instance_id, event_id)]
    except es.EventsInputError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if event_ids:
        batch = es.with_event_ids(batch)
    console = Console()
    delays = tuple(RETRY_DELAYS[0] * 2**k for k in range(retries))
    outcomes = es.send(target, batch, api_key, timeout, delays=delays, on_retry=es.print_retry(console))
    if not es.report(outcomes, len(batch), console):
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
