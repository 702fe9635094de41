"""push: a release of the app (code only) beside the others, its venv, and the switch to it.

The release keeps what shaped it in .deploy/ (release.json, the rendered nginx site, supervisor program
and gunicorn config, env.json), so that a rollback brings all of it back; see runtime/release.sh for how
it is built, tried (the import trial) and switched to.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Iterable
from datetime import datetime, timedelta
from pathlib import Path

from tasks import configs, https, static
from tasks.layout import META, RELEASE_FILES, Layout
from tasks.platform import Platform
from tasks.settings import Settings
from tasks.shell import Var, line
from tasks.source import AppSource
from tasks.steps.model import Situation, Step, StepPlan
from tasks.steps.provision import PROVISIONED

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


def env_json(s: Settings) -> str:
    return json.dumps(s.env, sort_keys=True)


def fingerprint(
    s: Settings, paths: Layout, platform: Platform, app: AppSource, venv_id: str, cpu_count: int
) -> str:
    """Everything that makes a release what it is; a deploy whose fingerprint is live builds nothing."""
    shaped = snapshot(s, paths, platform, cpu_count).values()
    shape = [app.content_hash, venv_id, list(s.shared_dirs), env_json(s), *shaped]
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


def shape_of(sit: Situation) -> str:
    """The fingerprint of the release the local app would make on this server."""
    assert sit.app is not None, "push needs the local app"
    return fingerprint(sit.settings, sit.layout, sit.platform, sit.app, sit.venv_id, sit.facts.cpus)


def is_live(sit: Situation, shape: str) -> bool:
    """Whether the release of that fingerprint is the live one already, on its venv: nothing to push."""
    return sit.facts.fingerprint == shape and sit.venv_id in sit.facts.venvs


def venv(sit: Situation) -> tuple[list[str], dict[str, bytes | Path]]:
    """The commands and files that build the venv this release needs: the wheels the server does not keep
    yet, and the list of all of them (the venv gets exactly those)."""
    assert sit.declared is not None, "the app's dependencies"
    files: dict[str, bytes | Path] = {
        f"wheels/{w.name}": w for w in sit.wheels if w.name not in sit.facts.wheels
    }
    files["wheels/manifest"] = "".join(f"{w.name}\n" for w in sit.wheels).encode()
    return [line("note", sit.declared.describe()), line("build_venv", sit.venv_id)], files


def plan(sit: Situation) -> StepPlan:
    s, facts, paths, app = sit.settings, sit.facts, sit.layout, sit.app
    assert app is not None, "push needs the local app"
    shape = shape_of(sit)
    if is_live(sit, shape):
        return StepPlan("push")

    commands, files = venv(sit) if sit.venv_id not in facts.venvs else ([], {})
    if sit.uv_wheel is not None:
        files["tools/uv.whl"] = sit.uv_wheel
        commands.insert(0, line("install_uv"))
    if sit.app_wheel is not None:  # installed into the release (build_release)
        files[f"app/{sit.app_wheel.name}"] = sit.app_wheel
    new = release_id(app.content_hash, sit.now, facts.release_ids)
    files.update({f"release/{name}": app.root / name for name in app.files})
    record = {
        "id": new, "time": f"{sit.now:%Y-%m-%dT%H:%M:%SZ}", "user": sit.user, "host": sit.control_host,
        "venv": sit.venv_id, "content": app.content_hash,
    }  # fmt: skip
    files[f"release/{META}/release.json"] = (json.dumps(record) + "\n").encode()
    files[f"release/{META}/fingerprint"] = f"{shape}\n".encode()
    files[f"release/{META}/{RELEASE_FILES}"] = json.dumps(app.hashes, sort_keys=True).encode()
    shaped = snapshot(s, paths, sit.platform, facts.cpus)
    files.update({f"release/{META}/{name}": text.encode() for name, text in shaped.items()})
    files["files/env.json"] = env_json(s).encode()
    # The shared directories the server lacks (a new one in deploy.shared_dirs, or a first deploy).
    missing = [d for d in s.shared_dirs if facts.path(paths.shared(d)).kind != "dir"]
    commands += [line("make_shared_dirs", *missing)] if missing else []
    commands += [line("build_release", new, sit.venv_id), line("try_import")]
    commands += static.commands(s, s.src)  # its static directories, open to nginx
    if s.release_command:
        commands.append(line("run_release_command"))
    # Until here, push needs no system package; switching starts the app under supervisor.
    commands += [line("await_packages")] if sit.installing() else []
    commands.append(line("switch_to_built"))

    live = facts.link_name(paths.current)
    releases = [*facts.release_ids, new]
    prune = releases_to_prune(releases, s.keep_releases, (new, live))
    kept = [r for r in releases if r not in prune and r != new]
    venvs = venvs_to_prune(facts.venv_dirs, [facts.release_venv(r) for r in kept] + [sit.venv_id])
    # Pruned at the very end of a successful run only (see converge.apply_script).
    cleanup = [
        line("prune", Var(under), *ids)
        for under, ids in (("RELEASES_DIR", prune), ("VENVS_DIR", venvs))
        if ids
    ]
    if venvs or sit.venv_id not in facts.venvs:
        cleanup.append(line("prune_wheels"))  # the wheels no venv left was built from
    why = explain(sit, new)
    return StepPlan(
        "push", tuple(commands), files, cleanup=tuple(cleanup), why=why, switches_to=new, beside_packages=True
    )


LISTED = 20  # files a check run names, of each kind (new, changed, removed)


def env_digest(salt: str, key: str, value: str) -> str:
    """What the probe says of one app.env entry on the server (runtime/probe.py `detail`)."""
    return hashlib.sha256("\0".join((salt, key, value)).encode()).hexdigest()


def explain(sit: Situation, new: str) -> tuple[str, ...]:
    """What the push would do, for a check run: the release's files against the live one's, the venv,
    app.env (keys only), and how the app moves to it."""
    s, facts, app = sit.settings, sit.facts, sit.app
    assert app is not None
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
    if sit.venv_id in facts.venvs:
        lines.append(f"venv {sit.venv_id}: reused")
    else:
        assert sit.declared is not None
        lines.append(f"venv {sit.venv_id}: built ({sit.declared.describe()})")
    if facts.env_digests is not None:
        theirs = facts.env_digests
        ours = {key: env_digest(facts.env_salt, key, value) for key, value in s.env.items()}
        for key in sorted(set(ours) | set(theirs)):
            if key not in theirs:
                lines.append(f"app.env: + {key}=****")
            elif key not in ours:
                lines.append(f"app.env: - {key}")
            elif ours[key] != theirs[key]:
                lines.append(f"app.env: ~ {key}=**** (a new value)")
    if not live:
        lines.append("then: the app starts on it (supervisor_update)")
    elif sit.venv_id == facts.release_venv(live):
        lines.append(f"then: {sit.layout.app} reloads onto it gracefully (no request dropped)")
    else:
        lines.append(f"then: {sit.layout.app} restarts onto it (another venv: a gap of a second or two)")
    return tuple(lines)


STEP = Step(
    "push",
    "Upload a new release of the app and its dependencies (wheels, gunicorn included); switch to it.",
    plan,
    requires=(PROVISIONED,),
    needs_app=True,
)
