"""`redflag demo`: synthetic product traffic through the whole pipeline, on moto, on a simulated clock.

Users start the seed tasks (rules/*.yaml); most finish within the expected time, a share struggle
and never do. Every simulated minute the events due are posted to the API handler, the sweeper
runs and the stream is delivered to the alerts handler, exactly as the deployed stack would.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from redflag.rules import Rule
from redflag_local.rules_files import as_parameters, load_rules
from redflag_local.stack import LocalStack

FIRST = [
    "Ada",
    "Grace",
    "Alan",
    "Katherine",
    "Linus",
    "Margaret",
    "Dennis",
    "Barbara",
    "Ken",
    "Frances",
    "Tim",
    "Radia",
]
LAST = ["Lovelace", "Hopper", "Turing", "Johnson", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson", "Allen"]
QUIET = {"POWERTOOLS_LOG_LEVEL": "ERROR", "POWERTOOLS_METRICS_DISABLED": "true"}
TICK = 60  # the sweeper's default schedule: rate(1 minute)


@dataclass(frozen=True)
class Visit:
    user_id: str
    name: str
    email: str | None
    task: str
    start: int  # seconds after the demo begins
    finish: int | None  # None: never finishes (struggles)

    def events(self, t0: float) -> list[tuple[int, dict]]:
        user = {"name": self.name, "segment": "trial"} | ({"email": self.email} if self.email else {})
        base = {"task": self.task, "user_id": self.user_id, "user": user}
        out = [(self.start, base | {"type": "task_started", "event_id": f"{self.user_id}-s"})]
        if self.finish is not None:
            out.append((self.finish, base | {"type": "task_completed", "event_id": f"{self.user_id}-c"}))
        for at, event in out:
            event["occurred_at"] = datetime.fromtimestamp(t0 + at, UTC).isoformat()
        return out


def plan_visits(rules: dict[str, Rule], users: int, seed: int, struggle_share: float = 0.25) -> list[Visit]:
    rng = random.Random(seed)
    tasks = sorted(rules)
    visits = []
    for i in range(users):
        task = rng.choice(tasks)
        rule = rules[task]
        expected = rule.expected_seconds or rule.threshold_seconds // 2
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = None if rng.random() < 0.1 else f"{first.lower()}.{last.lower()}{i}@example.com"
        start = rng.randrange(0, 10 * 60)
        finish = None if rng.random() < struggle_share else start + rng.randrange(expected // 2, expected + 1)
        visits.append(Visit(f"user-{i:04d}", f"{first} {last}", email, task, start, finish))
    return visits


def run(users: int = 24, seed: int = 7, speed: float = 600, show: int = 3, console: Console | None = None) -> dict:
    console = console or Console()
    rules, problems = load_rules()
    if problems:
        raise SystemExit("\n".join(map(str, problems)))
    visits = plan_visits(rules, users, seed)
    with LocalStack(env_overrides=QUIET) as stack:
        stack.put_rules(as_parameters(rules))
        t0 = stack.clock()
        timeline = sorted((at, e) for v in visits for at, e in v.events(t0))
        horizon = max(v.start for v in visits) + max(r.threshold_seconds for r in rules.values()) + 2 * TICK
        console.print(
            f"[bold]Red Flag demo[/]: {users} users, {len(rules)} tasks, seed {seed}, "
            f"{horizon // 60} simulated minutes on moto (template.yaml deployed with CloudFormation)"
        )
        progress = Progress(
            TextColumn("[progress.description]{task.description}"), BarColumn(), TextColumn("{task.fields[clock]}"),
            TimeElapsedColumn(), console=console,
        )  # fmt: skip
        with progress:
            bar = progress.add_task("simulated time", total=horizon, clock="t+0:00")
            posted = -1.0

            def product_traffic() -> None:  # events are posted when they happen, also mid-sweep
                nonlocal posted
                elapsed = stack.clock() - t0
                due = [e for at, e in timeline if posted < at <= elapsed]
                posted = elapsed
                for i in range(0, len(due), 100):
                    stack.post_events({"events": due[i : i + 100]})
                stack.deliver_stream()
                progress.update(
                    bar, completed=min(elapsed, horizon), clock=f"t+{int(elapsed) // 60}:{int(elapsed) % 60:02d}"
                )
                if speed > 0:
                    time.sleep(TICK / 3 / speed)

            def between_passes(wake: float) -> None:
                stack.deliver_stream()  # what the pass just flagged: the stream delivers in ~1 s
                stack.clock.advance(wake - stack.clock())
                product_traffic()

            stack.clock.on_sleep.append(between_passes)
            for minute in range(0, horizon, TICK):  # the sweeper's schedule: rate(1 minute)
                stack.clock.advance(t0 + minute - stack.clock())
                product_traffic()
                stack.sweep()
                product_traffic()
        emails, cs = stack.emails(), stack.cs_alerts()
        _show(console, emails, cs, visits, rules, show)
        return {"emails": len(emails), "cs_alerts": len(cs), "visits": len(visits)}


def _show(console: Console, emails: list, cs: list, visits: list[Visit], rules: dict[str, Rule], show: int) -> None:
    console.rule(f"[bold]Emails to users[/] ({len(emails)})")
    for email in emails[:show]:
        console.print(Panel(email["text"], title=f"To: {email['to']}", subtitle=email["subject"], expand=False))
    if len(emails) > show:
        console.print(f"… and {len(emails) - show} more (--show N to see them)")
    console.rule(f"[bold]Alerts to customer success[/] (SNS, {len(cs)})")
    table = Table("user", "name", "task", "open for", "red flag at", "severity")
    for alert in cs:
        m = alert["message"]
        table.add_row(
            m["user_id"], m["user"].get("name", ""), m["label"], f"{m['elapsed_seconds'] / 60:.1f} min",
            f"{m['threshold_seconds'] // 60} min", m["severity"],
        )  # fmt: skip
    console.print(table)
    console.rule("[bold]Summary[/]")
    flagged = Counter(a["message"]["task"] for a in cs)
    summary = Table("task", "red flag at", "started", "completed", "flagged", "emails")
    by_task_email = Counter()
    email_to_task = {v.email: v.task for v in visits if v.email}
    for email in emails:
        address = email["message"]["To"].addresses[0].addr_spec
        by_task_email[email_to_task.get(address, "?")] += 1
    for task, rule in sorted(rules.items()):
        mine = [v for v in visits if v.task == task]
        summary.add_row(
            task, f"{rule.threshold_seconds // 60} min", str(len(mine)),
            str(sum(v.finish is not None for v in mine)), str(flagged[task]), str(by_task_email[task]),
        )  # fmt: skip
    console.print(summary)
