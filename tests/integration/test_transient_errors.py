"""Issue 15, channel defect 3, through the alerts function on the template in moto: SNS answering
RequestTimeout (408), InternalErrorException / InternalServerErrorException (500), 502 or 504 (real
error responses, so the SDK's own retries and parsing run) leaves the stream record to be retried;
nothing is parked as alert_rejected, and once SNS answers the alert goes out once."""

from redflag_local.standin.stack import Fault
from tests.integration.conftest import started

PASSING = [
    Fault("sns", "Publish", "RequestTimeout", 408, rate=1.0),
    Fault("sns", "Publish", "InternalErrorException", 500, rate=1.0),
    Fault("sns", "Publish", "InternalServerErrorException", 500, rate=1.0),
    Fault("sns", "Publish", "BadGateway", 502, rate=1.0),
    Fault("sns", "Publish", "GatewayTimeout", 504, rate=1.0),
]


def test_transient_sns_errors_retry_the_record_and_park_nothing(stack):
    stack.post_events(started("u-transient"))  # no address: the CS alert only
    stack.clock.advance(901)
    stack.sweep()
    records = stack.filter_stream(stack.read_stream())
    assert len(records) == 1
    for fault in PASSING:
        with stack.faults(fault):
            out = stack.invoke("TimersToAlertsFunction", {"Records": records})
        assert fault.injected >= 1, fault.code
        assert [f["itemIdentifier"] for f in out["batchItemFailures"]] == [records[0]["dynamodb"]["SequenceNumber"]], (
            fault.code
        )
        assert stack.parked() == [] and stack.cs_alerts() == [], fault.code
    out = stack.invoke("TimersToAlertsFunction", {"Records": records})  # SNS is back
    assert out["batchItemFailures"] == []
    (alert,) = stack.cs_alerts()
    assert alert["message"]["user_id"] == "u-transient" and stack.parked() == []
