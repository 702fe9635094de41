"""restart: new workers without dropping a request (a graceful reload) or, hard, stop and start through
supervisor. How on the server: reload_live_release (runtime/switch.sh), restart_program
(runtime/supervisor.sh)."""

from __future__ import annotations

from tasks.shell import line
from tasks.steps.model import Requirement, Situation, Step, StepPlan
from tasks.steps.supervisor import Program


def plan(sit: Situation, hard: bool) -> StepPlan:
    first = line("restart_program") if hard else line("reload_live_release")
    how = "stop and start it through supervisor (a short gap)" if hard else "new workers, no request dropped"
    return StepPlan((first, line("ensure_running")), why=(f"restart {sit.layout.app}: {how}",))


DEPLOYED = Requirement(lambda sit: sit.facts.of(Program).state is None, "{app} is not deployed", "deploy")


def step(hard: bool = False) -> Step:
    """The restart: graceful, or hard through supervisor."""
    return Step("restart", "Restart the app.", lambda sit: plan(sit, hard), requires=(DEPLOYED,))
