from dataclasses import replace

from tasks.facts import Unit
from tasks.steps import boot
from tests.unit.conftest import converged_facts, plan_one


def test_units_not_enabled_at_boot_are_enabled(settings):
    converged = converged_facts(settings)
    assert not plan_one(settings, converged, boot.STEP).acts
    disabled = replace(converged, units={**converged.units, "supervisor": Unit("active", "disabled")})
    assert plan_one(settings, disabled, boot.STEP).commands == ("enable_at_boot nginx supervisor",)
