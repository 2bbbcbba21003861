"""One Logger, Metrics and Tracer for every function (service name from POWERTOOLS_SERVICE_NAME).

Decorator order everywhere: inject_lambda_context, log_metrics, capture_lambda_handler.
Log ids (user_id, task), never emails or names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from redflag.core.events import IngestResponse, Outcome

if TYPE_CHECKING:  # the tracking API's models stay out of the other functions' cold start
    from redflag.services.tracking import TrackingResponse

logger = Logger()
metrics = Metrics(namespace="RedFlag")
# what these functions call that X-Ray can trace is botocore (outbound POSTs use urllib, which patch_all
# leaves alone too): patching only it spares importing every other library X-Ray knows, at cold start
tracer = Tracer(patch_modules=("botocore",))


def _count(results: Sequence[Any], prefix: str, what: str, id_field: str) -> None:
    """One metric per status (``<prefix><Status>``); one log line per result to send again (its index,
    its id and the reason's error code: never what was sent)."""
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status.value] = counts.get(result.status.value, 0) + 1
        if result.status is Outcome.RETRY:
            logger.warning(
                f"{what} not applied; the client is told to retry",
                extra={"index": result.index, id_field: getattr(result, id_field), "reason": result.reason},
            )
    for status, count in counts.items():
        metrics.add_metric(name=f"{prefix}{status.capitalize()}", unit=MetricUnit.Count, value=count)


def count_outcomes(response: IngestResponse) -> None:
    """The events API's: ``Events<Status>``, a line per event to send again (index, event_id, reason)."""
    _count(response.results, "Events", "event", "event_id")


def count_tracking(response: TrackingResponse) -> None:
    """The tracking API's: ``Tracking<Status>``, a line per call to send again (index, messageId, reason)."""
    _count(response.results, "Tracking", "call", "message_id")
