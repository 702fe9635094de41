"""provision: apt packages, the app's system user, its directories and its runtime directory."""

from __future__ import annotations

import shlex

from tasks import configs
from tasks.facts import PACKAGES
from tasks.settings import Settings
from tasks.steps import Context, StepPlan


def directories(s: Settings) -> list[tuple[str, str, str, str]]:
    """(path, owner, group, mode) of every directory the app needs."""
    return [
        (s.base_dir, "root", "root", "755"),
        (s.releases_dir, "root", "root", "755"),
        (s.venvs_dir, "root", "root", "755"),
        # What the app writes lives here, outside the disposable releases.
        (s.shared_dir, s.name, s.name, "750"),
        (f"{s.shared_dir}/instance", s.name, s.name, "750"),
        (s.log_dir, s.name, "adm", "750"),
        (s.run_dir, s.name, s.name, "755"),
    ]


def plan_provision(ctx: Context) -> StepPlan:
    s, facts, q = ctx.settings, ctx.facts, shlex.quote
    parts = []
    missing = [p for p in PACKAGES if not facts.installed(p)]
    if missing:
        age = facts.apt_lists_age
        if age is None or age > s.apt_cache_valid_time:
            parts.append("quiet apt-get update -q")
        parts.append(
            "quiet apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold "
            + " ".join(missing)
        )
        parts.append("CHANGED=1")
    if facts.user_shell != "/usr/sbin/nologin":
        parts.append(
            f"if getent passwd {q(s.name)} >/dev/null; then quiet usermod -s /usr/sbin/nologin {q(s.name)};"
            f" else quiet useradd --system --user-group --no-create-home --home-dir {q(s.base_dir)}"
            f" --shell /usr/sbin/nologin {q(s.name)}; fi; CHANGED=1"
        )
    for path, owner, group, mode in directories(s):
        if facts.directory(path) != f"{owner}:{group}:{mode}":
            parts.append(f"quiet install -d -o {owner} -g {group} -m {mode} {q(path)}; CHANGED=1")
    tmpfiles = configs.tmpfiles(s)
    files = {}
    if facts.sha256(s.tmpfiles_conf) != configs.sha256(tmpfiles):
        files["files/tmpfiles.conf"] = tmpfiles.encode()
        parts.append(f'install_file "$W/files/tmpfiles.conf" {q(s.tmpfiles_conf)} 644')
    return StepPlan("provision", "\n".join(parts), files)
