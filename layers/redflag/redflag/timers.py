r"""The timer state machine: one item per (user, task, instance). Pure Python, no AWS.

    (none) --started--> open --completed--> completed
      |                  |  \--due, swept--> flagged --completed--> completed (late)
      |--failed--> idle  \----TTL delete (item gone, the stream carries the red flag)

Every transition is computed here and written by the store with a condition on ``version``,
so whoever wins the write owns the side effect (see ``redflag.adapters.dynamodb``).
Out-of-order delivery is resolved by event time: ``last_completed_at`` remembers the latest
completion ever seen, and a start that predates it never arms a timer.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from redflag.events import EventType, Outcome, UserInfo
from redflag.rules import Rule

KIND_TASK = "task"


class TimerState(StrEnum):
    IDLE = "idle"  # known instance, no timer (only failures seen so far)
    OPEN = "open"  # armed: TTL and the due index point at due_at
    COMPLETED = "completed"
    FLAGGED = "flagged"  # the sweeper expired it; the stream turns that into alerts


class TimerKey(BaseModel):
    model_config = ConfigDict(frozen=True)

    user_id: str
    task: str
    instance_id: str = "default"

    @property
    def pk(self) -> str:
        return self.user_id

    @property
    def sk(self) -> str:
        # task names cannot contain '#', so the split is unambiguous even if instance_id does
        return f"task#{self.task}#{self.instance_id}"

    @classmethod
    def from_keys(cls, pk: str, sk: str) -> TimerKey:
        _, task, instance_id = sk.split("#", 2)
        return cls(user_id=pk, task=task, instance_id=instance_id)


class Timer(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: TimerKey
    state: TimerState
    version: int = 0  # 0: not stored yet
    started_at: float | None = None
    due_at: int | None = None
    completed_at: float | None = None
    last_completed_at: float | None = None
    flagged_at: float | None = None
    duration_seconds: float | None = None
    failures: int = 0
    last_failed_at: float | None = None
    expires_at: int | None = None  # the TTL attribute
    rule: Rule | None = None  # snapshot at start: a rule edit never changes an armed timer
    user: UserInfo = UserInfo()
    properties: dict[str, Any] = {}

    @property
    def run_id(self) -> str:
        """Identifies one run (one arming) of this instance; alerts are idempotent per run."""
        return f"{round((self.started_at or 0) * 1000)}"

    def alert_id(self, channel: str) -> str:
        return json.dumps([self.key.user_id, self.key.task, self.key.instance_id, self.run_id, channel])


@dataclass(frozen=True)
class Policy:
    retention_seconds: int = 30 * 86400  # how long finished timers stay (for statistics)


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    timer: Timer | None  # the next item to write; None = nothing changes
    reason: str | None = None


def _retained(now: float, policy: Policy) -> int:
    return math.ceil(now + policy.retention_seconds)


def _arm(base: Timer, at: float, rule: Rule, user: UserInfo, properties: dict[str, Any]) -> Timer:
    due = math.ceil(at + rule.threshold_seconds)
    return base.model_copy(
        update={
            "state": TimerState.OPEN,
            "started_at": at,
            "due_at": due,
            "expires_at": due,
            "completed_at": None,
            "flagged_at": None,
            "duration_seconds": None,
            "rule": rule,
            "user": user,
            "properties": properties,
        }
    )


def _completed(cur: Timer, at: float, last: float, now: float, policy: Policy, extra: dict[str, Any]) -> Timer:
    update = {"state": TimerState.COMPLETED, "completed_at": at, "last_completed_at": last}
    return cur.model_copy(update=update | {"expires_at": _retained(now, policy)} | extra)


def apply_event(
    current: Timer | None,
    key: TimerKey,
    kind: EventType,
    at: float,
    rule: Rule,
    now: float,
    user: UserInfo = UserInfo(),
    properties: dict[str, Any] | None = None,
    policy: Policy = Policy(),
) -> Decision:
    """Decide what one task event does to its timer. ``at`` is the event time (epoch s)."""
    props = properties or {}
    cur = current or Timer(key=key, state=TimerState.IDLE)
    new = current is None

    if kind is EventType.TASK_STARTED:
        if cur.last_completed_at is not None and at <= cur.last_completed_at:
            return Decision(Outcome.RECORDED, None, "start predates the last completion; no timer")
        if cur.state is TimerState.OPEN:
            if cur.started_at is not None and at < cur.started_at:
                return Decision(Outcome.ARMED, _arm(cur, at, rule, user, props), "earlier start moved the timer")
            return Decision(Outcome.RECORDED, None, "timer already armed")
        if cur.state is TimerState.FLAGGED and cur.due_at is not None and at <= cur.due_at:
            return Decision(Outcome.RECORDED, None, "this run was already flagged")
        return Decision(Outcome.ARMED, _arm(cur, at, rule, user, props))

    if kind is EventType.TASK_COMPLETED:
        last = max(at, cur.last_completed_at or at)
        if cur.state in (TimerState.OPEN, TimerState.FLAGGED) and cur.started_at is not None:
            if at < cur.started_at:
                return Decision(
                    Outcome.RECORDED,
                    cur.model_copy(update={"last_completed_at": last}),
                    "completion predates the open run",
                )
            duration = {"duration_seconds": round(at - cur.started_at, 3)}
            return Decision(Outcome.COMPLETED, _completed(cur, at, last, now, policy, duration))
        if cur.state is TimerState.COMPLETED and not new:
            return Decision(Outcome.RECORDED, cur.model_copy(update={"last_completed_at": last}), "already completed")
        # idle or unseen: remember the completion so a late start cannot arm this run
        return Decision(Outcome.COMPLETED, _completed(cur, at, last, now, policy, {"rule": rule, "user": user}))

    if kind is EventType.TASK_FAILED:
        update: dict[str, Any] = {
            "failures": cur.failures + 1,
            "last_failed_at": max(at, cur.last_failed_at or at),
        }
        if new:
            update |= {"rule": rule, "user": user, "expires_at": _retained(now, policy)}
        return Decision(Outcome.RECORDED, cur.model_copy(update=update))

    raise ValueError(f"{kind} is not a task event")


def expire(current: Timer | None, now: float, policy: Policy = Policy()) -> Timer | None:
    """The sweeper's transition: an open timer past its due time becomes flagged."""
    if current is None or current.state is not TimerState.OPEN or current.due_at is None:
        return None
    if current.due_at > now:
        return None
    return current.model_copy(
        update={"state": TimerState.FLAGGED, "flagged_at": now, "expires_at": _retained(now, policy)}
    )


# --- the item codec: how a Timer looks in DynamoDB (plain Python types, Decimal numbers) ---


def shard_of(key: TimerKey, shards: int) -> int:
    return zlib.crc32(f"{key.pk}\x00{key.sk}".encode()) % shards


def to_number(value: float | int) -> Decimal:
    return Decimal(str(value))


def to_item(timer: Timer, shards: int) -> dict[str, Any]:
    item: dict[str, Any] = {"pk": timer.key.pk, "sk": timer.key.sk, "kind": KIND_TASK}
    item |= {"user_id": timer.key.user_id, "task": timer.key.task, "instance_id": timer.key.instance_id}
    item |= {"state": TimerState(timer.state).value, "version": timer.version, "failures": timer.failures}
    for name in (
        "started_at", "due_at", "completed_at", "last_completed_at", "flagged_at",
        "duration_seconds", "last_failed_at", "expires_at",
    ):  # fmt: skip
        value = getattr(timer, name)
        if value is not None:
            item[name] = to_number(value)
    if timer.rule is not None:
        item["rule"] = timer.rule.model_dump_json(exclude_none=True)
    user = timer.user.model_dump(exclude_none=True)
    if user:
        item["user"] = user
    if timer.properties:
        item["properties"] = json.dumps(timer.properties, separators=(",", ":"))
    if timer.state is TimerState.OPEN:  # sparse due index: only open timers carry these
        item["due_shard"] = shard_of(timer.key, shards)
    return item


def from_item(item: dict[str, Any]) -> Timer:
    data = {k: v for k, v in item.items() if k not in ("pk", "sk", "kind", "due_shard")}
    key = TimerKey.from_keys(item["pk"], item["sk"])
    for name in ("user_id", "task", "instance_id"):
        data.pop(name, None)
    for name, value in list(data.items()):
        if isinstance(value, Decimal):
            data[name] = int(value) if name in ("version", "failures", "due_at", "expires_at") else float(value)
    if "rule" in data:
        data["rule"] = Rule.model_validate_json(data["rule"])
    if "properties" in data:
        data["properties"] = json.loads(data["properties"])
    return Timer(key=key, **data)


def is_task_item(item: dict[str, Any] | None) -> bool:
    return bool(item) and item.get("kind") == KIND_TASK and "sk" in item


def red_flag(event_name: str, by_ttl: bool, old: dict[str, Any] | None, new: dict[str, Any] | None) -> Timer | None:
    """Decide whether a stream change is a red flag, and of which run.

    Two ways in, both re-checked here because a stream filter is not a guarantee:
    - TTL deleted a timer that was still open (REMOVE by the DynamoDB service);
    - the sweeper moved an open timer to flagged (MODIFY open -> flagged).
    A TTL delete of a flagged or completed timer, or any delete by a person, is not.
    """
    if event_name == "REMOVE" and by_ttl and is_task_item(old) and old["state"] == TimerState.OPEN:  # type: ignore[index]
        return from_item(old)  # type: ignore[arg-type]
    if (
        event_name == "MODIFY"
        and is_task_item(old)
        and is_task_item(new)
        and old["state"] == TimerState.OPEN  # type: ignore[index]
        and new["state"] == TimerState.FLAGGED  # type: ignore[index]
    ):
        return from_item(new)  # type: ignore[arg-type]
    return None
