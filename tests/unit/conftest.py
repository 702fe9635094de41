"""Shared builders for unit tests: settings from invoke.yaml, and facts of fresh or converged servers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from tasks import configs, facts
from tasks.packages import directories
from tasks.release import fingerprint, read_source, release_id
from tasks.settings import PROJECT_ROOT, Settings, parse
from tasks.steps import PIPELINE, Context
from tasks.wheels import Target, venv_id

NOW = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
TARGET = Target("3.11", "x86_64", "2.36")


def default_config() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "invoke.yaml").read_text())


@pytest.fixture
def settings() -> Settings:
    return parse(default_config())


def fresh_facts() -> facts.Facts:
    """A Debian server as the lab hands it out: python3, no packages, empty apt lists."""
    return facts.Facts(
        {"python": "3.11", "machine": "x86_64", "glibc": "2.36", "nproc": "2", "apt_lists_age": "-1"}
    )


def converged_facts(s: Settings, cpu_count: int = 2) -> facts.Facts:
    """What the probe reports right after a successful deploy of the local app."""
    app = read_source(s.src)
    vid = venv_id(app.requirements, TARGET)
    current = f"{s.releases_dir}/{release_id(app.content_hash, NOW)}"
    values = dict(fresh_facts().values, nproc=str(cpu_count), apt_lists_age="100", user="/usr/sbin/nologin")
    values |= {f"pkg.{p}": "installed" for p in facts.PACKAGES}
    values |= {f"path.{path}": f"D:{owner}:{group}:{mode}" for path, owner, group, mode in directories(s)}
    files = {
        s.tmpfiles_conf: configs.tmpfiles(s),
        s.nginx_site: configs.nginx_site(s),
        s.supervisor_conf: configs.supervisor_program(s),
        s.gunicorn_conf: configs.gunicorn_conf(s, cpu_count),
        facts.NGINX_DEFAULT: "stock",
        facts.NGINX_DEFAULT_BAK: "stock",
    }
    values |= {f"path.{path}": f"F:{configs.sha256(text)}" for path, text in files.items()}
    values |= {
        f"path.{s.current}": f"L:{current}",
        f"path.{s.current}/.venv": f"L:{s.venvs_dir}/{vid}",
        f"path.{s.nginx_link}": f"L:{s.nginx_site}",
        f"release.{Path(current).name}": f"{s.venvs_dir}/{vid}",
        "fingerprint": fingerprint(s, app, vid, cpu_count),
        "venvs": vid,
        "venv_dirs": vid,
        "program": "RUNNING 427",
        "nginx_active": "active",
        "nginx_pid": "328",
        "nginx_stale": "0",
        "supervisor_active": "active",
        "enabled.nginx": "enabled",
        "enabled.supervisor": "enabled",
        "health": "200",
    }
    return facts.Facts(values)


def context(s: Settings, probed: facts.Facts, steps: tuple[str, ...] = PIPELINE) -> Context:
    app = read_source(s.src)
    vid = venv_id(app.requirements, TARGET)
    wheels = () if vid in probed.venvs else (Path("/cache/flask-3.1.3-py3-none-any.whl"),)
    return Context(s, probed, steps, NOW, venv_id=vid, wheels=wheels, app=app if "push" in steps else None)
