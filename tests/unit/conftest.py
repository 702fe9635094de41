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
from tasks.facts import Facts, PathState, ReleaseDir, Unit, User
from tasks.layout import Layout, layout
from tasks.platform import DEBIAN_12
from tasks.settings import PROJECT_ROOT, Process, Settings, parse
from tasks.source import read_source
from tasks.steps import PIPELINE, push
from tasks.steps.model import Situation, Step, StepPlan
from tasks.steps.provision import Packages, directories
from tasks.steps.push import Releases, fingerprint, release_id
from tasks.steps.supervisor import Program
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


def with_processes(s: Settings, **processes: str | Process) -> Settings:
    """s with these app.processes (name -> command, or Process)."""
    wanted = {name: p if isinstance(p, Process) else Process(p) for name, p in processes.items()}
    return replace(s, app=replace(s.app, processes=wanted))


def paths_of(s: Settings) -> Layout:
    return layout(s, PLATFORM)


def fresh_facts() -> Facts:
    """A Debian 12 server as the lab hands it out: python3, no packages, empty apt lists."""
    inactive = Unit("inactive", "")
    return Facts(
        platform=PLATFORM.id, system="Debian GNU/Linux 12 (bookworm)", python="3.11.2", machine="x86_64",
        glibc="2.36", cpus=2, units={"nginx": inactive, "supervisor": inactive},
    )  # fmt: skip


def amended(facts: Facts, kind: type, **changes: object) -> Facts:
    """facts with some of a step's facts (a type of steps.KINDS) changed."""
    return facts.having(replace(facts.of(kind), **changes))


def converged_facts(s: Settings, cpu_count: int = 2) -> Facts:
    """What the probe reports right after a successful deploy of the local app."""
    paths = paths_of(s)
    app = read_source(s.app.src)
    vid = venv_id(declared(app.root, s.app.gunicorn), TARGET)
    live = release_id(app.content_hash, NOW)
    states = {
        path: PathState.dir(owner, group, mode)
        for path, owner, group, mode in directories(s, paths, PLATFORM)
    }
    files = {paths.nginx_default: "stock", paths.nginx_default_backup: "stock"}
    states |= {path: PathState.file(configs.sha256(text)) for path, text in files.items()}
    states |= {
        paths.current: PathState.link(f"{paths.releases_dir}/{live}"),
        f"{paths.current}/.venv": PathState.link(f"{paths.venvs_dir}/{vid}"),
        paths.nginx_link: PathState.link(paths.nginx_site),
    }
    active = Unit("active", "enabled")
    converged = replace(
        fresh_facts(),
        cpus=cpu_count,
        app_user=User(f"/srv/{s.app.name}", PLATFORM.nologin_shell),
        paths=states,
        units={"nginx": active, "supervisor": active},
        health="200",
        healthy=True,
    ).having(
        Packages(frozenset(PLATFORM.packages.all()), package_lists_age=100),
        Releases(
            releases=(ReleaseDir(live, vid, {"id": live, "venv": vid}),),
            fingerprint=fingerprint(s, paths, PLATFORM, app, vid, cpu_count),
            venvs=frozenset({vid}),
            venv_dirs=frozenset({vid}),
            tools=frozenset({f"uv-{UV_VERSION}"}),
        ),
        Program("RUNNING", 427, "pid 427, uptime 0:01:00"),
    )
    return written(s, converged)


def written(s: Settings, facts: Facts) -> Facts:
    """The facts once every step wrote the config files it plans to write (StepPlan.writes): how a step's
    files join the converged server without a line here."""
    for _ in PIPELINE:  # a step's files may change what a later one writes: at most one pass a step
        writes = {path: text for p in plans(s, facts) if p.acts for path, text in p.writes.items()}
        if all(facts.sha256(path) == configs.sha256(text) for path, text in writes.items()):
            return facts
        files = {path: PathState.file(configs.sha256(text)) for path, text in writes.items()}
        facts = replace(facts, paths={**facts.paths, **files})
    return facts


def situation(s: Settings, probed: Facts, steps: tuple[str, ...] = tuple(STEPS)) -> Situation:
    app = read_source(s.app.src)
    deps = declared(app.root, s.app.gunicorn)
    vid = venv_id(deps, TARGET)
    held = probed.of(Releases)
    built = () if vid in held.venvs else (Path("/cache/flask-3.1.3-py3-none-any.whl"),)
    uv = None if f"uv-{UV_VERSION}" in held.tools or not built else Path("/cache/uv.whl")
    ready = push.Ready(app, deps, vid, wheels=built, uv_wheel=uv)
    return Situation(
        s, probed, PLATFORM, paths_of(s), steps, NOW, user="alice", control_host="laptop",
        prepared={"push": ready} if "push" in steps else {},
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
