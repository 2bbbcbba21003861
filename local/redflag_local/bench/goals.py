"""What the bench measures against: the issues' goals, the table they are reported in, and the latency
model's two constants (shared by the run, ``redflag_local.bench.run``, its models, and the document it
writes, ``redflag_local.bench.doc``)."""

from __future__ import annotations

from dataclasses import dataclass

FULL_VCPU_MB = 1769  # Lambda: a function with 1,769 MB has the equivalent of one vCPU
DELAY = 0.005  # modelled server + network time per AWS call, seconds
BURST = 5000  # red flags at once, drained by the alerts function

WITHIN = 60.0  # 100,000 due timers flagged within this many seconds; and the burst drained within it too


@dataclass
class Goal:
    measure: str
    goal: str
    figure: str
    met: bool | None  # None: not measured in this run

    @property
    def verdict(self) -> str:
        return {True: "met", False: "NOT met", None: "not measured"}[self.met]


def goal_table(goals: list[Goal], markdown: bool = False) -> str:
    if markdown:
        lines = ["| measure | goal | measured | |", "|---|---|---|---|"]
        lines += [f"| {g.measure} | {g.goal} | {g.figure} | **{g.verdict}** |" for g in goals]
        return "\n".join(lines)
    w = max(len(g.measure) for g in goals)
    return "\n".join(f"{g.verdict:<12} {g.measure:<{w}}  {g.figure}" for g in goals)
