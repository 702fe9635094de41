"""The deploy lock on a server: one deploy, rollback or restart of an app at a time.

Taken atomically (a directory renamed into place with its owner record already inside, so the record
is never missing), not test-then-write. The record names who holds the lock, for what, since when,
and the sshd process serving the holder's SSH connection. The lock lives exactly as long as that
connection: when a run is interrupted (Ctrl-C, a cut link, a crash) its sshd exits, the lock is stale,
and the next run takes it over. No lock blocks forever, and none outlives a reboot (/run/lock).
"""

from __future__ import annotations

import re
import shlex

LOCKED_EXIT = 75  # EX_TEMPFAIL: try again later


def lock_dir(app_name: str) -> str:
    return f"/run/lock/flaskdeploy-{app_name}"


# Finds the sshd process of this SSH connection: the nearest ancestor named sshd (sshd-session in
# OpenSSH 9.8+). Every command of one Fabric run shares it; it exits when the connection closes.
_CONNECTION_PID = r"""
conn=$$
while [ "$conn" -gt 1 ]; do
    case "$(cat /proc/$conn/comm 2>/dev/null)" in sshd|sshd-session) break ;; esac
    conn=$(awk '{print $4}' /proc/$conn/stat 2>/dev/null || echo 1)
done
"""


def acquire_script(app_name: str, holder: str, action: str) -> str:
    """Shell that takes the lock for this connection, or prints `::fail lock ...` and exits 75.

    Taking it again on the same connection is fine, so each command of a run may start with this.
    """
    lock = shlex.quote(lock_dir(app_name))
    who = f"{_plain(holder)} ({_plain(action)})"
    return (
        _CONNECTION_PID
        + f"""
lock={lock}
record="{who} since $(date -u +%Y-%m-%dT%H:%M:%SZ) conn=$conn"
take_lock() {{
    tmp="$lock.new.$$"; mkdir -p "$tmp" && printf '%s\\n' "$record" > "$tmp/owner" \\
        && mv -T "$tmp" "$lock" 2>/dev/null || {{ rm -rf "$tmp"; return 1; }}
}}
if ! take_lock; then
    held=$(cat "$lock/owner" 2>/dev/null)
    held_conn=${{held##*conn=}}
    if [ "$held_conn" != "$conn" ]; then
        case "$(cat /proc/$held_conn/comm 2>/dev/null)" in
        sshd|sshd-session)
            echo "::fail lock locked by ${{held% conn=*}}: wait for that run to finish"
            exit {LOCKED_EXIT} ;;
        esac
        # The holder's connection is gone: the lock is stale. Move it aside (atomic), then take it.
        mv -T "$lock" "$lock.stale.$$" 2>/dev/null && rm -rf "$lock.stale.$$"
        take_lock || {{ echo "::fail lock locked by another run that just started"; exit {LOCKED_EXIT}; }}
    fi
fi
"""
    )


def _plain(text: str) -> str:
    """Names as they may appear in the record and in shell double quotes."""
    return re.sub(r"[^A-Za-z0-9@._-]", "_", text)


def hold_script(app_name: str, holder: str, action: str) -> str:
    """Shell opening a run's apply command: keep the lock, stop with the connection, drop the lock at exit.

    Without a terminal, a command does not die with its SSH connection. A watchdog ends this command's
    process group once the connection's sshd process is gone, so an interrupted run stops where it is
    instead of working on beside the run that takes its stale lock over. `drop_lock` (for the EXIT trap)
    releases the lock if this connection holds it.
    """
    return (
        acquire_script(app_name, holder, action)
        + """
( while kill -0 "$conn" 2>/dev/null; do sleep 0.2; done; kill -TERM 0 ) </dev/null >/dev/null 2>&1 &
watchdog=$!
drop_lock() {
    kill "$watchdog" 2>/dev/null
    held=$(cat "$lock/owner" 2>/dev/null)
    if [ "${held##*conn=}" = "$conn" ]; then mv -T "$lock" "$lock.done.$$" && rm -rf "$lock.done.$$"; fi
}
"""
    )
