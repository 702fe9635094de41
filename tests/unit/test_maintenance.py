"""status: the lines it shows for a server, from the probe's facts."""

from dataclasses import replace

from tasks.facts import Unit
from tasks.maintenance import status_lines
from tasks.probe import Found
from tests.unit.conftest import PLATFORM, converged_facts, fresh_facts, paths_of


def test_a_deployed_server(settings):
    facts = converged_facts(settings)
    lines = status_lines(Found(facts, PLATFORM, paths_of(settings)))
    assert lines == [
        f"release: {facts.releases[-1].id}",
        "app: flaskdemo RUNNING pid 427, uptime 0:01:00",
        "nginx: active, at boot: enabled",
        "supervisor: active, at boot: enabled",
    ]


def test_a_fresh_server_and_a_stopped_unit(settings):
    lines = status_lines(Found(fresh_facts(), PLATFORM, paths_of(settings)))
    assert lines[:2] == ["release: none", "app: supervisor is not installed (run fab deploy)"]
    assert lines[2] == "nginx: inactive, at boot: no"
    stopped = replace(converged_facts(settings), program=None, units={"nginx": Unit("failed", "disabled")})
    lines = status_lines(Found(stopped, PLATFORM, paths_of(settings)))
    assert lines[1] == "app: flaskdemo is not a program of supervisor (run fab deploy)"
    assert lines[2:] == ["nginx: failed, at boot: no", "supervisor: unknown, at boot: no"]
