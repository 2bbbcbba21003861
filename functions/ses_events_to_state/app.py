"""SES events (the configuration set's event destination, an SNS topic) -> suppression markers, one CS
notice per suppressed address, the email's rule's response counts (sent, delivered, bounced, complained,
clicked: once per email and measure, in the stats table), and a metric per event type.

SNS invokes this function asynchronously, one SES record a message. A passing failure (the table
throttled, the CS topic down) raises: Lambda retries the invocation twice, then sends it to its
on-failure destination (SesEventsDeadLetterQueue). A retry changes nothing twice: the marker is a
conditional write that recognises its own feedback, the CS notice is sent once per alert id. Metrics
are added only once a record is handled, so a retried record is counted once.

Logs carry SNS and SES message ids, the event type and the outcome: never an address.
"""

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import SnsModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from redflag.adapters.observability import logger, metrics, tracer
from redflag.core import clock
from redflag.edge.wiring import feedback_service
from redflag.services.feedback import SesEvent
from redflag.services.ports import ChannelFailed, StoreUnavailable

service = feedback_service()
KIND_METRICS = {
    "bounce_permanent": "SesBouncePermanent",
    "bounce_transient": "SesBounceTransient",
    "bounce_undetermined": "SesBounceUndetermined",
    "ses_suppressed": "SesOnSuppressionList",
    "complaint": "SesComplaint",
    "complaint_not_spam": "SesComplaintNotSpam",
    "send": "SesSend",
    "delivery": "SesDelivery",
    "delivery_delay": "SesDeliveryDelay",
    "reject": "SesReject",
    "rendering_failure": "SesRenderingFailure",
    "click": "SesClick",
    "other": "SesOther",
}


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    records = parse(event=event, model=SnsModel).Records  # the shape SNS sends, or a clear validation error
    until = clock.SYSTEM.now() + context.get_remaining_time_in_millis() / 1000
    answers = []
    for record in records:
        ids = {"sns_message_id": record.Sns.MessageId}
        try:
            ses_event = SesEvent.model_validate_json(str(record.Sns.Message))
        except ValidationError as exc:  # not SES's record: retrying will not change it
            where = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors(include_input=False)})
            logger.warning("not an SES event record; skipped", extra=ids | {"fields": where[:10]})
            metrics.add_metric(name="SesEventsUnreadable", unit="Count", value=1)
            answers.append({"event": None, "outcome": "unreadable"})
            continue
        ids |= {"ses_message_id": ses_event.mail.messageId, "event_type": ses_event.eventType}
        try:
            handled = service.handle(ses_event, until)
        except (StoreUnavailable, ChannelFailed) as exc:
            error = exc.code if isinstance(exc, StoreUnavailable) else f"{exc.channel}:{exc.error}"
            logger.warning("ses event not handled now; the invocation is retried", extra=ids | {"error": error})
            raise
        metrics.add_metric(name=KIND_METRICS[handled.kind], unit="Count", value=1)
        if handled.suppressed:
            metrics.add_metric(name="EmailAddressesSuppressed", unit="Count", value=handled.suppressed)
        if handled.sent:  # the CS notices sent now (a retry finds them sent)
            metrics.add_metric(name="AlertsSentCS", unit="Count", value=handled.sent)
        logger.info("ses event", extra=ids | handled.summary())
        answers.append(handled.summary())
    return {"handled": answers}
