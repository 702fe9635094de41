"""A graceful reload of gunicorn, done when only new workers run.

    reload.py SUPERVISORD_PIDFILE GUNICORN_CONF TIMEOUT APP_USER

The master is found as supervisor knows it: the child of supervisord (whose pidfile only root writes)
that runs as the app's user and is no process of the app's other programs (app.processes: their
environment names their program, as supervisor gives it). (Gunicorn writes no pidfile: one in a
directory of the app's user could name any process.) HUP it (it re-reads its config, re-runs chdir on
`current`, starts new workers and stops the old ones gracefully), then wait until none of the old
workers is left and the configured number of new ones runs: from then on every request is served by
the new release.
Exit 3: no master runs (nothing to reload). Any other failure exits 1 with its reason as the last line.
"""

import os
import pwd
import sys
import time
from _signal import SIGHUP  # signal's C half: the signal module's enums cost more than the reload waits


def master_pid(supervisord_pidfile, conf, user):
    """The app's gunicorn master, or None when none runs."""
    try:
        with open(supervisord_pidfile) as handle:
            supervisord = int(handle.read().split()[0])
        uid = pwd.getpwnam(user).pw_uid
    except (OSError, ValueError, IndexError, KeyError):
        return None
    found = {}
    for pid in children(supervisord):
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid or program_of(pid) not in (None, user):
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                found[pid] = handle.read().split(b"\0")
        except OSError:
            continue
    # Of the app's user's programs under supervisord, the one left is its gunicorn (whatever title
    # setproctitle gave it, which may hide its environment too). Should there be more, the one started
    # with the app's config.
    ours = list(found)
    if len(ours) > 1:
        ours = [pid for pid in ours if conf.encode() in found[pid]]
    if len(ours) > 1:
        sys.exit(f"{len(ours)} gunicorn masters of {user} run under supervisord: {sorted(ours)}")
    return ours[0] if ours else None


def program_of(pid):
    """The supervisor program a process belongs to, as its environment says (None: it does not say)."""
    with open(f"/proc/{pid}/environ", "rb") as handle:
        for variable in handle.read().split(b"\0"):
            if variable.startswith(b"SUPERVISOR_PROCESS_NAME="):
                return variable.partition(b"=")[2].decode(errors="replace")
    return None


def configured_workers(conf):
    with open(conf) as handle:
        for line in handle:
            if line.startswith("workers ="):
                return int(line.split("=")[1])
    return 1


def state_and_parent(pid):
    """A process's state letter and parent pid; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state, ppid = handle.read().rsplit(")", 1)[1].split()[:2]
    except (OSError, ValueError):
        return None
    return state, int(ppid)


def running(pid):
    """Alive: neither gone nor a zombie (exited, not yet reaped by its parent)."""
    found = state_and_parent(pid)
    return found is not None and found[0] != "Z"


def children(parent):
    """The live children of a process: a master's workers, supervisord's programs."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        state = state_and_parent(pid)
        if state and state[1] == parent and state[0] != "Z":
            found.add(int(pid))
    return found


def main(supervisord_pidfile, conf, timeout, user):
    master = master_pid(supervisord_pidfile, conf, user)
    if master is None:
        return 3
    expected = configured_workers(conf)
    old = children(master)
    os.kill(master, SIGHUP)
    deadline = time.monotonic() + float(timeout)
    while True:
        time.sleep(0.05)
        if not running(master):
            sys.exit("the gunicorn master exited on reload")
        now = children(master)
        if not now & old and len(now) >= expected:
            return 0
        if time.monotonic() > deadline:
            sys.exit(f"{len(now & old)} old workers still run {timeout} s after the reload")


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
