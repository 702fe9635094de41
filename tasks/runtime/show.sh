# shellcheck shell=bash
# What the read-only tasks show of the server's files (logs, history).
#
# Reads:   HISTORY_FILE; connection_id (lock.sh), for follow_logs
# Defines: show_logs, follow_logs, show_history

show_logs() {  # LINES FILE...: the last LINES lines of each file, under its name
    local lines=$1 log
    shift
    for log in "$@"; do
        echo "== $log"
        tail -n "$lines" "$log" 2>&1
    done
}

follow_logs() {  # LINES FILE...: the last LINES lines of each file, then each line added, until the SSH
    # connection this runs for ends (Ctrl-C on the control machine): tail ends with its sshd process
    local lines=$1 conn
    shift
    conn=$(connection_id)
    [ -n "$conn" ] || { echo "no SSH connection above this process: nothing to follow for" >&2; return 1; }
    exec tail -n "$lines" -F --pid="${conn%% *}" -- "$@" 2>&1
}

show_history() {  # the deploy history, one JSON entry a line (nothing before the first deploy)
    cat "$HISTORY_FILE" 2>/dev/null || true
}
