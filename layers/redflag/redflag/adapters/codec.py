"""How Red Flag's records look in the timers table: keys, ``kind``, ``Decimal`` numbers, the sparse
due index. The one place that knows the storage format; the domain never sees it.

    timer         pk = user_id            sk = task#{task}#{instance_id}  kind = task  (+ due_shard when open)
    activity      pk = user_id            sk = user                      kind = user  (+ profile: identify, group)
    account flag  pk = account#{account}  sk = flag#{rule}#{week}         kind = account_flag
    a flag item   pk = flags#{group}        sk = {id}                       kind = flag  (a rate's change, an
                                                                          account's move into red: Kind.flag_ref)
    deferred      pk = user_id            sk = deferred#{alert}             kind = deferred (+ due_shard)
    alerting      pk = user_id            sk = alerting                     the emails sent lately (the cap) and
                                                                          recent red flags (escalation) of a user
    escalation    pk = esc#account#{id}   sk = escalation                   recent red flags of an account
    opt-out       pk = suppress#{hmac}    sk = suppress                     a keyed hash of a user id or address

Task names cannot contain ``#``, so ``task#{task}#{instance_id}`` splits unambiguously even when the
instance id does. The same functions decode table reads and stream images (Powertools hands both
over as plain Python values).
"""

from __future__ import annotations

import json
import math
import zlib
from decimal import Decimal
from functools import lru_cache
from typing import Any, TypeVar

from pydantic import BaseModel

from redflag import kinds
from redflag.core.activity import Activity, ActivityKey, Profile
from redflag.core.events import UserInfo
from redflag.core.interventions import EmailLog, Escalation, UserState
from redflag.core.timers import DeferredKey, Timer, TimerKey, TimerState, fingerprint
from redflag.kinds import Rule
from redflag.kinds.usage_drop import AccountFlag

KIND_TASK = "task"
KIND_USER = "user"
_TIMER_NUMBERS = (
    "started_at", "due_at", "completed_at", "last_completed_at", "flagged_at", "duration_seconds",
    "last_failed_at", "expires_at", "threshold_seconds", "usual_seconds", "completed_after_flag_seconds",
    "entered_at",
)  # fmt: skip
_TIMER_TEXTS = ("threshold_basis", "flag_reason", "step")
_ACTIVITY_NUMBERS = ("first_active_at", "last_active_at", "expires_at")
_DEFAULT_KIND = Timer.model_fields["kind"].default


def key_of(key: TimerKey | ActivityKey | DeferredKey) -> dict[str, str]:
    if isinstance(key, ActivityKey):
        return {"pk": key.user_id, "sk": KIND_USER}
    if isinstance(key, DeferredKey):
        return {"pk": key.user_id, "sk": f"deferred#{key.tag}"}
    return {"pk": key.user_id, "sk": f"task#{key.task}#{key.instance_id}"}


def record_key(pk: str, sk: str) -> TimerKey | ActivityKey | DeferredKey | None:
    if sk == KIND_USER:
        return ActivityKey(user_id=pk)
    if sk.startswith("task#"):
        _, task, instance_id = sk.split("#", 2)
        return TimerKey(user_id=pk, task=task, instance_id=instance_id)
    if sk.startswith("deferred#"):
        return DeferredKey(user_id=pk, tag=sk[len("deferred#") :])
    return None


def shard_of(key: TimerKey, shards: int) -> int:
    """Which shard of the due index an open timer goes to: stable, spread by a CRC of its key."""
    k = key_of(key)
    return zlib.crc32(f"{k['pk']}\x00{k['sk']}".encode()) % shards


def number(value: float | int) -> Decimal:
    return Decimal(str(value))


def _numbers(obj: Any, names: tuple[str, ...]) -> dict[str, Decimal]:
    return {n: number(getattr(obj, n)) for n in names if getattr(obj, n) is not None}


def to_item(record: Timer | Activity, shards: int) -> dict[str, Any]:
    if isinstance(record, Activity):
        return _activity_item(record)
    timer = record
    item: dict[str, Any] = key_of(timer.key) | {"kind": KIND_TASK}
    item |= {"user_id": timer.key.user_id, "task": timer.key.task, "instance_id": timer.key.instance_id}
    item |= {"state": TimerState(timer.state).value, "version": timer.version, "failures": timer.failures}
    if timer.kind != _DEFAULT_KIND:  # stored only when not the default: a few bytes less on most timers
        item["timer_kind"] = timer.kind
    if timer.run_failures:
        item["run_failures"] = timer.run_failures
    if timer.entry_flags:
        item["entry_flags"] = timer.entry_flags
    item |= _numbers(timer, _TIMER_NUMBERS)
    item |= {n: str(getattr(timer, n)) for n in _TIMER_TEXTS if getattr(timer, n) is not None}
    if timer.rule is not None:
        item["rule"] = timer.rule.model_dump_json(exclude_none=True)
    user = timer.user.model_dump(exclude_none=True)
    if user:
        item["user"] = user
    if timer.properties:
        item["properties"] = json.dumps(timer.properties, separators=(",", ":"))
    if timer.seen:
        item["seen"] = " ".join(timer.seen)
    if timer.state is TimerState.OPEN:  # sparse due index: only open timers carry due_shard
        item["due_shard"] = shard_of(timer.key, shards)
    return item


def _activity_item(activity: Activity) -> dict[str, Any]:
    item: dict[str, Any] = key_of(activity.key) | {"kind": KIND_USER, "user_id": activity.key.user_id}
    item |= {"version": activity.version, "active_events": activity.active_events}
    item |= _numbers(activity, _ACTIVITY_NUMBERS)
    if activity.account_id is not None:
        item["account_id"] = activity.account_id
    if activity.seen:
        item["seen"] = " ".join(activity.seen)
    if not activity.profile.is_empty():
        profile = activity.profile.model_dump(exclude_none=True)
        if activity.profile.identified_at is not None:
            profile["identified_at"] = number(activity.profile.identified_at)
        item["profile"] = profile
    return item


def _profile(raw: Any) -> Profile:
    if not isinstance(raw, dict):
        return Profile()
    data = {k: str(v) for k, v in raw.items() if k in Profile.model_fields and k != "identified_at" and v is not None}
    at = raw.get("identified_at")
    return Profile(**data, identified_at=float(at) if at is not None else None)


_M = TypeVar("_M", Rule, UserInfo)


def _stored(model: type[_M], data: dict[str, Any]) -> _M:
    """What was valid when written stays readable when the door gets stricter: validated if it
    still passes, else taken as stored (the senders check and encode what they use anyway)."""
    try:
        return model.model_validate(data)
    except ValueError:
        return model.model_construct(**data)


@lru_cache(maxsize=1024)
def stored_rule(text: str) -> Rule:
    """A timer's rule snapshot from its stored JSON, parsed once per text: the timers of one rule share
    it (a Rule is frozen), and validating it was most of the CPU of reading a timer."""
    return _stored(Rule, json.loads(text))


@lru_cache(maxsize=4096)
def _stored_user(fields: tuple[tuple[str, Any], ...]) -> UserInfo:
    return _stored(UserInfo, dict(fields))


def stored_user(data: dict[str, Any]) -> UserInfo:
    """A timer's user as stored, validated once per distinct value (a UserInfo is frozen)."""
    try:
        return _stored_user(tuple(data.items()))
    except TypeError:  # an unhashable value (never written by this code): validated as it is
        return _stored(UserInfo, data)


def _seen(item: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(item.get("seen") or "").split())


def timer_of(item: dict[str, Any] | None) -> Timer | None:
    """The timer an item (or stream image) holds; None for anything that is not a timer."""
    if not item or item.get("kind") != KIND_TASK or "sk" not in item:
        return None
    key = record_key(item["pk"], item["sk"])
    assert isinstance(key, TimerKey)
    data: dict[str, Any] = {n: item[n] for n in (*_TIMER_NUMBERS, *_TIMER_TEXTS) if n in item}
    data |= {"state": item["state"], "version": item.get("version", 0), "failures": item.get("failures", 0)}
    data |= {"kind": item.get("timer_kind", _DEFAULT_KIND), "run_failures": item.get("run_failures", 0)}
    data["entry_flags"] = item.get("entry_flags", 0)
    data["due_reason"] = kinds.due_reason(data["kind"])  # not stored: the kind says what falling due means
    if item["state"] == TimerState.FLAGGED and "flag_reason" not in item:  # flagged by the sweeper's update
        data["flag_reason"] = data["due_reason"]
    if "rule" in item:
        data["rule"] = stored_rule(item["rule"])
    if "user" in item:
        data["user"] = stored_user(item["user"])
    if "properties" in item:
        data["properties"] = json.loads(item["properties"])
    return Timer(key=key, seen=_seen(item), **data)


def activity_of(item: dict[str, Any] | None) -> Activity | None:
    if not item or item.get("kind") != KIND_USER:
        return None
    data: dict[str, Any] = {n: item[n] for n in _ACTIVITY_NUMBERS if n in item}
    data |= {"version": item.get("version", 0), "active_events": item.get("active_events", 0)}
    return Activity(
        key=ActivityKey(user_id=item["pk"]),
        account_id=item.get("account_id"),
        seen=_seen(item),
        profile=_profile(item.get("profile")),
        **data,
    )


def record_of(item: dict[str, Any]) -> Timer | Activity | None:
    return timer_of(item) or activity_of(item)


# --- account flags: a usage drop, written once per rule, account and week --------------------------

KIND_ACCOUNT_FLAG = "account_flag"


def account_flag_item(flag: AccountFlag, retention_seconds: int) -> dict[str, Any]:
    return {
        "pk": f"account#{flag.account_id}",
        "sk": f"flag#{flag.task}#{flag.week}",
        "kind": KIND_ACCOUNT_FLAG,
        "account_id": flag.account_id,
        "task": flag.task,
        "week": flag.week,
        "actives_before": flag.actives_before,
        "actives_after": flag.actives_after,
        "rule": flag.rule.model_dump_json(exclude_none=True),
        "flagged_at": number(flag.flagged_at),
        "expires_at": math.ceil(flag.flagged_at + retention_seconds),
    }


def account_flag_of(item: dict[str, Any] | None) -> AccountFlag | None:
    if not item or item.get("kind") != KIND_ACCOUNT_FLAG:
        return None
    return AccountFlag(
        account_id=item["account_id"],
        task=item["task"],
        week=item["week"],
        actives_before=int(item["actives_before"]),
        actives_after=int(item["actives_after"]),
        rule=_stored(Rule, json.loads(item["rule"])),
        flagged_at=float(item["flagged_at"]),
    )


# --- a red flag a kind that keeps no timer writes as one item (Kind.subject_model, Kind.flag_ref) -------

KIND_FLAG = "flag"


def flag_key(group: str, ref: str) -> dict[str, str]:
    return {"pk": f"flags#{group}", "sk": ref}


def flag_item(kind: str, group: str, ref: str, subject: BaseModel, expires_at: int) -> dict[str, Any]:
    return flag_key(group, ref) | {
        "kind": KIND_FLAG,
        "flag_kind": kind,
        "subject": subject.model_dump_json(exclude_none=True),
        "expires_at": expires_at,
    }


def flag_of(item: dict[str, Any] | None) -> tuple[str, BaseModel] | None:
    """(the kind, its red flag) an item holds; None for any other item or a kind that writes none."""
    if not item or item.get("kind") != KIND_FLAG or "subject" not in item:
        return None
    kind = kinds.REGISTRY.get(str(item.get("flag_kind")))
    if kind is None or kind.subject_model is None:
        return None
    return kind.name, kind.subject_model.model_validate_json(item["subject"])


# --- per-user intervention state: deferred emails, the email log, escalations, suppression -----------

KIND_DEFERRED = "deferred"


def deferred_key(timer: Timer) -> dict[str, str]:
    return key_of(DeferredKey(user_id=timer.key.user_id, tag=fingerprint(timer.alert_id("user"))))


def deferred_item(timer: Timer, until: float, shards: int) -> dict[str, Any]:
    """An email kept for the end of quiet hours: due (and in the due index) at ``until``; TTL is its
    backstop like a timer's. It carries the red flag's timer, to compose the email when it goes."""
    key = deferred_key(timer)
    due = math.ceil(until)
    return key | {
        "kind": KIND_DEFERRED,
        "state": TimerState.OPEN.value,
        "version": 1,
        "due_at": due,
        "expires_at": due,
        "due_shard": zlib.crc32(f"{key['pk']}\x00{key['sk']}".encode()) % shards,
        "timer": timer.model_dump_json(exclude_none=True),
    }


def deferred_of(item: dict[str, Any] | None) -> Timer | None:
    if not item or item.get("kind") != KIND_DEFERRED or "timer" not in item:
        return None
    return Timer.model_validate_json(item["timer"])


def email_log_key(user_id: str) -> dict[str, str]:
    """The email log of releases before the per-user state record (erasure still deletes it)."""
    return {"pk": user_id, "sk": "emails"}


KIND_ALERTING = "alerting"


def user_state_key(user_id: str) -> dict[str, str]:
    return {"pk": user_id, "sk": KIND_ALERTING}


def user_state_item(state: UserState, keep_seconds: float) -> dict[str, Any]:
    """One user's alerting state (the email log behind the cap, the red flags behind escalation), as
    written with ``version`` already bumped; TTL forgets it ``keep_seconds`` after its latest entry."""
    e = state.escalation
    latest = max([t for _, t in state.emails.sent] + [at for _, at, _ in e.flags] + [e.escalated_at or 0.0])
    item: dict[str, Any] = user_state_key(state.user_id) | {
        "kind": KIND_ALERTING,
        "version": state.version + 1,
        "sent": json.dumps(state.emails.sent),
        "flags": json.dumps(e.flags),
        "expires_at": math.ceil(latest + keep_seconds),
    }
    if e.escalated_at is not None:
        item |= {"escalated_at": number(e.escalated_at), "escalated_by": e.escalated_by or ""}
    return item


def user_state_of(item: dict[str, Any]) -> UserState:
    user_id = str(item["pk"])
    escalation = Escalation(
        scope="user",
        subject_id=user_id,
        flags=tuple((str(f), float(t), str(w)) for f, t, w in json.loads(item.get("flags") or "[]")),
        escalated_at=float(item["escalated_at"]) if "escalated_at" in item else None,
        escalated_by=str(item["escalated_by"]) if item.get("escalated_by") else None,
    )
    sent = tuple((str(a), float(t)) for a, t in json.loads(item.get("sent") or "[]"))
    return UserState(user_id=user_id, emails=EmailLog(sent=sent), escalation=escalation, version=int(item["version"]))


def account_escalation_item(state: Escalation, keep_seconds: float) -> dict[str, Any]:
    latest = max([at for _, at, _ in state.flags] + [state.escalated_at or 0.0])
    return escalation_key("account", state.subject_id) | {
        "kind": "escalation",
        "state": state.model_dump_json(exclude={"version"}),
        "version": state.version + 1,
        "expires_at": math.ceil(latest + keep_seconds),
    }


def account_escalation_of(item: dict[str, Any]) -> Escalation:
    return Escalation.model_validate_json(item["state"]).model_copy(update={"version": int(item["version"])})


def escalation_key(scope: str, subject_id: str) -> dict[str, str]:
    return {"pk": f"esc#{scope}#{subject_id}", "sk": "escalation"}


def suppression_item_key(key: str) -> dict[str, str]:
    return {"pk": f"suppress#{key}", "sk": "suppress"}
