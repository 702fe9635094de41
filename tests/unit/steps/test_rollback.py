"""Rollback planning and its refusals, and restart's."""

from dataclasses import replace

from tasks.facts import ABSENT, PathState, ReleaseDir
from tasks.steps import restart, rollback
from tasks.steps.push import Releases
from tests.unit.conftest import amended, converged_facts, fresh_facts, paths_of, plan_one

OLD = "20261125T090000Z-aaaaaaaaaaaa"


def server_with_two_releases(s, old_venv: str = "v1"):
    """The live release (from converged_facts) and an older one, previous, on venv `old_venv`."""
    probed = converged_facts(s)
    paths = paths_of(s)
    held = probed.of(Releases)
    return amended(
        replace(
            probed, paths={**probed.paths, paths.previous: PathState.link(f"{paths.releases_dir}/{OLD}")}
        ),
        Releases,
        releases=(ReleaseDir(OLD, old_venv), *held.releases),
        venvs=held.venvs | {"v1"},
    )


def test_rollback_goes_to_the_previous_release_with_its_configs(settings):
    step = plan_one(settings, server_with_two_releases(settings), rollback.step())
    assert not step.blocked
    assert step.commands == (f"roll_back_to {OLD}",)
    assert not step.files  # SSH only: no wheels, no code


def test_rollback_to_an_id_and_the_refusals(settings):
    probed = server_with_two_releases(settings)
    live = probed.of(Releases).releases[-1].id
    assert plan_one(settings, probed, rollback.step(OLD)) == plan_one(settings, probed, rollback.step())
    assert not plan_one(settings, probed, rollback.step(live)).acts  # already live: nothing to do
    assert plan_one(settings, probed, rollback.step("20200101T000000Z-x")).blocked == (
        "no release 20200101T000000Z-x on the server (see `fab releases`)"
    )
    gone = server_with_two_releases(settings, old_venv="pruned")
    assert plan_one(settings, gone, rollback.step()).blocked == (
        f"release {OLD} cannot run: its venv pruned is gone; deploy instead"
    )
    no_previous = replace(probed, paths={**probed.paths, paths_of(settings).previous: ABSENT})
    assert plan_one(settings, no_previous, rollback.step()).blocked.startswith(
        "no previous release to roll back"
    )
    assert plan_one(settings, fresh_facts(), rollback.step()).blocked == (
        "no release on the server: run `fab deploy` first"
    )


def test_restart_is_graceful_unless_hard_and_needs_a_deployed_app(settings):
    converged = converged_facts(settings)
    assert plan_one(settings, converged, restart.step()).commands == ("reload_live_release", "ensure_running")
    assert plan_one(settings, converged, restart.step(hard=True)).commands == (
        "restart_program",
        "ensure_running",
    )
    assert plan_one(settings, fresh_facts(), restart.step()).blocked == (
        "flaskdemo is not deployed: run `fab deploy` first"
    )
