"""supervisor_update: the program and gunicorn config installed, applied only when they changed."""

from dataclasses import replace

from tasks.steps import supervisor
from tasks.steps.supervisor import Program
from tests.unit.conftest import converged_facts, plan_one


def test_changed_gunicorn_config_is_applied_by_supervisor_update(settings):
    probed = converged_facts(settings, cpu_count=2)
    more_cpus = replace(probed, cpus=8)
    update = plan_one(settings, more_cpus, supervisor.STEP)
    assert update.commands == ("supervisor_update files/gunicorn.conf.py files/supervisor.conf",)
    assert b"workers = 17" in update.files["files/gunicorn.conf.py"]
    assert not plan_one(settings, probed, supervisor.STEP).acts


def test_a_stopped_program_is_started(settings):
    stopped = converged_facts(settings).having(Program("STOPPED", None))
    assert plan_one(settings, stopped, supervisor.STEP).acts
