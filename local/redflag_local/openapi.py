"""Print the OpenAPI document Powertools generates from the events API and the tracking API
(``make openapi``): each function's resolver documents its own routes; the two are merged, with how
each route is authenticated (the API key, or a write key as the Basic auth username).

docs/openapi.json is this output, committed; a test fails when the two drift apart.
"""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Any

from redflag_local.standin.template import ROOT

TITLE = "Red Flag events API"
VERSION = "1.0.0"


DESCRIPTION = (
    "Product backends post user task events; Red Flag arms a timer per started task and alerts "
    "(email to the user, SNS to customer success) when it passes its rule's threshold. "
    "POST /v1/events takes Red Flag's own events: authenticate with the stack's API key in the x-api-key header. "
    "The tracking API (/v1/batch, /v1/track, /v1/identify, /v1/group, /v1/page, /v1/screen, /v1/alias) takes "
    "the Segment Spec's calls as every Segment-compatible SDK sends them: authenticate with a write key as the "
    "Basic auth username (or writeKey in the body); /v1/webhook takes Segment's Webhooks destination "
    "(X-Signature) and RudderStack's webhook destination (the write key). A call that is invalid inside a valid "
    "request is answered in its own result (`rejected`), not with a 4xx."
)
FUNCTIONS = ("events_to_timers", "tracking_api")
SCHEMES = {
    "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key", "description": "The stack's API key"},
    "writeKey": {"type": "http", "scheme": "basic", "description": "A write key as the username, no password"},
}


def _app(folder: str) -> Any:
    path = ROOT / "functions" / folder / "app.py"
    spec = importlib.util.spec_from_file_location(f"redflag_fn_openapi_{folder}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


def generate() -> str:
    names = {"TABLE_NAME": "openapi", "RULES_PATH": "/redflag/rules", "DUE_SHARDS": "8", "STATS_TABLE_NAME": "openapi"}
    names |= {"WRITE_KEYS_SECRET_ARN": "openapi", "TRACKING_WEBHOOK_SECRET_ARN": "openapi"}
    for name, value in names.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    merged: dict[str, Any] = {}
    for folder in FUNCTIONS:
        doc = json.loads(_app(folder).get_openapi_json_schema(title=TITLE, version=VERSION, description=DESCRIPTION))
        scheme = "apiKey" if folder == "events_to_timers" else "writeKey"
        for operations in doc["paths"].values():
            for operation in operations.values():
                operation["security"] = [{scheme: []}]
        if not merged:
            merged = doc
            continue
        merged["paths"] |= doc["paths"]
        merged["components"]["schemas"] |= doc["components"]["schemas"]
        merged.setdefault("tags", [])
        merged["tags"] += [t for t in doc.get("tags", []) if t not in merged["tags"]]
    merged["components"]["securitySchemes"] = SCHEMES
    return json.dumps(merged, indent=2)


if __name__ == "__main__":
    print(generate())
