"""A graceful reload of gunicorn, done when only new workers run.

    reload.py PIDFILE GUNICORN_CONF TIMEOUT

HUP the master (it re-reads its config, re-runs chdir on `current`, starts new workers and stops the
old ones gracefully), then wait until none of the old workers is left and the configured number of new
ones runs: from then on every request is served by the new release. Exit 3: no master runs (nothing to
reload). Any other failure exits 1 with its reason as the last line.
"""

import os
import signal
import sys
import time


def master_pid(pidfile):
    try:
        with open(pidfile) as handle:
            master = int(handle.read().split()[0])
        os.kill(master, 0)
    except (OSError, ValueError, IndexError):
        return None
    return master


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


def workers(master):
    """The live children of the master."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        state = state_and_parent(pid)
        if state and state[1] == master and state[0] != "Z":
            found.add(int(pid))
    return found


def main(pidfile, conf, timeout):
    master = master_pid(pidfile)
    if master is None:
        return 3
    expected = configured_workers(conf)
    old = workers(master)
    os.kill(master, signal.SIGHUP)
    deadline = time.monotonic() + float(timeout)
    while True:
        time.sleep(0.05)
        if not running(master):
            sys.exit("the gunicorn master exited on reload")
        now = workers(master)
        if not now & old and len(now) >= expected:
            return 0
        if time.monotonic() > deadline:
            sys.exit(f"{len(now & old)} old workers still run {timeout} s after the reload")


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
