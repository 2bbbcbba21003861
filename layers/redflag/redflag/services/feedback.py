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
    def user_id(self) -> str | None:
        """The user the email went to, from Red Flag's own ``X-RedFlag-Alert`` header (user, task,
        instance, run, channel); None when SES left the headers out or truncated them."""
        value = self.header(ALERT_HEADER)
        parts = value.strip().split("/") if value else []
        return (unquote(parts[0]) or None) if len(parts) == 5 and parts[4] == "user" else None


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
    reject: Reject | None = None
    failure: RenderingFailure | None = None


# --- what an event counts as ---------------------------------------------------------------------

ON_SES_LIST = frozenset({"OnAccountSuppressionList", "Suppressed"})
COUNTED = {  # event types that are counted only
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


# --- the service ----------------------------------------------------------------------------------


@dataclass
class Handled:
    event_type: str
    kind: str
    suppressed: int = 0  # addresses this event suppressed (new markers; a retry's too)
    already: int = 0  # addresses suppressed before: nothing changed
    notices: int = 0  # CS notices sent (or found sent before)
    sent: int = 0  # of those, sent by this call

    @property
    def outcome(self) -> str:
        return "suppressed" if self.suppressed else "already_suppressed" if self.already else "counted"

    def summary(self) -> dict[str, Any]:
        return {"event": self.event_type, "kind": self.kind, "outcome": self.outcome, "notices": self.notices}


class FeedbackService:
    def __init__(self, secret: Callable[[], bytes], markers: Markers, sender: Sender) -> None:
        self._secret = secret
        self._markers = markers
        self._sender = sender

    def handle(self, event: SesEvent, until: float) -> Handled:
        """Suppress what the event says to, tell CS once (``until``: the invocation's deadline). Raises
        ``StoreUnavailable`` or ``ChannelFailed`` for a passing fault: the event is handled again, and
        changes nothing twice."""
        feedback = classify(event)
        handled = Handled(event.eventType, feedback.kind)
        if feedback.reason is None or feedback.at is None or not feedback.addresses:
            return handled
        at = feedback.at.timestamp()
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
        return handled
