"""Where a timer becomes an alert: a stored change that is a red flag is turned into the email, CS
message and webhook its rule asks for, each sent exactly once (the sender is idempotent per channel).

The email goes through the interventions first (``redflag.core.interventions``): a user in the rule's
holdout is not emailed (but counted), an opted-out user never is, an email due in the user's quiet
hours is kept for their end (a deferred email, which the sweeper flags when it is due), and one past
the user's cap is not sent. Customer success and the webhook are never held back. A red flag also
counts toward escalation: the Nth within the window, for one user or one account, sends customer
success one critical alert naming them all.

The channels of one red flag are sent concurrently and independently: a failure on one never stops
another. If any channel failed for a passing reason, ``ChannelsFailed`` is raised after all of them
were tried, so the stream retries the record, and only the failed channels send on the retry.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from redflag.channels import messages as alerts
from redflag.channels.messages import EmailAlert, UnsubscribeLinks
from redflag.core import interventions, timers
from redflag.core.interventions import QuietHours
from redflag.kinds.usage_drop import AccountFlag
from redflag.services.ports import AlertSender, ChannelFailed, People


class ChannelsFailed(Exception):
    """Some channels of a red flag could not be delivered now; carries channel names and error codes."""

    def __init__(self, failures: list[ChannelFailed]) -> None:
        super().__init__(", ".join(str(f) for f in failures))
        self.failures = failures


@dataclass(frozen=True)
class Interventions:
    cap: int = 3  # emails to one user per cap_window
    cap_window: float = 86400
    quiet: QuietHours | None = None
    default_timezone: str = "UTC"
    escalate_after: int = 3  # red flags of one user or account within escalation_window
    escalation_window: float = 86400


@dataclass
class Handled:
    """What one stored change led to: the alerts sent (or already sent) and what became of the email."""

    alerts: list[alerts.Alert] = field(default_factory=list)
    email: str | None = None  # sent, held_out, suppressed, deferred, capped, no_address; None: none asked

    def __bool__(self) -> bool:
        return bool(self.alerts) or self.email is not None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.alerts)

    def __len__(self) -> int:
        return len(self.alerts)


class AlertingService:
    def __init__(
        self,
        sender: AlertSender,
        workers: int = 4,
        people: People | None = None,
        policy: Interventions = Interventions(),
        links: UnsubscribeLinks | None = None,
    ) -> None:
        self._sender = sender
        self._workers = workers
        self._people = people
        self._policy = policy
        self._links = links

    def handle_change(
        self, change: str, by_ttl: bool, old: timers.Timer | None, new: timers.Timer | None, now: float
    ) -> Handled:
        """The alerts a red flag asked for (sent, or already sent before). Raises ChannelsFailed."""
        timer = timers.red_flag(change, by_ttl, old, new)
        if timer is None:
            return Handled()
        planned = alerts.plan(timer, now, self._links)
        handled = Handled()
        asked = timer.rule is not None and "user" in timer.rule.notify
        if asked and not any(isinstance(a, EmailAlert) for a in planned):
            handled.email = "no_address"
        to_send = []
        for alert in planned:
            if isinstance(alert, EmailAlert):
                handled.email = self._email_gate(timer, alert, now, deferred=False)
                if handled.email != "sent":
                    continue
            to_send.append(alert)
        to_send += self._escalations(timer, now)
        handled.alerts = self._send_all(to_send)
        return handled

    def handle_deferred(self, timer: timers.Timer, now: float) -> Handled:
        """A deferred email whose quiet hours are over: checked against opt-out and the cap again, sent."""
        email = alerts.compose_email(timer, now, self._links)
        if email is None:
            return Handled(email="no_address")
        outcome = self._email_gate(timer, email, now, deferred=True)
        return Handled(self._send_all([email]) if outcome == "sent" else [], outcome)

    def handle_account_flag(self, change: str, flag: AccountFlag | None) -> Handled:
        """A usage drop written by the weekly check (a new flag item): customer success hears of it."""
        if change != "INSERT" or flag is None:
            return Handled()
        return Handled(self._send_all(alerts.plan_account(flag)))

    # --- interventions ------------------------------------------------------------------------

    def _email_gate(self, timer: timers.Timer, email: EmailAlert, now: float, deferred: bool) -> str:
        rule = timer.rule
        assert rule is not None
        if interventions.in_holdout(timer.key.user_id, rule.holdout_percent):
            return "held_out"
        if self._people is None:
            return "sent"
        if self._people.suppressed(timer.key.user_id, email.to_address):
            return "suppressed"
        quiet = self._policy.quiet
        if quiet is not None and not deferred:
            until = quiet.next_allowed(now, timer.user.timezone, self._policy.default_timezone)
            if until is not None:
                self._people.defer(timer, until)
                return "deferred"
        if not self._people.reserve_email(
            timer.key.user_id, email.alert_id, now, self._policy.cap, self._policy.cap_window
        ):
            return "capped"
        return "sent"

    def _escalations(self, timer: timers.Timer, now: float) -> list[alerts.Alert]:
        if self._people is None or timer.rule is None:
            return []
        reason = timer.flag_reason.value if timer.flag_reason else "time"
        what = f"{timer.key.user_id}: {timer.rule.label} ({reason})"
        flag_id = timer.alert_id("flag")
        at = timer.flagged_at or now
        scopes = [("user", timer.key.user_id)] + ([("account", timer.user.account_id)] if timer.user.account_id else [])
        out: list[alerts.Alert] = []
        for scope, subject in scopes:
            state = self._people.escalate(
                scope, subject, flag_id, at, what, self._policy.escalate_after, self._policy.escalation_window
            )
            if state is not None:
                out.append(alerts.compose_escalation(state))
        return out

    # --- sending ------------------------------------------------------------------------------

    def _send_all(self, planned: list[alerts.Alert]) -> list[alerts.Alert]:
        failures: list[ChannelFailed] = []

        def send(alert: alerts.Alert) -> None:
            try:
                self._sender.send(alert)
            except ChannelFailed as exc:
                failures.append(exc)

        if len(planned) > 1 and self._workers > 1:
            with ThreadPoolExecutor(max_workers=min(self._workers, len(planned))) as pool:
                list(pool.map(send, planned))
        else:
            for alert in planned:
                send(alert)
        if failures:
            raise ChannelsFailed(failures)
        return planned
