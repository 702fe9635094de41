"""redis: a Redis server of the app's own (services.redis), from Debian's redis-server package.

Debian's template unit runs one server per instance: redis-server@APP, on /etc/redis/redis-APP.conf (the
kit's: configs/redis.conf.j2), with a drop-in of the kit's (configs/redis-dropin.conf.j2). It listens on
no TCP port, only on a Unix socket in a directory of redis's that only the app's group may enter: the app
reaches its own server and no other app's, so two apps never share keys. Persistence: the append-only
file and snapshots, in /var/lib/redis-APP. The package's own server (redis-server.service, which its
install starts: TCP on localhost, a keyspace for every app of the server) is stopped and disabled. How it
is done: runtime/redis.sh.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tasks import configs
from tasks.layout import AppPaths
from tasks.shell import line
from tasks.steps.model import Probe, Requirement, Situation, Step, StepPlan
from tasks.steps.provision import installed


@dataclass(frozen=True)
class Redis:
    """redis's facts (runtime/probe_redis.py), asked with services.redis only: the app's Redis unit."""

    asked: bool = False
    active: str = ""  # its ActiveState
    enabled: str = ""  # its UnitFileState
    shared_active: str = ""  # the package's own server's
    shared_enabled: str = ""

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Redis:
        found = doc.get("redis")
        if not found:
            return cls()
        shared = found.get("shared", {})
        return cls(
            True, found.get("active", ""), found.get("enabled", ""),
            shared.get("active", ""), shared.get("enabled", ""),
        )  # fmt: skip

    @property
    def shared_runs(self) -> bool:
        """Whether the package's own server runs, or starts at boot."""
        return self.shared_active in ("active", "activating") or self.shared_enabled == "enabled"


INSTALLED = Requirement(
    lambda sit: sit.settings.services.redis and sit.platform.packages.redis not in installed(sit),
    "redis-server is not installed", "provision",
)  # fmt: skip


def redis_url(paths: AppPaths) -> str:
    """The app's REDIS_URL: its server's socket."""
    return f"unix://{paths.redis_socket}"


def plan(sit: Situation) -> StepPlan:
    s, facts, paths, platform = sit.settings, sit.facts, sit.layout, sit.platform
    if not s.services.redis:
        return StepPlan()
    conf, dropin = configs.redis_conf(s, paths), configs.redis_dropin(s, paths, platform)
    found = facts.of(Redis)
    why = []
    if facts.sha256(paths.redis_conf) != configs.sha256(conf):
        why.append(f"{paths.redis_conf} changes: restart {paths.redis_unit}")
    if facts.sha256(paths.redis_dropin) != configs.sha256(dropin):
        why.append(f"{paths.redis_dropin} changes: restart {paths.redis_unit}")
    owner = f"{platform.redis_user}:{platform.redis_user}:750"
    if facts.directory(paths.redis_data_dir) != owner:
        why.append(f"directory {paths.redis_data_dir}: {owner.replace(':', ' ', 2)}")
    if found.enabled != "enabled":
        why.append(f"enable {paths.redis_unit} at boot")
    if found.active != "active" and not why:
        why.append(f"{paths.redis_unit} is {found.active or 'not running'}: start it")
    if found.shared_runs or platform.packages.redis not in installed(sit):
        shared = platform.redis_shared_unit
        why.append(f"{shared} (the package's own server, on TCP, shared by every app): stop and disable it")
    if not why:
        return StepPlan()
    files = {"files/redis.conf": conf.encode(), "files/redis-dropin.conf": dropin.encode()}
    return StepPlan(
        (line("ensure_redis", *files),), files, why=tuple(why),
        writes={paths.redis_conf: conf, paths.redis_dropin: dropin},
    )  # fmt: skip


STEP = Step(
    "redis",
    "services.redis: a Redis server of the app's own, on a Unix socket only its group can use.",
    plan,
    requires=(INSTALLED,),
    runtime=("redis.sh",),
    values=lambda s, paths, platform: {
        "REDIS_USER": platform.redis_user,
        "REDIS_SHARED_UNIT": platform.redis_shared_unit,
    },
    probe=Probe(
        paths=lambda s, paths: (
            (paths.redis_conf, paths.redis_dropin, paths.redis_data_dir) if s.services.redis else ()
        ),
        hashed=lambda s, paths: (paths.redis_conf, paths.redis_dropin) if s.services.redis else (),
        part="probe_redis.py",
        asks=lambda s, paths, platform: (
            {"unit": paths.redis_unit, "shared": platform.redis_shared_unit} if s.services.redis else {}
        ),
        facts=Redis,
    ),
)
