"""Cost per million tracked tasks, from the measured calls, write units and modelled durations and
the list prices in docs/prices.json. A tracked task is a ``task_started`` and a ``task_completed``
event, each with an ``event_id``.

Three designs:

- **this design, batched**: 100 events a request (the API's maximum): one consistent BatchGetItem a
  request (1 RRU per item read), one conditional PutItem per event, the sparse index's entry written
  on arm and on completion;
- **this design, one request per event**: the same calls, but a request (API Gateway + a Lambda
  invocation) per event;
- **the tracking API, batched** (Segment-style calls, 100 a request as the SDKs send them): the same as
  this design, plus each call's user record (activity, profile) read in the request's batch and written
  once per user and request; a user per call is the worst case (what the bench counts), so a tracked
  task costs ``tracking_user_wru`` and 1 RRU more per call. Its Lambda time is the events function's
  (modelled: the same ingest, the calls' parsing on top is not measured apart);
- **the naive design**: per event a consistent GetItem, a TransactWriteItems of the timer and a claim
  item for the event id (a transaction bills 2 WRU per KB), and an SSM GetParameter for the rule
  (beyond Parameter Store's free 40 TPS: the higher throughput tier, billed per call); its Lambda
  time is modelled from the measured per-call CPU with the three calls in sequence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from redflag_local.standin.template import ROOT

PRICES = ROOT / "docs" / "prices.json"
TASKS = 1_000_000
EVENTS_PER_TASK = 2
BATCH = 100


def load_prices(path: Path = PRICES) -> dict[str, float]:
    data = json.loads(path.read_text())
    return {k: float(v["usd"]) for k, v in data["prices"].items()}


@dataclass
class Inputs:
    """What the bench measured (defaults only for a bench run without the model section)."""

    wru_per_task: float = 4.0  # start + completion + the index entry twice
    rru_per_task: float = 2.0  # one consistent read of each record, in the request's batch
    request_seconds: float = 1.0  # modelled duration of a 100-event request on the events function
    single_seconds: float = 0.1  # modelled duration of a 1-event request
    call_cpu_seconds: float = 0.0009  # client CPU of one AWS call (botocore), this machine
    event_cpu_seconds: float = 0.0004  # the handler's own CPU per event, this machine
    events_memory_mb: int = 256
    flag_wru: float = 2.0  # the sweeper's conditional UPDATE + the index entry going
    channel_wru: float = 2.0  # the idempotency record: put, then update
    channels: int = 2  # email + CS per red flag
    alert_seconds_per_flag: float = 0.1  # modelled alerts-function time per red flag
    alerts_memory_mb: int = 256
    sweep_seconds_per_flag: float = 0.003  # modelled sweeper time per flag (the scheduled function)
    sweeper_memory_mb: int = 128
    drain_memory_mb: int = 512
    delay: float = 0.005
    tracking_user_wru: float = 1.0  # the tracking API: a call's user record (under 1 KB), written once a request
    measured: list[str] = field(default_factory=list)


@dataclass
class Line:
    design: str
    items: dict[str, float]  # what -> USD per million tasks

    @property
    def total(self) -> float:
        return sum(self.items.values())


def lambda_usd(seconds: float, memory_mb: int, p: dict[str, float]) -> float:
    return seconds * memory_mb / 1024 * p["lambda_arm64_gb_second"]


def per_million(i: Inputs, p: dict[str, float] | None = None) -> list[Line]:
    p = p or load_prices()
    events = TASKS * EVENTS_PER_TASK
    ddb = {
        "DynamoDB writes": TASKS * i.wru_per_task * p["dynamodb_wru"],
        "DynamoDB reads": TASKS * i.rru_per_task * p["dynamodb_rru"],
    }

    def front_door(design: str, requests: float, seconds: float, store: dict[str, float]) -> Line:
        """API Gateway and Lambda for ``requests`` of ``seconds`` each, plus the store's lines."""
        front = {
            "API Gateway (REST)": requests * p["apigw_rest_request"],
            "Lambda requests": requests * p["lambda_request"],
            "Lambda duration": requests * lambda_usd(seconds, i.events_memory_mb, p),
        }
        return Line(design, front | store)

    batched = front_door("this design, 100 events a request", events / BATCH, i.request_seconds, ddb)
    tracking_ddb = {  # + the user record of each call: read in the request's batch, written once
        "DynamoDB writes": TASKS * (i.wru_per_task + EVENTS_PER_TASK * i.tracking_user_wru) * p["dynamodb_wru"],
        "DynamoDB reads": TASKS * (i.rru_per_task + EVENTS_PER_TASK) * p["dynamodb_rru"],
    }
    tracking = front_door("tracking API, 100 calls a request", events / BATCH, i.request_seconds, tracking_ddb)
    single = front_door("this design, 1 event a request", events, i.single_seconds, ddb)
    share = min(1.0, i.events_memory_mb / 1769)
    # naive: 3 calls per event in sequence, each the injected delay + its client CPU (stretched by the share)
    naive_event = 3 * (i.delay + i.call_cpu_seconds / share) + i.event_cpu_seconds / share
    naive_ddb = {
        # timer put + claim put in one transaction: 2 WRU each; the index entry on arm and completion
        "DynamoDB writes": TASKS * (EVENTS_PER_TASK * 2 * 2 + 2) * p["dynamodb_wru"],
        "DynamoDB reads": TASKS * EVENTS_PER_TASK * 1 * p["dynamodb_rru"],
        "SSM GetParameter (higher throughput)": events * p["ssm_higher_throughput_request"],
    }
    naive = [
        front_door(f"naive design, {n} event{'s' if n > 1 else ''} a request", events / n, seconds, naive_ddb)
        for n in (BATCH, 1)
        for seconds in [n * naive_event + 0.02]
    ]
    return [batched, single, *naive, tracking]


def per_red_flag(i: Inputs, p: dict[str, float] | None = None) -> dict[str, float]:
    """What one red flag adds (USD), beyond its task."""
    p = p or load_prices()
    return {
        "DynamoDB: flag + index, extra over a completion": (i.flag_wru - 1) * p["dynamodb_wru"],
        "DynamoDB: idempotency records": i.channels * i.channel_wru * p["dynamodb_wru"],
        "Lambda: sweeper + alerts": lambda_usd(i.sweep_seconds_per_flag, i.sweeper_memory_mb, p)
        + lambda_usd(i.alert_seconds_per_flag, i.alerts_memory_mb, p),
        "SES email": p["ses_email"],
        "SNS publish": p["sns_publish"],
    }


def fixed_monthly(
    shards: int, reads_per_run: int, run_seconds: float, memory_mb: int, p: dict[str, float] | None = None
) -> dict[str, float]:
    """Whatever the traffic: one sweeper run a minute, each reading every shard ``reads_per_run`` times."""
    p = p or load_prices()
    runs = 60 * 24 * 30
    return {
        "sweeper duration": runs * lambda_usd(run_seconds, memory_mb, p),
        "sweeper invocations": runs * p["lambda_request"],
        "due-index queries (0.5 RRU each)": runs * reads_per_run * shards * 0.5 * p["dynamodb_rru"],
    }


def heavy_minute(workers: int, window_seconds: float, memory_mb: int, p: dict[str, float] | None = None):
    """A minute a scheduled run hands to ``workers`` drain workers, each sweeping one run's window."""
    p = p or load_prices()
    return {
        "drain workers' duration": workers * lambda_usd(window_seconds, memory_mb, p),
        "drain workers' invocations": workers * p["lambda_request"],
    }
