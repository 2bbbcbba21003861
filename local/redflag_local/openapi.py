"""Print the OpenAPI document Powertools generates from the events API (``make openapi``).

docs/openapi.json is this output, committed; a test fails when the two drift apart.
"""

from __future__ import annotations

import importlib.util
import os

from redflag_local.standin.template import ROOT

TITLE = "Red Flag events API"
VERSION = "1.0.0"


def generate() -> str:
    names = {"TABLE_NAME": "openapi", "RULES_PATH": "/redflag/rules", "DUE_SHARDS": "8", "STATS_TABLE_NAME": "openapi"}
    for name, value in names.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    path = ROOT / "functions" / "events_to_timers" / "app.py"
    spec = importlib.util.spec_from_file_location("redflag_fn_openapi", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app.get_openapi_json_schema(
        title=TITLE,
        version=VERSION,
        description=(
            "Product backends post user task events; Red Flag arms a timer per started task and alerts "
            "(email to the user, SNS to customer success) when it passes its rule's threshold. "
            "Authenticate with the stack's API key in the x-api-key header."
        ),
    )


if __name__ == "__main__":
    print(generate())
