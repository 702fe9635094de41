"""The registry and planning the whole pipeline: which steps act on a fresh, a converged, a half server."""

from dataclasses import replace

from tasks.steps import NAMES, PIPELINE
from tests.unit.conftest import STEPS, acting, converged_facts, fresh_facts, plans, with_processes

# The recipe's steps in its order: the contract `deploy` keeps (other steps may come between them).
RECIPE = (
    "provision", "push", "backup_default", "enable_site", "reload_nginx", "supervisor_update", "enable_boot",
)  # fmt: skip


def test_the_registry_runs_the_recipes_seven_steps_in_its_order():
    assert [name for name in NAMES if name in RECIPE] == list(RECIPE)
    assert NAMES.index("certificate") > NAMES.index("reload_nginx")  # once the site serves the challenge
    assert all(step.doc and step.doc.endswith(".") for step in PIPELINE)
    assert [step.name for step in PIPELINE if step.read] == ["push"]


def test_a_fresh_server_needs_every_step(settings):
    found = plans(with_processes(settings, worker="python worker.py"), fresh_facts())
    assert not [p for p in found if p.blocked]
    off = ("certificate", "postgresql", "redis", "schedule")  # no https, services or jobs
    assert acting(found) == [name for name in NAMES if name not in off]


def test_a_converged_server_needs_nothing(settings):
    assert acting(plans(settings, converged_facts(settings))) == []


def test_a_task_alone_names_the_task_to_run_first(settings):
    for step in ("supervisor_update", "enable_site", "reload_nginx", "backup_default", "enable_boot", "push"):
        (only,) = plans(settings, fresh_facts(), (step,))
        assert only.blocked.endswith("run `fab provision` first"), step
    converged = converged_facts(settings)
    no_release = replace(
        converged, paths={k: v for k, v in converged.paths.items() if not k.endswith("/current")}
    )
    (only,) = plans(settings, no_release, ("supervisor_update",))
    assert only.blocked == "no release on the server: run `fab push` first"


def test_inside_deploy_a_step_does_not_wait_for_what_an_earlier_one_provides(settings):
    # Alone, enable_site on a fresh server is blocked; in deploy, provision runs first.
    assert STEPS["enable_site"].requires
    assert not [p for p in plans(settings, fresh_facts(), ("provision", "enable_site")) if p.blocked]
