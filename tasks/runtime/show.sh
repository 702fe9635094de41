# shellcheck shell=bash
# What the read-only tasks show of the server's files (logs, history).
#
# Reads:   HISTORY_FILE
# Defines: show_logs, show_history

show_logs() {  # LINES FILE...: the last LINES lines of each file, under its name
    local lines=$1 log
    shift
    for log in "$@"; do
        echo "== $log"
        tail -n "$lines" "$log" 2>&1
    done
}

show_history() {  # the deploy history, one JSON entry a line (nothing before the first deploy)
    cat "$HISTORY_FILE" 2>/dev/null || true
}
