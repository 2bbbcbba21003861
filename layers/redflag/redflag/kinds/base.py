"""What every kind of red flag provides: one small interface, one subclass per module. Pure.

A kind answers these questions, and nothing outside its module asks them by its name:

- **its rule**: which fields a rule of this kind takes, what else it must hold (``check``), and how its
  threshold reads in a few words (``threshold_text``);
- **its timer**: which events naming the rule it applies (``takes``), which timer an event keys
  (``key``), how an event arms, re-arms, completes or flags it (``apply``), and what it means when it
  falls due (``due_reason``). A kind that keeps no timer (``usage_drop``) raises its flags elsewhere;
- **what its alert says**: the default email per reason (``default_emails``), the CS message and the
  webhook payload of one red flag (``cs_message``, ``webhook_payload``), and the facts a chat message
  shows (``facts``, read back from a published CS message);
- **which tracking calls are its events** (``track_keys``, ``tracked``): the keys of a rule's ``track``
  mapping this kind takes (a task's ``started``, ``completed``, ``failed``), and which of its event types
  a Segment-style ``track``, ``page`` or ``screen`` call is under a rule, so the tracking API finds
  every rule a call concerns through the registry (``redflag.kinds.tracked``);
- **what the stream counts for it** (``counts_runs``: runs started and completed, learned durations;
  ``counts_activity``: an arm is the user being active; ``tallies``: anything else it counts, in a
  stats row of its own (a funnel's steps) or in the per-minute buckets rate rules read);
- **what a rate rule reads of it** (``watched``: the stats name its runs are counted under, and how
  long after a run starts its fate is known);
- for a kind that keeps no timer and writes its red flag as one item (a rate crossing, an account's
  health): the model of that item (``subject_model``) and where it goes (``flag_ref``).

Plus where it lives in the product, which ``tests/unit/test_registries.py`` checks: the section of
docs/rules.md, a seed rule in rules/, a sample event in events/, the template resource that raises it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel

from redflag.core.baselines import Threshold
from redflag.core.errors import invalid, missing
from redflag.core.events import EventType, TaskEvent, UserInfo
from redflag.core.rules import RuleFields
from redflag.core.templates import EmailTemplate
from redflag.core.text import humanize, one_line, plausible_name
from redflag.core.timers import Decision, FlagReason, Policy, Timer, TimerKey, TimerState, retained
from redflag.core.tracking import Interaction

S = TypeVar("S")  # what a red flag of the kind is about: a timer, an account's week, an escalation


def iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Applied:
    """One event as a kind applies it to its timer: ``at`` the event time (epoch s), ``rule`` the rule as
    it applies to the user's segment, ``threshold`` the one a new run is armed with (None: the rule's
    fixed threshold, or its fallback)."""

    key: TimerKey
    event_type: EventType
    at: float
    rule: RuleFields
    now: float
    user: UserInfo = field(default_factory=UserInfo)
    properties: dict[str, Any] = field(default_factory=dict)
    policy: Policy = field(default_factory=Policy)
    threshold: Threshold | None = None


@dataclass(frozen=True)
class CsMessage:
    """What customer success is told, before it is escaped and clipped for the medium (``redflag.channels``)."""

    subject: str
    message: dict[str, Any]
    attributes: dict[str, str]


@dataclass(frozen=True)
class Tally:
    """One thing the stats fold counts for a stored change of a kind's timer (``Kind.tallies``).

    ``at`` unset: ``counter`` is added to the stats row ``name`` (a task's, or a funnel step's
    ``funnel/step``), for the user's segment and across segments, with ``seconds`` into its duration
    histogram. ``at`` set: it is added to the per-minute bucket of ``name`` that ``at`` (the run's start)
    falls in, which rate rules read (counters ``started``, ``abandoned``, ``failed``, ``converted``);
    ``account``: also to the week of ``at`` of the user's account (the health score's ``started`` and
    ``failed``)."""

    name: str
    counter: str
    seconds: float | None = None
    at: float | None = None
    account: bool = False


class Kind(ABC, Generic[S]):
    """One kind of red flag. Subclasses set the class attributes and implement what applies to them."""

    name: ClassVar[str]
    about: ClassVar[Literal["user", "account", "product"]] = "user"  # only a user's red flag emails the user
    configurable: ClassVar[bool] = True  # a kind a rule names; False: raised by the alerting path itself
    reasons: ClassVar[tuple[FlagReason, ...]] = ()  # the reasons its red flags carry
    takes: ClassVar[frozenset[EventType]] = frozenset()  # events naming its rule that it applies
    arms: ClassVar[EventType | None] = None  # the event that starts a run of its timer (None: it keeps none)
    fields: ClassVar[frozenset[str]] = frozenset()  # the kind-specific rule fields it takes
    track_keys: ClassVar[dict[str, EventType]] = {}  # a rule's `track` keys it takes -> the event each names
    default_notify: ClassVar[tuple[str, ...]] = ("user", "cs")
    counts_runs: ClassVar[bool] = False
    counts_activity: ClassVar[bool] = False
    # where it lives (checked by tests/unit/test_registries.py)
    doc: ClassVar[str]  # where it is documented: a docs page and the anchor of its section
    sample_rule: ClassVar[str | None]  # rules/<file>.yaml, or None for a kind no rule names
    sample_event: ClassVar[str]  # events/<function>/<file>.json: a red flag of this kind as a function gets it
    raised_by: ClassVar[str]  # the template resource whose writes become its red flags
    subject_model: ClassVar[type[BaseModel] | None] = None  # a red flag written as one item: its model

    # --- its rule ------------------------------------------------------------------------------------

    def check(self, rule: RuleFields) -> None:
        """Raise a field-located ValidationError (``redflag.core.errors``) for what this kind refuses."""

    def refusal(self, field: str) -> str:
        """Why a rule of this kind may not hold ``field`` (one another kind takes)."""
        return f"a {self.name} rule does not take {field}"

    def threshold_text(self, rule: RuleFields) -> str:
        return ""

    # --- its timer -------------------------------------------------------------------------------------

    def ignored(self, event_type: EventType, rule: RuleFields) -> str:
        """Why an event of a type this kind does not take, naming its rule, changes nothing."""
        return f"'{rule.label}' is a {self.name} rule: it does not take {event_type.value} events"

    def key(self, event: TaskEvent) -> TimerKey:
        return TimerKey(user_id=event.user_id, task=event.task, instance_id=event.instance_id)

    def apply(self, current: Timer | None, event: Applied) -> Decision:
        raise NotImplementedError(f"a {self.name} rule keeps no timer")

    def learns(self, rule: RuleFields, event_type: EventType) -> bool:
        """This event arms a run whose threshold is learned from the task's durations."""
        return False

    def learning(self, rule: RuleFields, event: TaskEvent) -> tuple[str, RuleFields] | None:
        """The run this event arms learns its threshold: from the durations of which stats row, under
        which threshold fields (``threshold``, ``expected_seconds``). Default: the task's own (``learns``)."""
        return (event.task, rule) if self.learns(rule, EventType(event.type)) else None

    # --- what the stream counts for it -------------------------------------------------------------------

    def tallies(self, change: str, by_ttl: bool, old: Timer | None, new: Timer | None) -> list[Tally]:
        """What the stats fold counts for one stored change of this kind's timer, beyond runs, flags
        and activity (which it counts for every kind by ``counts_runs``, ``reasons``, ``counts_activity``)."""
        return []

    def watched(self, rule: RuleFields, task: str, step: str | None) -> tuple[str, int] | str:
        """For a rate rule watching ``task`` (a rule of this kind), or one of its steps: the stats name
        its runs are counted under and how long after a run starts its fate is known (seconds); or why it
        cannot be watched."""
        return f"'{task}' is a {self.name} rule: it has no runs a rate can watch"

    # --- a red flag written as one item --------------------------------------------------------------------

    def flag_ref(self, subject: S) -> tuple[str, str]:
        """Where a red flag of this kind is written once: (its group, its id in the group)."""
        raise NotImplementedError(f"a {self.name} red flag is not written as an item")

    # --- which tracking calls are its events ------------------------------------------------------------

    def tracked(self, rule: RuleFields, call: Interaction) -> EventType | None:
        """Which of this kind's events a ``track``, ``page`` or ``screen`` call is under ``rule`` (None: not
        one): a track whose event the rule's ``track`` mapping names under one of ``track_keys``, with
        properties that hold its ``where`` values."""
        mapping = rule.track
        if mapping is None or call.type != "track" or not mapping.matches(call.properties):
            return None
        for key, event_type in self.track_keys.items():
            if call.name in mapping.names(key):
                return event_type
        return None

    def tracked_properties(self, rule: RuleFields, call: Interaction) -> dict[str, Any]:
        """The properties of the event a call ``tracked`` maps becomes (default: the call's own; a funnel
        adds the step the call reaches)."""
        return call.properties

    def check_track(self, rule: RuleFields) -> None:
        """A rule's ``track`` mapping names only keys of this kind's events, each event name under one key."""
        if rule.track is None:
            return
        given = rule.track.given()
        for key in given:
            if key not in self.track_keys:
                takes = ", ".join(self.track_keys) or "no event keys"
                article = "an" if self.name[0] in "aeiou" else "a"
                invalid(f"track.{key}", f"{article} {self.name} rule's track mapping takes {takes}")
        seen: dict[str, str] = {}
        for key in given:
            for name in rule.track.names(key):
                if name in seen and seen[name] != key:
                    invalid(f"track.{key}", f"'{name}' is under {seen[name]} already")
                seen[name] = key

    # --- what its alert says -------------------------------------------------------------------------------

    @abstractmethod
    def alert_id(self, subject: S, channel: str) -> str:
        """The id each channel's send of this red flag is idempotent on."""

    def reason(self, subject: S) -> str:
        """The reason a red flag of this kind carries (a CS message's ``reason``; the metrics' name)."""
        return self.reasons[0].value

    def recipients(self, subject: S) -> tuple[str, ...]:
        """The channels (``notify`` names) this red flag goes to."""
        rule = getattr(subject, "rule", None)
        return tuple(rule.notify) if isinstance(rule, RuleFields) else self.default_notify

    def user_timer(self, subject: S) -> Timer | None:
        """The run of the user a red flag of this kind is about, for the email; None: no user to email."""
        return None

    def default_emails(self) -> Mapping[FlagReason, EmailTemplate]:
        return {}

    def email_values(self, timer: Timer) -> dict[str, str]:
        """Placeholders of its emails beyond the shared ones (``{step}``: a funnel's)."""
        return {"step": ""}

    @abstractmethod
    def cs_message(self, subject: S, now: float) -> CsMessage: ...

    def webhook_payload(self, subject: S, now: float) -> dict[str, Any] | None:
        return None

    @abstractmethod
    def facts(self, message: Mapping[str, Any]) -> list[tuple[str, Any]]:
        """What a chat message lists, read from the CS message this kind published (values raw)."""

    def lines(self, message: Mapping[str, Any]) -> list[str]:
        """Lines a chat message shows under the facts (raw text), e.g. every flag of an escalation."""
        return []


class NoticeKind(Kind[S]):
    """A kind no rule names, raised by Red Flag's own paths and told to customer success only (an
    escalation, a suppressed address)."""

    configurable = False
    default_notify = ("cs",)
    sample_rule = None


# --- what the kinds that keep a timer share -----------------------------------------------------------------


CLOSING = (
    "If something is in your way, just reply to this email: a real person on our team will read it and get "
    "back to you.\n\nThanks,\nThe team"
)


def threshold_checks(rule: RuleFields) -> None:
    """A kind that keeps a timer: one threshold, fixed or learned, above what is expected; segment
    overrides likewise."""
    if rule.threshold_seconds is not None and rule.threshold is not None:
        invalid("threshold", "give threshold_seconds or threshold (learned), not both")
    if rule.threshold_seconds is None and rule.threshold is None:
        missing("threshold_seconds")
    limit = rule.threshold_seconds or (rule.threshold.fallback_seconds if rule.threshold else None)
    if rule.expected_seconds is not None and limit is not None and rule.expected_seconds >= limit:
        invalid("expected_seconds", "must be below the threshold")
    if isinstance(rule.segments, dict):
        for name, override in rule.segments.items():
            if override.threshold_seconds is not None and override.threshold is not None:
                invalid(f"segments.{name}", "give threshold_seconds or threshold, not both")


def fixed(rule: RuleFields) -> Threshold:
    """The threshold of a rule that does not learn (or before anything was learned)."""
    seconds = rule.threshold_seconds or (rule.threshold.fallback_seconds if rule.threshold else None)
    assert seconds is not None, "a rule whose kind keeps a timer has a threshold"
    return Threshold(seconds, "fixed" if rule.threshold is None else "fallback", rule.expected_seconds)


def arm(
    base: Timer,
    at: float,
    rule: RuleFields,
    threshold: Threshold,
    user: UserInfo,
    properties: dict[str, Any],
    due_reason: FlagReason,
) -> Timer:
    """``base`` armed at ``at``: open, due at the threshold, a fresh run."""
    due = math.ceil(at + threshold.seconds)
    return base.model_copy(
        update={
            "state": TimerState.OPEN,
            "kind": rule.kind,
            "due_reason": due_reason,
            "started_at": at,
            "due_at": due,
            "expires_at": due,
            "completed_at": None,
            "flagged_at": None,
            "flag_reason": None,
            "duration_seconds": None,
            "run_failures": 0,
            "completed_after_flag_seconds": None,
            "rule": rule,
            "threshold_seconds": threshold.seconds,
            "threshold_basis": threshold.basis,
            "usual_seconds": threshold.usual_seconds,
            "user": user,
            "properties": properties,
        }
    )


def completed(cur: Timer, at: float, last: float, now: float, policy: Policy, extra: dict[str, Any]) -> Timer:
    update = {"state": TimerState.COMPLETED, "completed_at": at, "last_completed_at": last}
    return cur.model_copy(update=update | {"expires_at": retained(now, policy)} | extra)


def threshold_of(timer: Timer) -> int:
    rule = timer.rule
    assert rule is not None
    return (
        timer.threshold_seconds or rule.threshold_seconds or (rule.threshold.fallback_seconds if rule.threshold else 0)
    )


def usual_of(timer: Timer) -> float | None:
    """What "usual" meant when the run was armed: the learned median, or the rule's expected_seconds."""
    return timer.usual_seconds or (timer.rule.expected_seconds if timer.rule else None)


def elapsed_of(timer: Timer, now: float) -> float:
    """How long the run had been open (or the user silent) when it was flagged; ``now`` for a TTL delete."""
    end = timer.flagged_at if timer.flagged_at is not None else now
    return max(0.0, end - timer.started_at) if timer.started_at is not None else 0.0


def reason_of(timer: Timer) -> FlagReason:
    return timer.flag_reason or timer.due_reason


class TimerKind(Kind[Timer]):
    """A kind whose red flag is one timer's run: the alert id, CS message and webhook payload of a run."""

    def alert_id(self, subject: Timer, channel: str) -> str:
        return subject.alert_id(channel)

    def reason(self, subject: Timer) -> str:
        return reason_of(subject).value

    def recipients(self, subject: Timer) -> tuple[str, ...]:
        rule = subject.rule
        if rule is None or not rule.applies_to(subject.user.segment):
            return ()
        return tuple(rule.notify)

    def user_timer(self, subject: Timer) -> Timer | None:
        return subject

    @abstractmethod
    def said(self, timer: Timer, reason: FlagReason, who: str, elapsed: float) -> str:
        """The CS summary's words for this red flag."""

    def cs_message(self, subject: Timer, now: float) -> CsMessage:
        timer, rule = subject, subject.rule
        assert rule is not None
        elapsed = max(0.0, now - timer.started_at) if timer.started_at is not None else 0.0
        who = plausible_name(timer.user.name) or timer.key.user_id
        reason = reason_of(timer)
        usual = usual_of(timer)
        said = self.said(timer, reason, who, elapsed)
        unreachable = "user" in rule.notify and not timer.user.email
        if unreachable:  # the email channel has nowhere to send it: customer success is the only one told
            said += ". No email address is known for this user, so they were not emailed: reach out another way"
        message = {
            "summary": one_line(said, 300),
            "reason": reason.value,
            "severity": rule.severity,
            "task": timer.key.task,
            "label": rule.label,
            "user_id": timer.key.user_id,
            "instance_id": timer.key.instance_id,
            "run_id": timer.run_id,
            "user": timer.user.model_dump(exclude_none=True),
            "started_at": iso(timer.started_at),
            "due_at": iso(timer.due_at),
            "elapsed_seconds": round(elapsed),
            "threshold_seconds": threshold_of(timer),
            "threshold_basis": timer.threshold_basis or "fixed",
            "usual_seconds": None if usual is None else round(usual),
            "expected_seconds": rule.expected_seconds,
            "failures": timer.failures,
            "run_failures": timer.run_failures,
            "properties": timer.properties,
        }
        if unreachable:
            message["email_known"] = False
        attributes = {"task": timer.key.task, "severity": rule.severity, "user_id": timer.key.user_id}
        return CsMessage(f"Red flag: {rule.label} ({timer.key.user_id})", message, attributes)

    def webhook_payload(self, subject: Timer, now: float) -> dict[str, Any]:
        """What the product gets to show in-app guidance: ids and numbers, no address or name."""
        timer, rule = subject, subject.rule
        assert rule is not None
        usual = usual_of(timer)
        return {
            "type": "red_flag",
            "id": timer.alert_id("webhook"),
            "reason": reason_of(timer).value,
            "user_id": timer.key.user_id,
            "account_id": timer.user.account_id,
            "task": timer.key.task,
            "label": rule.label,
            "instance_id": timer.key.instance_id,
            "run_id": timer.run_id,
            "started_at": iso(timer.started_at),
            "flagged_at": iso(timer.flagged_at or now),
            "elapsed_seconds": round(elapsed_of(timer, now)),
            "threshold_seconds": threshold_of(timer),
            "usual_seconds": None if usual is None else round(usual),
            "failures": timer.run_failures,
            "help_url": rule.help_url,
            "properties": timer.properties,
        }

    def facts(self, message: Mapping[str, Any]) -> list[tuple[str, Any]]:
        m = message
        given = m.get("user")
        user: Mapping[str, Any] = given if isinstance(given, dict) else {}
        name = plausible_name(str(user["name"])) if user.get("name") else None
        facts: list[tuple[str, Any]] = [("User", f"{name} ({m.get('user_id')})" if name else m.get("user_id"))]
        facts.append(("Task", m.get("label") or m.get("task")))
        facts += self.run_facts(m)
        if isinstance(m.get("usual_seconds"), int | float):
            facts.append(("Usually", humanize(float(m["usual_seconds"]))))
        elif isinstance(m.get("threshold_seconds"), int | float) and m.get("reason") != FlagReason.FAILURES:
            facts.append(("Red flag at", humanize(float(m["threshold_seconds"]))))
        if account := user.get("account_id"):
            facts.append(("Account", account))
        if segment := user.get("segment"):
            facts.append(("Segment", segment))
        if m.get("email_known") is False:
            facts.append(("Email", "none known: not emailed"))
        return facts

    def run_facts(self, m: Mapping[str, Any]) -> list[tuple[str, Any]]:
        """How far the run got (shown after the task)."""
        if isinstance(m.get("elapsed_seconds"), int | float):
            return [("Open for", humanize(float(m["elapsed_seconds"])))]
        return []
