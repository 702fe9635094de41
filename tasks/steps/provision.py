"""provision: system packages, the app's system user, its directories, its runtime directory."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tasks import configs
from tasks.layout import Layout
from tasks.platform import Platform
from tasks.settings import Settings
from tasks.shell import Var, Word, line, ref
from tasks.steps.model import Probe, Requirement, Situation, Step, StepPlan


@dataclass(frozen=True)
class Packages:
    """provision's facts (runtime/probe_packages.py): which of the packages the kit needs are installed,
    and how old the package lists are."""

    installed: frozenset[str] = frozenset()
    package_lists_age: int | None = None  # seconds since the package lists were updated; None: none

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Packages:
        return cls(frozenset(doc.get("installed", ())), doc.get("package_lists_age"))


def installed(sit: Situation) -> frozenset[str]:
    """The packages the kit needs that the server has."""
    return sit.facts.of(Packages).installed


# What provision provides, as later steps require it when they run alone.
NGINX = Requirement(
    lambda sit: sit.platform.packages.nginx not in installed(sit), "nginx is not installed", "provision"
)
SUPERVISOR = Requirement(
    lambda sit: sit.platform.packages.supervisor not in installed(sit),
    "supervisor is not installed", "provision",
)  # fmt: skip
SERVICES = Requirement(
    lambda sit: not {sit.platform.packages.nginx, sit.platform.packages.supervisor} <= installed(sit),
    "nginx or supervisor is not installed", "provision",
)  # fmt: skip
PROVISIONED = Requirement(
    lambda sit: sit.facts.app_user_shell is None
    or sit.facts.directory(sit.layout.releases_dir) is None
    or sit.facts.directory(sit.layout.tools_dir) is None,
    "the server is not provisioned", "provision",
)  # fmt: skip


def packages(s: Settings, platform: Platform) -> tuple[str, ...]:
    """The system packages the app needs: certbot too with https.mode acme, and the services it uses."""
    wanted = platform.packages
    return (
        *wanted.all(),
        *([wanted.certbot] if s.https.mode == "acme" else []),
        *([wanted.postgresql] if s.services.postgresql else []),
        *([wanted.redis] if s.services.redis else []),
    )


def directories(s: Settings, paths: Layout, platform: Platform) -> list[tuple[str, str, str, str]]:
    """(path, owner, group, mode) of every directory the app needs.

    Root acts on these paths: none of them, nor a directory above them, is the app user's to change,
    but the leaves the app writes (shared/instance, its runtime directory), which root never enters.
    """
    app = paths.app
    return [
        (paths.base_dir, "root", "root", "755"),
        (paths.releases_dir, "root", "root", "755"),
        # The app's dependencies (a private index's packages too): read by the app's group only.
        (paths.venvs_dir, "root", app, "750"),
        (paths.wheels_dir, "root", app, "750"),
        (paths.tools_dir, "root", "root", "755"),
        # What the app writes lives here, outside the disposable releases.
        (paths.shared_dir, "root", app, "750"),
        (paths.shared("instance"), app, app, "750"),
        # supervisord (root) writes the app's logs: a directory the app could write would let it plant links.
        (paths.log_dir, "root", platform.log_group, "750"),
        (paths.run_dir, app, app, "755"),
        # certbot (root) writes the ACME challenges, nginx reads them: nothing here is the app's.
        *([(paths.acme_webroot, "root", "root", "755")] if s.https.mode == "acme" else []),
    ]


def plan(sit: Situation) -> StepPlan:
    s, facts, paths, platform = sit.settings, sit.facts, sit.layout, sit.platform
    commands, why = [], []
    missing = [p for p in packages(s, platform) if p not in installed(sit)]
    if missing:
        # In the background: the steps after provision go on beside it until one needs the packages
        # (StepPlan.beside_packages; converge.apply_script puts the wait before the others).
        age = facts.of(Packages).package_lists_age
        update = age is None or age > s.deploy.apt_cache_valid_time
        if update:
            why.append("package lists " + ("missing" if age is None else f"{age} s old") + ": update them")
        commands.append(line("start_packages", int(update), *missing))
        why.append(f"install packages: {' '.join(missing)}")
    if facts.app_user_shell != platform.nologin_shell:
        commands.append(line("ensure_app_user"))
        why.append(
            f"system user {paths.app}: " + ("create it" if facts.app_user is None else "no login shell")
        )

    def account(name: str) -> Word:
        return Var("APP") if name == paths.app else name

    for path, owner, group, mode in directories(s, paths, platform):
        if facts.directory(path) != f"{owner}:{group}:{mode}":
            commands.append(line("ensure_dir", ref(paths, path), account(owner), account(group), mode))
            now = facts.directory(path)
            why.append(f"directory {path}: {owner}:{group} {mode}" + (f" (now {now})" if now else " (new)"))
    hand_made = [p for p in (paths.nginx_site, paths.supervisor_conf) if facts.exists(p)]
    if hand_made and facts.link_name(paths.current) is None:
        # A server set up by hand: a site and a program of the app's name, kept (enable_site and
        # supervisor_update keep them too, before they write over them), said here before any step acts.
        commands.append(line("keep_hand_made_configs"))
        why.append(f"no release yet: keep a copy of {' and '.join(hand_made)} unless flaskdeploy wrote it")
    tmpfiles = configs.tmpfiles(s, paths)
    files, writes = {}, {}
    if facts.sha256(paths.tmpfiles_conf) != configs.sha256(tmpfiles):
        files["files/tmpfiles.conf"] = tmpfiles.encode()
        writes[paths.tmpfiles_conf] = tmpfiles
        commands.append(
            line("install_file", Var("W", "/files/tmpfiles.conf"), ref(paths, paths.tmpfiles_conf), 644)
        )
    # Installing nginx changes its config: a later reload_nginx must look.
    touches = frozenset({"nginx"}) if platform.packages.nginx in missing else frozenset()
    return StepPlan(tuple(commands), files, touches=touches, why=tuple(why), writes=writes,
        installs_beside=bool(missing),
    )  # fmt: skip


PROBE = Probe(
    # Its config, and the configs it keeps a copy of on a server set up by hand.
    paths=lambda s, paths: (paths.tmpfiles_conf, paths.nginx_site, paths.supervisor_conf),
    hashed=lambda s, paths: (paths.tmpfiles_conf,),
    part="probe_packages.py",
    asks=lambda s, paths, platform: {
        "query": list(platform.package_query),
        "packages": list(platform.packages.asked()),
        "installed": platform.installed_status,
        "lists": platform.package_lists,
    },
    facts=Packages,
)
STEP = Step(
    "provision",
    "apt packages (nginx, supervisor; certbot, services when set), the app's system user, its directories.",
    plan,
    runtime=("provision.sh",),
    values=lambda s, paths, platform: {
        "PACKAGES_REPAIR": platform.repair_command,
        "PACKAGES_UPDATE": platform.update_command,
        "PACKAGES_INSTALL": platform.install_command,
    },
    probe=PROBE,
)
