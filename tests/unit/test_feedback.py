"""SES feedback, pure (issue 15): SES's documented records classified, a hard bounce or a complaint suppresses
the address under the opt-out key, CS is told once, a second bounce or a retry changes nothing twice."""

import copy
import json
from datetime import UTC, datetime

import pytest

from redflag.core import unsubscribe
from redflag.services.feedback import FeedbackService, Marked, SesEvent, classify
from redflag.services.ports import ChannelFailed
from redflag.services.sending import Sending, Sent
from redflag_local.standin.stack import sample_event

SECRET = b"s" * 64


def documented(name):
    """SES's record from events/ses_events_to_state/ (the SNS message Lambda receives, unwrapped)."""
    return json.loads(sample_event(f"ses_events_to_state/{name}.json")["Records"][0]["Sns"]["Message"])


def event(name, **changes):
    record = documented(name)
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        node = record
        for p in parents:
            node = node[p]
        node[leaf] = value
    return SesEvent.model_validate(record)


class Markers:
    """The marker table's conditional put: the first write for a key wins, and tells its own source."""

    def __init__(self):
        self.items = {}

    def mark(self, key, reason, at, source):
        if key in self.items:
            return Marked.REPEATED if self.items[key]["source"] == source else Marked.KEPT
        self.items[key] = {"reason": reason, "at": at, "source": source}
        return Marked.NEW


class Sender:
    """The send-once helper's interface: once per alert id; the first ``fail`` sends fail for now."""

    def __init__(self, fail=0):
        self.sent = {}
        self.fail = fail

    def send(self, alerts, until):
        out = Sending()
        for alert in alerts:
            if self.fail:
                self.fail -= 1
                out.sent[alert.alert_id] = Sent(alert, failure=ChannelFailed("cs", "InternalError"))
                continue
            now = alert.alert_id not in self.sent
            self.sent.setdefault(alert.alert_id, alert)
            out.sent[alert.alert_id] = Sent(alert, {"status": "sent"}, now=now)
        return out


UNTIL = 1_800_000_030.0  # the invocation's deadline


def service(fail=0):
    markers, sender = Markers(), Sender(fail)
    return FeedbackService(lambda: SECRET, markers, sender), markers, sender


@pytest.mark.parametrize(
    ("sample", "kind", "reason"),
    [
        ("bounce_permanent", "bounce_permanent", "bounce"),
        ("bounce_transient", "bounce_transient", None),
        ("bounce_on_suppression_list", "ses_suppressed", "ses_suppression_list"),
        ("complaint", "complaint", "complaint"),
        ("delivery", "delivery", None),
        ("click", "click", None),
        ("reject", "reject", None),
        ("rendering_failure", "rendering_failure", None),
        ("delivery_delay", "delivery_delay", None),
    ],
)
def test_each_documented_record_counts_as_its_kind_and_only_hard_bounces_and_complaints_suppress(sample, kind, reason):
    feedback = classify(SesEvent.model_validate(documented(sample)))
    assert (feedback.kind, feedback.reason) == (kind, reason)
    assert feedback.addresses == (("recipient@example.com",) if reason else ())


def test_what_else_ses_can_say_is_classified_by_its_documented_types():
    assert classify(event("bounce_permanent", **{"bounce.bounceSubType": "Suppressed"})).kind == "ses_suppressed"
    undetermined = event("bounce_permanent", **{"bounce.bounceType": "Undetermined"})
    assert (classify(undetermined).kind, classify(undetermined).reason) == ("bounce_undetermined", None)
    not_spam = event("complaint", **{"complaint.complaintFeedbackType": "not-spam"})
    assert (classify(not_spam).kind, classify(not_spam).reason) == ("complaint_not_spam", None)
    listed = event("complaint", **{"complaint.complaintSubType": "OnAccountSuppressionList"})
    assert (classify(listed).kind, classify(listed).reason) == ("ses_suppressed", "ses_suppression_list")
    assert classify(event("delivery", eventType="Open")).kind == "other"
    # SES may name a recipient with a display name; case does not make another address
    named = [{"emailAddress": "Ada <Ada@Example.COM>", "status": "5.1.1"}]
    assert classify(event("bounce_permanent", **{"bounce.bouncedRecipients": named})).addresses == ("ada@example.com",)


def test_the_user_comes_from_red_flags_own_header_and_is_none_without_it():
    assert SesEvent.model_validate(documented("bounce_permanent")).mail.user_id == "u-123"
    quoted = [{"name": "x-redflag-alert", "value": "u%2F7%20x/page/default/1/user"}]
    assert event("bounce_permanent", **{"mail.headers": quoted}).mail.user_id == "u/7 x"
    assert event("bounce_permanent", **{"mail.headers": []}).mail.user_id is None  # headers left out
    webhook = [{"name": "X-RedFlag-Alert", "value": "u-1/page/default/1/webhook"}]
    assert event("bounce_permanent", **{"mail.headers": webhook}).mail.user_id is None
    assert SesEvent.model_validate(documented("delivery")).mail.user_id is None  # not a Red Flag email


def test_a_hard_bounce_suppresses_the_address_under_the_opt_out_key_and_tells_cs_once():
    svc, markers, sender = service()
    handled = svc.handle(SesEvent.model_validate(documented("bounce_permanent")), UNTIL)
    assert (handled.outcome, handled.suppressed, handled.notices) == ("suppressed", 1, 1)
    key = unsubscribe.suppression_key(SECRET, "email", "recipient@example.com")
    bounced_at = datetime(2017, 8, 5, 0, 41, 2, 669000, tzinfo=UTC).timestamp()
    assert markers.items == {key: {"reason": "bounce", "at": bounced_at, "source": markers.items[key]["source"]}}
    (notice,) = sender.sent.values()
    assert notice.channel == "cs" and notice.attributes == {"task": "email_suppressed", "severity": "warning",
                                                            "user_id": "u-123"}  # fmt: skip
    m = notice.message
    assert (m["reason"], m["suppression"], m["user_id"], m["email"]) == ("email_suppressed", "bounce", "u-123",
                                                                         "recipient@example.com")  # fmt: skip
    assert m["detail"] == "Permanent/General 5.1.1" and m["suppressed_at"] == "2017-08-05T00:41:02+00:00"
    assert "u-123" in notice.subject and "bounced permanently" in m["summary"]


def test_the_marker_key_is_the_one_the_alerting_path_checks_for_the_address():
    from redflag.adapters.secrets import suppression_keys

    svc, markers, _ = service()
    svc.handle(event("bounce_permanent", **{"bounce.bouncedRecipients": [{"emailAddress": "Ada@Example.com"}]}), UNTIL)
    assert set(markers.items) <= set(suppression_keys(lambda: SECRET)("u-123", "ada@example.com"))
    assert set(markers.items) == {unsubscribe.suppression_key(SECRET, "email", "ada@example.com")}


def test_a_second_bounce_or_a_complaint_after_it_changes_nothing():
    svc, markers, sender = service()
    first = documented("bounce_permanent")
    svc.handle(SesEvent.model_validate(first), UNTIL)
    before = copy.deepcopy(markers.items)
    second = copy.deepcopy(first)
    second["bounce"] |= {"feedbackId": "another-bounce", "timestamp": "2017-09-01T00:00:00.000Z"}
    for later in (SesEvent.model_validate(second), SesEvent.model_validate(documented("complaint"))):
        h = svc.handle(later, UNTIL)
        assert (h.outcome, h.suppressed, h.already, h.notices) == ("already_suppressed", 0, 1, 0)
    assert markers.items == before and len(sender.sent) == 1


def test_a_notice_that_fails_for_now_is_sent_on_the_retry_and_only_once():
    svc, markers, sender = service(fail=1)
    bounce = SesEvent.model_validate(documented("bounce_permanent"))
    with pytest.raises(ChannelFailed):
        svc.handle(bounce, UNTIL)
    assert len(markers.items) == 1 and sender.sent == {}  # the marker is written: the address is safe already
    retry = svc.handle(bounce, UNTIL)  # Lambda retries the invocation: the marker knows its own feedback
    assert (retry.outcome, retry.notices) == ("suppressed", 1)
    svc.handle(bounce, UNTIL)  # and SNS delivering it once more sends nothing new
    assert len(sender.sent) == 1


@pytest.mark.parametrize("sample", ["bounce_transient", "delivery", "click", "delivery_delay", "reject"])
def test_counted_events_write_nothing_and_tell_nobody(sample):
    svc, markers, sender = service()
    handled = svc.handle(SesEvent.model_validate(documented(sample)), UNTIL)
    assert handled.outcome == "counted" and markers.items == {} and sender.sent == {}


def test_what_cs_is_told_is_inert_in_chat():
    svc, _, sender = service()
    hostile = [{"name": "X-RedFlag-Alert", "value": "%3C%21channel%3E/page/default/1/user"}]
    svc.handle(event("complaint", **{"mail.headers": hostile}), UNTIL)
    (notice,) = sender.sent.values()
    assert notice.message["user_id"] == "&lt;!channel&gt;" and "<!channel>" not in json.dumps(notice.message)
    assert notice.message["suppression"] == "complaint" and "spam" in notice.message["summary"]
