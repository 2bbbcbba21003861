"""A DynamoDB stream record of the timers table, decoded into one typed change
(``redflag.services.changes``): the one place the stream functions meet the storage format.

Records arrive as Powertools' parser model (``DynamoDBStreamRecordModel``: images already plain Python
values); which item an image holds is read from its ``kind`` (``redflag.adapters.codec``). A REMOVE by
DynamoDB's TTL carries the service's identity (the model admits no other), which is what tells an
expiry from a person's delete. An image this code cannot read raises ``ValueError``.
"""

from __future__ import annotations

from typing import Any, cast

from aws_lambda_powertools.utilities.parser.models import DynamoDBStreamRecordModel

from redflag.adapters import codec
from redflag.core.activity import Activity
from redflag.core.timers import Timer
from redflag.services.changes import (
    AccountFlagged,
    ActivityChanged,
    Change,
    DeferredDue,
    Event,
    Flagged,
    TimerChanged,
    Unrelated,
)


def record_id(record: DynamoDBStreamRecordModel) -> str:
    """What a partial batch failure names: the record's sequence number."""
    return str(record.dynamodb.SequenceNumber)


def decode(record: DynamoDBStreamRecordModel) -> Change:
    change = record.dynamodb
    event: Event = record.eventName
    by_ttl = record.userIdentity is not None
    old: dict[str, Any] = cast(dict[str, Any], change.OldImage or {})
    new: dict[str, Any] = cast(dict[str, Any], change.NewImage or {})
    if event == "INSERT" and (flag := codec.account_flag_of(new)) is not None:
        return AccountFlagged(flag)
    if event == "INSERT" and (written := codec.flag_of(new)) is not None:
        return Flagged(*written)
    if (kept := codec.deferred_of(old)) is not None:
        due = event == "MODIFY" or (event == "REMOVE" and by_ttl)
        return DeferredDue(kept) if due else Unrelated()
    old_record, new_record = codec.record_of(old) if old else None, codec.record_of(new) if new else None
    if isinstance(old_record, Timer) or isinstance(new_record, Timer):
        return TimerChanged(event, by_ttl, _only(old_record, Timer), _only(new_record, Timer))
    if isinstance(old_record, Activity) or isinstance(new_record, Activity):
        return ActivityChanged(event, _only(old_record, Activity), _only(new_record, Activity))
    return Unrelated()


def _only(record: Timer | Activity | None, kind: type[Any]) -> Any:
    return record if isinstance(record, kind) else None
