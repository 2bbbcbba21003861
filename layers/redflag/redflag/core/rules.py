"""Rules: one per task, kept as JSON in SSM at ``{RulesPath}/{task}``. Pure: no AWS here.

Three kinds of red flag:

- ``task`` (the default): a started task still open after its threshold, which is fixed
  (``threshold_seconds``) or learned from real durations (``threshold``: a factor of the usual time,
  with a fallback until enough completions were seen); optionally also ``max_failures``: the Nth
  ``task_failed`` of one open run is a red flag at once.
- ``inactivity``: a user who has not been active (``user_active`` events naming this rule) for
  ``threshold_seconds``; each activity re-arms the timer.
- ``usage_drop``: an account whose weekly active users fell by more than ``drop_percent`` week over
  week; customer success only, never a user email.

``segments`` either lists the only segments a rule covers (``["trial", "pro"]``, the original form),
or maps segments to overrides (``{"power_user": {"threshold_seconds": 1800}}``): the event's
``user.segment`` picks one, any other segment uses the rule as written.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails

from redflag.core.errors import invalid, missing
from redflag.core.events import TaskName
from redflag.core.templates import EmailTemplate, HelpUrl

Channel = Literal["user", "cs", "webhook"]
Kind = Literal["task", "inactivity", "usage_drop"]
Segment = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MAX_THRESHOLD = 30 * 24 * 3600


class LearnedThreshold(BaseModel):
    """``factor`` x the usual duration (``relative_to``) of completions of this task (in the event's
    segment when it has ``min_samples`` of its own, else across segments); ``fallback_seconds`` until
    then."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    relative_to: Literal["p50", "p90"] = Field(default="p50", description="which usual duration")
    factor: float = Field(gt=1, le=100, description="threshold = factor x that duration")
    min_samples: int = Field(default=50, ge=1, le=100_000, description="completions needed before learning")
    fallback_seconds: int = Field(gt=0, le=MAX_THRESHOLD, description="the threshold until then")
    min_seconds: int = Field(default=1, gt=0, le=MAX_THRESHOLD, description="never flag sooner than this")
    max_seconds: int = Field(default=MAX_THRESHOLD, gt=0, le=MAX_THRESHOLD, description="nor later than this")

    @model_validator(mode="after")
    def _bounds(self) -> LearnedThreshold:
        if self.min_seconds > self.max_seconds:
            raise ValueError("min_seconds must not exceed max_seconds")
        return self


class SegmentOverride(BaseModel):
    """What changes for users in one segment; anything left out is the rule's own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold_seconds: int | None = Field(default=None, gt=0, le=MAX_THRESHOLD)
    threshold: LearnedThreshold | None = None
    expected_seconds: int | None = Field(default=None, gt=0)
    notify: list[Channel] | None = None
    max_failures: int | None = Field(default=None, ge=1, le=1000)
    severity: Literal["info", "warning", "critical"] | None = None


class Rule(BaseModel):
    """What a red flag is for one task, and who hears about it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Kind = Field(default="task", description="task, inactivity or usage_drop")
    label: Annotated[str, StringConstraints(min_length=1, max_length=120, strip_whitespace=True)] = Field(
        description='Human words for the task: "creating a landing page"'
    )
    threshold_seconds: int | None = Field(
        default=None, gt=0, le=MAX_THRESHOLD, description="open (or, for inactivity, silent) this long = red flag"
    )
    threshold: LearnedThreshold | None = Field(default=None, description="a threshold learned from durations")
    expected_seconds: int | None = Field(default=None, gt=0, description="How long most people take")
    notify: list[Channel] = Field(
        default_factory=lambda: ["user", "cs"], description="Who hears of it (usage_drop: default ['cs'])"
    )
    segments: (
        Annotated[
            Annotated[list[Segment], Tag("segment-list")]
            | Annotated[dict[Segment, SegmentOverride], Tag("segment-map")],
            Discriminator(lambda v: "segment-list" if isinstance(v, list) else "segment-map"),
        ]
        | None
    ) = Field(default=None, description="a list: only these segments; a mapping: per-segment overrides")
    severity: Literal["info", "warning", "critical"] = "warning"
    max_failures: int | None = Field(
        default=None, ge=1, le=1000, description="task: the Nth task_failed of one open run is a red flag at once"
    )
    drop_percent: float | None = Field(
        default=None, gt=0, lt=100, description="usage_drop: weekly active users fell by more than this"
    )
    min_weekly_actives: int = Field(
        default=5, ge=1, description="usage_drop: only accounts with at least this many weekly actives before"
    )
    email: EmailTemplate | None = Field(default=None, description="this rule's own email (subject, text, html)")
    help_url: HelpUrl | None = Field(default=None, description="where the email's {help_url} points")
    holdout_percent: float = Field(
        default=0, ge=0, le=100, description="share of users (by a stable hash of user_id) flagged but not emailed"
    )

    @model_validator(mode="wrap")
    @classmethod
    def _threshold_named_with_other_errors(cls, data: Any, handler: Any) -> Rule:
        """A missing threshold is reported with the other field errors, as a required field would be."""
        try:
            return handler(data)
        except ValidationError as exc:
            missing = (
                isinstance(data, dict)
                and data.get("kind", "task") != "usage_drop"
                and "threshold_seconds" not in data
                and "threshold" not in data
            )
            errors = exc.errors()
            if not missing or any(e["loc"] == ("threshold_seconds",) for e in errors):
                raise
            details = [
                InitErrorDetails(type=e["type"], loc=e["loc"], input=e.get("input"), ctx=e.get("ctx", {}))  # type: ignore[typeddict-item]
                for e in errors
            ]
            details.append(InitErrorDetails(type="missing", loc=("threshold_seconds",), input=data))
            raise ValidationError.from_exception_data("Rule", details) from None

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if self.kind == "usage_drop":
            if self.drop_percent is None:
                missing("drop_percent")
            if "notify" not in self.model_fields_set:  # an account has no inbox: customer success, by default
                object.__setattr__(self, "notify", ["cs"])
            if "user" in self.notify:
                invalid("notify", "a usage_drop rule is about an account: never 'user' (use cs or webhook)")
            for name in ("threshold_seconds", "threshold", "max_failures"):
                if getattr(self, name) is not None:
                    invalid(name, "a usage_drop rule takes drop_percent, not a threshold or max_failures")
            return self
        if self.drop_percent is not None:
            invalid("drop_percent", "only usage_drop rules take drop_percent")
        if self.threshold_seconds is not None and self.threshold is not None:
            invalid("threshold", "give threshold_seconds or threshold (learned), not both")
        if self.threshold_seconds is None and self.threshold is None:
            missing("threshold_seconds")
        if self.kind == "inactivity":
            for name in ("threshold", "max_failures"):
                if getattr(self, name) is not None:
                    invalid(name, "an inactivity rule takes threshold_seconds only")
        limit = self.threshold_seconds or (self.threshold.fallback_seconds if self.threshold else None)
        if self.expected_seconds is not None and limit is not None and self.expected_seconds >= limit:
            invalid("expected_seconds", "must be below the threshold")
        if isinstance(self.segments, dict):
            for name, override in self.segments.items():
                if override.threshold_seconds is not None and override.threshold is not None:
                    invalid(f"segments.{name}", "give threshold_seconds or threshold, not both")
                if self.kind == "inactivity" and (override.threshold or override.max_failures):
                    invalid(f"segments.{name}", "an inactivity rule takes threshold_seconds only")
        return self

    def applies_to(self, segment: str | None) -> bool:
        """The list form: only the listed segments. The mapping form covers everyone."""
        return not isinstance(self.segments, list) or segment in self.segments

    def for_segment(self, segment: str | None) -> Rule:
        """The rule as it applies to one segment: its override merged in (a fixed threshold in the
        override replaces a learned one, and the other way round). The result has no segments."""
        base = self.model_copy(update={"segments": None})
        if not isinstance(self.segments, dict) or segment is None or segment not in self.segments:
            return base
        chosen = self.segments[segment]
        override = chosen.model_dump(exclude_none=True, exclude={"threshold"})
        if chosen.threshold_seconds is not None:
            override["threshold"] = None
        elif chosen.threshold is not None:
            override |= {"threshold": chosen.threshold, "threshold_seconds": None}
        return base.model_copy(update=override)


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

    def of_kind(self, kind: Kind) -> dict[str, Rule]:
        return {task: rule for task, rule in self.rules.items() if rule.kind == kind}


def parse_rules(raw: dict[str, str]) -> RuleBook:
    """Parse ``{task: json_text}`` into a RuleBook; bad entries become ``InvalidRule``."""
    from pydantic import TypeAdapter, ValidationError

    from redflag.core.events import describe_errors

    name_check = TypeAdapter(TaskName)
    book = RuleBook()
    for task, text in raw.items():
        try:
            name_check.validate_python(task)
            book.rules[task] = Rule.model_validate_json(text)
        except ValidationError as exc:
            book.invalid[task] = InvalidRule(task=task, reason=describe_errors(exc.errors()))
    return book
