"""enable_boot: nginx and supervisor start at boot (and with them the app)."""

from __future__ import annotations

from tasks.steps import Context, StepPlan, blocked

UNITS = ("nginx", "supervisor")


def plan_enable_boot(ctx: Context) -> StepPlan:
    facts = ctx.facts
    missing = not all(facts.installed(unit) for unit in UNITS)
    prerequisite = blocked(ctx, "enable_boot", missing, "nginx or supervisor is not installed", "provision")
    if prerequisite:
        return prerequisite
    if all(facts.enabled(unit) for unit in UNITS):
        return StepPlan("enable_boot")
    return StepPlan(
        "enable_boot",
        f"for unit in {' '.join(UNITS)}; do\n"
        "  systemctl is-enabled -q $unit || { quiet systemctl enable -q $unit; CHANGED=1; }\n"
        '  systemctl is-enabled -q $unit || die "$unit is still not enabled at boot"\n'
        "done",
    )
