"""Issue 15, channel defect 3: a passing AWS fault is retried, a refusal is recorded. Classified by
HTTP status and botocore's own retryable set (``botocore.retries.standard``), not by a list of codes
that misses SNS's ``InternalErrorException`` or a gateway's bare 502."""

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.retries import standard

from redflag.adapters.aws import is_transient


def client_error(code, status, operation="Publish"):
    response = {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, operation)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        # the exact inputs: all were parked at once as alert_rejected
        ("RequestTimeout", 408),
        ("InternalErrorException", 500),
        ("InternalServerErrorException", 500),
        ("502", 502),  # a gateway's HTML page: botocore names the error by its status
        ("504", 504),
        ("BadGateway", 502),
        ("GatewayTimeout", 504),
        # and what the old list knew
        ("ThrottlingException", 400),
        ("TooManyRequestsException", 429),
        ("ProvisionedThroughputExceededException", 400),
        ("ServiceUnavailable", 503),
        ("TransactionConflictException", 400),
        ("KMSThrottlingException", 400),
        ("SendingPausedException", 400),
        ("SomethingNew", 429),  # a throttle by status alone
        ("RequestTimeoutException", 400),  # botocore's transient code whatever the status
    ],
)
def test_a_passing_fault_is_transient(code, status):
    assert is_transient(client_error(code, status))


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("MessageRejected", 400),
        ("InvalidParameter", 400),
        ("KMSAccessDenied", 400),
        ("AuthorizationError", 403),
        ("NotFound", 404),
        ("ConditionalCheckFailedException", 400),
        ("TransactionCanceledException", 400),
        ("501", 501),  # not implemented: retrying will not implement it
    ],
)
def test_a_refusal_is_permanent(code, status):
    assert not is_transient(client_error(code, status))


def test_every_code_botocore_retries_is_transient():
    """botocore's own sets, read from the SDK: a code it adds in a later release is retried here too."""
    codes = [
        *standard.TransientRetryableChecker._TRANSIENT_ERROR_CODES,
        *standard.ThrottledRetryableChecker._THROTTLED_ERROR_CODES,
    ]
    assert codes  # the SDK still keeps them where we read them
    assert all(is_transient(client_error(code, 400)) for code in codes)


def test_connection_errors_and_timeouts_are_transient():
    assert is_transient(EndpointConnectionError(endpoint_url="https://sns"))
    assert is_transient(ConnectTimeoutError(endpoint_url="https://sns"))
    assert is_transient(ReadTimeoutError(endpoint_url="https://sns"))


def test_a_client_error_without_a_status_is_judged_by_its_code():
    bare = ClientError({"Error": {"Code": "ThrottlingException"}}, "Publish")
    assert is_transient(bare) and not is_transient(ClientError({"Error": {"Code": "MessageRejected"}}, "SendEmail"))
