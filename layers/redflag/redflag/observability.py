"""One Logger, Metrics and Tracer for every function (service name from POWERTOOLS_SERVICE_NAME).

Decorator order everywhere: inject_lambda_context, log_metrics, capture_lambda_handler.
Log ids (user_id, task), never emails or names.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from redflag.events import IngestResponse

logger = Logger()
metrics = Metrics(namespace="RedFlag")
tracer = Tracer()


def count_outcomes(response: IngestResponse) -> None:
    counts: dict[str, int] = {}
    for result in response.results:
        counts[result.status.value] = counts.get(result.status.value, 0) + 1
    for status, count in counts.items():
        metrics.add_metric(name=f"Events{status.capitalize()}", unit=MetricUnit.Count, value=count)
