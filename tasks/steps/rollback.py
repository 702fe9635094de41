"""rollback: `current` back to the previous release (or a given one), with the configs it was deployed
with; SSH is all it needs. How on the server: roll_back_to in runtime/switch.sh."""

from __future__ import annotations

from tasks.shell import line
from tasks.steps.model import Requirement, Situation, Step, StepPlan
from tasks.steps.push import Releases

DEPLOYED = Requirement(
    lambda sit: sit.facts.link_name(sit.layout.current) is None, "no release on the server", "deploy"
)


def plan(sit: Situation, to: str) -> StepPlan:
    facts, paths = sit.facts, sit.layout
    held = facts.of(Releases)  # push's facts
    target = to or facts.link_name(paths.previous)
    if not target:
        return StepPlan(blocked="no previous release to roll back to (see `fab releases`, --to=ID)")
    if target not in held.ids:
        return StepPlan(blocked=f"no release {target} on the server (see `fab releases`)")
    if target == facts.link_name(paths.current):
        return StepPlan()
    venv = held.venv_of(target)
    if venv not in held.venvs:
        return StepPlan(blocked=f"release {target} cannot run: its venv {venv} is gone; deploy instead")
    live = facts.link_name(paths.current)
    how = "a graceful reload" if venv == held.venv_of(live or "") else "a restart (another venv)"
    why = (f"current -> {target} (from {live}), with the configs it was deployed with; {how}",)
    return StepPlan((line("roll_back_to", target),), why=why, switches_to=target)


def step(to: str = "") -> Step:
    """The rollback, to release `to` (default: the previous one)."""
    return Step(
        "rollback",
        "Back to the previous release (or --to=ID).",
        lambda sit: plan(sit, to),
        requires=(DEPLOYED,),
    )
