"""What the probe found on a server, as typed data (see runtime/probe.py for how it is found).

Read-only answers and the questions steps ask of them; tests build Facts directly, as objects. The
facts every run shares (the platform, the app's user, the paths, the units, the lock, the health) are
fields here; each step's own are a type in its module (steps.model.Probe.facts), held in `parts`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

T = TypeVar("T")


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
class User:
    """The app's user as the server has it."""

    home: str
    shell: str
    comment: str = ""


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
class Facts:
    platform: str | None = None  # the platform table's entry for this server (tasks/platform.py)
    system: str = ""  # os-release's PRETTY_NAME
    python: str = ""  # the full version of the server's python3: "3.11.2"
    machine: str = ""  # "x86_64"
    glibc: str = ""  # "2.36"
    cpus: int = 1
    app_user: User | None = None  # None when there is no such user
    paths: Mapping[str, PathState] = field(default_factory=dict)
    # Asked by a check run only: the config files' text (None: absent), the live release's files (path ->
    # sha256; None: it keeps no list) and its app.env as digests salted with `salt` (None: no env file).
    configs: Mapping[str, str | None] = field(default_factory=dict)
    release_files: Mapping[str, str] | None = None
    env_digests: Mapping[str, str] | None = None
    env_salt: str = ""
    units: Mapping[str, Unit] = field(default_factory=dict)
    health: str | None = None  # the health request's status ("200", "302", "no answer (...)") when asked for
    healthy: bool = False  # the health request passed its rule (runtime/health.py)
    health_ms: int | None = None  # how long the health request's last try took
    disk_free: int | None = None  # bytes free under the app's base directory (df's "available")
    lock: Lock | None = None  # None when no run holds the app's deploy lock
    # Each step's own facts (steps.model.Probe.facts), by their type: see `of` and `having`.
    parts: Mapping[type, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], kinds: Iterable[type] = ()) -> Facts:
        """Facts from the probe's JSON document (the merged lines of its output): the shared ones, and
        each of `kinds` (the steps' facts: steps.KINDS) read by its own `from_json(doc)`."""
        return cls(
            platform=doc.get("platform"),
            system=doc.get("system", ""),
            python=doc.get("python", ""),
            machine=doc.get("machine", ""),
            glibc=doc.get("glibc", ""),
            cpus=int(doc.get("cpus") or 1),
            app_user=User(**doc["app_user"]) if doc.get("app_user") else None,
            paths={path: PathState(**state) for path, state in doc.get("paths", {}).items()},
            configs=dict(doc.get("configs") or {}),
            release_files=doc.get("release_files"),
            env_digests=doc.get("env_digests"),
            env_salt=doc.get("env_salt", ""),
            units={name: Unit(**unit) for name, unit in doc.get("units", {}).items()},
            health=doc.get("health"),
            healthy=doc.get("healthy") is True,
            health_ms=doc.get("health_ms"),
            disk_free=doc.get("disk_free"),
            lock=Lock(**doc["lock"]) if doc.get("lock") else None,
            parts={kind: kind.from_json(doc) for kind in kinds},  # type: ignore[attr-defined]
        )

    def of(self, kind: type[T]) -> T:
        """A step's facts, by their type (steps.model.Probe.facts): as the probe answered them, or the
        type's default (nothing found) when it was not asked."""
        found = self.parts.get(kind)
        return found if found is not None else kind()

    def having(self, *found: object) -> Facts:
        """These facts with steps' facts put in (each replacing the one of its type): how tests build
        a server's facts."""
        return replace(self, parts={**self.parts, **{type(part): part for part in found}})

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
