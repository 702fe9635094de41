"""The processes step's part of the probe (runtime/probe.py runs it): the app's processes as the server
has them, from /proc and the program files, without asking supervisord (supervisorctl takes ~0.2 s).

    asked: {"pidfile": SUPERVISORD_PIDFILE, "user": APP, "conf_dir": DIR, "conf_prefix": "APP.process-",
            "program_prefix": "APP."}

- programs: the names whose program file (conf_dir/APP.process-NAME.conf) is there, with the copies it
  runs (numprocs);
- running: for each running copy of a program of the app (a child of supervisord, as the app's user,
  whose environment names its program: supervisor gives every process SUPERVISOR_GROUP_NAME), its
  process's name, pid, working directory (the release it runs in) and uptime in seconds.
"""

import os
import pwd
import time

from probe import entries, proc_stat, read_text


def gather(asked):
    prefix, suffix = asked["conf_prefix"], ".conf"
    programs = {
        name[len(prefix) : -len(suffix)]: copies(os.path.join(asked["conf_dir"], name))
        for name in entries(asked["conf_dir"])
        if name.startswith(prefix) and name.endswith(suffix)
    }
    return {"processes": {"programs": programs, "running": running(asked)}}


def copies(conf):
    """How many copies a program file runs (its numprocs)."""
    for line in read_text(conf).splitlines():
        if line.startswith("numprocs="):
            return int(line.partition("=")[2]) if line.partition("=")[2].isdigit() else 1
    return 1


def running(asked):
    """Program name (NAME of APP.NAME) -> its running copies."""
    try:
        supervisord = read_text(asked["pidfile"]).split()[0]
        uid = pwd.getpwnam(asked["user"]).pw_uid
    except (IndexError, KeyError):
        return {}
    ticks, boot = os.sysconf("SC_CLK_TCK"), booted()
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        fields = proc_stat(pid)
        if not fields or fields[1] != supervisord or fields[0] == "Z":
            continue
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            with open(f"/proc/{pid}/environ", "rb") as handle:
                environ = dict(v.partition(b"=")[::2] for v in handle.read().split(b"\0"))
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        group = environ.get(b"SUPERVISOR_GROUP_NAME", b"").decode(errors="replace")
        if not group.startswith(asked["program_prefix"]):
            continue
        started = boot + int(fields[19]) / ticks if boot else None
        found.setdefault(group[len(asked["program_prefix"]) :], []).append({
            "process": environ.get(b"SUPERVISOR_PROCESS_NAME", b"").decode(errors="replace"),
            "pid": int(pid),
            "cwd": cwd,
            "uptime": int(time.time() - started) if started else None,
        })  # fmt: skip
    return {name: sorted(copies, key=lambda c: c["process"]) for name, copies in found.items()}


def booted():
    """When the system booted (seconds since the epoch), from /proc/stat's btime; None when unknown."""
    for line in read_text("/proc/stat").splitlines():
        if line.startswith("btime "):
            return int(line.split()[1])
    return None
