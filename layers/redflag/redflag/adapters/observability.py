"""One Logger, Metrics and Tracer for every function (service name from POWERTOOLS_SERVICE_NAME).

Decorator order everywhere: inject_lambda_context, log_metrics, capture_lambda_handler.
Log ids (user_id, task), never emails or names.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from redflag.core.events import IngestResponse, Outcome
from redflag.services.tracking import TrackingResponse

logger = Logger()
metrics = Metrics(namespace="RedFlag")
tracer = Tracer()


def count_outcomes(response: IngestResponse) -> None:
    """One metric per status; one log line per event that must be sent again (ids and reason only:
    reasons carry error codes, never event contents)."""
    counts: dict[str, int] = {}
    for result in response.results:
        counts[result.status.value] = counts.get(result.status.value, 0) + 1
        if result.status is Outcome.RETRY:
            logger.warning(
                "event not applied; the client is told to retry",
                extra={"index": result.index, "event_id": result.event_id, "reason": result.reason},
            )
    for status, count in counts.items():
        metrics.add_metric(name=f"Events{status.capitalize()}", unit=MetricUnit.Count, value=count)


def count_tracking(response: TrackingResponse) -> None:
    """The tracking API's: one metric per status (``Tracking<Status>``), one log line per call to send
    again (its index, messageId and the reason's error code; never a trait)."""
    counts: dict[str, int] = {}
    for result in response.results:
        counts[result.status.value] = counts.get(result.status.value, 0) + 1
        if result.status is Outcome.RETRY:
            logger.warning(
                "call not applied; the client is told to retry",
                extra={"index": result.index, "message_id": result.message_id, "reason": result.reason},
            )
    for status, count in counts.items():
        metrics.add_metric(name=f"Tracking{status.capitalize()}", unit=MetricUnit.Count, value=count)
