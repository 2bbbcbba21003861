"""The DynamoDB wire format written and read by ``redflag.adapters.aws`` is boto3's: for any value,
``attribute`` gives what ``TypeSerializer().serialize`` gives (or raises the same error), and
``value`` reads what ``TypeDeserializer().deserialize`` reads. The direct path exists only for its
CPU (docs/benchmarks.md); these hold it to the ecosystem's answers."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from hypothesis import given, settings
from hypothesis import strategies as st

from redflag.adapters import aws
from redflag.adapters import codec as items
from redflag.core.events import UserInfo
from redflag.core.timers import Timer, TimerKey, TimerState
from redflag.kinds import Rule

serializer, deserializer = TypeSerializer(), TypeDeserializer()

numbers = st.one_of(
    st.integers(),  # beyond 38 digits boto3 raises: so must we
    st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False, allow_infinity=False, places=6),
    st.sampled_from([Decimal("1E+3"), Decimal("-0"), Decimal("0.000"), Decimal("1e126"), Decimal("1e-131")]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    numbers,
    st.text(),
    st.binary(),
    st.floats(),  # boto3 refuses floats
    st.sets(st.text(min_size=1), min_size=1, max_size=3),
    st.sets(st.integers(), min_size=1, max_size=3),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
    ),
    max_leaves=12,
)


def _canon(x: Any) -> Any:
    """A value compared as written: NaN equal to NaN (by its text), sets in a fixed order, types kept."""
    if isinstance(x, Decimal):
        return ("Decimal", str(x))
    if isinstance(x, dict):
        return (type(x).__name__, sorted((k, repr(_canon(v))) for k, v in x.items()))
    if isinstance(x, list | tuple):
        return (type(x).__name__, [_canon(v) for v in x])
    if isinstance(x, set | frozenset):
        return (type(x).__name__, sorted(repr(_canon(v)) for v in x))
    return (type(x).__name__, x)


def _outcome(call: Any, arg: Any) -> tuple[str, Any]:
    try:
        return "ok", _canon(call(arg))
    except Exception as exc:  # the same refusal, by type
        return "raised", type(exc)


@settings(max_examples=200, deadline=None)
@given(values)
def test_attribute_is_what_boto3_writes(value: Any) -> None:
    assert _outcome(aws.attribute, value) == _outcome(serializer.serialize, value)


@settings(max_examples=200, deadline=None)
@given(values)
def test_value_is_what_boto3_reads(value: Any) -> None:
    try:
        av = serializer.serialize(value)
    except Exception:
        return  # not writable: nothing to read
    assert _outcome(aws.value, av) == _outcome(deserializer.deserialize, av)


attribute_values = st.recursive(
    st.one_of(
        st.builds(lambda s: {"S": s}, st.text()),
        st.builds(
            lambda s: {"N": s}, st.one_of(st.from_regex(r"-?[0-9]{1,40}(\.[0-9]{1,5})?", fullmatch=True), st.text())
        ),
        st.builds(lambda b: {"BOOL": b}, st.booleans()),
        st.just({"NULL": True}),
        st.builds(lambda b: {"B": b}, st.binary()),
        st.builds(lambda s: {"SS": s}, st.lists(st.text(), min_size=1, max_size=3)),
        st.dictionaries(st.sampled_from(["S", "N", "s", "X", "M", "L"]), st.text(), max_size=2),  # malformed
    ),
    lambda inner: st.one_of(
        st.builds(lambda xs: {"L": xs}, st.lists(inner, max_size=3)),
        st.builds(lambda m: {"M": m}, st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    ),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(attribute_values)
def test_any_attribute_value_reads_as_boto3_reads_it(av: dict[str, Any]) -> None:
    """Also what boto3 never writes: lower-case or unknown types, several keys, an empty map."""
    assert _outcome(aws.value, av) == _outcome(deserializer.deserialize, av)


def test_the_types_boto3_keeps_to_itself_stay_its_own() -> None:
    assert aws.attribute(b"x") == {"B": b"x"} and aws.value({"B": b"x"}) == Binary(b"x")
    assert aws.attribute({"a", "b"})["SS"] and aws.value({"NS": ["1"]}) == {Decimal(1)}
    with pytest.raises(TypeError):
        aws.attribute(1.5)
    with pytest.raises(TypeError):
        aws.attribute(Decimal("NaN"))


def test_a_timer_item_round_trips_as_with_boto3() -> None:
    rule = Rule.model_validate({"label": "Upload", "threshold_seconds": 600})
    user = UserInfo(email="ada@example.com", name="Ada", segment="pro")
    timer = Timer(
        key=TimerKey(user_id="u1", task="upload", instance_id="default"),
        state=TimerState.OPEN,
        started_at=1_700_000_000.25,
        due_at=1_700_000_600,
        rule=rule,
        user=user,
        properties={"plan": "pro", "n": 3},
        seen=("abc",),
        version=2,
    )
    item = items.to_item(timer, shards=8)
    wire = aws.to_attributes(item)
    assert wire == {k: serializer.serialize(v) for k, v in item.items()}
    read = aws.from_attributes(wire)
    assert read == {k: deserializer.deserialize(v) for k, v in wire.items()}
    again = items.record_of(read)
    assert again == timer
    assert items.record_of(aws.from_attributes(wire)).rule is again.rule  # one parse per stored rule text


# --- items taken from the answer as sent (aws.items_as_sent), against botocore's own parse -------------


def _parsed(operation: str, payload: dict[str, Any], hooked: bool) -> dict[str, Any]:
    import json

    from botocore.parsers import create_parser

    model = aws.client("dynamodb").meta.service_model.operation_model(operation)
    response = {"status_code": 200, "headers": {}, "body": json.dumps(payload).encode()}
    custom: dict[str, Any] = {}
    if hooked:
        aws.items_as_sent(operation_model=model, response_dict=response, customized_response_dict=custom)
    parsed = create_parser("json").parse(response, model.output_shape)
    parsed.update(custom)
    parsed.pop("ResponseMetadata", None)
    return parsed


def _wire_item(value: dict[str, Any]) -> dict[str, Any]:
    """A generated item as the JSON an answer carries (binary values in base64, as AWS sends them)."""
    import base64

    def text(av: dict[str, Any]) -> dict[str, Any]:
        ((kind, v),) = av.items()
        if kind == "B":
            return {"B": base64.b64encode(bytes(v)).decode()}
        if kind == "BS":
            return {"BS": [base64.b64encode(bytes(b)).decode() for b in v]}
        if kind == "M":
            return {"M": {k: text(x) for k, x in v.items()}}
        if kind == "L":
            return {"L": [text(x) for x in v]}
        if kind in ("SS", "NS"):
            return {kind: sorted(v)}
        return av

    return {k: text(serializer.serialize(v)) for k, v in value.items()}


writable = values.filter(lambda v: _outcome(serializer.serialize, v)[0] == "ok")


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.dictionaries(st.sampled_from(["pk", "sk", "B", "rule", "user", "n"]), writable, min_size=1), max_size=3)
)
def test_items_as_sent_are_what_botocore_parses(found: list[dict[str, Any]]) -> None:
    wire = [_wire_item(item) for item in found]
    answers = {
        "BatchGetItem": {"Responses": {"t": wire}, "UnprocessedKeys": {}},
        "Query": {"Items": wire, "Count": len(wire), "LastEvaluatedKey": {"pk": {"S": "x"}}},
        "Scan": {"Items": wire, "Count": len(wire), "ScannedCount": len(wire)},
        "GetItem": {"Item": wire[0]} if wire else {},
    }
    for operation, payload in answers.items():
        assert _parsed(operation, payload, hooked=True) == _parsed(operation, payload, hooked=False)


def test_the_clients_take_items_as_sent() -> None:
    """The store's client runs the hook on each such answer: what botocore then parses holds no items."""
    import json

    client = aws.client("dynamodb")
    for operation, key in aws.ITEMS_AS_SENT.items():
        response = {"status_code": 200, "headers": {}, "body": json.dumps({key: [], "Count": 0}).encode()}
        custom: dict[str, Any] = {}
        client.meta.events.emit(
            f"before-parse.dynamodb.{operation}",
            operation_model=client.meta.service_model.operation_model(operation),
            response_dict=response,
            customized_response_dict=custom,
        )
        assert custom == {key: []} and key.encode() not in response["body"]
