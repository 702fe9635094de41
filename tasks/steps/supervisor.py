"""supervisor_update: the app's supervisor program and gunicorn config; a restart only when they changed.

How it is done on the server: runtime/supervisor.sh.
"""

from __future__ import annotations

from tasks import configs
from tasks.shell import line
from tasks.steps.model import Requirement, Situation, Step, StepPlan
from tasks.steps.provision import SUPERVISOR

RELEASED = Requirement(
    lambda sit: sit.facts.link_name(sit.layout.current) is None, "no release on the server", "push"
)


def plan(sit: Situation) -> StepPlan:
    s, facts, paths = sit.settings, sit.facts, sit.layout
    program = configs.supervisor_program(s, paths)
    gunicorn = configs.gunicorn_conf(s, paths, facts.cpus)
    if (
        facts.sha256(paths.supervisor_conf) == configs.sha256(program)
        and facts.sha256(paths.gunicorn_conf) == configs.sha256(gunicorn)
        and facts.active(sit.platform.supervisor_unit)
        and facts.program_state == "RUNNING"
    ):
        return StepPlan()
    files = {"files/gunicorn.conf.py": gunicorn.encode(), "files/supervisor.conf": program.encode()}
    same = facts.sha256(paths.supervisor_conf) == configs.sha256(program) and facts.sha256(
        paths.gunicorn_conf
    ) == configs.sha256(gunicorn)
    if not same:
        why = f"{paths.app}'s program or gunicorn config changes: restart {paths.app}"
    elif not facts.active(sit.platform.supervisor_unit):
        why = "supervisor is not running: start it, and the app with it"
    else:
        why = f"{paths.app} is {facts.program_state or 'not a program of supervisor'}: start it"
    writes = {paths.supervisor_conf: program, paths.gunicorn_conf: gunicorn}
    return StepPlan((line("supervisor_update", *files),), files, why=(why,), writes=writes)


STEP = Step(
    "supervisor_update",
    "Render the supervisor program and gunicorn config, supervisorctl update; restart only on change.",
    plan,
    requires=(SUPERVISOR, RELEASED),
    runtime=("supervisor.sh",),
)
