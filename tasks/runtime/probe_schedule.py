"""schedule's part of the probe (runtime/probe.py runs it): the app's scheduled jobs as the server has
them (their units and command files, their timers' state, next and last runs), and the server's own word
on each calendar expression the settings give (`systemd-analyze calendar`).

    asked: {"unit_dir": DIR, "prefix": "APP-job.", "jobs_dir": DIR, "whens": [EXPRESSION, ...]}
"""

import os

from probe import entries, output, read_text

SUFFIXES = (".service", ".timer")
MARK = "rendered from configs/job."  # the first line of every unit the kit writes (configs/job.*.j2)


def gather(asked):
    names = found_jobs(asked)
    return {"schedule": {"jobs": jobs(asked["prefix"], names), "calendar": calendar(asked["whens"])}}


def found_jobs(asked):
    """The jobs of the app on the server: a unit the kit wrote (APP-job.NAME.timer or .service, its mark
    on its first line: one made by hand is none of the kit's) or a command file (NAME.command) of one is
    there."""
    names = set()
    prefix = asked["prefix"]
    try:
        units = os.listdir(asked["unit_dir"])
    except OSError:
        units = []
    for name in units:
        for suffix in SUFFIXES:
            if name.startswith(prefix) and name.endswith(suffix):
                first = read_text(os.path.join(asked["unit_dir"], name)).partition("\n")[0]
                if MARK in first:
                    names.add(name[len(prefix) : -len(suffix)])
    for name in entries(asked["jobs_dir"]):
        if name.endswith(".command"):
            names.add(name[: -len(".command")])
    return sorted(names)


PROPERTIES = (
    "Id,ActiveState,UnitFileState,NextElapseUSecRealtime,ExecMainStartTimestamp,Result,ExecMainStatus"
)


def jobs(prefix, names):
    """Job -> its timer's state (active, enabled) and next run, its last run's start (by the timer or by
    hand), both as systemctl shows them, in the server's time zone ("Mon 2026-12-07 18:00:00 UTC"; None:
    none), and its service's state ("activating" while a run goes on), its last run's result and exit
    status."""
    if not names:
        return {}
    shown = output(
        ["systemctl", "show", "--property=" + PROPERTIES]
        + [prefix + name + suffix for name in names for suffix in SUFFIXES]
    )
    units = {}
    for block in shown.strip().split("\n\n"):
        fields = dict(line.partition("=")[::2] for line in block.splitlines())
        units[fields.get("Id", "")] = fields
    found = {}
    for name in names:
        timer = units.get(prefix + name + ".timer", {})
        service = units.get(prefix + name + ".service", {})
        found[name] = {
            "timer_active": timer.get("ActiveState", ""),
            "timer_enabled": timer.get("UnitFileState", ""),
            "next_run": timer.get("NextElapseUSecRealtime") or None,
            "last_run": service.get("ExecMainStartTimestamp") or None,
            "service_active": service.get("ActiveState", ""),
            "result": service.get("Result", ""),
            "exit_status": int(service["ExecMainStatus"])
            if service.get("ExecMainStatus", "").isdigit()
            else None,
        }
    return found


def calendar(whens):
    """Expression -> "" when the server's systemd takes it, else why not. `systemd-analyze calendar`
    answers a block for each expression it parses (and the errors on stderr): all at once first, and
    only when a block is missing, one at a time."""
    if not whens or parsed(whens) == len(whens):
        return {when: "" for when in whens}
    return {when: "" if parsed([when]) else "systemd-analyze calendar refuses it" for when in whens}


def parsed(whens):
    """How many of the expressions `systemd-analyze calendar` parses: its blocks of output."""
    shown = output(["systemd-analyze", "calendar", *whens])
    return sum(1 for block in shown.split("\n\n") if "Normalized form:" in block)
