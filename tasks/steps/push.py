"""push: a release of the app (code only) beside the others, its venv, and the switch to it.

The release keeps what shaped it in .deploy/ (release.json, the rendered nginx site, supervisor program
and gunicorn config, env.json), so that a rollback brings all of it back; see runtime/release.sh for how
it is built, tried (the import trial) and switched to.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tasks import configs, dependencies, https, procfile, static, wheels
from tasks.dependencies import Declared, DependencyError
from tasks.facts import ReleaseDir, release_record, target_name
from tasks.layout import META, RELEASE_FILES, Layout, app_paths
from tasks.platform import Platform
from tasks.settings import Settings
from tasks.shell import Var, line
from tasks.source import AppSource, SourceError, read_source
from tasks.steps.model import Probe, Refused, Situation, Step, StepPlan
from tasks.steps.postgresql import database_url
from tasks.steps.processes import Processes
from tasks.steps.provision import PROVISIONED
from tasks.steps.redis import redis_url


@dataclass(frozen=True)
class Releases:
    """push's facts (runtime/probe_releases.py): the releases, what shaped the live one, the venvs, and
    the wheels and the kit's tools the server keeps. Rollback, `releases` and status read them too."""

    releases: tuple[ReleaseDir, ...] = ()  # oldest first
    fingerprint: str = ""  # what shaped the live release (see `fingerprint`); "" when unknown
    venvs: frozenset[str] = frozenset()  # complete venvs
    venv_dirs: frozenset[str] = frozenset()  # every directory under venvs/, complete or not
    wheels: frozenset[str] = frozenset()  # the wheels the server keeps (wheels/), by file name
    tools: frozenset[str] = frozenset()  # the kit's tools there (tools/): "uv-0.13.8"

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Releases:
        return cls(
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
        )

    @property
    def ids(self) -> list[str]:
        """The releases on the server, oldest first."""
        return [r.id for r in self.releases]

    def release(self, release_id: str) -> ReleaseDir | None:
        return next((r for r in self.releases if r.id == release_id), None)

    def venv_of(self, release_id: str) -> str | None:
        """The id of the venv a release runs on."""
        release = self.release(release_id)
        return release.venv or None if release else None


# The rendered configs a release keeps in .deploy/ (runtime/switch.sh restores them by these names).
SNAPSHOT = ("nginx-site", "supervisor.conf", "gunicorn.conf.py")


def release_id(content_hash: str, now: datetime, taken: Collection[str] = ()) -> str:
    """Sorts by time and names the content: 20261126T101500Z-0123456789ab. A second later than now when
    the server has that id already: the same files deployed again within a second, app.env changed."""
    while (new := f"{now:%Y%m%dT%H%M%SZ}-{content_hash[:12]}") in taken:
        now += timedelta(seconds=1)
    return new


def snapshot(s: Settings, paths: Layout, platform: Platform, cpu_count: int) -> dict[str, str]:
    """The rendered configs that shape a release, by their names in its .deploy/. Its nginx site is the
    one it is served with: with HTTPS, the 443 server too (acme: once certbot has the certificate)."""
    rendered = (
        configs.nginx_site(s, paths, platform, https.tls(s, paths)),
        configs.supervisor_program(s, paths),
        configs.gunicorn_conf(s, paths, cpu_count),
    )
    return dict(zip(SNAPSHOT, rendered, strict=True))


def service_env(s: Settings, platform: Platform) -> dict[str, str]:
    """Where the app finds the services it uses (services.*): DATABASE_URL, REDIS_URL."""
    app = app_paths(s)
    return {
        **({"DATABASE_URL": database_url(app.app, platform)} if s.services.postgresql else {}),
        **({"REDIS_URL": redis_url(app)} if s.services.redis else {}),
    }


def env_json(s: Settings, platform: Platform) -> str:
    """The release's environment (.deploy/env.json): app.env over the services' URLs (an app.env value
    wins: a database elsewhere)."""
    return json.dumps({**service_env(s, platform), **s.app.env}, sort_keys=True)


def fingerprint(
    s: Settings, paths: Layout, platform: Platform, app: AppSource, venv_id: str, cpu_count: int
) -> str:
    """Everything that makes a release what it is; a deploy whose fingerprint is live builds nothing."""
    shaped = snapshot(s, paths, platform, cpu_count).values()
    shape = [app.content_hash, venv_id, list(s.deploy.shared_dirs), env_json(s, platform), *shaped]
    return hashlib.sha256(json.dumps(shape).encode()).hexdigest()


# The names the kit gives (what the server lists is checked against them before anything is removed).
RELEASE_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{12}")
VENV_ID = re.compile(r"[0-9a-f]{16}")


def releases_to_prune(releases: Iterable[str], keep: int, protected: Iterable[str | None]) -> list[str]:
    """All but the `keep` newest releases (failed ones count too); never a protected one, nor a name the
    kit does not give."""
    # A rollback can make an old release current or previous: it stays, beside the `keep` newest.
    ordered = sorted(r for r in set(releases) if RELEASE_ID.fullmatch(r))
    return [r for r in ordered[: max(0, len(ordered) - keep)] if r not in set(protected)]


def venvs_to_prune(venv_dirs: Iterable[str], in_use: Iterable[str | None]) -> list[str]:
    """The venvs no kept release runs on (including ones an interrupted run left unfinished)."""
    return sorted(v for v in set(venv_dirs) - set(in_use) if VENV_ID.fullmatch(v))


@dataclass(frozen=True)
class Ready:
    """What push plans from besides the situation: the local app and its dependencies as declared, the
    venv they need on this server and, where the server lacks them, what to build it from."""

    app: AppSource
    declared: Declared
    venv_id: str
    wheels: tuple[Path, ...] = ()  # what that venv is built from, when the server lacks it
    app_wheel: Path | None = None  # the app built as a wheel (an installable project), for a new release
    uv_wheel: Path | None = None  # uv, when the server lacks it and needs it (a venv, an app wheel)


def read(s: Settings) -> tuple[tuple[AppSource, Declared], tuple[str, ...]]:
    """The app as a release would hold it, and its dependencies as declared: read before connecting, so
    that an app the kit refuses (a link out of its directory, a plain-http index) reaches no server."""
    try:
        app = read_source(s.app.src, s.deploy.shared_dirs)
        declared = dependencies.declared(app.root, s.app.gunicorn)
        found = procfile.read(s.app.src)
    except (SourceError, DependencyError, procfile.ProcfileError) as error:
        raise Refused(str(error)) from None
    note = app.links_note()
    notes = (note,) if note else ()
    # The Procfile's processes are the app's (app.processes unset, settings.py): how the kit took it.
    if found is not None and found.processes == {n: p.command for n, p in s.app.processes.items()}:
        notes += found.notes()
    return (app, declared), notes


def prepare(sit: Situation, local: tuple[AppSource, Declared], check: bool = False) -> Ready:
    """The local app for this server and, when the server lacks its venv, the wheels to build it from;
    Refused when the app cannot go to this server. A check run makes no wheels: it says whether the venv
    would be built, not from what."""
    app, declared = local
    facts = sit.facts
    if not declared.fits(facts.python):
        raise Refused(
            f"the app requires Python {declared.requires_python} (requires-python in pyproject.toml) and"
            f" the server has Python {facts.python}: deploy to a server with a Python that fits, or relax"
            " requires-python"
        )
    target = wheels.Target(facts.python, facts.machine, facts.glibc)
    found = Ready(app, declared, wheels.venv_id(declared, target))
    if check:
        return found
    new_venv = found.venv_id not in facts.of(Releases).venvs
    new_release = not is_live(sit, shape_of(sit, found), found)
    try:
        built = wheels.dependencies(declared, target) if new_venv else ()
        own = wheels.app_wheel(app, declared.project) if declared.project and new_release else None
        needs_uv = (built or own) and f"uv-{wheels.UV_VERSION}" not in facts.of(Releases).tools
        uv = wheels.uv_wheel(facts.machine) if needs_uv else None
    except wheels.WheelError as error:
        raise Refused(str(error)) from None
    return replace(found, wheels=built, app_wheel=own, uv_wheel=uv)


def ready(sit: Situation) -> Ready:
    """What `prepare` made for this run."""
    found = sit.prepared.get("push")
    assert isinstance(found, Ready), "push needs the local app"
    return found


def shape_of(sit: Situation, local: Ready) -> str:
    """The fingerprint of the release the local app would make on this server."""
    return fingerprint(sit.settings, sit.layout, sit.platform, local.app, local.venv_id, sit.facts.cpus)


def is_live(sit: Situation, shape: str, local: Ready) -> bool:
    """Whether the release of that fingerprint is the live one already, on its venv: nothing to push."""
    kept = sit.facts.of(Releases)
    return kept.fingerprint == shape and local.venv_id in kept.venvs


def venv(sit: Situation, local: Ready) -> tuple[list[str], dict[str, bytes | Path]]:
    """The commands and files that build the venv this release needs: the wheels the server does not keep
    yet, and the list of all of them (the venv gets exactly those)."""
    files: dict[str, bytes | Path] = {
        f"wheels/{w.name}": w for w in local.wheels if w.name not in sit.facts.of(Releases).wheels
    }
    files["wheels/manifest"] = "".join(f"{w.name}\n" for w in local.wheels).encode()
    return [line("note", local.declared.describe()), line("build_venv", local.venv_id)], files


def plan(sit: Situation) -> StepPlan:
    s, facts, paths, local = sit.settings, sit.facts, sit.layout, ready(sit)
    app, held = local.app, facts.of(Releases)
    shape = shape_of(sit, local)
    if is_live(sit, shape, local):
        return StepPlan()

    commands, files = venv(sit, local) if local.venv_id not in held.venvs else ([], {})
    if local.uv_wheel is not None:
        files["tools/uv.whl"] = local.uv_wheel
        commands.insert(0, line("install_uv"))
    if local.app_wheel is not None:  # installed into the release (build_release)
        files[f"app/{local.app_wheel.name}"] = local.app_wheel
    new = release_id(app.content_hash, sit.now, held.ids)
    files.update({f"release/{name}": app.root / name for name in app.files})
    record = {
        "id": new, "time": f"{sit.now:%Y-%m-%dT%H:%M:%SZ}", "user": sit.user, "host": sit.control_host,
        "venv": local.venv_id, "content": app.content_hash,
    }  # fmt: skip
    files[f"release/{META}/release.json"] = (json.dumps(record) + "\n").encode()
    files[f"release/{META}/fingerprint"] = f"{shape}\n".encode()
    files[f"release/{META}/{RELEASE_FILES}"] = json.dumps(app.hashes, sort_keys=True).encode()
    shaped = snapshot(s, paths, sit.platform, facts.cpus)
    files.update({f"release/{META}/{name}": text.encode() for name, text in shaped.items()})
    files["files/env.json"] = env_json(s, sit.platform).encode()
    # The shared directories the server lacks (a new one in deploy.shared_dirs, or a first deploy).
    missing = [d for d in s.deploy.shared_dirs if facts.path(paths.shared(d)).kind != "dir"]
    commands += [line("make_shared_dirs", *missing)] if missing else []
    commands += [line("build_release", new, local.venv_id), line("try_import")]
    commands += static.commands(s, s.app.src)  # its static directories, open to nginx
    if s.deploy.release_command:
        commands.append(line("run_release_command"))
    # Until here, push needs no system package; switching starts the app under supervisor.
    commands += [line("await_packages")] if sit.installing() else []
    commands.append(line("switch_to_built"))
    # Alone (no processes step after the health gate), push moves the app's processes itself.
    if not sit.runs("processes") and (s.app.processes or facts.of(Processes).programs):
        commands.append(line("follow_release"))

    live = facts.link_name(paths.current)
    releases = [*held.ids, new]
    prune = releases_to_prune(releases, s.deploy.keep_releases, (new, live))
    kept = [r for r in releases if r not in prune and r != new]
    venvs = venvs_to_prune(held.venv_dirs, [held.venv_of(r) for r in kept] + [local.venv_id])
    # Pruned at the very end of a successful run only (see converge.apply_script).
    cleanup = [
        line("prune", Var(under), *ids)
        for under, ids in (("RELEASES_DIR", prune), ("VENVS_DIR", venvs))
        if ids
    ]
    if venvs or local.venv_id not in held.venvs:
        cleanup.append(line("prune_wheels"))  # the wheels no venv left was built from
    why = explain(sit, local, new)
    return StepPlan(
        tuple(commands), files, cleanup=tuple(cleanup), why=why, switches_to=new, beside_packages=True
    )


LISTED = 20  # files a check run names, of each kind (new, changed, removed)


def env_digest(salt: str, key: str, value: str) -> str:
    """What the probe says of one app.env entry on the server (runtime/probe.py `detail`)."""
    return hashlib.sha256("\0".join((salt, key, value)).encode()).hexdigest()


def explain(sit: Situation, local: Ready, new: str) -> tuple[str, ...]:
    """What the push would do, for a check run: the release's files against the live one's, the venv,
    app.env (keys only), and how the app moves to it."""
    s, facts, app = sit.settings, sit.facts, local.app
    live = facts.link_name(sit.layout.current)
    lines = [f"release {new}" + (f", after {live}" if live else ", the first")]
    if live and facts.release_files is not None:
        before = facts.release_files
        kinds = (
            ("+", sorted(set(app.hashes) - set(before))),
            ("~", sorted(p for p in app.hashes if p in before and before[p] != app.hashes[p])),
            ("-", sorted(set(before) - set(app.hashes))),
        )
        for mark, paths in kinds:
            lines += [f"  {mark} {path}" for path in paths[:LISTED]]
            lines += [f"  {mark} ... and {len(paths) - LISTED} more"] if len(paths) > LISTED else []
        if not any(paths for _, paths in kinds):
            lines.append("  the app's files are the live release's (what else changed: below)")
    elif live:
        lines.append(f"  {len(app.files)} files (the live release keeps no list of its own to compare)")
    else:
        lines.append(f"  {len(app.files)} files")
    if local.venv_id in facts.of(Releases).venvs:
        lines.append(f"venv {local.venv_id}: reused")
    else:
        lines.append(f"venv {local.venv_id}: built ({local.declared.describe()})")
    if facts.env_digests is not None:
        theirs = facts.env_digests
        env = {**service_env(s, sit.platform), **s.app.env}
        ours = {key: env_digest(facts.env_salt, key, value) for key, value in env.items()}
        for key in sorted(set(ours) | set(theirs)):
            if key not in theirs:
                lines.append(f"app.env: + {key}=****")
            elif key not in ours:
                lines.append(f"app.env: - {key}")
            elif ours[key] != theirs[key]:
                lines.append(f"app.env: ~ {key}=**** (a new value)")
    if not live:
        lines.append("then: the app starts on it (supervisor_update)")
    elif local.venv_id == facts.of(Releases).venv_of(live):
        lines.append(f"then: {sit.layout.app} reloads onto it gracefully (no request dropped)")
    else:
        lines.append(f"then: {sit.layout.app} restarts onto it (another venv: a gap of a second or two)")
    return tuple(lines)


STEP = Step(
    "push",
    "Upload a new release of the app and its dependencies (wheels, gunicorn included); switch to it.",
    plan,
    requires=(PROVISIONED,),
    read=read,
    prepare=prepare,
    runtime=("release.sh", "static.sh", "import_trial.py", "shared_dirs.py"),
    probe=Probe(
        part="probe_releases.py",
        asks=lambda s, paths, platform: {
            "releases_dir": paths.releases_dir,
            "venvs_dir": paths.venvs_dir,
            "wheels_dir": paths.wheels_dir,
            "tools_dir": paths.tools_dir,
            "current": paths.current,
            "meta": META,
        },
        facts=Releases,
    ),
)
