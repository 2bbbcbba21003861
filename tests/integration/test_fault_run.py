"""The fault run: thousands of tasks through the real handlers on the template deployed into moto, while
AWS misbehaves the way it does:

- SES throttles 30 % of sends (TooManyRequestsException, 429: the SDK retries, some still fail);
- SNS fails 10 % of publishes (InternalError, 500);
- DynamoDB fails 5 % of ingest writes: throttles (the SDK retries), version conflicts (a concurrent
  writer won: re-read and decide again) and transaction conflicts (not retried by the SDK: the event
  is answered ``retry`` and the client sends exactly those events again);
- the idempotency store fails (three times in a row: the SDK gives up once) to record sends that
  succeeded;
- the alerts function crashes once mid-batch (claiming its alerts);
- a few users have addresses SES refuses for good (MessageRejected).

The stream's event source mapping is modelled as AWS runs it (``LocalStack.deliver_stream``): a
failed record is redelivered with the rest of its batch, a crash bisects the batch, records that
exhaust their retries are parked.

End state: every overdue task has exactly one email and one CS alert (the refused addresses: a CS
alert and a parked email instead), every finished task none, and the parked messages are exactly the
refused emails. ``REDFLAG_FAULT_TASKS`` sets the size (``make soak`` runs 10,000; docs/soak.md).
"""

import os
import random
from collections import Counter
from datetime import UTC, datetime
from urllib.parse import unquote

import pytest

from redflag_local.standin.stack import Fault, LocalStack

TASKS = int(os.environ.get("REDFLAG_FAULT_TASKS", "500"))
THRESHOLD = 300
WINDOW = 600  # starts are spread over these seconds
OVERDUE = 0.3  # share of tasks never completed
REFUSED = "refused.example"  # SES refuses these addresses for good
# the sweeper reads the due index every 30 s instead of 5 (a setting): the run makes fewer reads
QUIET = {"POWERTOOLS_LOG_LEVEL": "ERROR", "POWERTOOLS_METRICS_DISABLED": "true", "SWEEP_POLL_SECONDS": "30"}


def plan(seed=5):
    rng = random.Random(seed)
    tasks = []
    for i in range(TASKS):
        start = rng.randrange(WINDOW)
        finish = None if rng.random() < OVERDUE else start + rng.randint(THRESHOLD // 10, THRESHOLD * 6 // 10)
        domain = REFUSED if i % 97 == 0 else "example.com"
        tasks.append((f"f-{i:05d}", start, finish, f"f{i}@{domain}"))
    return tasks


def events_by_minute(tasks, t0):
    """Events as the product sends them: each minute, what happened in it (with occurred_at and an id)."""
    out = {}
    for user, start, finish, email in tasks:
        happened = [(start, "task_started")] + ([(finish, "task_completed")] if finish is not None else [])
        for at, kind in happened:
            event = {
                "type": kind,
                "task": "fault_task",
                "user_id": user,
                "event_id": f"{user}-{kind}",
                "occurred_at": datetime.fromtimestamp(t0 + at, UTC).isoformat(),
                "user": {"email": email, "name": user.upper()},
            }
            out.setdefault((at // 60 + 1) * 60, []).append(event)
    return out


def post_until_applied(stack, events, attempts=10):
    """The client: send, then send again exactly what was answered `retry` (or everything on a 5xx)."""
    pending = events
    for _ in range(attempts):
        if not pending:
            return 0
        status, body = stack.post_events({"events": pending})
        if status >= 500:
            continue
        assert status == 202, body
        assert not [r for r in body["results"] if r["status"] == "rejected"], body
        retries = {r["index"] for r in body["results"] if r["status"] == "retry"}
        pending = [e for i, e in enumerate(pending) if i in retries]
    raise AssertionError(f"{len(pending)} events still not applied")


@pytest.fixture(scope="module")
def fault_run():
    tasks = plan()
    with LocalStack(env_overrides=QUIET) as stack:
        stack.put_rules({"fault_task": {"label": "a task under faults", "threshold_seconds": THRESHOLD}})
        t0 = stack.clock()
        timers, idempotency = stack.physical["TimersTable"], stack.physical["IdempotencyTable"]
        faults = [
            Fault("sesv2", "SendEmail", "TooManyRequestsException", 429, rate=0.30),
            Fault("sesv2", "SendEmail", "MessageRejected", 400, rate=1.0, body_contains=REFUSED),
            Fault("sns", "Publish", "InternalError", 500, rate=0.10),
            Fault("dynamodb", "PutItem", "ProvisionedThroughputExceededException", 400, rate=0.02, table=timers),
            Fault("dynamodb", "PutItem", "ConditionalCheckFailedException", 400, rate=0.02, table=timers),
            Fault("dynamodb", "PutItem", "TransactionConflictException", 400, rate=0.01, table=timers),
            # the results of one batch's sends: the SDK tries 3 times, all fail once
            Fault(
                "dynamodb",
                "BatchWriteItem",
                "ProvisionedThroughputExceededException",
                400,
                nth=[6, 7, 8],
                body_contains=idempotency,
            ),
            # dies mid-batch, claiming the batch's alerts
            Fault("dynamodb", "TransactWriteItems", crash=True, nth=[5], body_contains=idempotency),
        ]
        with stack.faults(*faults, seed=11) as injected:
            for minute, events in sorted(events_by_minute(tasks, t0).items()):
                stack.clock.advance(t0 + minute - stack.clock())
                for i in range(0, len(events), 100):
                    post_until_applied(stack, events[i : i + 100])
                stack.sweep()
                stack.deliver_stream()
            for _ in range(3):  # past every due time, and the stream drained
                stack.tick(120)
            yield {
                "tasks": tasks,
                "emails": stack.emails(),
                "cs": stack.cs_alerts(),
                "parked": stack.parked(),
                "injected": {f"{f.service}.{f.operation}.{f.code}": f.injected for f in injected.rules},
            }


def test_every_fault_was_injected(fault_run):
    injected = fault_run["injected"]
    assert all(count > 0 for count in injected.values()), injected


def test_every_overdue_task_alerted_exactly_once_and_no_finished_one(fault_run):
    tasks = fault_run["tasks"]
    overdue = {user for user, _, finish, _ in tasks if finish is None}
    refused = {user for user, _, finish, email in tasks if finish is None and REFUSED in email}
    assert overdue and refused
    emails = Counter(unquote(e["message"]["X-RedFlag-Alert"].split("/")[0]) for e in fault_run["emails"])
    cs = Counter(a["message"]["user_id"] for a in fault_run["cs"])
    assert set(cs) == overdue and set(cs.values()) == {1}
    # moto's SES keeps what it accepted: a refused address never reached it
    assert set(emails) == overdue - refused and set(emails.values()) == {1}


def test_parked_is_exactly_the_refused_emails(fault_run):
    tasks = fault_run["tasks"]
    refused = {user for user, _, finish, email in tasks if finish is None and REFUSED in email}
    parked = fault_run["parked"]
    assert all(p.get("kind") == "alert_rejected" for p in parked), parked
    assert sorted(p["alert"][0] for p in parked) == sorted(refused)
    assert {p["channel"] for p in parked} == {"user"} and {p["error"] for p in parked} == {"MessageRejected"}
