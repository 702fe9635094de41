"""redis's part of the probe (runtime/probe.py runs it), with services.redis only: the app's Redis unit
as systemd has it (its config, drop-in and data directory are described paths).

    asked: {} (services.redis off), or {"unit": UNIT, "shared": UNIT}: the app's, and the package's own
"""

from probe import units


def gather(asked):
    if not asked:
        return {}
    found = units([asked["unit"], asked["shared"]])
    return {"redis": {**found[asked["unit"]], "shared": found[asked["shared"]]}}
