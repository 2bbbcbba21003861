"""The OpenAPI document is generated from the handler; the committed copy must not drift."""

import json

from redflag_local.openapi import generate
from redflag_local.standin.template import ROOT


def test_committed_openapi_matches_the_handler():
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert json.loads(generate()) == committed, "docs/openapi.json is stale: run `make openapi`"


def test_openapi_documents_the_contract():
    doc = json.loads(generate())
    post = doc["paths"]["/v1/events"]["post"]
    assert set(post["responses"]) >= {"202", "400", "422"}
    events = doc["components"]["schemas"]["EventBatch"]["properties"]["events"]
    assert (events["minItems"], events["maxItems"]) == (1, 100)
    assert events["items"]["required"] == ["type", "task", "user_id"]
    # issue 14, defect 5: what the parser takes, and that an invalid event is answered per event
    assert "`rejected`" in events["description"] and "never as a 4xx" in events["description"]
    occurred_at = events["items"]["properties"]["occurred_at"]["description"]
    assert "RFC 3339" in occurred_at and "Epoch numbers" in occurred_at and "`+0530`" in occurred_at


def test_openapi_documents_the_tracking_api_and_how_each_route_is_authenticated():
    doc = json.loads(generate())
    routes = ("batch", "track", "identify", "group", "page", "screen", "alias", "webhook")
    for route in routes:
        post = doc["paths"][f"/v1/{route}"]["post"]
        assert set(post["responses"]) >= {"200", "400", "401", "503"}
        assert post["security"] == [{"writeKey": []}]
    assert doc["paths"]["/v1/events"]["post"]["security"] == [{"apiKey": []}]
    assert doc["components"]["securitySchemes"]["writeKey"] == {
        "type": "http", "scheme": "basic", "description": "A write key as the username, no password"
    }  # fmt: skip
    batch = doc["components"]["schemas"]["TrackingBatch"]["properties"]["batch"]
    assert (batch["minItems"], batch["maxItems"]) == (1, 2500)
