"""schedule: the app's scheduled jobs (app.schedule), a systemd service and timer each.

Job NAME of app APP is the units APP-job.NAME.service and APP-job.NAME.timer (an app's name holds no dot,
so no app's units are another's). The service is a oneshot, as the app's user, in the live release (its
working directory is the `current` link, resolved when a run starts), whose main process is
app_command.py on the job's command file (JOBS_DIR/NAME.command, root's): the user's command never goes
into a unit file. A run still going is not started again (a oneshot's start waits on it), its output goes
to the journal. The timer runs it on `when` (OnCalendar=), Persistent (a run missed while the server was
off happens at boot), enabled and running. A job gone from the settings: its timer stopped and disabled,
its units and command file removed. systemd reloads, and timers restart, only when their files changed.

How it is done on the server: runtime/schedule.sh; what the server has: runtime/probe_schedule.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tasks import calendar, configs
from tasks.facts import PathState
from tasks.layout import Layout
from tasks.settings import Settings
from tasks.shell import line
from tasks.steps.model import Probe, Requirement, Situation, Step, StepPlan
from tasks.steps.processes import app_command_stale


@dataclass(frozen=True)
class JobState:
    """A job as the server has it: its timer's state (systemd's ActiveState, UnitFileState), its next
    and last run (its start, by the timer or by hand; as systemctl shows them: "Mon 2026-12-07 18:00:00
    UTC"), its service's state
    ("activating" while a run goes on) and its last run's result."""

    timer_active: str = ""
    timer_enabled: str = ""
    next_run: str | None = None
    last_run: str | None = None
    service_active: str = ""
    result: str = ""  # systemd's Result of the last run: "success", "exit-code", ...
    exit_status: int | None = None


@dataclass(frozen=True)
class Schedule:
    """schedule's facts (runtime/probe_schedule.py): the app's jobs found on the server (a unit or a
    command file of theirs), and the server's word on each `when` of the settings ("": taken)."""

    jobs: Mapping[str, JobState] = field(default_factory=dict)
    calendar: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Schedule:
        found = doc.get("schedule") or {}
        return cls(
            {name: JobState(**state) for name, state in (found.get("jobs") or {}).items()},
            dict(found.get("calendar") or {}),
        )


def unit_name(paths: Layout, job: str) -> str:
    """The job's units' name, without their suffix: APP-job.NAME."""
    return f"{paths.app}-job.{job}"


def unit_files(paths: Layout, job: str) -> tuple[str, str]:
    """The job's service and timer files."""
    base = f"{paths.systemd_unit_dir}/{unit_name(paths, job)}"
    return f"{base}.service", f"{base}.timer"


def command_file(paths: Layout, job: str) -> str:
    return f"{paths.jobs_dir}/{job}.command"


def service_unit(s: Settings, paths: Layout, job: str) -> str:
    return configs.render("job.service.j2", s, paths, job=job, command_file=command_file(paths, job))


def timer_unit(s: Settings, paths: Layout, job: str) -> str:
    return configs.render("job.timer.j2", s, paths, job=job, when=s.app.schedule[job].when)


def _hashed(s: Settings, paths: Layout) -> list[str]:
    if not s.app.schedule:
        return []
    jobs = [(*unit_files(paths, job), command_file(paths, job)) for job in s.app.schedule]
    return [paths.app_command, *(path for files in jobs for path in files)]


def plan(sit: Situation) -> StepPlan:
    s, facts, paths = sit.settings, sit.facts, sit.layout
    held = facts.of(Schedule)
    for name, job in s.app.schedule.items():
        if held.calendar.get(job.when):
            return StepPlan(blocked=(
                f"app.schedule: job {name!r}: the server's systemd refuses when {job.when!r} (systemd-analyze"
                f" calendar): write one it takes, like {calendar.EXAMPLES}"
            ))  # fmt: skip
    commands: list[str] = []
    files: dict[str, bytes] = {}
    writes: dict[str, str] = {}
    why: list[str] = []
    for name, job in s.app.schedule.items():
        service, timer = unit_files(paths, name)
        wanted = {
            command_file(paths, name): job.command + "\n",
            service: service_unit(s, paths, name),
            timer: timer_unit(s, paths, name),
        }
        differ = {path: text for path, text in wanted.items() if facts.sha256(path) != configs.sha256(text)}
        state = held.jobs.get(name, JobState())
        if name not in held.jobs:
            why.append(f"job {name}: new, runs on {job.when!r}")
        elif differ:
            what = {command_file(paths, name): "command", service: "service", timer: "timer (when)"}
            why.append(f"job {name}: its {', '.join(what[path] for path in differ)} changes")
        elif state.timer_enabled != "enabled" or state.timer_active != "active":
            why.append(f"job {name}: its timer is {state.timer_active or '?'}/{state.timer_enabled or '?'}:"
                       " enable and start it")  # fmt: skip
        else:
            continue
        writes.update(differ)
        sent = {
            f"files/schedule/{name}.command": job.command,  # a value: in the tar, never in the script
            f"files/schedule/{name}.service": wanted[service],
            f"files/schedule/{name}.timer": wanted[timer],
        }
        files.update({path: text.encode() for path, text in sent.items()})
        commands.append(line("schedule_job", name, *sent))
    for name in sorted(set(held.jobs) - set(s.app.schedule)):
        why.append(f"job {name}: no longer in app.schedule: stop and disable its timer, remove its units")
        commands.append(line("unschedule_job", name))
    setup = bool(s.app.schedule) and (
        app_command_stale(facts, paths)
        or facts.path(paths.jobs_dir) != PathState.dir("root", paths.app, "750")
    )
    if setup:
        why.append(f"{paths.jobs_dir} and {paths.app_command}: put in place")
    if not commands and not setup:
        return StepPlan()
    return StepPlan(
        (line("schedule_begin", int(bool(s.app.schedule))), *commands, line("schedule_end")), files,
        why=tuple(why), writes=writes,
    )  # fmt: skip


SCHEDULED_RELEASE = Requirement(
    lambda sit: bool(sit.settings.app.schedule) and sit.facts.link_name(sit.layout.current) is None,
    "no release on the server for the scheduled jobs to run in",
    "push",
)

STEP = Step(
    "schedule",
    "The app's scheduled jobs (app.schedule): a systemd timer and service each; removed ones go.",
    plan,
    requires=(SCHEDULED_RELEASE,),
    runtime=("schedule.sh",),
    probe=Probe(
        paths=lambda s, paths: [paths.jobs_dir],
        hashed=_hashed,
        shown=lambda s, paths: _hashed(s, paths)[1:],  # its units and command files, not app_command.py
        part="probe_schedule.py",
        asks=lambda s, paths, platform: {
            "unit_dir": paths.systemd_unit_dir,
            "prefix": f"{paths.app}-job.",
            "jobs_dir": paths.jobs_dir,
            "whens": sorted({job.when for job in s.app.schedule.values()}),
        },
        facts=Schedule,
    ),
)
