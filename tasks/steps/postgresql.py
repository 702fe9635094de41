"""postgresql: a role and a database named after the app in Debian's PostgreSQL (services.postgresql).

The role is the app's system user's name: Debian's pg_hba.conf lets a local user in over the Unix socket
as the role of its own name (peer authentication), so no password exists to keep or leak. The database is
the role's, and no other role may connect to it. Debian's cluster listens on localhost only. It runs
before push: a release command may migrate the database. How it is done: runtime/postgresql.sh.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tasks.platform import Platform
from tasks.shell import line
from tasks.steps.model import Probe, Requirement, Situation, Step, StepPlan
from tasks.steps.provision import installed


@dataclass(frozen=True)
class Role:
    """The app's role, as pg_authid has it."""

    login: bool
    superuser: bool
    password: bool  # one is set


@dataclass(frozen=True)
class Database:
    """The app's database, as pg_database has it."""

    owner: str
    public_connect: bool  # every role may connect (PostgreSQL's default for a new database)


@dataclass(frozen=True)
class Postgresql:
    """postgresql's facts (runtime/probe_postgresql.py), asked with services.postgresql only."""

    asked: bool = False
    enabled: str = ""  # the unit that starts the clusters at boot: its UnitFileState
    clusters: Mapping[str, str] = field(default_factory=dict)  # a cluster's unit -> its ActiveState
    answered: bool = False  # the server answered the superuser's query over its socket
    role: Role | None = None
    database: Database | None = None

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Postgresql:
        found = doc.get("postgresql")
        if found is None:
            return cls()
        role, database = found.get("role"), found.get("database")
        return cls(
            asked=True,
            enabled=found.get("enabled", ""),
            clusters=dict(found.get("clusters", {})),
            answered=found.get("answered", False),
            role=Role(**role) if role else None,
            database=Database(**database) if database else None,
        )

    @property
    def running(self) -> bool:
        return any(state == "active" for state in self.clusters.values())


INSTALLED = Requirement(
    lambda sit: sit.settings.services.postgresql and sit.platform.packages.postgresql not in installed(sit),
    "postgresql is not installed", "provision",
)  # fmt: skip


def database_url(app: str, platform: Platform) -> str:
    """The app's DATABASE_URL: its database, over the socket, as its own user. The socket's directory is
    named: a libpq built for another system (a wheel's) may look elsewhere by default."""
    return f"postgresql:///{app}?host={platform.postgresql_socket_dir}"


def problems(app: str, found: Postgresql) -> list[str]:
    """What differs from the wanted state, for people: [] when the role and database are as wanted."""
    if not found.clusters:
        return ["no PostgreSQL cluster on the server"]
    why = []
    if found.enabled != "enabled":
        why.append("PostgreSQL does not start at boot: enable it")
    if not found.running:
        why.append("PostgreSQL is not running: start it")
    elif not found.answered:
        why.append("PostgreSQL does not answer on its socket")
    else:
        role, database = found.role, found.database
        if role is None:
            why.append(f"role {app}: create it (login, no password)")
        elif not role.login or role.superuser or role.password:
            why.append(f"role {app}: login only, no superuser, no password")
        if database is None:
            why.append(f"database {app}: create it, owned by {app}")
        elif database.owner != app or database.public_connect:
            why.append(f"database {app}: owned by {app}, no other role may connect")
    return why


def plan(sit: Situation) -> StepPlan:
    if not sit.settings.services.postgresql:
        return StepPlan()
    found = sit.facts.of(Postgresql)
    if sit.platform.packages.postgresql in installed(sit) and not problems(sit.layout.app, found):
        return StepPlan()
    why = problems(sit.layout.app, found) if found.clusters else [f"role and database {sit.layout.app}"]
    return StepPlan((line("ensure_database"),), why=tuple(why))


STEP = Step(
    "postgresql",
    "services.postgresql: a role and a database named after the app (peer authentication, no password).",
    plan,
    requires=(INSTALLED,),
    runtime=("postgresql.sh",),
    values=lambda s, paths, platform: {
        "POSTGRESQL_UNIT": platform.postgresql_unit,
        "POSTGRESQL_USER": platform.postgresql_user,
    },
    probe=Probe(
        part="probe_postgresql.py",
        asks=lambda s, paths, platform: (
            {
                "conf_dir": platform.postgresql_conf_dir,
                "unit": platform.postgresql_unit,
                "cluster_unit": platform.postgresql_cluster_unit,
                "user": platform.postgresql_user,
                "app": paths.app,
            }
            if s.services.postgresql
            else {}
        ),
        facts=Postgresql,
    ),
)
