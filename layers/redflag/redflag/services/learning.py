"""What the stream teaches: each stored change folded into per-task counts, duration distributions and
account activity. Pure Python; ``redflag.adapters.stats_table`` persists a fold once per stream window.

Per (task, segment), and per task across segments (segment ``baselines.ALL``): runs started and
completed, the duration distribution of completions, red flags by reason, and flagged runs that
were completed afterwards (and how long after the flag), split by the rule's holdout (``emailed``:
users the email goes to, ``holdout``: users held out of it), so the two completion rates compare.
Users without a segment count only in ALL.
Per account: which users were active on which day; per account and ISO week: runs started, runs with a
failure and red flags (what the health score reads).
Per rule and arm, for retention: the flagged users who belong to an account (``cohort``: the first red
flag of a user on a rule in a window), so that their activity in the weeks after can be counted
(``redflag.adapters.stats_table``, "retention").
What each kind counts beyond that (``Kind.tallies``): a funnel's steps, each in a row of its own; and,
for rate rules, per-minute buckets of runs started, abandoned, failed and converted, by the minute each
run started in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redflag import kinds
from redflag.core.activity import Activity
from redflag.core.baselines import ALL, Histogram
from redflag.core.interventions import in_holdout
from redflag.core.timers import FlagReason, Timer, TimerState
from redflag.core.weeks import day_of, week_of
from redflag.kinds.base import Kind, Tally
from redflag.services.changes import ActivityChanged, Change, TimerChanged

# red flags are counted by reason, one counter each reason a kind that keeps a timer raises
FLAG_COUNTERS = tuple(f"flag_{r.value}" for k in kinds.REGISTRY.values() if k.takes for r in k.reasons)
COUNTERS = (
    "started", "completed", *FLAG_COUNTERS, "done_after_flag",
    "flagged_emailed", "flagged_holdout", "done_after_flag_emailed", "done_after_flag_holdout", "failed", "skipped",
)  # fmt: skip
BUCKET_COUNTERS = ("started", "abandoned", "failed", "converted")  # a rate bucket's (Tally.at)


def _kind(timer: Timer) -> Kind[Any]:
    return kinds.get(timer.kind)


def _arm(timer: Timer) -> str | None:
    """Which side of the rule's holdout a flagged run's user is on; None when the rule emails nobody."""
    rule = timer.rule
    if rule is None or "user" not in rule.notify:
        return None
    return "holdout" if in_holdout(timer.key.user_id, rule.holdout_percent) else "emailed"


@dataclass
class TaskStats:
    counts: dict[str, int] = field(default_factory=dict)
    histogram: Histogram = field(default_factory=Histogram)
    after_flag_seconds: float = 0.0

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def merge(self, other: TaskStats) -> None:
        for name, n in other.counts.items():
            self.add(name, n)
        self.histogram.merge(other.histogram)
        self.after_flag_seconds += other.after_flag_seconds


@dataclass(frozen=True)
class Active:
    """One user active on one day, in one account."""

    account_id: str
    user_id: str
    day: str
    at: float


@dataclass(frozen=True)
class Flagged:
    """A user's red flag on a rule, for retention: when, and on which side of the rule's holdout."""

    at: float
    arm: str  # emailed, holdout


@dataclass
class Fold:
    tasks: dict[tuple[str, str], TaskStats] = field(default_factory=dict)
    active: dict[tuple[str, str, str], Active] = field(default_factory=dict)  # (account, user, day)
    account_flags: dict[str, int] = field(default_factory=dict)  # account -> red flags of its users
    buckets: dict[tuple[str, int], dict[str, int]] = field(default_factory=dict)  # (name, epoch minute) -> counts
    weeks: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)  # (week, account) -> counts
    cohort: dict[tuple[str, str, str], Flagged] = field(default_factory=dict)  # (account, user, task)

    def task(self, timer: Timer, name: str | None = None) -> list[TaskStats]:
        task = name or timer.key.task
        keys = [(task, ALL)] + ([(task, timer.user.segment)] if timer.user.segment else [])
        return [self.tasks.setdefault(k, TaskStats()) for k in keys]

    def _tally(self, timer: Timer, t: Tally) -> None:
        if t.at is None:
            for s in self.task(timer, t.name):
                s.add(t.counter)
                if t.seconds is not None:
                    s.histogram.add(t.seconds)
            return
        bucket = self.buckets.setdefault((t.name, int(t.at // 60)), {})
        bucket[t.counter] = bucket.get(t.counter, 0) + 1
        if t.account and timer.user.account_id:
            self._week(week_of(t.at), timer.user.account_id, t.counter)

    def _week(self, week: str, account: str, counter: str) -> None:
        counts = self.weeks.setdefault((week, account), {})
        counts[counter] = counts.get(counter, 0) + 1

    def add(self, change: str, by_ttl: bool, old: Timer | Activity | None, new: Timer | Activity | None) -> None:
        """Fold one stored change (INSERT, MODIFY or REMOVE) of a timer or activity record."""
        if isinstance(new, Activity):
            more = not isinstance(old, Activity) or new.active_events > old.active_events
            if more and new.account_id and new.last_active_at is not None:
                self._active(new.account_id, new.key.user_id, new.last_active_at)
            return
        if not (isinstance(old, Timer) or isinstance(new, Timer)):
            return
        old_t = old if isinstance(old, Timer) else None
        new_t = new if isinstance(new, Timer) else None
        timer = new_t or old_t
        assert timer is not None
        for t in _kind(timer).tallies(change, by_ttl, old_t, new_t):
            self._tally(timer, t)
        if (  # an arm of a kind that counts activity is the user being active
            new_t is not None
            and new_t.state is TimerState.OPEN
            and _kind(new_t).counts_activity
            and new_t.user.account_id
            and new_t.started_at is not None
        ):
            self._active(new_t.user.account_id, new_t.key.user_id, new_t.started_at)
        if change == "REMOVE":
            if by_ttl and old_t is not None and old_t.state is TimerState.OPEN:  # TTL's red flag
                self._flagged(old_t, old_t.due_reason)
            return
        assert new_t is not None
        was = old_t.state if old_t is not None else None
        if new_t.state is TimerState.OPEN and was is not TimerState.OPEN and _kind(new_t).counts_runs:
            for s in self.task(new_t):
                s.add("started")
        if new_t.state is TimerState.FLAGGED and was is TimerState.OPEN:
            self._flagged(new_t, new_t.flag_reason or FlagReason.TIME)
        if (
            new_t.state is TimerState.COMPLETED
            and was in (TimerState.OPEN, TimerState.FLAGGED)
            and new_t.duration_seconds is not None
        ):
            for s in self.task(new_t):
                s.add("completed")
                s.histogram.add(new_t.duration_seconds)
                if was is TimerState.FLAGGED:
                    s.add("done_after_flag")
                    s.after_flag_seconds += new_t.completed_after_flag_seconds or 0.0
                    if arm := _arm(new_t):
                        s.add(f"done_after_flag_{arm}")

    def add_change(self, change: Change) -> None:
        """Fold one decoded stream change (``redflag.adapters.stream``)."""
        if isinstance(change, TimerChanged):
            self.add(change.event, change.by_ttl, change.old, change.new)
        elif isinstance(change, ActivityChanged):
            self.add(change.event, False, change.old, change.new)

    def _flagged(self, timer: Timer, reason: FlagReason) -> None:
        arm = _arm(timer)
        for s in self.task(timer):
            s.add(f"flag_{reason.value}")
            if arm:
                s.add(f"flagged_{arm}")
        if timer.user.account_id:
            self.account_flags[timer.user.account_id] = self.account_flags.get(timer.user.account_id, 0) + 1
            at = timer.flagged_at or timer.due_at or timer.started_at
            if at is not None:
                self._week(week_of(at), timer.user.account_id, "flags")
            if arm and at is not None:  # retention counts users whose activity is counted: an account's
                self.cohort.setdefault((timer.user.account_id, timer.key.user_id, timer.key.task), Flagged(at, arm))

    def _active(self, account: str, user: str, at: float) -> None:
        day = day_of(at)
        self.active.setdefault((account, user, day), Active(account, user, day, at))

    def merge(self, other: Fold) -> None:
        for key, stats in other.tasks.items():
            self.tasks.setdefault(key, TaskStats()).merge(stats)
        for day_key, active in other.active.items():
            self.active.setdefault(day_key, active)
        for account, n in other.account_flags.items():
            self.account_flags[account] = self.account_flags.get(account, 0) + n
        for bucket, counts in other.buckets.items():
            _add_counts(self.buckets.setdefault(bucket, {}), counts)
        for week, counts in other.weeks.items():
            _add_counts(self.weeks.setdefault(week, {}), counts)
        for cohort_key, flagged in other.cohort.items():
            self.cohort.setdefault(cohort_key, flagged)

    # --- a tumbling window's state (JSON, under 1 MB) -------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "tasks": [
                [
                    task,
                    seg,
                    s.counts,
                    {str(b): c for b, c in s.histogram.counts.items()},
                    s.histogram.total_seconds,
                    s.after_flag_seconds,
                ]
                for (task, seg), s in self.tasks.items()
            ],
            "active": [[a.account_id, a.user_id, a.day, a.at] for a in self.active.values()],
            "account_flags": self.account_flags,
            "buckets": [[name, minute, counts] for (name, minute), counts in self.buckets.items()],
            "weeks": [[week, account, counts] for (week, account), counts in self.weeks.items()],
            "cohort": [[*k, f.at, f.arm] for k, f in self.cohort.items()],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> Fold:
        fold = cls()
        for task, seg, counts, buckets, total, after in (state or {}).get("tasks", []):
            hist = Histogram({int(b): int(c) for b, c in buckets.items()}, float(total))
            fold.tasks[(task, seg)] = TaskStats(dict(counts), hist, float(after))
        for account, user, day, at in (state or {}).get("active", []):
            fold.active[(account, user, day)] = Active(account, user, day, float(at))
        fold.account_flags = dict((state or {}).get("account_flags", {}))
        for name, minute, counts in (state or {}).get("buckets", []):
            fold.buckets[(name, int(minute))] = dict(counts)
        for week, account, counts in (state or {}).get("weeks", []):
            fold.weeks[(week, account)] = dict(counts)
        for account, user, task, at, arm in (state or {}).get("cohort", []):
            fold.cohort[(account, user, task)] = Flagged(float(at), arm)
        return fold


def _add_counts(into: dict[str, int], counts: dict[str, int]) -> None:
    for name, n in counts.items():
        into[name] = into.get(name, 0) + n
