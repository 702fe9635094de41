"""enable_boot: the units that run the site (nginx, supervisor) start at boot, and with them the app."""

from __future__ import annotations

from tasks.shell import line
from tasks.steps.model import Situation, Step, StepPlan
from tasks.steps.provision import SERVICES


def plan(sit: Situation) -> StepPlan:
    units = sit.platform.units
    if sit.settings.https.mode == "acme":  # certbot's renewals
        units = (*units, sit.platform.certbot_timer)
    if all(sit.facts.enabled(unit) for unit in units):
        return StepPlan()
    off = [unit for unit in units if not sit.facts.enabled(unit)]
    return StepPlan((line("enable_at_boot", *units),), why=(f"enable at boot: {' '.join(off)}",))


STEP = Step(
    "enable_boot", "nginx and supervisor enabled at boot (checked with systemctl is-enabled).", plan,
    requires=(SERVICES,), runtime=("boot.sh",),
)  # fmt: skip
