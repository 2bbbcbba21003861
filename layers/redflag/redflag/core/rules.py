"""The fields a rule can hold, and the checks every kind shares. Pure: no AWS here.

A rule is kept as JSON in SSM at ``{RulesPath}/{task}``. Which fields a rule of each kind takes, and
what else it must hold, is the kind's own business (``redflag.kinds``: one module per kind); the model
there, ``redflag.kinds.Rule``, is this one validated for its kind. Use that one to read a rule.

``segments`` either lists the only segments a rule covers (``["trial", "pro"]``, the original form),
or maps segments to overrides (``{"power_user": {"threshold_seconds": 1800}}``): the event's
``user.segment`` picks one, any other segment uses the rule as written.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    model_validator,
)

from redflag.core.templates import EmailTemplate, HelpUrl

Channel = Literal["user", "cs", "webhook"]
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


StepName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]


class FunnelStep(BaseModel):
    """One step of a funnel (``kind: funnel``): a user who reached it and has not reached a later one
    after its threshold is stuck there. The last step is the end: it takes no threshold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: StepName = Field(description="what events name the step (properties.step)")
    label: Annotated[str, StringConstraints(min_length=1, max_length=120, strip_whitespace=True)] | None = Field(
        default=None, description="the step in human words (default: its name)"
    )
    threshold_seconds: int | None = Field(default=None, gt=0, le=MAX_THRESHOLD, description="at this step this long")
    threshold: LearnedThreshold | None = Field(default=None, description="learned from the times to a later step")
    expected_seconds: int | None = Field(default=None, gt=0, description="how long most people stay at this step")
    optional: bool = Field(default=False, description="users may skip it: reaching the step after it is ordinary")

    @property
    def title(self) -> str:
        return self.label or self.name


class HealthWeights(BaseModel):
    """How much each signal counts in an account's health score (``kind: health``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trend: float = Field(default=30, ge=0, le=100, description="weekly actives, week over week")
    stickiness: float = Field(default=20, ge=0, le=100, description="DAU / WAU over the week")
    flags: float = Field(default=20, ge=0, le=100, description="red flags per active user")
    failures: float = Field(default=15, ge=0, le=100, description="runs with a failure, of runs started")
    first_week: float = Field(default=15, ge=0, le=100, description="new users active on a second day in week one")

    @model_validator(mode="after")
    def _some(self) -> HealthWeights:
        if not any(self.model_dump().values()):
            raise ValueError("at least one weight must be above 0")
        return self


class HealthBands(BaseModel):
    """Where green and yellow begin (scores 0-100); below ``yellow`` is red."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    green: float = Field(default=70, gt=0, le=100)
    yellow: float = Field(default=40, gt=0, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> HealthBands:
        if self.yellow >= self.green:
            raise ValueError("yellow must be below green")
        return self


def _names(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


EventName = Annotated[str, StringConstraints(min_length=1, max_length=256)]
EventNames = Annotated[list[EventName], BeforeValidator(_names), Field(min_length=1, max_length=20)]
PropertyName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_$][A-Za-z0-9_.$-]{0,63}$")]
Scalar = Annotated[str, StringConstraints(max_length=256)] | int | float | bool


class TrackMapping(BaseModel):
    """Which tracking calls (the Segment Spec's ``track``, ``page``, ``screen``) are this rule's events:
    a task's ``started``, ``completed`` and ``failed`` event names, an inactivity rule's ``active``
    ones. Each key is a name or a list of names; a kind takes the keys of its own event types
    (``redflag.kinds``: ``Kind.track_keys``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    started: EventNames | None = Field(
        default=None, description='task: the track events that start it ("Landing Page Started")'
    )
    completed: EventNames | None = Field(default=None, description="task: the track events that complete it")
    failed: EventNames | None = Field(default=None, description="task: the track events that are a failure of it")
    active: EventNames | None = Field(
        default=None, description="inactivity: the track events that count (default: every track, page and screen)"
    )
    steps: dict[StepName, EventNames] | None = Field(
        default=None, description="funnel: the track events that reach each step (step name -> event names)"
    )
    instance_property: PropertyName | None = Field(
        default=None, description="the property whose value keys the instance (page_id: one timer per page)"
    )
    where: dict[PropertyName, Scalar | Annotated[list[Scalar], Field(min_length=1, max_length=20)]] | None = Field(
        default=None, description="only calls whose properties hold these values (a list: any of them)"
    )

    def names(self, key: str) -> list[str]:
        value = getattr(self, key) or []
        return [n for names in value.values() for n in names] if isinstance(value, dict) else list(value)

    def given(self) -> list[str]:
        """The event keys this mapping sets (started, completed, ...)."""
        return [k for k in ("started", "completed", "failed", "active", "steps") if getattr(self, k)]

    def matches(self, properties: dict[str, Any]) -> bool:
        """The call's properties hold every ``where`` value (a list: any of its values)."""
        for name, wanted in (self.where or {}).items():
            got = properties.get(name)
            options = wanted if isinstance(wanted, list) else [wanted]
            if not any(_same(got, o) for o in options):
                return False
        return True


def _same(got: Any, wanted: Any) -> bool:
    """Equal JSON values: ``true`` is not ``1``, ``1`` is ``1.0``, ``"1"`` is neither."""
    if isinstance(got, bool) or isinstance(wanted, bool):
        return isinstance(got, bool) and isinstance(wanted, bool) and got == wanted
    if isinstance(got, int | float) and isinstance(wanted, int | float):
        return got == wanted
    return isinstance(got, str) and isinstance(wanted, str) and got == wanted


class SegmentOverride(BaseModel):
    """What changes for users in one segment; anything left out is the rule's own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold_seconds: int | None = Field(default=None, gt=0, le=MAX_THRESHOLD)
    threshold: LearnedThreshold | None = None
    expected_seconds: int | None = Field(default=None, gt=0)
    notify: list[Channel] | None = None
    max_failures: int | None = Field(default=None, ge=1, le=1000)
    severity: Literal["info", "warning", "critical"] | None = None


class RuleFields(BaseModel):
    """Every field a rule can hold (each kind takes some of them: ``redflag.kinds``), with the checks
    of single fields. ``redflag.kinds.Rule`` is this model validated for its kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(default="task", description="the kind of red flag (redflag.kinds): task, inactivity, ...")
    label: Annotated[str, StringConstraints(min_length=1, max_length=120, strip_whitespace=True)] = Field(
        description='Human words for the task: "creating a landing page"'
    )
    threshold_seconds: int | None = Field(
        default=None, gt=0, le=MAX_THRESHOLD, description="open (or, for inactivity, silent) this long = red flag"
    )
    threshold: LearnedThreshold | None = Field(default=None, description="a threshold learned from durations")
    expected_seconds: int | None = Field(default=None, gt=0, description="How long most people take")
    notify: list[Channel] = Field(
        default_factory=lambda: list[Channel](("user", "cs")),
        description="Who hears of it (usage_drop: default ['cs'])",
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
    steps: Annotated[list[FunnelStep], Field(min_length=2, max_length=20)] | None = Field(
        default=None, description="funnel: its steps, in order (the last is the end)"
    )
    watch: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")] | None = Field(
        default=None, description="rate: the task or funnel rule it watches"
    )
    step: StepName | None = Field(default=None, description="rate: the funnel step it watches (default: the funnel)")
    measure: Literal["abandonment", "failure", "conversion"] | None = Field(
        default=None, description="rate: what share it watches"
    )
    window_minutes: int = Field(default=60, ge=5, le=1440, description="rate: the rolling window")
    alert_percent: float | None = Field(default=None, gt=0, lt=100, description="rate: the level it alerts at")
    recover_percent: float | None = Field(default=None, gt=0, lt=100, description="rate: the level it recovers at")
    min_started: int = Field(default=20, ge=1, le=1_000_000, description="rate: runs in the window to judge it")
    weights: HealthWeights | None = Field(default=None, description="health: each signal's weight")
    bands: HealthBands | None = Field(default=None, description="health: where green and yellow begin")
    email: EmailTemplate | None = Field(default=None, description="this rule's own email (subject, text, html)")
    help_url: HelpUrl | None = Field(default=None, description="where the email's {help_url} points")
    holdout_percent: float = Field(
        default=0, ge=0, le=100, description="share of users (by a stable hash of user_id) flagged but not emailed"
    )
    track: TrackMapping | None = Field(
        default=None, description="which Segment-style track calls are this rule's events (the tracking API)"
    )

    def applies_to(self, segment: str | None) -> bool:
        """The list form: only the listed segments. The mapping form covers everyone."""
        return not isinstance(self.segments, list) or segment in self.segments

    def for_segment(self, segment: str | None) -> Self:
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
