"""What a server must not hold before the kit acts on it: a user it did not make, the app's paths held
by something else, its port taken, a link planted among the shared directories."""

from dataclasses import replace

from tasks.converge import _situation
from tasks.facts import PathState, User
from tasks.steps import PIPELINE
from tasks.steps.guards import Listener, Listeners, refusals
from tests.unit.conftest import converged_facts, fresh_facts, paths_of, situation


def test_a_fresh_and_a_converged_server_are_fine(settings):
    assert refusals(situation(settings, fresh_facts())) == []
    assert refusals(situation(settings, converged_facts(settings))) == []


def test_a_user_the_kit_did_not_make(settings):
    taken = replace(fresh_facts(), app_user=User("/var/lib/flaskdemo", "/bin/sh"))
    assert refusals(situation(settings, taken)) == [
        "app.name: the server has a user flaskdemo that flaskdeploy did not make (its home is"
        " /var/lib/flaskdemo): choose another app.name"
    ]


def test_the_apps_paths_held_by_something_else(settings):
    paths = paths_of(settings)
    held = replace(fresh_facts(), paths={paths.run_dir: PathState.dir("sshd", "root", "755")})
    assert refusals(situation(settings, held)) == [
        "app.name: /run/flaskdemo exists but the server has no user flaskdemo: it belongs to something else;"
        " choose another app.name"
    ]


def test_a_port_another_user_listens_on(settings):
    converged = converged_facts(settings)
    assert refusals(situation(settings, converged)) == []
    theirs = converged.having(Listeners((Listener(99, "postgres", "postgres"), Listener(7, "root", "nc"))))
    assert refusals(situation(settings, theirs)) == [
        "app.port: 8080 is taken by postgres (pid 99, user postgres): choose another app.port"
    ]


def test_a_link_among_the_shared_directories(settings):
    paths = paths_of(settings)
    converged = converged_facts(settings)
    planted = replace(converged, paths={**converged.paths, paths.shared("instance"): PathState.link("/etc")})
    (refusal,) = refusals(situation(settings, planted))
    assert refusal.startswith("/srv/flaskdemo/shared/instance is a symbolic link, which root will not follow")


def test_directories_earlier_versions_left_to_the_app_user_wait_for_provision(settings):
    paths = paths_of(settings)
    converged = converged_facts(settings)
    old = replace(
        converged, paths={**converged.paths, paths.log_dir: PathState.dir("flaskdemo", "adm", "750")}
    )
    (refusal,) = refusals(situation(settings, old, ("push",)))
    assert refusal == (
        "/var/log/flaskdemo is writable by flaskdemo (as earlier versions left it): run `fab provision` first"
    )
    assert refusals(situation(settings, old)) == []  # deploy: provision takes it back first


def test_the_run_stops_at_the_first_refusal_reported_as_step_guard(settings):
    theirs = converged_facts(settings).having(Listeners((Listener(99, "postgres", "postgres"),)))
    assert _situation(settings, theirs, PIPELINE, None, "alice", "laptop") == (
        None,
        ("guard", "app.port: 8080 is taken by postgres (pid 99, user postgres): choose another app.port"),
    )
