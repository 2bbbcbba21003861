"""CS alert topic (SNS) -> a Block Kit message in Slack, through an incoming webhook.

SNS invokes this function asynchronously. A passing failure (Slack answering 429/5xx past its
retries, no answer) raises: Lambda retries the invocation twice, then parks it in the dead-letter
queue (its on-failure destination). A refusal Slack will repeat is parked at once and counted.
"""

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import SnsModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from redflag.adapters.observability import logger, metrics, tracer
from redflag.core import clock
from redflag.edge.wiring import slack_relay
from redflag.services.relay import RelayFailed

relay = slack_relay()
METRICS = {"posted": "SlackPosts", "rejected": "SlackRejected"}


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    parse(event=event, model=SnsModel)  # the shape SNS sends, or a clear validation error
    until = clock.SYSTEM.now() + context.get_remaining_time_in_millis() / 1000
    outcomes = {"posted": 0, "duplicate": 0, "rejected": 0}
    for record in event["Records"]:
        message_id = record["Sns"]["MessageId"]
        try:
            outcome, unrecorded = relay.notify(record, until)
        except RelayFailed as exc:
            logger.warning("slack post failed; the invocation is retried", extra={"message_id": message_id,
                                                                                  "error": str(exc)})  # fmt: skip
            raise
        outcomes[outcome] += 1
        if outcome in METRICS:
            metrics.add_metric(name=METRICS[outcome], unit=MetricUnit.Count, value=1)
        if unrecorded:
            metrics.add_metric(name="AlertBookkeepingFailed", unit=MetricUnit.Count, value=1)
            logger.error("slack post sent but not recorded", extra={"message_id": message_id})
        logger.info("slack", extra={"message_id": message_id, "outcome": outcome})
    return outcomes
