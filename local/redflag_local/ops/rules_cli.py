"""`redflag rules validate|list|diff|push|pull`: rules kept as YAML in rules/, put where the
functions read them. Target: SSM on AWS with --profile/--region, else a local `redflag serve`."""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from redflag import kinds
from redflag.kinds import Rule
from redflag_local.ops.rules_files import RULES_DIR, RuleProblem, load_rules
from redflag_local.ops.rules_sync import (
    DEFAULT_ENDPOINT,
    DEFAULT_RULES_PATH,
    RULES_PATH_PATTERN,
    LocalServerRuleStore,
    RuleChange,
    RuleStore,
    SsmRuleStore,
    StoreError,
    diff_rules,
    pull,
    push,
)

app = typer.Typer(help="Rules as YAML files (rules/<task>.yaml), checked and synced to SSM.", no_args_is_help=True)


def _rules_path(value: str) -> str:
    if not re.match(RULES_PATH_PATTERN, value):
        raise typer.BadParameter(f"'{value}' is not an SSM path like /redflag/rules")
    return value.rstrip("/")


RulesDir = Annotated[
    Path, typer.Option("--rules-dir", help="Folder of <task>.yaml files", file_okay=False, dir_okay=True)
]
RulesPath = Annotated[str, typer.Option("--rules-path", help="SSM path: one parameter per task", callback=_rules_path)]
Profile = Annotated[str | None, typer.Option("--profile", help="AWS profile: target SSM on AWS")]
Region = Annotated[str | None, typer.Option("--region", help="AWS region: target SSM on AWS")]
Endpoint = Annotated[
    str | None, typer.Option("--endpoint", help=f"A running `redflag serve` (default {DEFAULT_ENDPOINT})")
]


def _print_problems(problems: list[RuleProblem]) -> None:
    for p in problems:
        typer.echo(f"{_shown(p.file)}: {p.field}: {p.reason}")


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _valid_rules(rules_dir: Path, sending: bool = True) -> dict[str, Rule]:
    if not rules_dir.is_dir():
        typer.echo(f"{rules_dir}: no such folder", err=True)
        raise typer.Exit(1)
    rules, problems = load_rules(rules_dir)
    if problems:
        _print_problems(problems)
        note = "; nothing was sent" if sending else ""
        typer.echo(f"{len(problems)} problem(s) in {_shown(rules_dir)}{note}", err=True)
        raise typer.Exit(1)
    return rules


def _store(profile: str | None, region: str | None, endpoint: str | None, rules_path: str) -> RuleStore:
    if not (profile or region):
        return LocalServerRuleStore(endpoint or DEFAULT_ENDPOINT, rules_path)
    if endpoint:
        raise typer.BadParameter("--endpoint targets a local server; --profile/--region target AWS: pick one")
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        session = boto3.Session(profile_name=profile, region_name=region)
        client = session.client("ssm")
    except BotoCoreError as exc:
        typer.echo(f"AWS: {exc}", err=True)
        raise typer.Exit(1) from exc
    where = f"AWS account (profile {session.profile_name}, region {session.region_name})"
    return SsmRuleStore(client, rules_path, f"SSM {rules_path} on {where}")


def _guard(fn: Any, *args: Any) -> Any:
    """Run a store operation; an unreachable or refusing store is a clear one-line error."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(*args)
    except (StoreError, BotoCoreError, ClientError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


def _show(value: Any) -> str:
    return "(absent)" if value is None else json.dumps(value)


def _print_changes(console: Console, changes: list[RuleChange], prune: bool, done: bool) -> None:
    if done:
        only = "deleted (--prune)" if prune else "only in SSM: kept (push --prune deletes it)"
        verbs = {"added": "added", "changed": "changed", "only_in_store": only}
    else:
        only = "only in SSM: push keeps it, push --prune deletes it"
        verbs = {"added": "would be added", "changed": "would change", "only_in_store": only}
    marks = {"added": "[green]+[/]", "changed": "[yellow]~[/]", "only_in_store": "[red]-[/]"}
    for c in changes:
        if c.kind == "unchanged":
            continue
        console.print(f"{marks[c.kind]} {escape(c.task)}: {verbs[c.kind]}")
        for f in c.fields:
            console.print(f"    {escape(f.field)}: {escape(_show(f.stored))} -> {escape(_show(f.local))}")
    same = sum(c.kind == "unchanged" for c in changes)
    console.print(f"{same} unchanged")


@app.command()
def validate(rules_dir: RulesDir = RULES_DIR) -> None:
    """Check every rule file with the model the functions use; print file, field and reason."""
    rules = _valid_rules(rules_dir, sending=False)
    typer.echo(f"{len(rules)} rule(s) in {_shown(rules_dir)}: all valid")


@app.command("list")
def list_rules(rules_dir: RulesDir = RULES_DIR) -> None:
    """Show the rules in the folder as a table."""
    rules, problems = load_rules(rules_dir)
    with_segments = any(r.segments is not None for r in rules.values())
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
    for column in ("task", "kind", "threshold", "expected", "notify", "severity"):
        table.add_column(column, no_wrap=True)
    if with_segments:
        table.add_column("segments")
    table.add_column("label")
    for task, r in sorted(rules.items()):
        row = [task, r.kind, threshold_text(r), f"{r.expected_seconds} s" if r.expected_seconds else ""]
        row += [",".join(r.notify), r.severity]
        if with_segments:
            row.append(_segments(r))
        table.add_row(*(escape(cell) for cell in [*row, r.label]))
    Console().print(table)
    if problems:
        _print_problems(problems)
        raise typer.Exit(1)


def threshold_text(rule: Rule) -> str:
    """A rule's threshold in a few words (rules list, serve's banner), in its kind's words."""
    return kinds.get(rule.kind).threshold_text(rule)


def _segments(rule: Rule) -> str:
    if rule.segments is None:
        return "(all)"
    if isinstance(rule.segments, list):
        return "only " + ", ".join(rule.segments)
    return "; ".join(f"{s}: {o.threshold_seconds or '-'} s" for s, o in rule.segments.items())


@dataclass(frozen=True)
class Target:
    """Where rules come from (files) and go to (SSM on AWS, or a local `redflag serve`)."""

    rules_dir: Path
    rules_path: str
    profile: str | None
    region: str | None
    endpoint: str | None

    def store(self) -> RuleStore:
        return _store(self.profile, self.region, self.endpoint, self.rules_path)


_TARGET_OPTIONS = [
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
    for name, annotation, default in (
        ("rules_dir", RulesDir, RULES_DIR),
        ("rules_path", RulesPath, DEFAULT_RULES_PATH),
        ("profile", Profile, None),
        ("region", Region, None),
        ("endpoint", Endpoint, None),
    )
]


def targeted(fn: Callable[..., None]) -> Callable[..., None]:
    """Give a command the shared target options (--rules-dir, --rules-path, --profile, --region,
    --endpoint) once, as a ``Target`` first argument, instead of five parameters in each command."""
    own = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in inspect.signature(fn, eval_str=True).parameters.values()
        if p.name != "target"
    ]

    @functools.wraps(fn)
    def command(**kwargs: Any) -> None:
        target = Target(**{p.name: kwargs.pop(p.name) for p in _TARGET_OPTIONS})
        fn(target, **kwargs)

    del command.__wrapped__  # typer reads the signature below, not fn's
    params = [*_TARGET_OPTIONS, *own]
    command.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


@app.command()
@targeted
def diff(target: Target) -> None:
    """What `push` would change: added, changed (field by field), and rules only in SSM."""
    rules = _valid_rules(target.rules_dir)
    store = target.store()
    stored = _guard(store.read)
    console = Console()
    console.print(f"files in {escape(_shown(target.rules_dir))} vs {escape(store.description)}")
    _print_changes(console, diff_rules(rules, stored), prune=False, done=False)


@app.command("push")
@targeted
def push_rules(
    target: Target,
    prune: Annotated[bool, typer.Option("--prune", help="Also delete rules that are only in SSM")] = False,
) -> None:
    """Write added and changed rules to SSM. Nothing is sent if any rule file is invalid."""
    rules = _valid_rules(target.rules_dir)
    store = target.store()
    changes = _guard(push, store, rules, prune)
    console = Console()
    console.print(f"pushed {escape(_shown(target.rules_dir))} to {escape(store.description)}")
    _print_changes(console, changes, prune=prune, done=True)


@app.command("pull")
@targeted
def pull_rules(target: Target) -> None:
    """Write the rules in SSM to <rules-dir>/<task>.yaml (files that already agree are left as they are)."""
    report = _guard(pull, target.store(), target.rules_dir)
    for path in report.written:
        typer.echo(f"wrote {_shown(path)}")
    typer.echo(f"{len(report.written)} written, {len(report.unchanged)} unchanged")
    for task, why in report.skipped:
        typer.echo(f"skipped {target.rules_path}/{task}: {why}", err=True)
    if report.skipped:
        raise typer.Exit(1)


def preview(
    task: Annotated[str, typer.Argument(help="The rule's task (rules/<task>.yaml)")],
    rules_dir: RulesDir = RULES_DIR,
    name: Annotated[str, typer.Option(help="user.name of the made-up user")] = "Ada Lovelace",
    segment: Annotated[str | None, typer.Option(help="user.segment (picks a segment override)")] = None,
    failures: Annotated[bool, typer.Option("--failures", help="Flagged by max_failures, not by time")] = False,
    html: Annotated[bool, typer.Option("--html", help="Print the HTML part too")] = False,
) -> None:
    """Print the email a red flag of this rule sends, rendered with made-up values, as the alerts
    function renders it (the rule's own template, or the default for the kind of struggle)."""
    from redflag.channels.email import compose_email
    from redflag.core import timers
    from redflag.core.events import EventType, UserInfo

    rules = _valid_rules(rules_dir, sending=False)
    if task not in rules:
        typer.echo(f"no rule {task!r} in {_shown(rules_dir)}; there are: {', '.join(sorted(rules))}", err=True)
        raise typer.Exit(1)
    rule = rules[task].for_segment(segment)
    kind = kinds.get(rule.kind)
    if kind.arms is None or kind.about != "user":
        typer.echo(f"{task}: a {kind.name} rule tells customer success only; it never emails a user")
        raise typer.Exit(0)
    if failures and not rule.max_failures:
        typer.echo(f"{task}: the rule has no max_failures, so failures never flag it", err=True)
        raise typer.Exit(1)
    key = timers.TimerKey(user_id="u-preview", task=task)
    user = UserInfo(email="ada@example.com", name=name, segment=segment)
    t0 = 1_800_000_000.0
    timer = kinds.apply_event(None, key, kind.arms, t0, rule, t0, user).timer
    if failures:
        for i in range(1, (rule.max_failures or 0) + 1):
            timer = kinds.apply_event(timer, key, EventType.TASK_FAILED, t0 + 60 * i, rule, t0 + 60 * i, user).timer
    else:
        timer = timers.expire(timer, (timer.due_at or t0) if timer else t0)
    email = (
        compose_email(timer, None, lambda u, e: "https://example.com/Prod/v1/unsubscribe?token=…") if timer else None
    )
    if email is None:
        typer.echo(f"{task}: this rule sends no email (notify: {', '.join(rule.notify)})", err=True)
        raise typer.Exit(1)
    console = Console(soft_wrap=True)
    console.print(f"[bold]To:[/] {escape(email.to_name or '')} <{escape(email.to_address)}>")
    console.print(f"[bold]Subject:[/] {escape(email.subject)}\n")
    console.print(escape(email.text), highlight=False)
    if html:
        console.print("\n[bold]-- HTML --[/]")
        console.print(escape(email.html), highlight=False)
