"""The `status` task: a row a host, gathered as Fabric calls the task for each host, then printed once
after the last one (recap.at_end): a plain table for people, or one JSON document for scripts.

The row is made from the probe's facts (the health request through nginx included, no lock taken); a host
that could not be looked at is a row that says why. The task's docstring documents the keys of the JSON
document and the exit code.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from json import dumps

from fabric import Connection

from tasks import probe, recap
from tasks.cli import host_task
from tasks.facts import Lock
from tasks.probe import Found
from tasks.releases import ReleaseRow, listing
from tasks.remote import host_name
from tasks.steps.certificate import Certificate
from tasks.steps.postgresql import Postgresql
from tasks.steps.processes import Processes
from tasks.steps.provision import Packages
from tasks.steps.redis import Redis
from tasks.steps.schedule import Schedule
from tasks.steps.supervisor import Program

COLUMNS = ("HOST", "STATE", "RELEASE", "AGE", "BY", "APP", "UPTIME", "WORKERS", "NGINX", "SUPERVISOR",
           "SERVICES", "HEALTH", "FREE", "CERTIFICATE", "PROCESSES", "JOBS", "LOCK")  # fmt: skip


@host_task(help={"json": "print one JSON document instead: a list, an object a host (its keys: see above)"})
def status(c: Connection, json: bool = False) -> None:
    """One table for all hosts: release, app, nginx and supervisor, services, health check, free disk, lock.

    A row a host: the live release, its age and who deployed it; the app as supervisor has it (state,
    uptime, gunicorn's workers); its processes (app.processes: copies running/expected, uptime); nginx
    and supervisor (ActiveState/UnitFileState: running, at boot); the app's services (services.*: its
    PostgreSQL cluster, its Redis server, the same way); the health check through nginx as deploy's gate
    asks it (status, latency); the space free under /srv/APP; who holds the deploy lock, since when. A
    host that cannot be looked at is a row saying why. Read-only: it takes no lock.

    --json prints one JSON document on stdout instead (step and recap lines go to stderr): a list with an
    object a host, in the order given, with the keys host, reachable (false: no connection), healthy,
    error (why the host could not be looked at, else null), problems (why it is unhealthy: a list),
    release, release_time, release_age_seconds, deployed_by, app (RUNNING, STOPPED, ...), app_pid,
    app_uptime_seconds, workers, nginx and supervisor ({"active": ..., "enabled": ...} as systemd says
    them), services (the app's, by name: {"postgresql": {"active": ..., "enabled": ...}, "redis": ...};
    {} with none), health (the check's status: "200", "502", "no answer (...)"), health_ms, disk_free_bytes,
    certificate, processes (a list, an object a process: name, running, expected, uptime_seconds), jobs
    (the scheduled jobs: a list of {"name", "timer": "active/enabled", "next_run", "last_run",
    "last_result": "ok", "failed (exit 3)", "running" or null}, times as systemctl shows them) and lock
    ({"holder": "alice@laptop (deploy)", "since": TIME}, or null); null where a value is unknown.

    Exit code: 0 when every host is healthy (a live release, RUNNING under supervisor, every copy of its
    processes running, nginx and supervisor active, the health check passing); 1 when any is not, or
    could not be reached or probed.
    """
    host = host_name(c)
    if json:
        recap.to_stderr()
    before = len(recap.failures(host))
    found = probe.look(c, "status", health=True)
    if found is None:
        row = not_looked_at(host, recap.failures(host)[before:])
    else:
        row = of_host(host, found, datetime.now(UTC))
    add(row, as_json=json)


@dataclass(frozen=True)
class Service:
    """A systemd unit as systemd says it."""

    active: str  # ActiveState: "active", "inactive", "failed" ... ("" when systemd did not say)
    enabled: str  # UnitFileState: "enabled" (starts at boot), "disabled" ...


@dataclass(frozen=True)
class ProcessStatus:
    """One of the app's processes (app.processes) as the server runs it."""

    name: str
    running: int  # copies running
    expected: int  # copies its program runs (count)
    uptime_seconds: int | None  # the youngest running copy's (None: none runs)


def process_rows(found: Found) -> tuple[ProcessStatus, ...]:
    """The app's processes, by name: how many copies of each run, of how many, since when."""
    held = found.facts.of(Processes)
    rows = []
    for name, expected in sorted(held.programs.items()):
        uptimes = [copy.uptime for copy in held.running.get(name, ()) if copy.uptime is not None]
        rows.append(
            ProcessStatus(name, len(held.running.get(name, ())), expected, min(uptimes, default=None))
        )
    return tuple(rows)


@dataclass(frozen=True)
class JobStatus:
    """A scheduled job (app.schedule) as systemd says it."""

    name: str
    timer: str  # the timer's ActiveState/UnitFileState: "active/enabled" runs it on time, at boot too
    next_run: str | None  # as systemctl shows it, in the server's time zone: "Mon 2026-12-07 18:00:00 UTC"
    last_run: str | None  # when its last run started (by the timer or by hand); None: never
    last_result: str | None  # "running", "ok", "failed (exit 3)", "failed (timeout)"...; None: never ran


def job_rows(schedule: Schedule) -> tuple[JobStatus, ...]:
    """The app's scheduled jobs found on the server, by name."""
    found = []
    for name, job in sorted(schedule.jobs.items()):
        if job.service_active == "activating":
            result: str | None = "running"
        elif job.last_run is None:
            result = None
        elif job.result == "success":
            result = "ok"
        elif job.result == "exit-code":
            result = f"failed (exit {job.exit_status})"
        else:
            result = f"failed ({job.result or '?'})"
        timer = f"{job.timer_active or '?'}/{job.timer_enabled or '?'}"
        found.append(JobStatus(name, timer, job.next_run, job.last_run, result))
    return tuple(found)


@dataclass(frozen=True)
class HostStatus:
    """One host's row; its JSON object has these keys, in this order (None: null)."""

    host: str
    reachable: bool = True
    healthy: bool = False
    error: str | None = None  # why the host could not be looked at
    problems: tuple[str, ...] = ()  # why it is not healthy
    release: str | None = None
    release_time: str | None = None  # UTC, ISO 8601
    release_age_seconds: int | None = None
    deployed_by: str | None = None  # "alice@laptop"
    app: str | None = None  # supervisor's state of the app's program: RUNNING, STOPPED, FATAL ...
    app_pid: int | None = None
    app_uptime_seconds: int | None = None
    workers: int | None = None
    nginx: Service | None = None
    supervisor: Service | None = None
    services: dict[str, Service] = field(default_factory=dict)  # the app's services (services.*), by name
    health: str | None = None  # "200", "502", "no answer (...)"
    health_ms: int | None = None
    disk_free_bytes: int | None = None
    certificate: Certificate | None = None  # with https: its domains and expiry (not_after, UTC)
    processes: tuple[ProcessStatus, ...] | None = None  # the app's processes (app.processes), by name
    jobs: tuple[JobStatus, ...] | None = None  # the scheduled jobs (app.schedule) found
    lock: Lock | None = None

    @property
    def state(self) -> str:
        if not self.reachable:
            return "unreachable"
        if self.error is not None:
            return "failed"
        return "healthy" if self.healthy else "unhealthy"


def problems(found: Found) -> list[str]:
    """Why a host is not healthy: healthy is a live release, its program RUNNING under supervisor, nginx
    and supervisor active, and the health request through nginx passing, as the deploy's gate asks it."""
    facts, platform, paths = found.facts, found.platform, found.paths
    found_ = []
    if facts.link_name(paths.current) is None:
        found_.append("no live release (run fab deploy)")
    state = facts.of(Program).state
    if platform.packages.supervisor not in facts.of(Packages).installed:
        found_.append("supervisor is not installed (run fab deploy)")
    elif state is None:
        found_.append(f"{paths.app} is not a program of supervisor (run fab deploy)")
    elif state != "RUNNING":
        found_.append(f"the app is {state}")
    for process in process_rows(found):
        if process.running < process.expected:
            found_.append(f"process {process.name}: {process.running} of {process.expected} copies run")
    for unit in platform.units:
        if not facts.active(unit):
            state = facts.units.get(unit)
            found_.append(f"{unit} is {state.active if state and state.active else 'unknown'}")
    for name, unit in services(found).items():
        if unit.active != "active":
            found_.append(f"{name} is {unit.active or 'unknown'}")
    if not facts.healthy:
        found_.append(f"the health check through nginx failed: {facts.health or 'no answer'}")
    return found_


def services(found: Found) -> dict[str, Service]:
    """The app's services as systemd has them, those it uses only (the probe asks of those only):
    PostgreSQL's cluster (running) and the unit that starts it at boot; the app's Redis server."""
    facts, shown = found.facts, {}
    database, cache = facts.of(Postgresql), facts.of(Redis)
    if database.asked:
        states = list(database.clusters.values())
        active = "active" if database.running else (states[0] if states else "absent")
        shown["postgresql"] = Service(active, database.enabled)
    if cache.asked:
        shown["redis"] = Service(cache.active, cache.enabled)
    return shown


def seconds_since(time: str, now: datetime) -> int | None:
    """Whole seconds from an ISO 8601 time to `now` (0 for a time ahead of it); None for no time."""
    try:
        then = datetime.fromisoformat(time.replace("Z", "+00:00"))
        return max(0, int((now - then).total_seconds()))
    except (ValueError, TypeError):
        return None


def of_host(host: str, found: Found, now: datetime) -> HostStatus:
    """A looked-at host's row."""
    facts, platform, paths = found.facts, found.platform, found.paths
    live = next((r for r in listing(facts, paths) if r.current), None)
    program = facts.of(Program)
    held = facts.of(Certificate)
    why = problems(found)

    def service(unit: str) -> Service | None:
        state = facts.units.get(unit)
        return Service(state.active, state.enabled) if state else None

    return HostStatus(
        host, reachable=True, healthy=not why, problems=tuple(why),
        release=facts.link_name(paths.current),
        release_time=live.time if live else None,
        release_age_seconds=seconds_since(live.time, now) if live else None,
        deployed_by=deployer(live) if live else None,
        app=program.state, app_pid=program.pid, app_uptime_seconds=program.uptime, workers=program.workers,
        nginx=service(platform.nginx_unit), supervisor=service(platform.supervisor_unit),
        services=services(found), health=facts.health, health_ms=facts.health_ms,
        disk_free_bytes=facts.disk_free, certificate=held if held.path else None,
        processes=process_rows(found),
        jobs=job_rows(facts.of(Schedule)), lock=facts.lock,
    )  # fmt: skip


def deployer(release: ReleaseRow) -> str | None:
    """Who deployed a release: "alice@laptop" (user@control machine), as its record says."""
    return (f"{release.user}@{release.host}" if release.host else release.user) or None


def not_looked_at(host: str, failures: list[tuple[str, str]]) -> HostStatus:
    """The row of a host the probe found nothing on: why, from its failed steps (connect: unreachable)."""
    reachable = all(step != "connect" for step, _ in failures)
    return HostStatus(host, reachable=reachable, error="; ".join(m for _, m in failures) or "not looked at")


def age(seconds: int | None) -> str:
    """How old something is, as the table says it (the live release, the app's uptime): 45s, 12m, 5h07m,
    3d04h; - for none. Coarser than recap.duration, a run's time: "3.1 s"."""
    if seconds is None:
        return "-"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if days:
        return f"{days}d{hours % 24:02d}h"
    if hours:
        return f"{hours}h{minutes % 60:02d}m"
    return f"{minutes}m" if minutes else f"{seconds}s"


def size(count: int | None) -> str:
    """Bytes as df -h shows them: 812K, 8.1G; - for none."""
    if count is None:
        return "-"
    value, unit = float(count), "B"
    for larger in "KMGTP":
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{count}B" if unit == "B" else f"{value:.1f}{unit}"


def cells(row: HostStatus) -> list[str]:
    """A row's cells; a host that could not be looked at: its name, its state and why."""
    if row.error is not None:
        return [row.host, row.state, row.error]

    def service(unit: Service | None) -> str:
        return f"{unit.active or '?'}/{unit.enabled or '?'}" if unit else "-"

    health = "-" if row.health is None else row.health
    if row.health is not None and row.health_ms is not None:
        health = f"{row.health} {row.health_ms}ms"
    return [
        row.host, row.state, row.release or "-", age(row.release_age_seconds), row.deployed_by or "-",
        row.app or "-", age(row.app_uptime_seconds), "-" if row.workers is None else str(row.workers),
        service(row.nginx), service(row.supervisor),
        " ".join(f"{name}:{service(unit)}" for name, unit in row.services.items()) or "-", health,
        size(row.disk_free_bytes), certificate(row.certificate), processes(row.processes),
        scheduled(row.jobs or ()),
        f"{row.lock.holder} since {row.lock.since}".strip() if row.lock else "-",
    ]  # fmt: skip


def processes(rows: tuple[ProcessStatus, ...] | None) -> str:
    """worker 2/2 5m,mailer 0/1 -: each process's copies running of expected, and its uptime; - for none."""
    return ",".join(f"{p.name} {p.running}/{p.expected} {age(p.uptime_seconds)}" for p in rows or ()) or "-"


def certificate(held: Certificate | None) -> str:
    """example.org,www.example.org until 2027-03-01; - without https."""
    if held is None:
        return "-"
    return f"{','.join(held.domains) or '?'} until {held.not_after[:10] or '?'}"


def scheduled(found: tuple[JobStatus, ...]) -> str:
    """report: ok, next Mon 2026-12-07 18:00:00 UTC; cleanup: never run, next ...; - without jobs. A timer
    that does not run (or would not at boot) says so."""
    parts = []
    for job in found:
        timer = "" if job.timer == "active/enabled" else f", timer {job.timer}"
        parts.append(f"{job.name}: {job.last_result or 'never run'}{timer}, next {job.next_run or '-'}")
    return "; ".join(parts) or "-"


def table(rows: list[HostStatus]) -> str:
    """The rows under a header, columns aligned (two spaces apart); a short row's last cell runs on."""
    lines = [list(COLUMNS), *([recap.shown(cell) for cell in cells(row)] for row in rows)]
    widths = [
        max((len(line[i]) for line in lines if i < len(line) - 1), default=0) for i in range(len(COLUMNS))
    ]
    return "\n".join(
        "  ".join(
            [*(cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=False)), line[-1]]
        ).rstrip()
        for line in lines
    )


def document(rows: list[HostStatus]) -> str:
    """The rows as one line of JSON: a list of objects, one a host, in the order the hosts were given."""
    return dumps([asdict(row) for row in rows])


# The rows of this `fab` run, as the hosts' runs (at once: threads) ended; printed once, after the last
# host, in the order the hosts were given (recap.position).
_rows: list[HostStatus] = []
_as_json = False
_lock = threading.Lock()


def add(row: HostStatus, *, as_json: bool) -> None:
    """Keep a host's row for the end of the run; the health step goes to the recap (failed: unhealthy)."""
    global _as_json
    with _lock:
        _as_json = _as_json or as_json
        _rows.append(row)
    if row.error is None:
        recap.report(row.host, "health", "ok" if row.healthy else "failed", "; ".join(row.problems))
    recap.at_end(show)


def show() -> None:
    """Print the rows: one JSON document, or the table after a blank line (the step lines come first)."""
    with _lock:
        rows = sorted(_rows, key=lambda row: recap.position(row.host))
    if _as_json:
        print(recap.concealed(document(rows)), flush=True)
    elif rows:
        print(f"\n{table(rows)}", flush=True)
