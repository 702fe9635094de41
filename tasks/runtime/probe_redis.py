"""redis's part of the probe (runtime/probe.py runs it), with services.redis only: the app's Redis unit
as systemd has it (its config, drop-in and data directory are described paths).

    asked: {} (services.redis off), or {"unit": UNIT}
"""

from probe import units


def gather(asked):
    if not asked:
        return {}
    return {"redis": units([asked["unit"]])[asked["unit"]]}
