"""What the probe found on a server, as typed data (see runtime/probe.py for how it is found).

Read-only answers and the questions steps ask of them; tests build Facts directly, as objects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PathState:
    """What is at a path: absent, a file (its sha256), a directory (owner, group, mode) or a link."""

    kind: str  # "absent", "file", "dir", "link" or "other"
    sha256: str | None = None
    target: str | None = None
    owner: str | None = None
    group: str | None = None
    mode: str | None = None  # octal, as `stat -c %a` prints it: "755"

    @classmethod
    def file(cls, sha256: str) -> PathState:
        return cls("file", sha256=sha256)

    @classmethod
    def dir(cls, owner: str, group: str, mode: str) -> PathState:
        return cls("dir", owner=owner, group=group, mode=mode)

    @classmethod
    def link(cls, target: str) -> PathState:
        return cls("link", target=target)


ABSENT = PathState("absent")


@dataclass(frozen=True)
class ReleaseDir:
    """A release's directory as the probe found it (releases/<id>): its venv, its record, why it failed.
    What `fab releases` shows of it is a ReleaseRow (tasks/releases.py)."""

    id: str
    venv: str  # the id of the venv it runs on ("" when its link is missing)
    record: Mapping[str, Any] = field(default_factory=dict)  # its release.json: time, user, host, venv...
    failed: str = ""  # why it failed its deploy ("" if it did not)


@dataclass(frozen=True)
class Program:
    """Supervisor's view of the app's program."""

    state: str  # RUNNING, STARTING, STOPPED, FATAL ...
    pid: int | None
    description: str = ""  # "pid 427, uptime 0:01:02"
    uptime: int | None = None  # seconds since it started, while it runs
    workers: int | None = None  # its process's children (gunicorn's workers), while it runs


@dataclass(frozen=True)
class User:
    """The app's user as the server has it."""

    home: str
    shell: str
    comment: str = ""


@dataclass(frozen=True)
class Listener:
    """A process of another user than the app's listening on the app's port."""

    pid: int
    user: str
    command: str


@dataclass(frozen=True)
class Unit:
    active: str  # systemd's ActiveState: "active", "inactive", "failed" ...
    enabled: str  # its UnitFileState: "enabled", "disabled" ...


@dataclass(frozen=True)
class Lock:
    """The app's deploy lock, held by a run whose connection still lives (runtime/lock.sh)."""

    holder: str  # "alice@laptop (deploy)"
    since: str  # UTC, ISO 8601 ("" when its record does not say)


@dataclass(frozen=True)
class Certificate:
    """The certificate the app's site serves (https): its names, when it expires, its ACME directory."""

    path: str
    domains: tuple[str, ...] = ()
    not_after: str = ""  # UTC, ISO 8601
    server: str = ""  # the ACME directory certbot renews it from ("" for files of the user's)


@dataclass(frozen=True)
class Facts:
    platform: str | None = None  # the platform table's entry for this server (tasks/platform.py)
    system: str = ""  # os-release's PRETTY_NAME
    python: str = ""  # the full version of the server's python3: "3.11.2"
    machine: str = ""  # "x86_64"
    glibc: str = ""  # "2.36"
    cpus: int = 1
    installed: frozenset[str] = frozenset()  # of the packages the kit needs
    package_lists_age: int | None = None  # seconds since the package lists were updated; None: none
    app_user: User | None = None  # None when there is no such user
    listeners: tuple[Listener, ...] = ()  # of other users, on the app's port
    paths: Mapping[str, PathState] = field(default_factory=dict)
    releases: tuple[ReleaseDir, ...] = ()  # oldest first
    fingerprint: str = ""  # what shaped the live release (see steps/push.py); "" when unknown
    venvs: frozenset[str] = frozenset()  # complete venvs
    venv_dirs: frozenset[str] = frozenset()  # every directory under venvs/, complete or not
    wheels: frozenset[str] = frozenset()  # the wheels the server keeps (wheels/), by file name
    tools: frozenset[str] = frozenset()  # the kit's tools there (tools/): "uv-0.13.8"
    # Asked by a check run only: the config files' text (None: absent), the live release's files (path ->
    # sha256; None: it keeps no list) and its app.env as digests salted with `salt` (None: no env file).
    configs: Mapping[str, str | None] = field(default_factory=dict)
    release_files: Mapping[str, str] | None = None
    env_digests: Mapping[str, str] | None = None
    env_salt: str = ""
    program: Program | None = None  # None when supervisor has no such program or does not run
    units: Mapping[str, Unit] = field(default_factory=dict)
    nginx_stale: bool = False  # a file under nginx's config changed after nginx last loaded it
    health: str | None = None  # the health request's status ("200", "302", "no answer (...)") when asked for
    healthy: bool = False  # the health request passed its rule (runtime/health.py)
    health_ms: int | None = None  # how long the health request's last try took
    disk_free: int | None = None  # bytes free under the app's base directory (df's "available")
    lock: Lock | None = None  # None when no run holds the app's deploy lock
    certificate: Certificate | None = None  # with https: the certificate the site serves, when present

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Facts:
        """Facts from the probe's JSON document (the merged lines of its output)."""
        program = doc.get("program")
        return cls(
            platform=doc.get("platform"),
            system=doc.get("system", ""),
            python=doc.get("python", ""),
            machine=doc.get("machine", ""),
            glibc=doc.get("glibc", ""),
            cpus=int(doc.get("cpus") or 1),
            installed=frozenset(doc.get("installed", ())),
            package_lists_age=doc.get("package_lists_age"),
            app_user=User(**doc["app_user"]) if doc.get("app_user") else None,
            listeners=tuple(Listener(**listener) for listener in doc.get("listeners", ())),
            paths={path: PathState(**state) for path, state in doc.get("paths", {}).items()},
            releases=tuple(
                ReleaseDir(
                    r["id"],
                    target_name(r.get("venv")) or "",
                    release_record(r.get("record")),
                    r.get("failed", ""),
                )
                for r in sorted(doc.get("releases", ()), key=lambda r: r["id"])
            ),
            fingerprint=doc.get("fingerprint", ""),
            venvs=frozenset(doc.get("venvs", ())),
            venv_dirs=frozenset(doc.get("venv_dirs", ())),
            wheels=frozenset(doc.get("wheels", ())),
            tools=frozenset(doc.get("tools", ())),
            configs=dict(doc.get("configs") or {}),
            release_files=doc.get("release_files"),
            env_digests=doc.get("env_digests"),
            env_salt=doc.get("env_salt", ""),
            program=Program(
                program["state"],
                program.get("pid") or None,
                program.get("description", ""),
                program.get("uptime"),
                program.get("workers"),
            )
            if program
            else None,
            units={name: Unit(**unit) for name, unit in doc.get("units", {}).items()},
            nginx_stale=bool(doc.get("nginx_stale")),
            health=doc.get("health"),
            healthy=doc.get("healthy") is True,
            health_ms=doc.get("health_ms"),
            disk_free=doc.get("disk_free"),
            lock=Lock(**doc["lock"]) if doc.get("lock") else None,
            certificate=Certificate(
                cert["path"],
                tuple(cert.get("domains", ())),
                cert.get("not_after", ""),
                cert.get("server", ""),
            )
            if (cert := doc.get("certificate"))
            else None,
        )

    @property
    def app_user_shell(self) -> str | None:
        """The app user's login shell; None when there is no such user."""
        return self.app_user.shell if self.app_user else None

    def path(self, path: str) -> PathState:
        return self.paths.get(path, ABSENT)

    def exists(self, path: str) -> bool:
        return self.path(path).kind != "absent"

    def sha256(self, path: str) -> str | None:
        return self.path(path).sha256

    def link(self, path: str) -> str | None:
        """Where a symlink points; None when path is no symlink."""
        return self.path(path).target

    def link_name(self, path: str) -> str | None:
        """The name a symlink points at (a release or venv id); None when path is no symlink."""
        return target_name(self.link(path))

    def directory(self, path: str) -> str | None:
        """'owner:group:mode' of a directory, None when it is no directory."""
        state = self.path(path)
        return f"{state.owner}:{state.group}:{state.mode}" if state.kind == "dir" else None

    @property
    def release_ids(self) -> list[str]:
        """The releases on the server, oldest first."""
        return [r.id for r in self.releases]

    def release(self, release_id: str) -> ReleaseDir | None:
        return next((r for r in self.releases if r.id == release_id), None)

    def release_venv(self, release_id: str) -> str | None:
        """The id of the venv a release runs on."""
        release = self.release(release_id)
        return release.venv or None if release else None

    @property
    def program_state(self) -> str | None:
        """Supervisor's state of the app's program (RUNNING, STOPPED, FATAL ...); None if it has none."""
        return self.program.state if self.program else None

    @property
    def program_pid(self) -> int | None:
        return self.program.pid if self.program else None

    def active(self, unit: str) -> bool:
        return unit in self.units and self.units[unit].active == "active"

    def enabled(self, unit: str) -> bool:
        return unit in self.units and self.units[unit].enabled == "enabled"


def release_record(text: str | None) -> Mapping[str, Any]:
    """A release's record from its release.json, as the probe sends it (its text); {} when it has none,
    or none that reads as a JSON object (the app's user may write there: it is no code)."""
    try:
        parsed = json.loads(text or "{}")
    except (ValueError, RecursionError):  # not JSON; nested past what the parser follows
        return {}
    return parsed if isinstance(parsed, dict) else {}


def target_name(target: str | None) -> str | None:
    """The last part of a link target: /srv/app/releases/ID/ -> ID; None for no target."""
    return target.rstrip("/").rsplit("/", 1)[-1] if target else None
