"""Where a red flag becomes alerts: a stream batch of stored changes in, each red flag's alerts out on
the channels its rule asks for, each sent exactly once. Pure: storage, the providers and the clock
come in through ``redflag.services.ports``.

A batch is handled as a batch:

1. each change that is a red flag (a timer's, ``redflag.core.timers.red_flag``; an account's usage
   drop; the item a kind that keeps no timer wrote, such as a rate's change or an account's move into
   red; an email kept for quiet hours, now due) is composed into its alerts, one per channel
   (``redflag.channels.plan``), in the words of its kind (``redflag.kinds``);
2. the state of every user and account the batch touches is read at once (``People.load``: opt-outs
   and suppressions, the email log behind the cap, escalation state), and the interventions are
   decided for every red flag in stream order, in memory: a user in the rule's holdout is not emailed
   (but counted), an opted-out or suppressed one never is, an email due in the user's quiet hours is
   kept for their end, one past the user's cap is not sent; customer success and the webhook are never
   held back; each red flag counts toward escalation (the Nth within the window, for one user or one
   account, sends customer success one critical alert naming them all);
3. each user's and account's new state is written once (a conditional write on its version; a state
   someone else changed meanwhile is read again and decided again);
4. every alert is claimed (``SendOnce``: a second claim of an alert id finds the first), the new ones
   are sent concurrently, each channel on its own adapter, and their results are kept in one batched
   write. A channel's failure never stops another: a passing failure gives up its claim and fails
   its stream record (the stream retries it; only what was not sent sends again); a refusal is parked
   with its error code and kept as the alert's result, so it is never retried.

Exactly once, per alert: the claim is taken before the send and lapses at the invocation's deadline
(a crash mid-send); a result that cannot be kept after a send leaves the claim in place until then,
so the send is not repeated by this batch's retries (docs/api.md, "Exactly once, precisely").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redflag import channels, kinds
from redflag.channels.base import Alert, Context, RedFlag, UnsubscribeLinks
from redflag.core import interventions, timers
from redflag.core.interventions import Escalation, QuietHours, Standing, UserState
from redflag.services.changes import AccountFlagged, Change, DeferredDue, Flagged, TimerChanged
from redflag.services.ports import ChannelFailed, People, StoreUnavailable
from redflag.services.sending import Sender

SAVE_ROUNDS = 5  # state writes lost to a concurrent writer before the records are retried
GATED = frozenset(name for name, c in channels.REGISTRY.items() if c.gated)  # held back by the interventions


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
    """What one stored change led to."""

    reason: str | None = None  # the red flag's reason; None: the change was no red flag
    new: bool = False  # handled for the first time (a retried batch finds it known): count it once
    deferred: bool = False  # the email of a red flag kept for quiet hours, due now (the flag was counted then)
    email: str | None = None  # sent, held_out, suppressed, deferred, capped, no_address; None: none asked
    alerts: list[Alert] = field(default_factory=list)  # sent now, or before
    sent: list[Alert] = field(default_factory=list)  # sent now
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (channel, error): refused for good, parked
    failures: list[ChannelFailed] = field(default_factory=list)  # why the record is retried

    def __bool__(self) -> bool:
        return self.reason is not None or self.email is not None


@dataclass
class BatchOutcome:
    handled: dict[str, Handled]  # record id -> what it led to
    unrecorded: int = 0  # alerts sent whose result could not be kept (their claims block a resend)

    @property
    def failed(self) -> list[str]:
        return [record for record, h in self.handled.items() if h.failures]


@dataclass
class _Flag:
    record: str
    flag: RedFlag[Any]
    alerts: list[Alert]
    timer: timers.Timer | None = None  # the run a user email or an escalation is about
    escalates: bool = False  # counts toward escalation (a red flag of a user's run)
    deferred: bool = False  # an email kept for quiet hours, due now


@dataclass
class _Decided:
    users: dict[str, UserState]
    accounts: dict[str, Escalation]
    deferred: list[tuple[timers.Timer, float]] = field(default_factory=list)
    send: dict[int, list[Alert]] = field(default_factory=dict)  # flag index -> alerts to send
    email: dict[int, str] = field(default_factory=dict)
    new: set[int] = field(default_factory=set)


class AlertingService:
    def __init__(
        self,
        sender: Sender,
        people: People | None = None,
        policy: Interventions = Interventions(),
        links: UnsubscribeLinks | None = None,
    ) -> None:
        self._sender = sender
        self._people = people
        self._policy = policy
        self._links = links

    def handle(self, changes: Sequence[tuple[str, Change]], now: float, deadline: float) -> BatchOutcome:
        """Every change of one stream batch (record id, change), in stream order. ``deadline``: when the
        invocation ends (claims lapse then)."""
        outcome = BatchOutcome({record: Handled() for record, _ in changes})
        flags = [f for record, change in changes if (f := self._flag(record, change, now)) is not None]
        for f in flags:
            h = outcome.handled[f.record]
            h.reason, h.deferred = _reason(f.flag), f.deferred
            asked = set(f.flag.kind.recipients(f.flag.subject)) & GATED
            if asked and not any(a.channel in GATED for a in f.alerts):
                h.email = "no_address"
        decided = self._decide_and_save(flags, now, outcome)
        for i, f in enumerate(flags):
            h = outcome.handled[f.record]
            h.new = h.new or i in decided.new
            if i in decided.email:
                h.email = decided.email[i]
        self._send(flags, decided, deadline, outcome)
        return outcome

    # --- 1. which changes are red flags, and what they say ------------------------------------------

    def _flag(self, record: str, change: Change, now: float) -> _Flag | None:
        ctx = Context(now, self._links)
        if isinstance(change, TimerChanged):
            timer = timers.red_flag(change.event, change.by_ttl, change.old, change.new)
            if timer is None:
                return None
            flag: RedFlag[Any] = RedFlag(kinds.get(timer.kind), timer)
            return _Flag(record, flag, channels.plan(flag, ctx), timer, escalates=True)
        if isinstance(change, AccountFlagged):
            flag = RedFlag(kinds.get(change.flag.rule.kind), change.flag)
            return _Flag(record, flag, channels.plan(flag, ctx))
        if isinstance(change, Flagged):  # a rate's change, an account's move into red: CS and the webhook
            flag = RedFlag(kinds.get(change.kind), change.subject)
            return _Flag(record, flag, channels.plan(flag, ctx))
        if isinstance(change, DeferredDue):
            flag = RedFlag(kinds.get(change.timer.kind), change.timer)
            emails = [a for a in channels.plan(flag, ctx) if a.channel in GATED]
            return _Flag(record, flag, emails, change.timer, deferred=True)
        return None

    # --- 2 and 3. the interventions, decided for the batch and written once per user ----------------------

    def _decide_and_save(self, flags: list[_Flag], now: float, outcome: BatchOutcome) -> _Decided:
        people = self._people
        needs = [i for i, f in enumerate(flags) if f.timer is not None]
        if people is None or not needs:
            return self._decide(flags, Standing(), now)
        users: dict[str, str | None] = {}
        accounts: set[str] = set()
        subjects: dict[int, set[tuple[str, str]]] = {}  # flag -> the states its interventions write
        for i in needs:
            timer = flags[i].timer
            assert timer is not None
            address = next((a.recipient() for a in flags[i].alerts if a.channel in GATED), None)
            users[timer.key.user_id] = users.get(timer.key.user_id) or address
            subjects[i] = {("user", timer.key.user_id)}
            if flags[i].escalates and timer.user.account_id:
                accounts.add(timer.user.account_id)
                subjects[i].add(("account", timer.user.account_id))
        try:
            standing = people.load(users, accounts)
        except StoreUnavailable as exc:  # nothing of these red flags is sent: the stream retries them
            return self._without(flags, set(needs), self._decide(flags, Standing(), now), outcome, exc.code)
        failed: dict[tuple[str, str], str] = {}  # states not written now, and why
        for _ in range(SAVE_ROUNDS):
            decided = self._decide(flags, standing, now)
            changed_users = [s for u, s in decided.users.items() if s is not standing.users.get(u)]
            changed_accounts = [e for a, e in decided.accounts.items() if e is not standing.accounts.get(a)]
            not_written = people.save(changed_users, changed_accounts) if changed_users or changed_accounts else {}
            for s in changed_users:
                if ("user", s.user_id) not in not_written:
                    standing.users[s.user_id] = s.model_copy(update={"version": s.version + 1})
            for e in changed_accounts:
                if ("account", e.subject_id) not in not_written:
                    standing.accounts[e.subject_id] = e.model_copy(update={"version": e.version + 1})
            lost = {subject for subject, why in not_written.items() if why == "lost"}
            failed |= {subject: why for subject, why in not_written.items() if why != "lost"}
            if not lost:
                break
            lost_users = {u: users[u] for scope, u in lost if scope == "user"}
            lost_accounts = {a for scope, a in lost if scope == "account"}
            try:  # someone else wrote these meanwhile: read them again, decide again
                again = people.load(lost_users, lost_accounts)
            except StoreUnavailable as exc:
                failed |= dict.fromkeys(lost, exc.code)
                break
            for u in lost_users:
                standing.users.pop(u, None)
                if u in again.users:
                    standing.users[u] = again.users[u]
            for a in lost_accounts:
                standing.accounts.pop(a, None)
                if a in again.accounts:
                    standing.accounts[a] = again.accounts[a]
        else:
            failed |= dict.fromkeys(lost, "VersionConflict")
        unkept = {t.alert_id("user") for t in people.defer(decided.deferred)} if decided.deferred else set()
        broken = {i for i in needs if subjects[i] & set(failed)}
        broken |= {i for i in needs if (t := flags[i].timer) is not None and t.alert_id("user") in unkept}
        why = next(iter(failed.values()), "Unavailable")
        return self._without(flags, broken, decided, outcome, why)

    def _without(
        self, flags: list[_Flag], broken: set[int], decided: _Decided, outcome: BatchOutcome, why: str
    ) -> _Decided:
        """The red flags whose state could not be written send nothing now: their records are retried."""
        for i in broken:
            outcome.handled[flags[i].record].failures.append(ChannelFailed("state", why))
            decided.send.pop(i, None)
            decided.new.discard(i)
            decided.email.pop(i, None)
        return decided

    def _decide(self, flags: list[_Flag], standing: Standing, now: float) -> _Decided:
        """Every red flag's interventions, in order, from what was read: pure, so deciding again after a
        lost write gives the same answer for the users already written (their slots and flags are known)."""
        decided = _Decided(users=dict(standing.users), accounts=dict(standing.accounts))
        for i, f in enumerate(flags):
            sends: list[Alert] = []
            for alert in f.alerts:
                if alert.channel in GATED and f.timer is not None:
                    decided.email[i] = self._gate(f.timer, alert, f.deferred, standing, decided, now)
                    if decided.email[i] != "sent":
                        continue
                sends.append(alert)
            if f.escalates and f.timer is not None and self._people is not None:
                sends += self._escalate(i, f.timer, standing, decided, now)
            elif not f.deferred:
                decided.new.add(i)
            decided.send[i] = sends
        return decided

    def _gate(
        self, timer: timers.Timer, email: Alert, deferred: bool, standing: Standing, decided: _Decided, now: float
    ) -> str:
        rule = timer.rule
        assert rule is not None
        user_id = timer.key.user_id
        if interventions.in_holdout(user_id, rule.holdout_percent):
            return "held_out"
        if self._people is None:
            return "sent"
        if user_id in standing.suppressed:
            return "suppressed"
        policy = self._policy
        if policy.quiet is not None and not deferred:
            until = policy.quiet.next_allowed(now, timer.user.timezone, policy.default_timezone)
            if until is not None:
                decided.deferred.append((timer, until))
                return "deferred"
        state = decided.users.get(user_id) or UserState.new(user_id)
        allowed, log = interventions.reserve_email(state.emails, email.alert_id, now, policy.cap, policy.cap_window)
        if log is not None:
            decided.users[user_id] = state.model_copy(update={"emails": log})
        return "sent" if allowed else "capped"

    def _escalate(self, i: int, timer: timers.Timer, standing: Standing, decided: _Decided, now: float) -> list[Alert]:
        rule = timer.rule
        if rule is None:
            return []
        policy, user_id = self._policy, timer.key.user_id
        what = f"{user_id}: {rule.label} ({_reason_of_timer(timer)})"
        flag_id, at = timer.alert_id("flag"), timer.flagged_at or now
        out: list[Alert] = []
        state = decided.users.get(user_id) or UserState.new(user_id)
        d = interventions.record_flag(
            state.escalation, flag_id, at, what, policy.escalate_after, policy.escalation_window
        )
        if d.state is not None:
            decided.users[user_id] = state.model_copy(update={"escalation": d.state})
            decided.new.add(i)
        if d.escalate is not None:
            out += self._escalation_alerts(d.escalate, now)
        if account := timer.user.account_id:
            current = decided.accounts.get(account) or standing.account(account)
            d = interventions.record_flag(current, flag_id, at, what, policy.escalate_after, policy.escalation_window)
            if d.state is not None:
                decided.accounts[account] = d.state
            if d.escalate is not None:
                out += self._escalation_alerts(d.escalate, now)
        return out

    def _escalation_alerts(self, state: Escalation, now: float) -> list[Alert]:
        return channels.plan(RedFlag(kinds.get("escalation"), state), Context(now, self._links))

    # --- 4. exactly once: claim, send, keep the results (``redflag.services.sending``) -------------------

    def _send(self, flags: list[_Flag], decided: _Decided, deadline: float, outcome: BatchOutcome) -> None:
        owner: dict[str, list[str]] = {}  # alert id -> the records that send it (one, but for a shared escalation)
        alerts: dict[str, Alert] = {}
        for i, sends in decided.send.items():
            for alert in sends:
                owner.setdefault(alert.alert_id, []).append(flags[i].record)
                alerts.setdefault(alert.alert_id, alert)
        sending = self._sender.send(list(alerts.values()), deadline)
        outcome.unrecorded += sending.unrecorded
        for alert_id, sent in sending.sent.items():
            for record in owner[alert_id]:
                h = outcome.handled[record]
                if sent.failure is not None:
                    h.failures.append(sent.failure)
                    continue
                h.alerts.append(sent.alert)
                if sent.now and sent.refused is not None:
                    h.rejected.append((sent.alert.channel, sent.refused))
                elif sent.now:
                    h.sent.append(sent.alert)


def _reason_of_timer(timer: timers.Timer) -> str:
    return (timer.flag_reason or timer.due_reason).value


def _reason(flag: RedFlag[Any]) -> str:
    return flag.kind.reason(flag.subject)
