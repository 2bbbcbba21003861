"""Webhooks signed the Standard Webhooks way (issue 15), pure: the signature is the library's, byte
for byte; the stored secret maps to the key as docs/webhooks.md says; the template generates a secret
that mapping takes. Real POSTs verified by the libraries: tests/integration/test_outbound.py."""

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path

import pytest
from samtranslator.yaml_helper import yaml_parse
from standardwebhooks import Webhook, WebhookVerificationError

from redflag.adapters import outbound
from redflag.adapters.outbound import (
    Outcome,
    WebhookPoster,
    message_id,
    receiver_secret,
    signed_headers,
    signing_key,
    standard_signature,
)

STORED = "Zq3XbT9mKc1Lr7YwPe4Hs0NvAg6Jd2Fo8Ui5Ek3Ct1Rz9Qy7Wx4Mn6Bl0Vh2Sa8G"  # like the template's: 64 characters
BODY = b'{"type":"red_flag","id":"[\\"u1\\",\\"t\\",\\"default\\",\\"1\\",\\"webhook\\"]","user_id":"u1"}'


def test_the_standard_webhooks_example_signature():
    """The example the svix/Standard Webhooks documentation publishes (secret, id, timestamp, body)."""
    key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    got = standard_signature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert got == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_signature_is_the_librarys_and_it_verifies():
    t = int(datetime.now(UTC).timestamp())
    msg = message_id("alert-1")
    headers = signed_headers(STORED.encode(), msg, t, BODY)
    library = Webhook(receiver_secret(STORED))
    assert headers["webhook-signature"] == library.sign(msg, datetime.fromtimestamp(t, UTC), BODY.decode())
    assert (headers["webhook-id"], headers["webhook-timestamp"]) == (msg, str(t))
    assert library.verify(BODY, headers)["user_id"] == "u1"
    with pytest.raises(WebhookVerificationError):
        library.verify(BODY.replace(b"u1", b"u2"), headers)
    with pytest.raises(WebhookVerificationError):
        library.verify(BODY, headers | {"webhook-id": message_id("alert-2")})  # the id is signed too


def test_the_deprecated_header_is_unchanged():
    """X-RedFlag-Signature as it was: hex HMAC of "<t>.<body>" keyed with the stored value's bytes."""
    headers = signed_headers(STORED.encode(), "msg_x", 1_800_000_000, BODY)
    mac = hmac.new(STORED.encode(), b"1800000000." + BODY, hashlib.sha256).hexdigest()
    assert headers["X-RedFlag-Signature"] == f"t=1800000000,v1={mac}"


def test_the_stored_value_is_the_key_and_a_whsec_value_is_read_as_base64():
    generated = "xHKHHbR5N5xjgaXnf5O61pYE7a_4jVchwECiFeEh-8gtujLPIgnsjsGfx2FTOTnU"  # as moto generates: - and _
    assert signing_key(generated) == generated.encode() and signing_key(STORED) == STORED.encode()
    assert receiver_secret(generated) == "whsec_" + base64.b64encode(generated.encode()).decode()
    assert Webhook(receiver_secret(generated))._whsecret == generated.encode()  # the library reads the same key
    svix_style = "whsec_" + base64.b64encode(bytes(range(32))).decode()  # a secret made by svix, stored as is
    assert signing_key(svix_style) == bytes(range(32)) and receiver_secret(svix_style) == svix_style
    assert signing_key(STORED + "\n") == signing_key(STORED)
    for bad in ["hunter2", "x" * 65, "whsec_not base64!", "whsec_" + base64.b64encode(b"x" * 23).decode()]:
        with pytest.raises(ValueError, match="webhook secret") as info:
            signing_key(bad)
        assert bad not in str(info.value)


def test_the_template_generates_a_secret_of_a_size_the_specification_allows():
    template = yaml_parse((Path(__file__).parents[2] / "template.yaml").read_text())
    generate = template["Resources"]["WebhookSecret"]["Properties"]["GenerateSecretString"]
    assert 24 <= generate["PasswordLength"] <= 64  # ASCII characters: as many bytes


def test_the_message_id_is_stable_opaque_and_dot_free():
    alert = '["u.1","task.x","default","1800000000000","webhook"]'
    assert message_id(alert) == message_id(alert) != message_id(alert.replace("u.1", "u.2"))
    assert message_id(alert).startswith("msg_") and "." not in message_id(alert) and "u.1" not in message_id(alert)


def test_a_secret_no_library_can_take_is_a_permanent_failure_before_anything_is_sent(monkeypatch):
    monkeypatch.setattr(outbound, "post_json", lambda *a, **k: pytest.fail("posted"))
    poster = WebhookPoster("https://product.example/hook", lambda: b"hunter2")
    assert poster.post({"id": "a"}) == Outcome(None, "BadWebhookSecret")
