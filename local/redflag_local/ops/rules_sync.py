"""Rules between rules/*.yaml and where the functions read them: SSM ``{RulesPath}/{task}``.

Two stores look the same to ``diff``/``push``/``pull``: SSM Parameter Store (any boto3 SSM client:
a real account, or moto in tests) and a running ``redflag serve`` (its ``/local/rules`` routes).
Rules are compared by meaning (parsed with ``redflag.kinds.Rule``, defaults filled in), so JSON
formatting or an omitted default is not a change.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import quote

import yaml
from pydantic import TypeAdapter, ValidationError

from redflag.core.events import TaskName, describe_errors
from redflag.kinds import Rule
from redflag_local.ops.rules_files import as_parameters, load_rules

DEFAULT_ENDPOINT = "http://127.0.0.1:3000"
API_KEY_ENV = "REDFLAG_API_KEY"  # sent as x-api-key to a `redflag serve --api-key` (as `redflag events` does)
DEFAULT_RULES_PATH = "/redflag/rules"
RULES_PATH_PATTERN = r"^/[A-Za-z0-9_./-]*[A-Za-z0-9_.-]$"  # as redflag.edge.settings.Settings.rules_path
_task_name = TypeAdapter(TaskName)


class StoreError(Exception):
    """The store could not be read or written; the message says why and what to do."""


class RuleStore(Protocol):
    description: str

    def read(self) -> dict[str, str]:
        """task -> the rule JSON text stored for it (possibly invalid)."""
        ...

    def put(self, task: str, value: str) -> None: ...

    def delete(self, task: str) -> None: ...


class SsmRuleStore:
    """SSM Parameter Store through a boto3 SSM client: one String parameter per task."""

    def __init__(self, client: Any, path: str = DEFAULT_RULES_PATH, description: str | None = None) -> None:
        self.client = client
        self.path = path.rstrip("/")
        self.description = description or f"SSM {self.path}"

    def read(self) -> dict[str, str]:
        out: dict[str, str] = {}
        pages = self.client.get_paginator("get_parameters_by_path").paginate(Path=self.path, Recursive=False)
        for page in pages:
            for p in page["Parameters"]:
                out[p["Name"][len(self.path) + 1 :]] = p["Value"]
        return out

    def put(self, task: str, value: str) -> None:
        self.client.put_parameter(Name=f"{self.path}/{task}", Value=value, Type="String", Overwrite=True)

    def delete(self, task: str) -> None:
        self.client.delete_parameter(Name=f"{self.path}/{task}")


class LocalServerRuleStore:
    """The rules of a running ``redflag serve`` (its moto SSM), through ``/local/rules``."""

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        path: str = DEFAULT_RULES_PATH,
        timeout: float = 10,
        api_key: str | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.path = path.rstrip("/")
        self.timeout = timeout
        self.api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)  # serve --api-key
        self.description = f"local server {self.endpoint} (SSM {self.path})"

    def _call(self, method: str, route: str, body: str | None = None) -> dict[str, Any]:
        url = f"{self.endpoint}/local/rules{route}"
        data = body.encode() if body is not None else None
        headers = {"Content-Type": "application/json"} | ({"x-api-key": self.api_key} if self.api_key else {})
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise StoreError(f"{method} {url}: HTTP {exc.code}: {_message(exc.read())}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise StoreError(
                f"no local Red Flag server at {self.endpoint} ({reason}); start one with `redflag serve`, "
                "or give --profile/--region to target SSM on AWS"
            ) from exc

    def read(self) -> dict[str, str]:
        out = self._call("GET", "")
        if out.get("rules_path") != self.path:
            raise StoreError(f"the local server keeps rules at {out.get('rules_path')}, not {self.path}")
        return dict(out.get("rules", {}))

    def put(self, task: str, value: str) -> None:
        self._call("PUT", f"/{quote(task, safe='')}", value)

    def delete(self, task: str) -> None:
        self._call("DELETE", f"/{quote(task, safe='')}")


def _message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("message", body.decode(errors="replace")))
    except (ValueError, AttributeError):
        return body.decode(errors="replace")[:300]


# --- comparing -------------------------------------------------------------------------------

Kind = Literal["added", "changed", "only_in_store", "unchanged"]


@dataclass(frozen=True)
class FieldChange:
    field: str
    stored: Any  # what the store has now (None: absent)
    local: Any  # what the files say


@dataclass(frozen=True)
class RuleChange:
    task: str
    kind: Kind
    fields: list[FieldChange] = field(default_factory=list)


def _fields(a: dict[str, Any], b: dict[str, Any]) -> list[FieldChange]:
    return [FieldChange(k, a.get(k), b.get(k)) for k in Rule.model_fields if a.get(k) != b.get(k)]


def diff_rules(local: dict[str, Rule], stored: dict[str, str]) -> list[RuleChange]:
    """What pushing ``local`` would change in a store holding ``stored``, task by task."""
    changes = []
    for task in sorted(set(local) | set(stored)):
        if task not in stored:
            changes.append(RuleChange(task, "added"))
        elif task not in local:
            changes.append(RuleChange(task, "only_in_store"))
        else:
            mine = local[task].model_dump(mode="json")
            try:
                theirs = Rule.model_validate_json(stored[task]).model_dump(mode="json")
            except ValidationError as exc:
                invalid = FieldChange("(invalid in store)", describe_errors(exc.errors()), "a valid rule")
                changes.append(RuleChange(task, "changed", [invalid]))
                continue
            delta = _fields(theirs, mine)
            changes.append(RuleChange(task, "changed" if delta else "unchanged", delta))
    return changes


def push(store: RuleStore, local: dict[str, Rule], prune: bool = False) -> list[RuleChange]:
    """Write added and changed rules (only valid ones: ``local`` holds parsed rules); with
    ``prune``, delete rules found only in the store. Returns the changes made."""
    changes = diff_rules(local, store.read())
    values = as_parameters(local)
    for change in changes:
        if change.kind in ("added", "changed"):
            store.put(change.task, values[change.task])
        elif change.kind == "only_in_store" and prune:
            store.delete(change.task)
    return changes


# --- pulling ---------------------------------------------------------------------------------


@dataclass
class PullReport:
    written: list[Path] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (task, why)


def rule_yaml(task: str, rule: Rule, source: str) -> str:
    data = rule.model_dump(mode="json", exclude_none=True)
    return f"# {task}: pulled from {source}\n" + yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def pull(store: RuleStore, directory: Path) -> PullReport:
    """Write each valid stored rule to ``<directory>/<task>.yaml``. A file that already says the
    same (by meaning) is left untouched, comments and all; invalid stored rules are skipped."""
    report = PullReport()
    stored = store.read()
    directory.mkdir(parents=True, exist_ok=True)
    local, _problems = load_rules(directory)
    for task, text in sorted(stored.items()):
        try:
            _task_name.validate_python(task)
        except ValidationError:
            report.skipped.append((task, "not a task name, so not a file name"))
            continue
        try:
            rule = Rule.model_validate_json(text)
        except ValidationError as exc:
            report.skipped.append((task, describe_errors(exc.errors())))
            continue
        if task in local and local[task].model_dump() == rule.model_dump():
            report.unchanged.append(task)
            continue
        existing = [p for p in (directory / f"{task}.yaml", directory / f"{task}.yml") if p.exists()]
        path = existing[0] if existing else directory / f"{task}.yaml"
        path.write_text(rule_yaml(task, rule, store.description))
        report.written.append(path)
    return report
