"""push: a release of the app (code only) beside the others, its venv, and the atomic switch of `current`."""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tasks.settings import Settings
from tasks.steps import Context, StepPlan, blocked

# Never part of a release: caches, local venvs, and the instance folder (shared data, linked in instead).
EXCLUDED = {"__pycache__", ".git", ".venv", "venv", "instance", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


@dataclass(frozen=True)
class AppSource:
    """The local app directory as it would be released."""

    root: Path
    files: tuple[str, ...]  # relative POSIX paths
    content_hash: str  # sha256 over paths, exec bits and contents

    @property
    def requirements(self) -> str:
        return (self.root / "requirements.txt").read_text()


def read_source(root: Path) -> AppSource:
    files = []
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or path.suffix == ".pyc" or EXCLUDED.intersection(relative.parts):
            continue
        files.append(relative.as_posix())
        digest.update(f"{relative.as_posix()}\0{path.stat().st_mode & 0o100}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return AppSource(root, tuple(files), digest.hexdigest())


def release_id(content_hash: str, now: datetime) -> str:
    """Sorts by time and names the content: 20261126T101500Z-0123456789ab."""
    return f"{now:%Y%m%dT%H%M%SZ}-{content_hash[:12]}"


def current_release(s: Settings, facts) -> str | None:
    target = facts.link(s.current)
    return target.rstrip("/").rsplit("/", 1)[-1] if target else None


def current_venv(s: Settings, facts) -> str | None:
    target = facts.link(f"{s.current}/.venv")
    return target.rstrip("/").rsplit("/", 1)[-1] if target else None


def releases_to_prune(existing: list[str], new: str, previous: str | None, keep: int) -> list[str]:
    """The oldest releases beyond `keep`; never the new one nor the previous one (the rollback target)."""
    ordered = sorted(set(existing) | {new})
    surplus = ordered[: max(0, len(ordered) - keep)]
    return [r for r in surplus if r not in (new, previous)]


def plan_push(ctx: Context) -> StepPlan:
    s, facts, app, q = ctx.settings, ctx.facts, ctx.app, shlex.quote
    assert app is not None, "push needs the local app"
    prerequisite = blocked(
        ctx, "push", facts.user_shell is None or not facts.installed("python3-venv")
        or facts.directory(s.releases_dir) is None, "the server is not provisioned", "provision",
    )  # fmt: skip
    if prerequisite:
        return prerequisite
    live = current_release(s, facts)
    venv_changes = current_venv(s, facts) != ctx.venv_id
    if live and live.endswith("-" + app.content_hash[:12]) and not venv_changes:
        return StepPlan("push")

    parts, files = [], {}
    venv = f"{s.venvs_dir}/{ctx.venv_id}"
    if ctx.venv_id not in facts.venvs:
        files["wheels/requirements.txt"] = app.requirements.encode()
        files.update({f"wheels/{wheel.name}": wheel for wheel in ctx.wheels})
        # Built in place (a venv's scripts hard-code its path); `.complete` marks it usable. Debian's
        # bundled pip wheel installs into a venv made --without-pip: ensurepip would cost ~2 s more.
        install = '--no-index --find-links "$W/wheels" -r "$W/wheels/requirements.txt"'
        parts.append(
            f"rm -rf {q(venv)}; export PIP_DISABLE_PIP_VERSION_CHECK=1\n"
            "pip_wheel=$(ls /usr/share/python-wheels/pip-*.whl 2>/dev/null | tail -n 1)\n"
            'if [ -n "$pip_wheel" ]; then\n'
            f"  quiet python3 -m venv --without-pip {q(venv)}\n"
            f'  quiet {q(venv)}/bin/python "$pip_wheel/pip" install -q {install}\n'
            "else\n"
            f"  quiet python3 -m venv {q(venv)}\n"
            f"  quiet {q(venv)}/bin/pip install -q {install}\n"
            "fi\n"
            f"touch {q(venv)}/.complete"
        )
    new = release_id(app.content_hash, ctx.now)
    release = f"{s.releases_dir}/{new}"
    files.update({f"release/{name}": app.root / name for name in app.files})
    check = (
        f"runuser -u {q(s.name)} -- {q(release)}/.venv/bin/gunicorn --check-config --chdir {q(release)}"
        f" {q(s.module)}"
    )
    parts.append(
        f'rm -rf {q(release)}; quiet cp -a "$W/release" {q(release)}\n'
        f"chown -R root:root {q(release)}; chmod -R u=rwX,go=rX {q(release)}\n"
        f"ln -sfn {q(venv)} {q(release)}/.venv\n"
        f"ln -sfn {q(s.shared_dir)}/instance {q(release)}/instance\n"
        # Import the release as the app user before it can go live: a broken one is never switched to.
        f'out=$(cd {q(release)} && {check} 2>&1) || die "release {new} does not load:'
        f' $(printf "%s\\n" "$out" | grep -v "^\\s*$" | tail -n 1)"\n'
        f"ln -sfn {q(release)} {q(s.current)}.tmp && mv -T {q(s.current)}.tmp {q(s.current)}"
        f' || die "could not switch {s.current}"\n'
        "CHANGED=1"
    )
    # A running app picks the release up: HUP re-reads the code; a new venv needs a new master. A stopped
    # one stays stopped (supervisor_update starts it); one supervisorctl call, as each costs ~0.15 s.
    action = "restart" if venv_changes else "signal HUP"
    parts.append(
        f"if ! out=$(supervisorctl {action} {q(s.name)} 2>&1); then\n"
        '  case "$out" in *"not running"*|*"no such"*|*"refused"*) ;;\n'
        f'  *) die "supervisorctl {action} {s.name}: $out" ;; esac\n'
        "fi"
    )
    prune = releases_to_prune(facts.releases, new, live, s.keep_releases)
    if prune:
        parts.append("rm -rf " + " ".join(q(f"{s.releases_dir}/{r}") for r in prune))
    return StepPlan("push", "\n".join(parts), files)
