"""Shared builders for unit tests: settings from invoke.yaml, and facts of fresh or converged servers."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from tasks import configs, recap
from tasks.converge import plan
from tasks.dependencies import declared
from tasks.facts import Facts, PathState, Program, Release, Unit, User
from tasks.layout import Layout, layout
from tasks.platform import DEBIAN_12
from tasks.settings import PROJECT_ROOT, Settings, parse
from tasks.source import read_source
from tasks.steps import PIPELINE
from tasks.steps.model import Situation, Step, StepPlan
from tasks.steps.provision import directories
from tasks.steps.push import fingerprint, release_id
from tasks.wheels import UV_VERSION, Target, venv_id

NOW = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
TARGET = Target("3.11.2", "x86_64", "2.36")
PLATFORM = DEBIAN_12
STEPS = {step.name: step for step in PIPELINE}


def default_config() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "invoke.yaml").read_text())


@pytest.fixture(autouse=True)
def fresh_run(monkeypatch) -> recap.Run:
    """Each test its own run (recap.current, this process's): the steps it reports, the lines it prints
    and its exit code apart from every other test's, and none left for the exit of pytest's process."""
    fresh = recap.Run()
    monkeypatch.setattr(recap, "current", fresh)
    return fresh


@pytest.fixture
def settings() -> Settings:
    return parse(default_config())


def paths_of(s: Settings) -> Layout:
    return layout(s, PLATFORM)


def fresh_facts() -> Facts:
    """A Debian 12 server as the lab hands it out: python3, no packages, empty apt lists."""
    inactive = Unit("inactive", "")
    return Facts(
        platform=PLATFORM.id, system="Debian GNU/Linux 12 (bookworm)", python="3.11.2", machine="x86_64",
        glibc="2.36", cpus=2, units={"nginx": inactive, "supervisor": inactive},
    )  # fmt: skip


def converged_facts(s: Settings, cpu_count: int = 2) -> Facts:
    """What the probe reports right after a successful deploy of the local app."""
    paths = paths_of(s)
    app = read_source(s.src)
    vid = venv_id(declared(app.root, s.gunicorn), TARGET)
    live = release_id(app.content_hash, NOW)
    states = {
        path: PathState.dir(owner, group, mode)
        for path, owner, group, mode in directories(s, paths, PLATFORM)
    }
    files = {
        paths.tmpfiles_conf: configs.tmpfiles(s, paths),
        paths.nginx_site: configs.nginx_site(s, paths, PLATFORM),
        paths.supervisor_conf: configs.supervisor_program(s, paths),
        paths.gunicorn_conf: configs.gunicorn_conf(s, paths, cpu_count),
        paths.nginx_default: "stock",
        paths.nginx_default_backup: "stock",
    }
    states |= {path: PathState.file(configs.sha256(text)) for path, text in files.items()}
    states |= {
        paths.current: PathState.link(f"{paths.releases_dir}/{live}"),
        f"{paths.current}/.venv": PathState.link(f"{paths.venvs_dir}/{vid}"),
        paths.nginx_link: PathState.link(paths.nginx_site),
    }
    active = Unit("active", "enabled")
    return replace(
        fresh_facts(),
        cpus=cpu_count,
        package_lists_age=100,
        app_user=User(f"/srv/{s.name}", PLATFORM.nologin_shell),
        installed=frozenset(PLATFORM.packages.all()),
        paths=states,
        releases=(Release(live, vid, {"id": live, "venv": vid}),),
        fingerprint=fingerprint(s, paths, PLATFORM, app, vid, cpu_count),
        venvs=frozenset({vid}),
        venv_dirs=frozenset({vid}),
        tools=frozenset({f"uv-{UV_VERSION}"}),
        program=Program("RUNNING", 427, "pid 427, uptime 0:01:00"),
        units={"nginx": active, "supervisor": active},
        health="200",
        healthy=True,
    )


def situation(s: Settings, probed: Facts, steps: tuple[str, ...] = tuple(STEPS)) -> Situation:
    app = read_source(s.src)
    deps = declared(app.root, s.gunicorn)
    vid = venv_id(deps, TARGET)
    built = () if vid in probed.venvs else (Path("/cache/flask-3.1.3-py3-none-any.whl"),)
    uv = None if f"uv-{UV_VERSION}" in probed.tools or not built else Path("/cache/uv.whl")
    return Situation(
        s, probed, PLATFORM, paths_of(s), steps, NOW, user="alice", control_host="laptop",
        declared=deps, venv_id=vid, wheels=built, uv_wheel=uv, app=app if "push" in steps else None,
    )  # fmt: skip


def plans(s: Settings, probed: Facts, steps: tuple[str, ...] = tuple(STEPS)) -> list[StepPlan]:
    """The plans of pipeline steps (by name) on a server with these facts."""
    return plan(situation(s, probed, steps), [STEPS[name] for name in steps])


def plan_one(s: Settings, probed: Facts, step: Step) -> StepPlan:
    (only,) = plan(situation(s, probed, (step.name,)), [step])
    return only


def acting(found: list[StepPlan]) -> list[str]:
    return [p.name for p in found if p.acts]


def script_of(plan_: StepPlan) -> str:
    return "\n".join(plan_.commands)
