"""supervisor_update: the app's supervisor program and gunicorn config; a restart only when they changed.

How it is done on the server: runtime/supervisor.sh.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tasks import configs
from tasks.shell import line
from tasks.steps.model import Probe, Requirement, Situation, Step, StepPlan
from tasks.steps.provision import SUPERVISOR


@dataclass(frozen=True)
class Program:
    """supervisor_update's facts (runtime/probe_program.py): supervisor's view of the app's program."""

    state: str | None = None  # RUNNING, STARTING, STOPPED, FATAL ...; None: supervisor has no such program
    pid: int | None = None  # or does not run
    description: str = ""  # "pid 427, uptime 0:01:02"
    uptime: int | None = None  # seconds since it started, while it runs
    workers: int | None = None  # its process's children (gunicorn's workers), while it runs

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Program:
        found = doc.get("program")
        if not found:
            return cls()
        return cls(
            found["state"],
            found.get("pid") or None,
            found.get("description", ""),
            found.get("uptime"),
            found.get("workers"),
        )


RELEASED = Requirement(
    lambda sit: sit.facts.link_name(sit.layout.current) is None, "no release on the server", "push"
)


def plan(sit: Situation) -> StepPlan:
    s, facts, paths = sit.settings, sit.facts, sit.layout
    state = facts.of(Program).state
    program = configs.supervisor_program(s, paths)
    gunicorn = configs.gunicorn_conf(s, paths, facts.cpus)
    if (
        facts.sha256(paths.supervisor_conf) == configs.sha256(program)
        and facts.sha256(paths.gunicorn_conf) == configs.sha256(gunicorn)
        and facts.active(sit.platform.supervisor_unit)
        and state == "RUNNING"
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
        why = f"{paths.app} is {state or 'not a program of supervisor'}: start it"
    writes = {paths.supervisor_conf: program, paths.gunicorn_conf: gunicorn}
    return StepPlan((line("supervisor_update", *files),), files, why=(why,), writes=writes)


STEP = Step(
    "supervisor_update",
    "Render the supervisor program and gunicorn config, supervisorctl update; restart only on change.",
    plan,
    requires=(SUPERVISOR, RELEASED),
    runtime=("supervisor.sh",),
    probe=Probe(
        paths=lambda s, paths: (paths.supervisor_conf, paths.gunicorn_conf),
        hashed=lambda s, paths: (paths.supervisor_conf, paths.gunicorn_conf),
        part="probe_program.py",
        asks=lambda s, paths, platform: {"socket": platform.supervisor_socket, "name": paths.app},
        facts=Program,
    ),
)
