"""`redflag demo`: two simulated weeks of a product, through the whole pipeline on moto.

The seed rules (rules/*.yaml) and the template's defaults; the real handlers; a clock that jumps.
What it shows, in order:

1. **Learning what usual is**: users create landing pages; the first ones are armed with the rule's
   fallback threshold, then, once 20 completions were learned from the stream, with twice the median.
   A power user gets their segment's longer threshold. One user in five is held out of the email.
2. **Failing, not slow**: the third failed try at an email template is a red flag at once. With
   ``--segment`` this scene's calls go through the real Segment SDK (``segment-analytics-python``: an
   identify, then track calls the rule's ``track`` mapping names) to the tracking API over HTTP.
3. **Too many at once**: one user trips three red flags in an hour (CS gets one critical escalation)
   and a fourth, whose email the per-user cap holds back (CS still hears).
4. **Quiet hours**: a user in Tokyo struggles at 22:05 her time; CS hears at once, her email waits
   for 08:00 Tokyo time.
5. **Gone quiet**: daily practisers; one stops, and three days later that is a red flag.
6. **An account fading**: its weekly active users fall by 80 %; the Monday check tells CS of the drop,
   and its health score (account_health) turns red, with the signals that cost it most.
7. **A checkout**: a shopper stuck at the shipping step (CS hears which step, for how long, and what is
   usual there) while another goes on; then an hour of checkouts with 20 % abandoned crosses the 15 %
   abandonment rate (one alert for the product team) and the next hour, at 4 %, recovers it.
8. **Hearing back from SES**: SES's own events about the emails sent, through the configuration set's
   event destination: sends and deliveries, a hard bounce that suppresses an address, a complaint, and
   clicks on the help link, counted once each as responses.
9. **The report**: where users struggle, the checkout funnel step by step, the rates with their
   history, accounts by health, what came of the emails, and whether the email helped (emailed vs held
   out, with the 95 % interval on the difference); readable at 80 columns.

Customer success hears of every red flag on the alert topic and, through the Slack notifier, in a
Slack channel: here a local server on 127.0.0.1 plays Slack's incoming webhook, and one of the
messages it received is shown.
"""

from __future__ import annotations

import html
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from redflag_local.ops import report as report_mod
from redflag_local.ops.rules_files import as_parameters, load_rules
from redflag_local.standin.receiver import Receiver
from redflag_local.standin.serve import HttpAnswer, _Server, answer_from_proxy, proxy_event
from redflag_local.standin.stack import LocalStack, sample_event

QUIET = {"POWERTOOLS_LOG_LEVEL": "ERROR", "POWERTOOLS_METRICS_DISABLED": "true"}
MONDAY = datetime(2027, 1, 25, tzinfo=UTC)  # a Monday
SLACK = {
    "SlackWebhookParameter": "/redflag/slack-webhook",
    "CsLinkTemplate": "https://admin.example.com/users/{user_id}",
}
SLACK_PATH = "/services/T000/B000/demo"
FIRST = ["Ada", "Grace", "Alan", "Katherine", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances", "Tim"]
LAST = ["Lovelace", "Hopper", "Turing", "Johnson", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson"]


@dataclass
class Story:
    """What the demo saw happen, for the summary and for tests."""

    fallback_threshold: int | None = None
    learned_threshold: int | None = None
    learned_at: str | None = None
    power_user_threshold: int | None = None
    failure_flag: bool = False
    escalations: int = 0
    capped: bool = False
    deferred_until: str | None = None
    deferred_sent: bool = False
    inactivity_flag: bool = False
    usage_drop: str | None = None
    health_red: str | None = None  # the account whose health score turned red at the Monday check
    health_signals: list[str] | None = None  # what cost it most
    stuck_step: str | None = None  # the step the stuck shopper was flagged at
    shoppers_abandoned: int = 0
    rate_changes: list[str] | None = None  # the abandonment rate's crossing and recovery, in order
    ses_sent: int = 0
    ses_delivered: int = 0
    bounce_suppressed: str | None = None  # the user whose address a hard bounce suppressed
    complaint_suppressed: str | None = None
    clicks_counted: int = 0  # help-link clicks counted as responses (a second click on an email: not again)
    emails: int = 0
    cs_alerts: int = 0
    slack_posts: int = 0
    segment_calls: int = 0  # --segment: calls the Segment SDK sent to the tracking API


class TrackingFront:
    """The demo stack's tracking API over HTTP on 127.0.0.1 (a proxy event per request, as ``redflag serve``
    makes it), for the Segment SDK to post to; it keeps each answer's results."""

    def __init__(self, stack: LocalStack, console: Console) -> None:
        import boto3

        self.stack = stack
        self.console = console
        self.function = stack.template.function_for("tracking_api")
        secret = stack.function_env[self.function]["WRITE_KEYS_SECRET_ARN"]
        self.write_key = boto3.client("secretsmanager").get_secret_value(SecretId=secret)["SecretString"]
        self.results: list[dict[str, Any]] = []
        self._httpd = _Server(("127.0.0.1", 0), self)  # type: ignore[arg-type]  # serve's HTTP front, on this app
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def handle(self, method: str, target: str, headers: list, body: bytes | None, client_ip: str) -> HttpAnswer:
        event = proxy_event(method, target, headers, body, client_ip, self.stack.clock())
        answer = answer_from_proxy(self.stack.invoke(self.function, event))
        self.results += json.loads(answer.body or b"{}").get("results", [])
        return answer

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class Demo:
    def __init__(self, stack: LocalStack, console: Console, speed: float, segment: bool = False) -> None:
        self.stack = stack
        self.console = console
        self.speed = speed
        self.segment = segment
        self.story = Story()
        self._emails = 0
        self._cs = 0
        self._seq = 0

    # --- time, events, and what came out -----------------------------------------------------------

    def at(self, when: datetime) -> None:
        """Jump to ``when`` (the clock only moves forward)."""
        gap = when.timestamp() - self.stack.clock()
        if gap > 0:
            self.stack.clock.advance(gap)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.stack.clock(), UTC)

    def minutes(self, n: int, traffic: Any = None) -> None:
        """Let ``n`` minutes pass as AWS would: a sweeper run a minute, the stream delivered, and the
        product's events (``traffic(now)``) posted when they happen."""
        end = self.stack.clock() + n * 60
        while self.stack.clock() < end:
            if traffic is not None:
                traffic(self.stack.clock())
            self.stack.sweep()
            self.stack.deliver_stream()
            self.news()
            if self.speed > 0:
                time.sleep(60 / self.speed)

    def post(self, *events: dict[str, Any]) -> list[dict[str, Any]]:
        results = []
        for i in range(0, len(events), 100):
            status, body = self.stack.post_events({"events": list(events[i : i + 100])})
            refused = [r for r in body.get("results", []) if r["status"] in ("rejected", "retry")]
            if status != 202 or refused:  # the demo's own events are all good: say so loudly if one is not
                raise RuntimeError(f"the demo's events were refused: {status} {refused or body}")
            results += body["results"]
        self.stack.deliver_stream()
        return results

    def event(self, kind: str, task: str, user: str, minutes_ago: float = 0, **info: Any) -> dict[str, Any]:
        self._seq += 1
        stamp = datetime.fromtimestamp(self.stack.clock() - minutes_ago * 60, UTC).isoformat()
        name = info.pop("name", None)
        instance = {"instance_id": info.pop("instance_id")} if "instance_id" in info else {}
        step = {"properties": {"step": info.pop("step")}} if "step" in info else {}  # a funnel's step
        user_info = {"email": f"{user}@example.com"} | ({"name": name} if name else {}) | info
        return {"type": kind, "task": task, "user_id": user, "occurred_at": stamp, "event_id": f"demo-{self._seq}",
                "user": user_info} | instance | step  # fmt: skip

    def news(self) -> None:
        """Print what went out since the last look: one line per email and CS alert."""
        for email in self.stack.emails(since=self._emails):
            self._emails += 1
            user = email["message"]["X-RedFlag-Alert"].split("/")[0]
            self.say(f"[green]email[/] to {escape(user)}: {escape(email['subject'])}")
        for alert in self.stack.cs_alerts(since=self._cs):
            self._cs += 1
            m = alert["message"]
            severity = alert["attributes"].get("severity", {}).get("Value", "")
            tag = "[bold red]CS critical[/]" if severity == "critical" else "[yellow]CS[/]"
            summary = html.unescape(str(m.get("summary", m.get("content", {}).get("description", ""))))
            self.say(f"{tag} {escape(summary)}")  # CS messages are escaped for chat; shown here as text

    def say(self, text: str) -> None:
        self.console.print(f"[dim]{self.now():%a %H:%M} UTC[/]  {text}", highlight=False)

    def scene(self, title: str) -> None:
        self.console.rule(f"[bold]{title}[/]")

    def item(self, user: str, sk: str) -> dict[str, Any] | None:
        return self.stack.get_item(user, sk)

    # --- the scenes --------------------------------------------------------------------------------

    def learning(self, users: int, rng: random.Random) -> None:
        self.scene("1. Learning what usual is (create_landing_page: 2 x the median after 20 completions)")
        self.at(MONDAY + timedelta(hours=9))
        start = self.stack.clock()
        plan = []
        for i in range(users):
            user = f"p{i:03d}"
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            begins = start + rng.uniform(0, 50 * 60)
            struggles = rng.random() < 0.2
            takes = rng.lognormvariate(5.8, 0.35)  # median ~5.5 minutes
            late = struggles and rng.random() < 0.5  # some strugglers get there after the alert
            finish = begins + (takes * 6 if late else takes) if not struggles or late else None
            plan.append((user, name, begins, finish))
        plan.append(("grace-power", "Grace Hopper", start + 30 * 60, None))  # a power user who struggles
        posted: set[tuple[str, str]] = set()

        def traffic(now: float) -> None:
            due = []
            for user, name, begins, finish in plan:
                info = {"name": name} | ({"segment": "power_user"} if user == "grace-power" else {})
                if begins <= now and (user, "s") not in posted:
                    posted.add((user, "s"))
                    due.append(self.event("task_started", "create_landing_page", user, (now - begins) / 60, **info))
                if finish is not None and finish <= now and (user, "c") not in posted:
                    posted.add((user, "c"))
                    due.append(self.event("task_completed", "create_landing_page", user, (now - finish) / 60))
            if due:
                self.post(*due)
                self._note_thresholds(plan, posted)

        self.minutes(95, traffic)
        grace = self.item("grace-power", "task#create_landing_page#default")
        if grace:
            self.story.power_user_threshold = int(grace["threshold_seconds"])
            self.say(f"Grace is a power_user: her segment's threshold, {grace['threshold_seconds'] / 60:g} minutes")

    def _note_thresholds(self, plan: list[tuple], posted: set) -> None:
        for user, *_ in plan:
            item = self.item(user, "task#create_landing_page#default") if (user, "s") in posted else None
            if not item or user == "grace-power":
                continue
            basis, seconds = item.get("threshold_basis"), int(item.get("threshold_seconds", 0))
            if basis == "fallback" and self.story.fallback_threshold is None:
                self.story.fallback_threshold = seconds
                self.say(f"first starts are armed with the fallback threshold: {seconds / 60:g} minutes")
            if basis == "learned" and self.story.learned_threshold is None:
                self.story.learned_threshold, self.story.learned_at = seconds, f"{self.now():%a %H:%M}"
                usual = float(item.get("usual_seconds", 0)) / 60
                self.say(
                    f"[bold]learned threshold takes over[/]: {seconds / 60:.1f} minutes, 2 x the median of the "
                    f"first 20+ completions ({usual:.1f} minutes), instead of the fallback"
                )

    def failing(self) -> None:
        if self.segment:
            self._failing_through_segment()
            return
        self.scene("2. Failing, not slow (create_email_template: the 3rd failure of a run)")
        alan = {"name": "Alan Turing", "account_id": "acme"}
        self.post(self.event("task_started", "create_email_template", "alan", **alan))
        for attempt in range(1, 4):
            self.stack.clock.advance(60)
            result = self.post(self.event("task_failed", "create_email_template", "alan", **alan))[0]
            self.say(f"Alan's try #{attempt} failed: {result['status']}")
            self.story.failure_flag |= result["status"] == "flagged"
        self.news()

    def _failing_through_segment(self) -> None:
        """Scene 2 as a product on Segment sends it: the SDK's identify and track calls, only host and write key set."""
        import segment.analytics

        self.scene("2. Failing, not slow (create_email_template: the 3rd failure of a run), through the Segment SDK")
        front = TrackingFront(self.stack, self.console)
        client = segment.analytics.Client(front.write_key, host=front.url)
        try:
            client.identify("alan", {"email": "alan@example.com", "name": "Alan Turing"})
            client.track("alan", "Email Template Started")
            client.flush()
            self.say("Segment SDK: identify alan, track 'Email Template Started' -> /v1/batch")
            for attempt in range(1, 4):
                self.stack.clock.advance(60)
                client.track("alan", "Email Template Failed")
                client.flush()
                status = front.results[-1]["status"]
                self.say(f"Alan's try #{attempt} failed ('Email Template Failed' via Segment): {status}")
                self.story.failure_flag |= status == "flagged"
        finally:
            client.shutdown()
            front.close()
        self.story.segment_calls = len(front.results)
        self.stack.deliver_stream()
        self.news()

    def too_many(self) -> None:
        self.scene("3. Too many at once: escalation after 3 red flags, then the per-user email cap")
        alan = {"name": "Alan Turing", "account_id": "acme"}
        self.post(
            self.event("task_started", "create_landing_page", "alan", **alan),
            self.event("task_started", "create_email_template", "alan", instance_id="second", **alan),
            self.event("task_started", "setup_lead_nurturing_campaign", "alan", **alan),
        )
        before = self._cs
        self.minutes(32)
        critical = [a for a in self.stack.cs_alerts(since=before) if a["message"].get("reason") == "escalation"]
        self.story.escalations = len(critical)
        emails_to_alan = [e for e in self.stack.emails() if e["message"]["X-RedFlag-Alert"].startswith("alan/")]
        flags_of_alan = [
            a
            for a in self.stack.cs_alerts()
            if a["message"].get("user_id") == "alan" and a["message"].get("reason") != "escalation"
        ]
        self.story.capped = len(flags_of_alan) > len(emails_to_alan)
        self.say(
            f"Alan: {len(flags_of_alan)} red flags, {len(emails_to_alan)} emails (the cap is 3 a day: "
            f"{len(flags_of_alan) - len(emails_to_alan)} capped), "
            f"{len(critical)} escalation(s) to CS"
        )

    def quiet_hours(self) -> None:
        self.scene("4. Quiet hours: 22:00-08:00 in the user's time zone")
        tokyo = ZoneInfo("Asia/Tokyo")
        self.at(datetime(2027, 1, 25, 21, 50, tzinfo=tokyo))
        self.post(self.event("task_started", "create_email_template", "keiko", name="Keiko", timezone="Asia/Tokyo"))
        self.minutes(12)
        kept = [i for i in self.stack.items() if i["pk"] == "keiko" and i["sk"].startswith("deferred#")]
        if kept:
            until = datetime.fromtimestamp(float(kept[0]["due_at"]), tokyo)
            self.story.deferred_until = f"{until:%H:%M} Tokyo"
            self.say(f"Keiko's email is deferred until {until:%a %H:%M} Tokyo time; CS was told at once")
        self.at(datetime(2027, 1, 26, 7, 59, tzinfo=tokyo))
        sent_before = self._emails
        self.minutes(2)
        self.story.deferred_sent = any(
            e["message"]["X-RedFlag-Alert"].startswith("keiko/") for e in self.stack.emails(since=sent_before)
        )

    def gone_quiet(self) -> None:
        self.scene("5. Gone quiet (daily_practice: 3 days without activity)")
        practisers = [f"d{i}" for i in range(6)] + ["linus"]
        for day in range(1, 6):  # Tuesday to Saturday
            self.at(MONDAY + timedelta(days=day, hours=10))
            active = [u for u in practisers if not (u == "linus" and day >= 3)]
            self.post(*(self.event("user_active", "daily_practice", u, account_id="acme") for u in active))
            self.say(f"{len(active)} practised today" + (" (not Linus)" if "linus" not in active else ""))
        before = self._cs
        self.at(MONDAY + timedelta(days=5, hours=9, minutes=59))
        self.minutes(3)
        self.stack.tick(3600)
        self.news()
        self.story.inactivity_flag = any(
            a["message"].get("reason") == "inactivity" for a in self.stack.cs_alerts(since=before)
        )

    def fading_account(self) -> None:
        self.scene("6. An account fading: weekly actives -50 % or more, and its health turns red")
        week1 = [f"acme-{i}" for i in range(10)]
        globex = [f"globex-{i}" for i in range(6)]
        self.at(MONDAY + timedelta(days=5, hours=11, minutes=30))
        self.post(*(self.event("user_active", "app", u, account_id=a) for u, a in
                    [(u, "acme") for u in week1] + [(u, "globex") for u in globex]))  # fmt: skip
        self.say("week 1: acme has 10 active users (and its practisers), globex 6")
        self.at(MONDAY + timedelta(days=8, hours=11))
        self.post(*(self.event("user_active", "app", u, account_id=a) for u, a in
                    [(u, "acme") for u in week1[:3]] + [(u, "globex") for u in globex]))  # fmt: skip
        self.say("week 2: acme has 3, globex still 6")
        self.stack.flush_windows()
        self.at(MONDAY + timedelta(days=14, minutes=15))
        weekly = self.stack.template.function_for("weekly_usage_to_flags")
        checked = self.stack.invoke(weekly, {})
        self.stack.deliver_stream()
        self.say(f"Monday check of {checked['week']}: {checked['accounts']} accounts, {checked['flagged']} flagged")
        told = [a["message"] for a in self.stack.cs_alerts(since=self._cs)]
        drop = [m for m in told if m.get("reason") == "usage_drop"]
        red = [m for m in told if m.get("reason") == "health"]
        self.news()
        if drop:
            self.story.usage_drop = drop[0]["account_id"]
        scored, red_now = checked.get("scored", 0), checked.get("turned_red", 0)
        self.say(f"health scores of {checked['week']}: {scored} accounts scored, {red_now} turned red")
        for m in red:
            self.story.health_red, self.story.health_signals = m["account_id"], list(m["top"])

    def checkout(self) -> None:
        self.scene("7. A checkout: a shopper stuck at a step; the abandonment rate (15 %)")
        self.at(MONDAY + timedelta(days=14, hours=8))
        before = self._cs
        self._settle()  # what fell due while the clock jumped (the practisers quiet since Saturday)
        quiet = sum(1 for a in self.stack.cs_alerts(since=before) if a["message"].get("reason") == "inactivity")
        if quiet:
            self.say(f"meanwhile {quiet} more practisers went quiet: {quiet} red flags (one line here)")
        names = {"margaret": "Margaret Hamilton", "dennis": "Dennis Ritchie"}
        self.post(*(self.event("task_completed", "checkout", user, ago, step=step, name=names[user])
                    for user in names for step, ago in (("cart", 3), ("shipping", 1))))  # fmt: skip
        self.say("Margaret and Dennis reach shipping details; Dennis goes on to pay, Margaret does not")
        self.minutes(4)
        self.post(self.event("task_completed", "checkout", "dennis", step="payment", name=names["dennis"]))
        before = self._cs
        self.minutes(7)  # past shipping's 10 minutes
        stuck = [a["message"] for a in self.stack.cs_alerts(since=before) if a["message"].get("user_id") == "margaret"]
        self.post(self.event("task_completed", "checkout", "dennis", step="confirmed", name=names["dennis"]))
        self.say("Dennis has paid: his order is confirmed, and he was never flagged")
        if stuck:
            self.story.stuck_step = stuck[0].get("step")
        changes = []
        for hour, (started, abandoned) in enumerate([(50, 10), (45, 2)]):
            if hour:
                self.at(self.now() + timedelta(minutes=65))
            changes += self._checkouts(hour, started, abandoned)
        self.story.rate_changes = changes

    def _settle(self) -> None:
        """Sweep until nothing is due, deliver, and let what went out pass without a line each."""
        for _ in range(5):  # a sweeper run flags a bounded number; the next run takes the rest
            swept = self.stack.sweep()
            self.stack.deliver_stream()
            if not (swept.get("flagged") or swept.get("dispatched")):
                break
        self._emails, self._cs = len(self.stack.emails()), len(self.stack.cs_alerts())

    def _checkouts(self, hour: int, started: int, abandoned: int) -> list[str]:
        """An hour of checkouts that have all settled (the rate check reads the hour that ended 37 minutes
        ago: the funnel's thresholds and two minutes), ``abandoned`` of them left in the cart; then the
        rate check."""
        events = []
        for i in range(started):
            user, ago = f"shopper-{hour}-{i}", 39 + 50 * (started - i) / started  # slack for the sweeper's waits
            events.append(self.event("task_completed", "checkout", user, ago, step="cart"))
            if i >= abandoned:
                events += [self.event("task_completed", "checkout", user, ago - 2, step="payment"),
                           self.event("task_completed", "checkout", user, ago - 4, step="confirmed")]  # fmt: skip
        for e in events:  # shoppers buying as guests: no address, so CS hears and nobody is emailed
            e["user"].pop("email")
        self.post(*events)
        before = self._cs
        self._settle()  # the abandoned ones' carts ran out long ago: flagged now
        left = sum(1 for a in self.stack.cs_alerts(since=before) if a["message"].get("reason") == "stuck")
        self.story.shoppers_abandoned += left
        self.say(f"{started} checkouts in the hour, {abandoned} left in the cart: {left} red flags (one line here)")
        self.stack.flush_windows()
        before = self._cs
        self.stack.check_rates()
        self.stack.deliver_stream()
        self.news()
        return [str(a["message"]["status"]) for a in self.stack.cs_alerts(since=before)
                if a["message"].get("reason") == "rate"]  # fmt: skip

    def hearing_back(self) -> None:
        self.scene("8. Hearing back from SES: sends, deliveries, bounces, complaints, clicks")
        emails = self.stack.emails()
        ours = [e["message"]["X-RedFlag-Alert"].split("/") for e in emails]
        landing = [i for i, parts in enumerate(ours) if parts[1] == "create_landing_page"]
        bounced, complained, *clicking = landing[:4]
        for i in range(len(emails)):
            self.story.ses_sent += self._ses("send", i) == "sent"
            if i != bounced:
                self.story.ses_delivered += self._ses("delivery", i) == "delivered"
        self.say(f"SES: {self.story.ses_sent} emails sent, {self.story.ses_delivered} delivered (counted per rule)")
        if self._ses("bounce_permanent", bounced, "bounce") == "bounced":
            self.story.bounce_suppressed = ours[bounced][0]
            self.say(f"a hard bounce for {escape(ours[bounced][0])}'s address: suppressed, never emailed again")
            self.news()
        if self._ses("complaint", complained, "complaint") == "complained":
            self.story.complaint_suppressed = ours[complained][0]
            self.say(f"{escape(ours[complained][0])} marked the email as spam: suppressed too")
            self.news()
        for i in clicking + clicking[:1]:  # the first clicker clicks twice: one response
            counted = self._ses("click", i, "click", linkTags={"redflag": ["help"]}, link=HELP_LANDING)
            self.story.clicks_counted += counted == "clicked"
            self.say(
                f"{escape(ours[i][0])} followed the help link: " + ("a response" if counted else "counted already")
            )

    def _ses(self, name: str, index: int, part: str | None = None, **changes: Any) -> str | None:
        """SES's documented ``name`` record about the ``index``th email, published as SES would (now);
        what it was counted as for the rule's response rate (None: counted before)."""
        record = json.loads(sample_event(f"ses_events_to_state/{name}.json")["Records"][0]["Sns"]["Message"])
        if part is not None:
            stamp = self.now().isoformat(timespec="milliseconds").replace("+00:00", "Z")
            record[part] |= {"timestamp": stamp} | changes
        answers = self.stack.publish_ses_event(self.stack.ses_event(record, index))  # the Slack notifier's too
        handled = [h for answer in answers for h in answer.get("handled", [])]
        return next((h["response"] for h in handled if h["counted"]), None)


HELP_LANDING = "https://help.example.com/landing-pages"  # rules/create_landing_page.yaml's help_url


def run(
    users: int = 40,
    seed: int = 7,
    speed: float = 0,
    show: int = 2,
    console: Console | None = None,
    segment: bool = False,
) -> dict:
    console = console or Console()
    rules, problems = load_rules()
    if problems:
        raise SystemExit("\n".join(map(str, problems)))
    rng = random.Random(seed)
    clock_start = (MONDAY + timedelta(hours=8)).timestamp()
    with Receiver() as slack, LocalStack(clock_start=clock_start, env_overrides=QUIET, parameters=SLACK) as stack:
        stack.put_rules(as_parameters(rules))  # type: ignore[arg-type]
        stack.put_slack_webhook(slack.url(SLACK_PATH))
        console.print(
            f"[bold]Red Flag demo[/]: two simulated weeks on moto (template.yaml deployed with CloudFormation), "
            f"{len(rules)} seed rules, {users} landing-page users, seed {seed}"
        )
        demo = Demo(stack, console, speed, segment=segment)
        demo.learning(users, rng)
        demo.failing()
        demo.too_many()
        demo.quiet_hours()
        demo.gone_quiet()
        demo.fading_account()
        demo.checkout()
        demo.hearing_back()
        emails, cs = stack.emails(), stack.cs_alerts()
        posts = [json.loads(p.body) for p in slack.delivered(SLACK_PATH)]
        demo.story.emails, demo.story.cs_alerts, demo.story.slack_posts = len(emails), len(cs), len(posts)
        console.rule(f"[bold]Slack: {len(posts)} messages to customer success, one per CS alert; the escalation[/]")
        critical = [p for p in posts if "severity *critical*" in json.dumps(p)]
        if critical or posts:
            console.print(Panel(escape(slack_text((critical or posts)[0])), title="#customer-success", expand=False))
        console.rule("[bold]A few of the emails[/]")
        for email in _pick(emails, show):
            console.print(Panel(escape(email["text"]), title=escape(f"To: {email['to']}"),
                                subtitle=escape(email["subject"]), expand=False))  # fmt: skip
        console.rule("[bold]9. The report: struggles, the checkout, rates, health; did it help?[/]")
        report = report_mod.from_stack(stack)  # Monday of week 3: week 2 has ended, scored
        report_mod.render(report, "table", Console(file=console.file, width=min(console.width, 80)))
        _helped(console, report)
        console.print(
            f"{len(emails)} emails, {len(cs)} CS alerts, {len(posts)} Slack messages. "
            "Try: .venv/bin/redflag serve, then .venv/bin/redflag report --plot report.png"
        )
        return demo.story.__dict__ | {"report": report}


def _pick(emails: list[dict], n: int) -> list[dict]:
    """One email of each kind first (they differ in what they say), then the rest."""
    seen: Counter[str] = Counter()
    first = []
    for email in emails:
        if seen[email["subject"].split(" ")[0]] == 0:
            first.append(email)
        seen[email["subject"].split(" ")[0]] += 1
    return first[:n]


def _helped(console: Console, report: report_mod.Report) -> None:
    for row in report.tasks:
        if row.segment == "all" and (row.flagged_emailed or row.flagged_holdout):
            emailed, held = row.rate_emailed, row.rate_holdout
            console.print(
                f"{row.label}: of the flagged users emailed, {row.done_after_flag_emailed}/{row.flagged_emailed} "
                f"finished afterwards ({'' if emailed is None else f'{100 * emailed:.0f}%'}); of those held out, "
                f"{row.done_after_flag_holdout}/{row.flagged_holdout} ({'' if held is None else f'{100 * held:.0f}%'})"
            )


def slack_text(payload: dict[str, Any]) -> str:
    """A Block Kit message as a console shows it: header, sections, fields, context, buttons."""
    lines: list[str] = []
    for block in payload.get("blocks", []):
        if block["type"] in ("header", "section") and "text" in block:
            lines.append(block["text"]["text"])
        for f in block.get("fields", []):
            label, _, value = f["text"].partition("\n")
            lines.append(f"{label.strip('*')}: {value}")
        for element in block.get("elements", []):
            lines.append(f"[{element['text']['text']}] {element['url']}" if "url" in element else element["text"])
    return html.unescape("\n".join(lines))  # Slack shows &lt; as <: so does the console (escaped for rich)
