"""restart: new workers without dropping a request (a graceful reload) or, hard, stop and start through
supervisor; the app's processes (app.processes) stopped gracefully and started again, or one of them
alone (--process NAME). How on the server: reload_live_release (runtime/switch.sh), restart_program
(runtime/supervisor.sh), restart_app_processes (runtime/processes.sh)."""

from __future__ import annotations

from tasks.shell import line
from tasks.steps.model import Requirement, Situation, Step, StepPlan
from tasks.steps.processes import Processes
from tasks.steps.supervisor import Program


def plan(sit: Situation, hard: bool, process: str = "") -> StepPlan:
    app = sit.layout.app
    if process:
        known = sorted(sit.facts.of(Processes).programs)
        if process not in known:
            listed = ", ".join(known) or "none"
            return StepPlan(
                blocked=f"{app} has no process {process!r} on the server (its processes: {listed})"
            )
        why = f"restart {app}'s process {process}: SIGTERM, app.stop_timeout to finish, then started again"
        return StepPlan((line("restart_app_processes", process),), why=(why,))
    first = line("restart_program") if hard else line("reload_live_release")
    how = "stop and start it through supervisor (a short gap)" if hard else "new workers, no request dropped"
    why = [f"restart {app}: {how}"]
    commands = [first, line("ensure_running")]
    if sit.facts.of(Processes).programs:
        why.append(f"and its processes: {', '.join(sorted(sit.facts.of(Processes).programs))}")
        commands.append(line("restart_app_processes"))
    return StepPlan(tuple(commands), why=tuple(why))


DEPLOYED = Requirement(lambda sit: sit.facts.of(Program).state is None, "{app} is not deployed", "deploy")


def step(hard: bool = False, process: str = "") -> Step:
    """The restart: graceful, or hard through supervisor; or one of the app's processes alone."""
    return Step("restart", "Restart the app.", lambda sit: plan(sit, hard, process), requires=(DEPLOYED,))
