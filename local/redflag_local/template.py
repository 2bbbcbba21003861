"""Read template.yaml, and make the copy that moto can deploy.

moto runs no Lambda code and swallows stream records behind an event source mapping it cannot
invoke, so the copy drops the functions' stream and API ``Events`` (we call the handlers
directly; schedules stay, as EventBridge rules that never fire on their own) and the
layer (the handlers import ``redflag`` from this checkout). What moto's CloudFormation ignores
(TTL spec, stream filter criteria, batch size) is read from the template itself.
"""

from __future__ import annotations

import copy
import json
from functools import cached_property
from pathlib import Path
from typing import Any

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


class Template:
    def __init__(self, path: Path = TEMPLATE) -> None:
        self.path = path
        self.sam: dict[str, Any] = yaml_parse(path.read_text())

    def resources(self, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.sam["Resources"].items() if v["Type"] == type_}

    @cached_property
    def functions(self) -> dict[str, Path]:
        """Logical id -> the function's source folder (``functions/<name>``)."""
        return {
            name: ROOT / res["Properties"]["CodeUri"]
            for name, res in self.resources("AWS::Serverless::Function").items()
        }

    def function_event(self, function: str, event_type: str) -> dict[str, Any]:
        events = self.sam["Resources"][function]["Properties"].get("Events", {})
        return next(e["Properties"] for e in events.values() if e["Type"] == event_type)

    def function_timeout(self, function: str) -> float:
        props = self.sam["Resources"][function]["Properties"]
        return float(props.get("Timeout", self.sam.get("Globals", {}).get("Function", {}).get("Timeout", 3)))

    def stream_filters(self, function: str) -> list[dict[str, Any]]:
        props = self.function_event(function, "DynamoDB")
        return [json.loads(f["Pattern"]) for f in props.get("FilterCriteria", {}).get("Filters", [])]

    def table(self, logical_id: str) -> dict[str, Any]:
        return self.sam["Resources"][logical_id]["Properties"]

    def function_for(self, folder: str) -> str:
        return next(name for name, path in self.functions.items() if path.name == folder)

    def moto_copy(self, parameters: dict[str, str]) -> dict[str, Any]:
        sam = copy.deepcopy(self.sam)
        sam.get("Globals", {}).get("Function", {}).pop("Layers", None)
        sam.get("Globals", {}).pop("Api", None)
        sam.pop("Outputs", None)  # they name the implicit API, which needs the dropped Events
        for name in list(sam["Resources"]):
            res = sam["Resources"][name]
            if res["Type"] == "AWS::Serverless::LayerVersion":
                del sam["Resources"][name]
            elif res["Type"] == "AWS::Serverless::Function":
                props = res["Properties"]
                # keep schedules (moto creates the rule, so its State is checked); drop the stream
                # mapping (it would swallow records) and the API (the harness plays API Gateway)
                events = {k: e for k, e in props.pop("Events", {}).items() if e["Type"] == "Schedule"}
                if events:
                    props["Events"] = events
                props.pop("CodeUri", None)
                props["InlineCode"] = "def lambda_handler(event, context):\n    raise NotImplementedError\n"
        return transform(sam, parameters, _NoManagedPolicies())
