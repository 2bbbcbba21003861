"""The kinds of red flag, one module each, found through ``REGISTRY``: nothing outside a kind's module
branches on its name. Adding a kind: docs/extending.md.

    task        kinds/task.py        a started task still open past its threshold, or failing again and again
    inactivity  kinds/inactivity.py  a user gone quiet for the rule's threshold
    usage_drop  kinds/usage_drop.py  an account whose weekly active users fell
    escalation  kinds/escalation.py  a user or account tripping several red flags in a window (no rule)
    email_suppressed  kinds/suppression.py  a user's address bounced for good or complained (no rule)
    funnel      kinds/funnel.py      a user stuck at one step of ordered steps past that step's threshold
    rate        kinds/rate.py        a share of a task's (or funnel step's) runs over a window crossing a level
    health      kinds/health.py      an account whose health score moved into red

Here too: ``Rule``, the one model a rule is read with (every field of ``redflag.core.rules``,
validated for its kind), and the ``RuleBook`` of every rule read at once.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails

from redflag.core.baselines import Threshold
from redflag.core.errors import invalid
from redflag.core.events import EventType, TaskName, UserInfo, describe_errors
from redflag.core.rules import RuleFields
from redflag.core.timers import Decision, FlagReason, Policy, Timer, TimerKey
from redflag.core.tracking import Interaction
from redflag.kinds import escalation, funnel, health, inactivity, rate, suppression, task, usage_drop
from redflag.kinds.base import Applied, Kind

REGISTRY: dict[str, Kind[Any]] = {
    k.name: k
    for k in (
        task.KIND, inactivity.KIND, usage_drop.KIND, escalation.KIND, suppression.KIND, funnel.KIND, rate.KIND,
        health.KIND,
    )
}  # fmt: skip
RULE_KINDS = tuple(name for name, k in REGISTRY.items() if k.configurable)
SHARED = frozenset({"kind", "label", "notify", "severity"})  # every rule kind takes these
ABOUT_USERS = frozenset({"segments", "email", "help_url", "holdout_percent"})  # a kind about users takes these too
_BY_REASON = {reason.value: k for k in REGISTRY.values() for reason in k.reasons}
_SPECIFIC = frozenset().union(*(k.fields for k in REGISTRY.values()))


def get(name: str) -> Kind[Any]:
    """The kind of this name (a rule's ``kind``, a timer's ``kind``); KeyError for one that is not."""
    return REGISTRY[name]


def by_reason(reason: str | None) -> Kind[Any]:
    """The kind whose red flags carry this reason (a CS message's ``reason``); the task kind when unknown."""
    return _BY_REASON.get(str(reason), task.KIND)


def due_reason(kind: str) -> FlagReason:
    """What it means when a timer of this kind falls due (the sweeper's flag carries no reason)."""
    found = REGISTRY.get(kind)
    return found.reasons[0] if found is not None and found.reasons else FlagReason.TIME


def _literal(values: tuple[str, ...]) -> str:
    quoted = [repr(v) for v in values]
    return "Input should be " + (", ".join(quoted[:-1]) + f" or {quoted[-1]}" if len(quoted) > 1 else quoted[0])


class Rule(RuleFields):
    """What a red flag is for one task, and who hears about it: the shared fields, checked for the
    rule's kind (which fields it takes, what it must hold, who it may notify)."""

    @model_validator(mode="wrap")
    @classmethod
    def _threshold_named_with_other_errors(cls, data: Any, handler: Any) -> Rule:
        """A missing threshold is reported with the other field errors, as a required field would be."""
        try:
            rule: Rule = handler(data)
            return rule
        except ValidationError as exc:
            kind = REGISTRY.get(str(data.get("kind", "task"))) if isinstance(data, dict) else None
            missing = (
                kind is not None
                and "threshold_seconds" in kind.fields
                and "threshold_seconds" not in data
                and "threshold" not in data
            )
            errors = exc.errors()
            if not missing or any(e["loc"] == ("threshold_seconds",) for e in errors):
                raise
            details = [
                InitErrorDetails(type=e["type"], loc=e["loc"], input=e.get("input"), ctx=e.get("ctx", {}))
                for e in errors
            ]
            details.append(InitErrorDetails(type="missing", loc=("threshold_seconds",), input=data))
            raise ValidationError.from_exception_data("Rule", details) from None

    @model_validator(mode="after")
    def _for_its_kind(self) -> Rule:
        kind = REGISTRY.get(self.kind)
        if kind is None or not kind.configurable:
            invalid("kind", _literal(RULE_KINDS))
        takes = SHARED | kind.fields | (ABOUT_USERS if kind.about == "user" else frozenset())
        for name in sorted(_given(self) - takes):
            if name in _SPECIFIC or name in ABOUT_USERS:
                invalid(name, kind.refusal(name))
        if "notify" not in self.model_fields_set:
            object.__setattr__(self, "notify", list(kind.default_notify))
        if kind.about != "user" and "user" in self.notify:
            about = "an account" if kind.about == "account" else "many users at once"
            invalid("notify", f"a {kind.name} rule is about {about}: never 'user' (use cs or webhook)")
        kind.check(self)
        if isinstance(self.segments, dict):
            for segment, override in self.segments.items():
                refused = sorted(n for n in _given(override) if n in _SPECIFIC and n not in kind.fields)
                if refused:
                    invalid(f"segments.{segment}", kind.refusal(refused[0]))
        return self


def _given(model: BaseModel) -> set[str]:
    """The fields a rule (or an override) holds a value of its own in: given, and not the default (a
    rule written back with every field, ``model_dump_json()``, holds nulls and defaults)."""
    fields = type(model).model_fields
    return {n for n in model.model_fields_set if getattr(model, n) != fields[n].get_default(call_default_factory=True)}


class InvalidRule(BaseModel):
    """A rule parameter that exists but does not parse; it only affects its own task."""

    task: str
    reason: str


class RuleBook(BaseModel):
    """All rules read at once (one cached SSM call), keyed by task name."""

    rules: dict[TaskName, Rule] = Field(default_factory=dict)
    invalid: dict[str, InvalidRule] = Field(default_factory=dict)

    def lookup(self, task: str) -> Rule | InvalidRule | None:
        return self.rules.get(task) or self.invalid.get(task)

    def of_kind(self, kind: str) -> dict[str, Rule]:
        return {name: rule for name, rule in self.rules.items() if rule.kind == kind}


def tracked(book: RuleBook, call: Interaction) -> list[tuple[str, Rule, EventType]]:
    """Every rule a tracking call (``track``, ``page``, ``screen``) is an event of, with the event type:
    each rule's kind says (``Kind.tracked``), so a new kind maps calls without a change here."""
    found = []
    for name, rule in sorted(book.rules.items()):
        event_type = get(rule.kind).tracked(rule, call)
        if event_type is not None:
            found.append((name, rule, event_type))
    return found


def parse_rules(raw: dict[str, str]) -> RuleBook:
    """Parse ``{task: json_text}`` into a RuleBook; bad entries become ``InvalidRule``."""
    from pydantic import TypeAdapter

    name_check = TypeAdapter(TaskName)
    book = RuleBook()
    for name, text in raw.items():
        try:
            name_check.validate_python(name)
            book.rules[name] = Rule.model_validate_json(text)
        except ValidationError as exc:
            book.invalid[name] = InvalidRule(task=name, reason=describe_errors(exc.errors()))
    return book


def apply_event(
    current: Timer | None,
    key: TimerKey,
    event_type: EventType,
    at: float,
    rule: RuleFields,
    now: float,
    user: UserInfo | None = None,
    properties: dict[str, Any] | None = None,
    policy: Policy | None = None,
    threshold: Threshold | None = None,
) -> Decision:
    """What one event does to its timer, by the rule's kind. ``at`` is the event time (epoch s); ``rule``
    is the rule as it applies to the user's segment; ``threshold`` the one a new run is armed with
    (default: the rule's fixed threshold, or its fallback)."""
    event = Applied(key, event_type, at, rule, now, user or UserInfo(), properties or {}, policy or Policy(), threshold)
    return get(rule.kind).apply(current, event)
