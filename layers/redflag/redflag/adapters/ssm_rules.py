"""Rules from SSM Parameter Store, read all at once by path and cached by Powertools."""

from __future__ import annotations

from aws_lambda_powertools.utilities import parameters

from redflag.adapters import aws
from redflag.adapters.observability import logger, metrics
from redflag.kinds import RuleBook, parse_rules


class SsmRuleSource:
    def __init__(self, path: str, max_age_seconds: int, provider: parameters.SSMProvider | None = None) -> None:
        self._path = path.rstrip("/")
        self._max_age = max_age_seconds
        self._provider = provider or parameters.SSMProvider(boto3_client=aws.client("ssm"))
        self._raw: dict | None = None
        self._book = RuleBook()

    def rulebook(self) -> RuleBook:
        # one GetParametersByPath per max_age on a warm Lambda, however many events arrive
        raw = self._provider.get_multiple(self._path, max_age=self._max_age, recursive=False)
        if raw is not self._raw:  # a fresh read: parse it once
            self._raw = raw
            self._book = parse_rules({name.rsplit("/", 1)[-1]: str(value) for name, value in raw.items()})
            for bad in self._book.invalid.values():
                logger.error("invalid rule", extra={"task": bad.task, "reason": bad.reason, "rules_path": self._path})
                metrics.add_metric(name="InvalidRule", unit="Count", value=1)
        return self._book
