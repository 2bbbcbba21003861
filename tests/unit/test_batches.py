"""adapters/batches: DynamoDB's batched and paged calls, on a scripted client call."""

import pytest

from redflag.adapters import batches
from redflag.services.ports import StoreUnavailable


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(batches.time, "sleep", lambda _s: None)


def key(i):
    return {"pk": {"S": f"u{i}"}, "sk": {"S": "x"}}


def test_batch_get_asks_100_keys_a_call_and_asks_the_unprocessed_again_first():
    calls = []

    def call(method, RequestItems):
        asked = RequestItems["t"]["Keys"]
        calls.append(len(asked))
        if len(calls) == 1:  # DynamoDB leaves the last 10 of the first call unprocessed
            return {"Responses": {"t": asked[:90]}, "UnprocessedKeys": {"t": {"Keys": asked[90:]}}}
        return {"Responses": {"t": asked}}

    found = list(batches.batch_get(call, "t", [key(i) for i in range(150)]))
    assert sorted(k["pk"]["S"] for k in found) == sorted(f"u{i}" for i in range(150))
    assert calls == [100, 60]  # the 10 left over go with the next 50


def test_a_table_that_keeps_leaving_keys_unprocessed_is_unavailable_after_5_backoffs():
    def call(method, RequestItems):
        return {"Responses": {"t": []}, "UnprocessedKeys": {"t": {"Keys": RequestItems["t"]["Keys"]}}}

    with pytest.raises(StoreUnavailable):
        list(batches.batch_get(call, "t", [key(1)]))


def test_batch_write_sends_25_a_call_until_nothing_is_left():
    sent = []

    def call(method, RequestItems):
        batch = RequestItems["t"]
        sent.append(len(batch))
        return {"UnprocessedItems": {"t": batch[-2:]}} if len(sent) == 1 else {}

    batches.batch_write(call, "t", [{"DeleteRequest": {"Key": key(i)}} for i in range(30)])
    assert sent == [25, 7]


def test_query_follows_every_page():
    pages = {None: {"Items": [1, 2], "LastEvaluatedKey": "a"}, "a": {"Items": [3], "LastEvaluatedKey": "b"},
             "b": {"Items": []}}  # fmt: skip

    def call(method, **params):
        assert method == "query" and params["TableName"] == "t"
        return pages[params.get("ExclusiveStartKey")]

    assert list(batches.query(call, TableName="t")) == [1, 2, 3]
