"""Rules: one per task, kept as JSON in SSM at ``{RulesPath}/{task}``. Pure: no AWS here."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from redflag.events import TaskName

Channel = Literal["user", "cs"]


class Rule(BaseModel):
    """What a red flag is for one task, and who hears about it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: Annotated[str, StringConstraints(min_length=1, max_length=120, strip_whitespace=True)] = Field(
        description='Human words for the task: "creating a landing page"'
    )
    threshold_seconds: int = Field(gt=0, le=30 * 24 * 3600, description="Open this long = red flag")
    expected_seconds: int | None = Field(default=None, gt=0, description="How long most people take")
    notify: list[Channel] = Field(default_factory=lambda: ["user", "cs"], description="Who hears of it")
    segments: list[Annotated[str, StringConstraints(max_length=64)]] | None = Field(
        default=None, description="Only users in these segments; absent = everyone"
    )
    severity: Literal["info", "warning", "critical"] = "warning"

    @model_validator(mode="after")
    def _expected_below_threshold(self) -> Rule:
        if self.expected_seconds is not None and self.expected_seconds >= self.threshold_seconds:
            raise ValueError("expected_seconds must be below threshold_seconds")
        return self

    def applies_to(self, segment: str | None) -> bool:
        return self.segments is None or segment in self.segments


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


def parse_rules(raw: dict[str, str]) -> RuleBook:
    """Parse ``{task: json_text}`` into a RuleBook; bad entries become ``InvalidRule``."""
    from pydantic import TypeAdapter, ValidationError

    from redflag.events import describe_errors

    name_check = TypeAdapter(TaskName)
    book = RuleBook()
    for task, text in raw.items():
        try:
            name_check.validate_python(task)
            book.rules[task] = Rule.model_validate_json(text)
        except ValidationError as exc:
            book.invalid[task] = InvalidRule(task=task, reason=describe_errors(exc.errors()))
    return book
