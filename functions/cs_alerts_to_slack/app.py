"""CS alert topic (SNS) -> a Block Kit message in Slack, through an incoming webhook.

SNS invokes this function asynchronously. A passing failure (Slack answering 429/5xx past its
retries, no answer) raises: Lambda retries the invocation twice, then parks it in the dead-letter
queue (its on-failure destination). A refusal Slack will repeat is parked at once and counted.
"""

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import SnsModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from redflag.adapters.observability import logger, metrics, tracer
from redflag.adapters.relay import SlackUnavailable
from redflag.edge.wiring import slack_notifier

notifier = slack_notifier()


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    parse(event=event, model=SnsModel)  # the shape SNS sends, or a clear validation error
    notifier.config.register_lambda_context(context)
    outcomes = {"posted": 0, "duplicate": 0, "rejected": 0}
    for record in event["Records"]:
        message_id = record["Sns"]["MessageId"]
        try:
            outcome = notifier.notify(record)
        except SlackUnavailable as exc:
            logger.warning("slack post failed; the invocation is retried", extra={"message_id": message_id,
                                                                                  "error": str(exc)})  # fmt: skip
            raise
        outcomes[outcome] += 1
        logger.info("slack", extra={"message_id": message_id, "outcome": outcome})
    return outcomes
