"""processes: the app's own processes (app.processes, or its Procfile) as supervisor programs, a program
APP.NAME each, `count` copies, running the web's release.

Its commands run after the health gate (`after_gate`): once the web serves the new release, the
processes stop gracefully and start on it; one that does not stay up fails the run, which switches web
and processes back. A changed command or count restarts that program only, never the web. How on the
server: runtime/processes.sh (rollback and a switch back move the processes too: switch.sh).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tasks import configs, runtime
from tasks.facts import Facts
from tasks.layout import Layout
from tasks.settings import Settings
from tasks.shell import line
from tasks.steps.model import Probe, Situation, Step, StepPlan
from tasks.steps.provision import SUPERVISOR
from tasks.steps.supervisor import RELEASED


@dataclass(frozen=True)
class Copy:
    """One running copy of a process (supervisor's process APP.NAME-N)."""

    process: str  # "flaskdemo.worker-0"
    pid: int
    cwd: str  # the release it runs in
    uptime: int | None = None  # seconds


@dataclass(frozen=True)
class Processes:
    """The processes step's facts (runtime/probe_processes.py): the programs the server has for the app
    (process name -> the copies its file runs), and the copies of each that run."""

    programs: Mapping[str, int] = field(default_factory=dict)
    running: Mapping[str, tuple[Copy, ...]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Processes:
        found = doc.get("processes") or {}
        return cls(
            dict(found.get("programs") or {}),
            {
                name: tuple(Copy(c["process"], c["pid"], c["cwd"], c.get("uptime")) for c in copies)
                for name, copies in (found.get("running") or {}).items()
            },
        )


def app_command_stale(facts: Facts, paths: Layout) -> bool:
    """Whether the server's app_command.py (the main process of the processes and the scheduled jobs)
    differs from this version's."""
    return facts.sha256(paths.app_command) != configs.sha256(runtime.source("app_command.py"))


def command_text(s: Settings, name: str) -> str:
    """A process's command file, as write_command (units.sh) writes it."""
    return s.app.processes[name].command + "\n"


def hashed(s: Settings, paths: Layout) -> list[str]:
    """The kit's files of the processes whose content the step compares."""
    files = [paths.app_command] if s.app.processes else []
    for name in s.app.processes:
        files += [paths.process_conf(name), paths.process_command(name)]
    return files


def plan(sit: Situation) -> StepPlan:
    s, facts, paths = sit.settings, sit.facts, sit.layout
    held = facts.of(Processes)
    wanted = s.app.processes
    removed = sorted(set(held.programs) - set(wanted))
    switching = next((p.switches_to for p in sit.earlier if p.acts and p.switches_to), None)
    live = switching or facts.link_name(paths.current)
    release = f"{paths.releases_dir}/{live}"
    why: list[str] = []
    if wanted and app_command_stale(facts, paths):
        why.append(f"{paths.app_command}: the kit's own, as this version has it")
    files: dict[str, bytes] = {}
    writes: dict[str, str] = {}
    for name, process in wanted.items():
        program = configs.process_program(s, paths, name)
        files[f"processes/{name}.conf"] = program.encode()
        files[f"processes/{name}.command"] = command_text(s, name).encode()
        writes[paths.process_conf(name)] = program
        copies = held.running.get(name, ())
        if name not in held.programs:
            why.append(f"{name}: a new process, {process.count} running `{process.command}`")
        elif facts.sha256(paths.process_command(name)) != configs.sha256(command_text(s, name)):
            why.append(f"{name}: its command changes to `{process.command}`: restart it (not the web)")
        elif facts.sha256(paths.process_conf(name)) != configs.sha256(program):
            why.append(f"{name}: its program changes ({process.count} copies): restart it (not the web)")
        elif len(copies) != process.count:
            why.append(f"{name}: {len(copies)} of {process.count} copies run: start it")
        elif switching:
            why.append(f"{name}: moves to release {live} once the web passed the health gate")
        elif any(copy.cwd != release for copy in copies):
            why.append(f"{name}: runs another release than the web's ({live}): restart it there")
    why += [f"{name}: gone from app.processes: stop it, remove its program" for name in removed]
    if not why:
        return StepPlan()
    commands = []
    if removed:
        commands.append(line("remove_processes", *removed))
    if wanted:
        commands.append(line("update_processes", *wanted))
    commands.append(line("keep_processes"))  # with the live release, for a rollback to bring back
    return StepPlan(tuple(commands), files, why=tuple(why), writes=writes)


STEP = Step(
    "processes",
    "The app's processes (app.processes, or its Procfile) under supervisor, on the web's release.",
    plan,
    requires=(SUPERVISOR, RELEASED),
    runtime=("processes.sh",),
    probe=Probe(
        hashed=hashed,
        part="probe_processes.py",
        asks=lambda s, paths, platform: {
            "pidfile": platform.supervisord_pidfile,
            "user": paths.app,
            "conf_dir": paths.supervisor_conf_dir,
            "conf_prefix": f"{paths.app}.process-",
            "program_prefix": f"{paths.app}.",
        },
        facts=Processes,
    ),
    after_gate=True,
)
