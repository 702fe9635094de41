"""push: a release of the app (code only) beside the others, its venv, and the switch to it.

A release is built under a hidden `.partial-<id>` name and renamed into `releases/<id>` only when
complete, so nothing half-built is ever listed or pointed at. It keeps what shaped it in `.deploy/`
(release.json, the rendered nginx site, supervisor program and gunicorn config, env.json) so that a
rollback brings all of it back. It is imported, and its release command run, before `current` moves.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tasks import configs
from tasks.settings import META, Settings
from tasks.steps import Context, StepPlan, blocked

# Never part of a release: caches and local venvs (and the shared directories, linked in instead).
EXCLUDED = {"__pycache__", ".git", ".venv", "venv", ".pytest_cache", ".mypy_cache", ".ruff_cache"}

# Runs the release command as the app user: app.env from the release's env.json (never on a command
# line, where `ps` would show it), then `sh -c COMMAND`.
_WITH_ENV = (
    "import json, os, sys; os.environ.update(json.load(open(sys.argv[1])));"
    ' os.execv("/bin/sh", ["sh", "-c", sys.argv[2]])'
)


@dataclass(frozen=True)
class AppSource:
    """The local app directory as it would be released."""

    root: Path
    files: tuple[str, ...]  # relative POSIX paths
    content_hash: str  # sha256 over paths, exec bits and contents

    @property
    def requirements(self) -> str:
        return (self.root / "requirements.txt").read_text()


def read_source(root: Path, shared_dirs: Iterable[str] = ("instance",)) -> AppSource:
    """The files of a release: everything under root but caches and the shared directories."""
    files = []
    digest = hashlib.sha256()
    shared = tuple(f"{d}/" for d in shared_dirs)
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if (
            not path.is_file()
            or path.suffix == ".pyc"
            or EXCLUDED.intersection(relative.parts)
            or f"{relative.as_posix()}/".startswith(shared)
        ):
            continue
        files.append(relative.as_posix())
        digest.update(f"{relative.as_posix()}\0{path.stat().st_mode & 0o100}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return AppSource(root, tuple(files), digest.hexdigest())


def release_id(content_hash: str, now: datetime) -> str:
    """Sorts by time and names the content: 20261126T101500Z-0123456789ab."""
    return f"{now:%Y%m%dT%H%M%SZ}-{content_hash[:12]}"


def current_release(s: Settings, facts) -> str | None:
    return facts.link_name(s.current)


def previous_release(s: Settings, facts) -> str | None:
    return facts.link_name(s.previous)


def snapshot(s: Settings, cpu_count: int) -> dict[str, str]:
    """The rendered configs that shape a release, as kept in its .deploy/ (names as in switch.SNAPSHOT)."""
    return {
        "nginx-site": configs.nginx_site(s),
        "supervisor.conf": configs.supervisor_program(s),
        "gunicorn.conf.py": configs.gunicorn_conf(s, cpu_count),
    }


def env_json(s: Settings) -> str:
    return json.dumps(s.env, sort_keys=True)


def fingerprint(s: Settings, app: AppSource, venv_id: str, cpu_count: int) -> str:
    """Everything that makes a release what it is; a deploy whose fingerprint is live builds nothing."""
    shape = [app.content_hash, venv_id, list(s.shared_dirs), env_json(s), *snapshot(s, cpu_count).values()]
    return hashlib.sha256(json.dumps(shape).encode()).hexdigest()


def releases_to_prune(releases: Iterable[str], keep: int, protected: Iterable[str | None]) -> list[str]:
    """All but the `keep` newest releases (failed ones count too); never a protected one."""
    # A rollback can make an old release current or previous: it stays, beside the `keep` newest.
    ordered = sorted(set(releases))
    return [r for r in ordered[: max(0, len(ordered) - keep)] if r not in set(protected)]


def venvs_to_prune(venv_dirs: Iterable[str], in_use: Iterable[str | None]) -> list[str]:
    """The venvs no kept release runs on (including ones an interrupted run left unfinished)."""
    return sorted(set(venv_dirs) - set(in_use))


def plan_push(ctx: Context) -> StepPlan:
    s, facts, app, q = ctx.settings, ctx.facts, ctx.app, shlex.quote
    assert app is not None, "push needs the local app"
    prerequisite = blocked(
        ctx, "push", facts.user_shell is None or not facts.installed("python3-venv")
        or facts.directory(s.releases_dir) is None, "the server is not provisioned", "provision",
    )  # fmt: skip
    if prerequisite:
        return prerequisite
    shape = fingerprint(s, app, ctx.venv_id, facts.cpu_count)
    if facts.fingerprint == shape and ctx.venv_id in facts.venvs:
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
    release, partial = f"{s.releases_dir}/{new}", f"{s.releases_dir}/.partial-{new}"
    files.update({f"release/{name}": app.root / name for name in app.files})
    meta = {
        "id": new, "time": f"{ctx.now:%Y-%m-%dT%H:%M:%SZ}", "user": ctx.user, "host": ctx.control_host,
        "venv": ctx.venv_id, "content": app.content_hash,
    }  # fmt: skip
    files[f"release/{META}/release.json"] = (json.dumps(meta) + "\n").encode()
    files[f"release/{META}/fingerprint"] = f"{shape}\n".encode()
    files.update({f"release/{META}/{n}": text.encode() for n, text in snapshot(s, facts.cpu_count).items()})
    files["files/env.json"] = env_json(s).encode()

    links = []
    for d in s.shared_dirs:
        shared = f"{s.shared_dir}/{d}"
        links.append(
            f"[ -d {q(shared)} ] || quiet install -d -o {q(s.name)} -g {q(s.name)} -m 750 {q(shared)}\n"
            f'rm -rf {q(f"{partial}/{d}")}; mkdir -p "$(dirname {q(f"{partial}/{d}")})"\n'
            f"ln -sfn {q(shared)} {q(f'{partial}/{d}')}"
        )
    # Leftovers of an interrupted run go first; then build aside, complete it, and rename it into place.
    # Links come after chown/chmod, which would otherwise act on what they point at.
    parts.append(
        f"rm -rf {q(s.releases_dir)}/.partial-*\n"
        f'RELEASE={q(new)}; quiet cp -a "$W/release" {q(partial)}\n'
        f"chown -R root:root {q(partial)}; chmod -R u=rwX,go=rX {q(partial)}\n"
        f'quiet install -m 640 -o root -g {q(s.name)} "$W/files/env.json" {q(partial)}/{META}/env.json\n'
        f"ln -sfn {q(venv)} {q(partial)}/.venv\n"
        + "\n".join(links)
        + f"\n[ -e {q(release)} ] && die {q(f'release {new} exists already')}\n"
        f"mv -T {q(partial)} {q(release)} || die {q(f'could not rename {partial}')}; BUILT={q(release)}"
    )
    # The app user imports the release (with app.env) before it can go live: a broken one never is.
    as_app = (
        f"cd {q(release)} && runuser -u {q(s.name)} -- env -i HOME={q(s.base_dir)} LANG=C.UTF-8"
        f" PATH={q(release)}/.venv/bin:/usr/local/bin:/usr/bin:/bin VIRTUAL_ENV={q(release)}/.venv"
        f" /usr/bin/python3 -c {q(_WITH_ENV)} {META}/env.json"
    )
    check = f"gunicorn --check-config --chdir {q(release)} {q(s.module)}"
    parts.append(
        f"out=$({as_app} {q(check)} 2>&1)"
        ' || fail_release "it does not load: $(printf "%s\n" "$out" | grep -v "^[[:space:]]*$" | tail -n 1)"'
    )
    if s.release_command:
        parts.append(
            f"command={q(s.release_command)}\n"
            f'out=$({as_app} "$command" 2>&1) || {{ rc=$?\n'
            "  fail_release \"release command '$command' exited $rc:"
            ' $(printf "%s\n" "$out" | grep -v "^[[:space:]]*$" | tail -n 1)"\n}'
        )
    parts.append(f'switch_to {q(release)}\nreload_app "$LIVE_DIR" {q(release)}\nCHANGED=1')

    live = current_release(s, facts)
    prune = releases_to_prune([*facts.releases, new], s.keep_releases, (new, live))
    kept = [r for r in [*facts.releases, new] if r not in prune]
    venvs = venvs_to_prune(facts.venv_dirs, [facts.release_venv(r) for r in kept if r != new] + [ctx.venv_id])
    doomed = [f"{s.releases_dir}/{r}" for r in prune] + [f"{s.venvs_dir}/{v}" for v in venvs]
    # Pruned at the very end of a successful run only (see pipeline.apply_script).
    parts.append("PRUNE=(" + " ".join(q(p) for p in doomed) + ")")
    return StepPlan("push", "\n".join(parts), files)
