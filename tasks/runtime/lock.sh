# shellcheck shell=bash
# The deploy lock: one deploy, rollback or restart of an app at a time.
#
# It lives in a directory only root may use ($LOCK_ROOT, refused when it is anything else), as files:
#   APP.owner  who holds the lock, for what, since when (shown as is to a run that finds it held)
#   APP.conn   "PID START": the sshd process serving the holder's SSH connection, and its start time
#   APP.run    flock'ed by an apply command for as long as it runs
# Whoever reads or writes APP.owner and APP.conn holds a flock on $LOCK_ROOT itself: taking is atomic.
# The lock lives as long as the holder's connection: when a run is interrupted (Ctrl-C, a cut link, a
# crash) its sshd process exits, the lock is stale, and the next run takes it over; an apply command
# that outlives its connection still holds APP.run, and no other run applies until it has ended. A run
# that cannot tell its connection (no sshd process above it) takes no lock: it fails, closed.
#
# Reads:   LOCK_ROOT, APP, LOCK_HOLDER ("alice@laptop (deploy)"), SSHD_PROCESS_NAMES (array)
# Defines: take_lock, hold_lock, drop_lock; lock_fail, process, is_connection, connection_id, lock_root,
#          read_lock_file, write_lock_file (their helpers)
# Sets:    CONN (this run's connection: "PID START"), LOCK_WATCHDOG; PROC_START, PROC_PARENT, PROC_SSHD
#          (process)

LOCKED_EXIT=75  # EX_TEMPFAIL: try again later

lock_fail() {  # CODE MESSAGE: the run ends here, before anything changed (75: locked, try again later)
    if [ "$1" = "$LOCKED_EXIT" ]; then echo "::fail lock $2"; else echo "::fail probe $2"; fi
    exit "$1"
}

process() {  # PID: PROC_START PROC_PARENT PROC_SSHD of a running process (PROC_SSHD: 1 when it is an sshd
    # process); 1 when there is none. Builtins only: the watchdog asks five times a second.
    local comm stat name
    read -r comm 2>/dev/null <"/proc/$1/comm" || return 1
    read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
    stat=${stat##*) }  # the fields after the command name, which may hold spaces: state is field 3
    # shellcheck disable=SC2086  # split into the numbered fields of /proc/PID/stat
    set -- $stat
    PROC_SSHD=0
    for name in "${SSHD_PROCESS_NAMES[@]}"; do
        [ "$comm" = "$name" ] && PROC_SSHD=1
    done
    PROC_START=${20} PROC_PARENT=$2  # field 22: the start time (a reused PID is another process); 4: the parent
}

is_connection() {  # "PID START": whether that sshd process (an SSH connection) still runs
    process "${1%% *}" && [ "$PROC_SSHD" = 1 ] && [ "$PROC_START" = "${1#* }" ]
}

connection_id() {  # "PID START" of the nearest sshd process above this one ("" when there is none)
    local pid=$$
    while [ "$pid" -gt 1 ] && process "$pid" && [ -n "$PROC_START" ]; do
        if [ "$PROC_SSHD" = 1 ]; then
            echo "$pid $PROC_START"
            return 0
        fi
        pid=$PROC_PARENT
    done
}

read_lock_file() {  # NAME: the first line of $LOCK_ROOT/APP.NAME ("" when there is none)
    local text=""
    read -r text 2>/dev/null <"$LOCK_ROOT/$APP.$1"
    printf '%s' "$text"
}

lock_root() {  # make $LOCK_ROOT if it is missing; refuse it unless it is a directory only root may use
    [ -e "$LOCK_ROOT" ] || [ -L "$LOCK_ROOT" ] || mkdir -m 700 "$LOCK_ROOT" 2>/dev/null
    if [ -L "$LOCK_ROOT" ] || [ ! -d "$LOCK_ROOT" ] || [ "$(stat -c %u:%g:%a "$LOCK_ROOT")" != 0:0:700 ]; then
        lock_fail 1 "$LOCK_ROOT is not a directory only root may use (root:root, mode 700): remove it"
    fi
}

write_lock_file() {  # NAME TEXT: $LOCK_ROOT/APP.NAME holds TEXT (written aside, then renamed)
    printf '%s\n' "$2" >"$LOCK_ROOT/$APP.$1.new" && mv -f "$LOCK_ROOT/$APP.$1.new" "$LOCK_ROOT/$APP.$1"
}

take_lock() {  # take the lock for this connection, or say who has it and exit 75
    local held
    lock_root
    CONN=$(connection_id)
    [ -n "$CONN" ] || lock_fail 1 "no SSH connection above this run (no sshd process): the lock is not taken"
    exec 8<"$LOCK_ROOT"
    flock -w 10 8 || lock_fail "$LOCKED_EXIT" "the lock of $APP stays busy: try again"
    held=$(read_lock_file conn)
    if [ -n "$held" ] && [ "$held" != "$CONN" ] && is_connection "$held"; then
        lock_fail "$LOCKED_EXIT" "locked by $(read_lock_file owner): wait for that run to finish"
    fi
    if [ -e "$LOCK_ROOT/$APP.run" ] && ! flock -n "$LOCK_ROOT/$APP.run" true; then
        lock_fail "$LOCKED_EXIT" "a run of $APP whose connection is gone is still stopping: try again"
    fi
    if [ "$held" != "$CONN" ]; then  # free, or stale: ours now
        write_lock_file owner "$LOCK_HOLDER since $(TZ=UTC0 printf '%(%Y-%m-%dT%H:%M:%SZ)T')"
        write_lock_file conn "$CONN"
    fi
    exec 8>&-
}

# Without a terminal, a command does not die with its SSH connection: a watchdog ends this command's
# process group once the connection's sshd process is gone, so an interrupted run stops where it is.
hold_lock() {  # take_lock for a run's apply command, and hold APP.run until it ends
    take_lock
    exec 9>>"$LOCK_ROOT/$APP.run"
    flock -n 9 || lock_fail "$LOCKED_EXIT" "another run of $APP is applying: wait for it to finish"
    # It waits with read's timeout on a pipe nobody writes to (its own): no sleep to start every time.
    (
        exec 9>&- 7<> <(:)
        while is_connection "$CONN"; do read -r -t 0.2 -u 7 _; done
        kill -TERM 0
    ) </dev/null >/dev/null 2>&1 &
    LOCK_WATCHDOG=$!
}

drop_lock() {  # for the EXIT trap: stop the watchdog, release the lock if this connection holds it
    kill "${LOCK_WATCHDOG:-}" 2>/dev/null
    [ -n "${CONN:-}" ] || return 0
    exec 8<"$LOCK_ROOT"
    flock -w 10 8 || return 0
    if [ "$(read_lock_file conn)" = "$CONN" ]; then
        rm -f "$LOCK_ROOT/$APP.conn" "$LOCK_ROOT/$APP.owner"
    fi
    exec 8>&- 9>&-
}
