"""Dashboard counts once per alert (issue 15, defect 7): a stream batch retried, the same records handed
to the alerts function again, counts its red flags and held-out emails once, as Powertools' EMF output
shows them (what CloudWatch would graph)."""

from redflag_local.standin.stack import Fault, LocalStack
from tests.integration.test_ses_feedback import METRICS_ON, counted

HELD_OUT = {"label": "creating a landing page", "threshold_seconds": 600, "holdout_percent": 100}


def test_a_retried_stream_batch_counts_red_flags_and_held_out_emails_once(capsys):
    with LocalStack(parameters={"QuietHours": "off"}, env_overrides=METRICS_ON) as stack:
        stack.put_rules({"page": HELD_OUT})
        for user in ("ann", "bob"):
            stack.post_events({"type": "task_started", "task": "page", "user_id": user,
                               "user": {"email": f"{user}@example.com"}})  # fmt: skip
        stack.clock.advance(601)
        stack.sweep()
        records = stack.read_stream()
        flags = stack.filter_stream(records)
        assert len(flags) == 2
        first = flags[0]["dynamodb"]["Keys"]["pk"]["S"]  # its CS alert fails, every attempt of the first try
        capsys.readouterr()
        down_once = Fault(
            "sns", "Publish", code="InternalError", status=500, nth=[1, 2, 3, 4], body_contains=f"%22{first}%22"
        )
        # the first record fails, so the whole batch is retried (its records from the failed one on)
        with stack.faults(down_once):
            responses = stack.deliver_stream(records)
        assert [len(r.get("batchItemFailures", [])) for r in responses] == [1, 0]  # both records, twice
        again = stack.invoke("TimersToAlertsFunction", {"Records": flags})  # and once more: a redelivery
        assert again == {"batchItemFailures": []}
        metrics = counted(capsys.readouterr().out)
        assert metrics["RedFlagsTime"] == 2 and metrics["EmailsHeldOut"] == 2  # not 4, not 5
        assert metrics["AlertsSentCS"] == 2 and len(stack.cs_alerts()) == 2 and stack.emails() == []
