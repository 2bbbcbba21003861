"""The `redflag` command: the local product, and the same tool against a real stack."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from redflag.core.events import MAX_EVENTS, EventType
from redflag_local.ops.events_send import RETRY_DELAYS
from redflag_local.ops.rules_cli import app as rules_app
from redflag_local.ops.rules_cli import preview as rules_preview
from redflag_local.ops.rules_files import RULES_DIR
from redflag_local.ops.users_cli import app as users_app

if TYPE_CHECKING:
    from redflag_local.ops.dlq import ReplayTarget

app = typer.Typer(help="Red Flag: know when a user is struggling, while it still matters.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
app.command("preview")(rules_preview)
app.add_typer(users_app, name="users")
OUTBOX = Path("outbox")


@app.callback()
def main() -> None:
    """Local runs use moto (no AWS account needed); rules and events commands can target a real stack."""


@app.command()
def demo(
    users: int = typer.Option(40, min=1, max=2000, help="How many synthetic landing-page users"),
    seed: int = typer.Option(7, help="Random seed for the traffic"),
    speed: float = typer.Option(600, min=0, help="Simulated seconds per real second (0 = no waiting)"),
    show: int = typer.Option(3, min=0, help="How many emails to print in full"),
    segment: bool = typer.Option(False, "--segment", help="Scene 2 through the Segment SDK and the tracking API"),
) -> None:
    """Run the whole pipeline on moto, on a simulated clock, and show what it sent."""
    from redflag_local.standin import demo as demo_mod

    warnings.filterwarnings("ignore")
    demo_mod.run(users=users, seed=seed, speed=speed, show=show, segment=segment)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on (keep it local: no auth)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on")] = 3000,
    outbox: Annotated[Path, typer.Option(file_okay=False, help="Folder for alerts: .eml emails, .json CS")] = OUTBOX,
    rules_dir: Annotated[Path, typer.Option(exists=True, file_okay=False, help="Rules to put in SSM")] = RULES_DIR,
    api_key: Annotated[str | None, typer.Option(help="Require this x-api-key, like the deployed API")] = None,
    write_key: Annotated[
        list[str] | None,
        typer.Option(help="The tracking API's write key (repeatable: several at once, as while rotating one)"),
    ] = None,
    tick: Annotated[float, typer.Option(min=0.1, max=60, help="Seconds between sweeps and stream deliveries")] = 1.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the functions' Powertools logs")] = False,
    parameter: Annotated[
        list[str] | None,
        typer.Option(help="A stack parameter, NAME=VALUE (repeatable), as sam deploy --parameter-overrides takes it"),
    ] = None,
) -> None:
    """POST /v1/events on 127.0.0.1, answered by the real handler; alerts arrive in real time in --outbox."""
    from redflag_local.standin import serve as serve_mod

    warnings.filterwarnings("ignore")
    parameters = {}
    for item in parameter or []:
        name, sep, value = item.partition("=")
        if not sep or not name.isalnum():
            raise typer.BadParameter(f"{item!r}: expected NAME=VALUE, e.g. QuietHours=off", param_hint="--parameter")
        parameters[name] = value
    try:
        serve_mod.run(
            host,
            port,
            outbox,
            rules_dir,
            api_key=api_key,
            write_keys=write_key,
            tick_seconds=tick,
            verbose=verbose,
            parameters=parameters,
        )
    except serve_mod.ServeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


class Dialect(StrEnum):
    redflag = "redflag"
    segment = "segment"


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
    dialect: Annotated[
        Dialect,
        typer.Option(help="redflag: POST /v1/events; segment: Segment Spec messages to POST /v1/batch (write key)"),
    ] = Dialect.redflag,
    write_key: Annotated[
        str | None, typer.Option(envvar="REDFLAG_WRITE_KEY", help="segment: the write key (Basic auth username)")
    ] = None,
    track: Annotated[str | None, typer.Option("--event", help="segment: one track call from flags, its name")] = None,
) -> None:
    """Send events (a file, or one built from flags) and print each event's result; exit 1 if any failed.

    Events without an event_id get one (unless --no-event-ids), so what is answered retry is resent safely.
    With --dialect segment the file holds Segment Spec messages (track, identify, ...) and messageId is the id."""
    from rich.console import Console

    from redflag_local.ops import events_send as es

    spoken = es.DIALECTS[dialect.value]
    try:
        target = es.events_url(url, spoken)
        if spoken.spec:
            flags = [track, user_id, email, name, event_id]
            if any(v is not None for v in (type_, task, instance_id)):
                raise es.EventsInputError("--dialect segment: give --event (a track call's name), not --type/--task")
            if file is not None:
                if any(v is not None for v in flags):
                    raise es.EventsInputError("give a FILE or --event/--user-id, not both")
                batch = es.load_events(file, spoken)
            elif track is None or user_id is None:
                raise es.EventsInputError("give a FILE, or --event and --user-id for one track call")
            else:
                batch = [es.build_track(track, user_id, email, name, event_id)]
        else:
            flags = [type_, task, user_id, email, name, instance_id, event_id]
            if track is not None:
                raise es.EventsInputError("--event is a track call's name: with --dialect segment")
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
        batch = es.with_event_ids(batch, spoken.id_field)
    console = Console()
    delays = tuple(RETRY_DELAYS[0] * 2**k for k in range(retries))
    key = write_key if spoken.spec else api_key
    size = es.SEGMENT_MAX_MESSAGES if spoken.spec else MAX_EVENTS
    outcomes = es.send(
        target, batch, key, timeout, size, delays=delays, on_retry=es.print_retry(console), dialect=spoken
    )
    if not es.report(outcomes, len(batch), console, spoken):
        raise typer.Exit(1)


class ReportFormat(StrEnum):
    table = "table"
    json = "json"
    md = "md"


@app.command()
def report(
    fmt: Annotated[ReportFormat, typer.Option("--format", help="table, json or md")] = ReportFormat.table,
    plot: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False,
            help="Also draw the duration histograms, the funnels, account health over the weeks and the did-it-help "
            "intervals (PNG)",
        ),
    ] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Report on `redflag demo`'s two weeks (run quietly)")] = False,
    endpoint: Annotated[str, typer.Option(help="A running `redflag serve`")] = "http://127.0.0.1:3000",
    profile: Annotated[str | None, typer.Option(help="AWS profile: report on a deployed stack")] = None,
    region: Annotated[str | None, typer.Option(help="AWS region: report on a deployed stack")] = None,
    stack_name: Annotated[str, typer.Option(help="The deployed stack's name")] = "redflag",
) -> None:
    """Where users struggle: per task and segment, per account; and did the email help (emailed vs held out).

    From a running `redflag serve` (default), the demo's data (--demo), or a deployed stack
    (--profile/--region: its StatsTable and rules, read with your credentials)."""
    import time

    from rich.console import Console

    from redflag_local.ops import report as report_mod

    warnings.filterwarnings("ignore")
    try:
        if demo:
            import io

            from redflag_local.standin import demo as demo_mod

            found = demo_mod.run(speed=0, show=0, console=Console(file=io.StringIO()))["report"]
        elif profile or region:
            found = report_mod.from_aws(profile, region, stack_name, time.time())
        else:
            found = report_mod.from_server(endpoint)
    except OSError as exc:
        typer.echo(f"error: no `redflag serve` at {endpoint} ({exc}); start one, or use --demo or --profile", err=True)
        raise typer.Exit(1) from exc
    except Exception as exc:  # AWS errors: the class and its message (ids and names of resources, no data)
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from exc
    report_mod.render(found, fmt.value, Console(soft_wrap=fmt is not ReportFormat.table))
    if plot is not None:
        try:
            report_mod.plot(found, plot)
        except RuntimeError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        typer.echo(f"wrote {plot}", err=True)


# --- redflag dlq: the dead-letter queue of a deployed stack ----------------------------------------

dlq_app = typer.Typer(
    help="What the alerts function parked in the dead-letter queue of a deployed stack: list it, replay it.",
    no_args_is_help=True,
)
app.add_typer(dlq_app, name="dlq")

DlqProfile = Annotated[str | None, typer.Option("--profile", help="AWS profile (default: the usual chain)")]
DlqRegion = Annotated[str | None, typer.Option("--region", help="AWS region of the stack")]
StackName = Annotated[str, typer.Option("--stack-name", help="The deployed CloudFormation stack")]


class ParkedKind(StrEnum):
    stream_batch = "stream_batch"
    alert_rejected = "alert_rejected"
    slack_post = "slack_post"


def _dlq_target(profile: str | None, region: str | None, stack_name: str) -> ReplayTarget:
    """The stack's queue, tables, stream and alerts function (CloudFormation describe_stack_resources)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from redflag_local.ops import dlq

    try:
        return dlq.stack_target(boto3.Session(profile_name=profile, region_name=region), stack_name)
    except (dlq.DlqError, BotoCoreError, ClientError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


def _aws_errors_exit(fn: Callable[..., Any], *args: Any) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(*args)
    except (BotoCoreError, ClientError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@dlq_app.command("list")
def dlq_list(profile: DlqProfile = None, region: DlqRegion = None, stack_name: StackName = "redflag") -> None:
    """Show what is parked, oldest first: message id, kind, when, summary (ids and error codes only).

    Nothing is removed: each message is put back at once."""
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from redflag_local.ops import dlq

    target = _dlq_target(profile, region, stack_name)
    messages = _aws_errors_exit(dlq.peek, target.sqs, target.queue_url, target.wait_seconds)
    console = Console()
    if not messages:
        console.print("the dead-letter queue is empty")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
    for column in ("message id", "kind", "parked"):
        table.add_column(column, no_wrap=True)
    table.add_column("summary")
    for p in messages:
        table.add_row(*(escape(cell) for cell in (p.message_id, p.kind, dlq.parked_at(p), p.summary())))
    console.print(table)
    kinds: dict[str, int] = {}
    for p in messages:
        kinds[p.kind] = kinds.get(p.kind, 0) + 1
    console.print(f"{len(messages)} message(s): " + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())))


@dlq_app.command("replay")
def dlq_replay(
    ids: Annotated[list[str] | None, typer.Option("--id", help="Only this message (repeat for more)")] = None,
    kinds: Annotated[list[ParkedKind] | None, typer.Option("--kind", help="Only messages of this kind")] = None,
    profile: DlqProfile = None,
    region: DlqRegion = None,
    stack_name: StackName = "redflag",
) -> None:
    """Run parked messages through the alerts function again (fix the cause first); exit 1 if any stay.

    A message is deleted only when its records went through; the others stay in the queue, with the reason."""
    from redflag_local.ops import dlq

    target = _dlq_target(profile, region, stack_name)
    only = set(ids) if ids else None
    results = _aws_errors_exit(dlq.replay, target, only, {k.value for k in kinds} if kinds else None)
    for r in results:
        verb = "replayed" if r.ok else "left    "
        typer.echo(f"{verb} {r.parked.message_id} ({r.parked.kind}): {r.why}")
    missing = sorted((only or set()) - {r.parked.message_id for r in results})
    for message_id in missing:
        typer.echo(f"not in the queue (or held by another reader): {message_id}", err=True)
    left = sum(not r.ok for r in results)
    typer.echo(f"{len(results) - left} replayed, {left} left in the queue" if results else "nothing to replay")
    if left or missing:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
