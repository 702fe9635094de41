# shellcheck shell=bash
# The deploy lock: one deploy, rollback or restart of an app at a time.
#
# Taken atomically: a directory renamed into place with its records already inside, `owner` (who, for
# what, since when; shown as is to a run that finds the lock held) and `conn` (the PID of the sshd
# process serving the holder's SSH connection). The lock lives exactly as long as that connection: when a
# run is interrupted (Ctrl-C, a cut link, a crash) its sshd process exits, the lock is stale, and the next
# run takes it over. It lives in /run/lock, where only root writes, and no lock outlives a reboot.
#
# Reads:   LOCK_DIR, LOCK_HOLDER ("alice@laptop (deploy)"), SSHD_PROCESS_NAMES (array)
# Defines: take_lock, hold_lock, drop_lock; is_connection, connection_pid, create_lock (their helpers)
# Sets:    CONN (this connection's sshd process), LOCK_WATCHDOG

LOCKED_EXIT=75  # EX_TEMPFAIL: try again later

is_connection() {  # PID: whether PID is an sshd process, i.e. an SSH connection that is still open
    local comm name
    comm=$(cat "/proc/$1/comm" 2>/dev/null) || return 1
    for name in "${SSHD_PROCESS_NAMES[@]}"; do
        [ "$comm" = "$name" ] && return 0
    done
    return 1
}

connection_pid() {  # the nearest ancestor that is an sshd process: every command of one run shares it
    local pid=$$ stat
    while [ "$pid" -gt 1 ] && ! is_connection "$pid"; do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || { pid=1; break; }
        stat=${stat##*) }  # the fields after the command name, which may hold spaces: state, ppid, ...
        read -r _ pid _ <<<"$stat"
    done
    echo "$pid"
}

create_lock() {
    local tmp="$LOCK_DIR.new.$$"
    { mkdir -p "$tmp" \
        && printf '%s since %s\n' "$LOCK_HOLDER" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$tmp/owner" \
        && printf '%s\n' "$CONN" >"$tmp/conn" \
        && mv -T "$tmp" "$LOCK_DIR" 2>/dev/null; } || { rm -rf "$tmp"; return 1; }
}

take_lock() {  # take the lock for this connection, or print `::fail lock ...` and exit 75
    CONN=$(connection_pid)
    create_lock && return 0
    local held
    held=$(cat "$LOCK_DIR/conn" 2>/dev/null)
    [ "$held" = "$CONN" ] && return 0  # taken by an earlier command of this run: each may start with this
    if [ -n "$held" ] && is_connection "$held"; then
        echo "::fail lock locked by $(cat "$LOCK_DIR/owner" 2>/dev/null): wait for that run to finish"
        exit "$LOCKED_EXIT"
    fi
    # The holder's connection is gone: the lock is stale. Move it aside (atomically), then take it. Another
    # run may have taken it over since we looked: then what we moved is that run's lock, and goes back.
    if mv -T "$LOCK_DIR" "$LOCK_DIR.stale.$$" 2>/dev/null; then
        if [ "$(cat "$LOCK_DIR.stale.$$/conn" 2>/dev/null)" = "$held" ]; then
            rm -rf "$LOCK_DIR.stale.$$"
        else
            mv -T "$LOCK_DIR.stale.$$" "$LOCK_DIR" 2>/dev/null || rm -rf "$LOCK_DIR.stale.$$"
            echo "::fail lock locked by another run that just started"
            exit "$LOCKED_EXIT"
        fi
    fi
    create_lock || { echo "::fail lock locked by another run that just started"; exit "$LOCKED_EXIT"; }
}

# Without a terminal, a command does not die with its SSH connection: a watchdog ends this command's
# process group once the connection's sshd process is gone, so an interrupted run stops where it is
# instead of working on beside the run that takes its stale lock over.
hold_lock() {  # take_lock for a run's apply command, which ends with its connection
    take_lock
    ( while kill -0 "$CONN" 2>/dev/null; do sleep 0.2; done; kill -TERM 0 ) </dev/null >/dev/null 2>&1 &
    LOCK_WATCHDOG=$!
}

drop_lock() {  # for the EXIT trap: stop the watchdog, release the lock if this connection holds it
    kill "${LOCK_WATCHDOG:-}" 2>/dev/null
    [ "$(cat "$LOCK_DIR/conn" 2>/dev/null)" = "$CONN" ] || return 0
    mv -T "$LOCK_DIR" "$LOCK_DIR.done.$$" && rm -rf "$LOCK_DIR.done.$$"
}
