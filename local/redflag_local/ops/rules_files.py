"""Rules kept as YAML files in rules/ (one file per task: ``<task>.yaml``), checked with the
same pydantic model the Lambdas use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import TypeAdapter, ValidationError

from redflag.core.events import TaskName, field_of
from redflag.kinds import Rule

RULES_DIR = Path(__file__).resolve().parents[3] / "rules"  # the repo's rules/ (template.ROOT / "rules")


@dataclass(frozen=True)
class RuleProblem:
    file: Path
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.reason}"


def load_rules(directory: Path = RULES_DIR) -> tuple[dict[str, Rule], list[RuleProblem]]:
    rules: dict[str, Rule] = {}
    problems: list[RuleProblem] = []
    seen: dict[str, Path] = {}
    for path in sorted(directory.glob("*.y*ml")):
        task = path.stem
        if task in seen:  # rules/x.yaml and rules/x.yml: which one would win is not obvious
            problems.append(RuleProblem(path, "(file name)", f"task '{task}' is also defined in {seen[task].name}"))
            rules.pop(task, None)
            continue
        seen[task] = path
        try:
            TypeAdapter(TaskName).validate_python(task)
        except ValidationError:
            problems.append(
                RuleProblem(path, "(file name)", f"'{task}' is not a task name ^[a-z0-9][a-z0-9_.-]{{0,63}}$")
            )
            continue
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            problems.append(RuleProblem(path, "(yaml)", str(exc).replace("\n", " ")))
            continue
        try:
            rules[task] = Rule.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                field = field_of(err) if err.get("loc") else "(rule)"
                problems.append(RuleProblem(path, field, err["msg"]))
    problems += _references(rules, directory)
    return rules, problems


def _references(rules: dict[str, Rule], directory: Path) -> list[RuleProblem]:
    """A rule that watches another (a rate rule's ``watch``, ``step``) names one it can watch."""
    from redflag.kinds import RuleBook
    from redflag.services.rates import settle_of

    book = RuleBook(rules=rules)
    found = []
    for task, rule in sorted(rules.items()):
        if rule.watch is None:
            continue
        why = settle_of(book, rule)
        if isinstance(why, str):
            field = "step" if rule.step is not None and rule.watch in rules else "watch"
            found.append(RuleProblem(directory / f"{task}.yaml", field, why))
    return found


def as_parameters(rules: dict[str, Rule]) -> dict[str, str]:
    """task -> the JSON value stored at ``{RulesPath}/{task}``."""
    return {task: rule.model_dump_json(exclude_none=True) for task, rule in rules.items()}
