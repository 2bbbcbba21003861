"""What SES tells us about the emails it sent, turned into state. Pure: storage and the CS topic are
reached through the ports below (no boto3).

Every user email goes out through the stack's configuration set, whose event destination publishes
SES's own records (``SesEvent``: eventType Bounce, Complaint, Delivery, Reject, Rendering Failure,
DeliveryDelay, Click) to the feedback function. ``classify`` says what each one counts as and which
addresses it suppresses:

- a **permanent bounce** or a **complaint** suppresses the address: a marker keyed like an opt-out
  (``unsubscribe.suppression_key(secret, "email", address)``, with the reason and when), so the
  alerting path, which checks the same keys, never emails it again, and erasure keeps it;
- a bounce or complaint SES reports for an address already on **its own suppression list**
  (bounceSubType ``OnAccountSuppressionList`` or ``Suppressed``, complaintSubType
  ``OnAccountSuppressionList``) is counted as that, not as a new bounce or complaint (SES sent
  nothing), and suppresses the address too (reason ``ses_suppression_list``): sending again is futile;
- a complaint whose feedback type is ``not-spam`` (a mailbox provider taking a spam report back)
  suppresses nothing;
- transient and undetermined bounces, deliveries, delays, rejects, rendering failures and clicks
  are counted only.

What an event says of the email's rule counts toward its response rate (``response_of``): the
email was sent (SES's Send), delivered, bounced (any bounce: SES did not deliver it), complained
about (a complaint that is not ``not-spam``) or **clicked**: its help link followed, the one link SES
tracks (``channels.email.HELP_LINK_TAG``; every other link carries ``ses:no-track``). Which rule
comes from the email's own ``X-RedFlag-Alert`` header (user, task, instance, run); the arm is always
``emailed`` (a held-out user is sent nothing). Counted once per email and measure (``Responses``).

The first marker written for an address wins (a conditional write): a second bounce, or an address
opted out before, changes nothing. Customer success is told once per suppression, with the reason,
on the CS topic (a CS alert keyed on the marker and the SES feedback that wrote it, so a retry or a
redelivery of that feedback sends nothing twice); their red-flag alerts carry on as before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import unquote

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from redflag import channels
from redflag.channels.base import Context, RedFlag
from redflag.channels.email import HELP_LINK_TAG
from redflag.core import unsubscribe
from redflag.kinds.suppression import KIND, Suppressed
from redflag.services.sending import Sender

ALERT_HEADER = "x-redflag-alert"  # redflag.core.mime: the alert id's parts, URL-quoted, "/"-joined

# --- SES's notification (event publishing), as SES documents it -----------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Header(_Model):
    name: str
    value: str


class Mail(_Model):
    """The email the event is about."""

    messageId: str
    timestamp: datetime | None = None
    destination: list[str] = []
    headersTruncated: bool = False
    headers: list[Header] = []
    tags: dict[str, list[str]] = {}

    def header(self, name: str) -> str | None:
        return next((h.value for h in self.headers if h.name.lower() == name.lower()), None)

    @property
    def alert(self) -> tuple[str, str, str, str] | None:
        """Which red flag's email this is, from Red Flag's own ``X-RedFlag-Alert`` header: (user, task,
        instance, run); None when SES left the headers out or truncated them, or it is not ours."""
        value = self.header(ALERT_HEADER)
        parts = [unquote(p) for p in value.strip().split("/")] if value else []
        if len(parts) != 5 or parts[4] != "user" or not all(parts[:4]):
            return None
        return parts[0], parts[1], parts[2], parts[3]

    @property
    def user_id(self) -> str | None:
        """The user the email went to (``alert``)."""
        return self.alert[0] if self.alert else None


class Recipient(_Model):
    emailAddress: str
    status: str | None = None  # the DSN status, e.g. 5.1.1

    @property
    def address(self) -> str:
        """The bare address (SES may give ``Name <address>``), lower case; "" when there is none."""
        return parseaddr(self.emailAddress)[1].strip().lower()


class Bounce(_Model):
    bounceType: str  # Permanent, Transient, Undetermined
    bounceSubType: str = ""
    bouncedRecipients: list[Recipient] = []
    timestamp: datetime
    feedbackId: str


class Complaint(_Model):
    complainedRecipients: list[Recipient] = []
    timestamp: datetime
    feedbackId: str
    complaintFeedbackType: str | None = None  # abuse, fraud, not-spam, ...
    complaintSubType: str | None = None  # None or OnAccountSuppressionList


class Delivery(_Model):
    timestamp: datetime
    recipients: list[str] = []


class DeliveryDelay(_Model):
    timestamp: datetime
    delayType: str = ""
    delayedRecipients: list[Recipient] = []


class Click(_Model):
    timestamp: datetime
    link: str = ""
    linkTags: dict[str, list[str]] = {}


class Send(_Model):
    pass


class Reject(_Model):
    reason: str = ""


class RenderingFailure(_Model):
    templateName: str | None = None  # the errorMessage may quote template data: not modelled, never logged


class SesEvent(_Model):
    """One email sending event record as SES publishes it to SNS (``notificationType`` when it
    comes from identity notifications rather than event publishing)."""

    eventType: str = Field(validation_alias=AliasChoices("eventType", "notificationType"))
    mail: Mail
    bounce: Bounce | None = None
    complaint: Complaint | None = None
    delivery: Delivery | None = None
    deliveryDelay: DeliveryDelay | None = None
    click: Click | None = None
    send: Send | None = None
    reject: Reject | None = None
    failure: RenderingFailure | None = None


# --- what an event counts as ---------------------------------------------------------------------

ON_SES_LIST = frozenset({"OnAccountSuppressionList", "Suppressed"})
COUNTED = {  # event types that are counted only
    "Send": "send",
    "Delivery": "delivery",
    "DeliveryDelay": "delivery_delay",
    "Reject": "reject",
    "Rendering Failure": "rendering_failure",
    "Click": "click",
}


@dataclass(frozen=True)
class Feedback:
    kind: str  # what it counts as: one metric each (functions/ses_events_to_state)
    reason: str | None = None  # why its addresses are suppressed: bounce, complaint, ses_suppression_list
    addresses: tuple[str, ...] = ()
    source: str = ""  # event type and SES feedback id: one suppression, and one CS notice, per source
    at: datetime | None = None  # when it bounced or was complained about
    detail: str = ""  # for CS: the bounce type and status, the complaint's feedback type


def _addresses(recipients: list[Recipient]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a for a in (r.address for r in recipients) if a))


def classify(event: SesEvent) -> Feedback:
    if event.eventType == "Bounce" and event.bounce is not None:
        b = event.bounce
        status = ", ".join(dict.fromkeys(r.status for r in b.bouncedRecipients if r.status))
        detail = f"{b.bounceType}/{b.bounceSubType}" + (f" {status}" if status else "")
        found: dict[str, Any] = {
            "addresses": _addresses(b.bouncedRecipients),
            "source": f"Bounce:{b.feedbackId}",
            "at": b.timestamp,
        }
        if b.bounceType == "Permanent" and b.bounceSubType in ON_SES_LIST:
            return Feedback("ses_suppressed", "ses_suppression_list", detail=detail, **found)
        if b.bounceType == "Permanent":
            return Feedback("bounce_permanent", "bounce", detail=detail, **found)
        return Feedback("bounce_transient" if b.bounceType == "Transient" else "bounce_undetermined")
    if event.eventType == "Complaint" and event.complaint is not None:
        c = event.complaint
        found = {"addresses": _addresses(c.complainedRecipients), "source": f"Complaint:{c.feedbackId}"}
        found["at"] = c.timestamp
        if c.complaintSubType in ON_SES_LIST:
            return Feedback("ses_suppressed", "ses_suppression_list", detail=f"complaint/{c.complaintSubType}", **found)
        if (c.complaintFeedbackType or "").lower() == "not-spam":
            return Feedback("complaint_not_spam")
        return Feedback("complaint", "complaint", detail=c.complaintFeedbackType or "complaint", **found)
    return Feedback(COUNTED.get(event.eventType, "other"))


EMAILED = "emailed"  # the arm every email is in (redflag.services.learning: a held-out user gets none)


def response_of(event: SesEvent) -> str | None:
    """What the event says of its email, for the response rate: sent, delivered, bounced, complained,
    clicked (the help link); None when it says none of these."""
    kind = event.eventType
    if kind == "Click":
        tag, value = HELP_LINK_TAG
        return "clicked" if event.click is not None and value in event.click.linkTags.get(tag, []) else None
    if kind == "Complaint":
        complaint = event.complaint
        return (
            None if complaint is None or (complaint.complaintFeedbackType or "").lower() == "not-spam" else "complained"
        )
    return {"Send": "sent", "Delivery": "delivered", "Bounce": "bounced"}.get(kind)


# --- the ports ------------------------------------------------------------------------------------


class Marked(StrEnum):
    NEW = "new"  # this feedback wrote the marker
    REPEATED = "repeated"  # this same feedback wrote it before (a retry, or SNS delivering it twice)
    KEPT = "kept"  # the address was suppressed already (an earlier bounce or complaint, an opt-out)


class Markers(Protocol):
    def mark(self, key: str, reason: str, at: float, source: str) -> Marked:
        """Write the suppression marker ``key`` (the opt-out markers' layout) unless one exists:
        one conditional write. Raises ``StoreUnavailable`` for a passing fault."""
        ...


class Responses(Protocol):
    def count_email(self, message_id: str, task: str, arm: str, measure: str, now: float) -> bool:
        """One more ``measure`` for the rule's emails in ``arm``, once per email (SES message id) and
        measure; False when counted before. Raises ``StoreUnavailable`` for a passing fault."""
        ...


# --- the service ----------------------------------------------------------------------------------


@dataclass
class Handled:
    event_type: str
    kind: str
    suppressed: int = 0  # addresses this event suppressed (new markers; a retry's too)
    already: int = 0  # addresses suppressed before: nothing changed
    notices: int = 0  # CS notices sent (or found sent before)
    sent: int = 0  # of those, sent by this call
    response: str | None = None  # what it counts as for its rule's response rate (response_of)
    counted: bool = False  # counted by this call (False: before, or not ours)

    @property
    def outcome(self) -> str:
        return "suppressed" if self.suppressed else "already_suppressed" if self.already else "counted"

    def summary(self) -> dict[str, Any]:
        return {"event": self.event_type, "kind": self.kind, "outcome": self.outcome, "notices": self.notices,
                "response": self.response, "counted": self.counted}  # fmt: skip


class FeedbackService:
    def __init__(
        self,
        secret: Callable[[], bytes],
        markers: Markers,
        sender: Sender,
        responses: Responses | None = None,
        now: Callable[[], float] | None = None,
    ) -> None:
        self._secret = secret
        self._markers = markers
        self._sender = sender
        self._responses = responses
        self._now = now

    def handle(self, event: SesEvent, until: float) -> Handled:
        """Suppress what the event says to, tell CS once (``until``: the invocation's deadline). Raises
        ``StoreUnavailable`` or ``ChannelFailed`` for a passing fault: the event is handled again, and
        changes nothing twice."""
        feedback = classify(event)
        handled = Handled(event.eventType, feedback.kind)
        if feedback.reason is not None and feedback.at is not None and feedback.addresses:
            self._suppress(event, feedback, feedback.at.timestamp(), until, handled)
        handled.response = response_of(event)
        alert = event.mail.alert
        if handled.response and alert is not None and self._responses is not None:
            now = self._now() if self._now is not None else until
            task = alert[1]
            handled.counted = self._responses.count_email(event.mail.messageId, task, EMAILED, handled.response, now)
        return handled

    def _suppress(self, event: SesEvent, feedback: Feedback, at: float, until: float, handled: Handled) -> None:
        assert feedback.reason is not None
        secret = self._secret()
        notices = []
        for address in feedback.addresses:
            key = unsubscribe.suppression_key(secret, "email", address)
            marked = self._markers.mark(key, feedback.reason, at, feedback.source)
            if marked is Marked.KEPT:
                handled.already += 1
                continue
            handled.suppressed += 1
            notice = Suppressed(key=key, address=address, user_id=event.mail.user_id, reason=feedback.reason,
                                detail=feedback.detail, at=at, source=feedback.source,
                                message_id=event.mail.messageId)  # fmt: skip
            notices += channels.plan(RedFlag(KIND, notice), Context(at))
        # after every marker: a notice that fails for now is sent on the retry
        sending = self._sender.send(notices, until)
        failures = [s.failure for s in sending.sent.values() if s.failure is not None]
        if failures:
            raise failures[0]
        handled.notices += len(notices)
        handled.sent += sum(1 for s in sending.sent.values() if s.now)
