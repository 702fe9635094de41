# shellcheck shell=bash
# supervisor: the app's program and gunicorn config in place, the program running.
#
# Reads:   APP, APP_PORT, SUPERVISOR_UNIT, SUPERVISOR_CONF, SUPERVISOR_CONF_MARK, GUNICORN_CONF; W (apply.sh)
# Sets:    PORT_UIDS (port_uids); PORT_OURS, PORT_OTHERS (port_owners)
# Defines: wait_for_supervisord, program_state, port_uids, port_owners, port_listeners,
#          port_taken_by_others, listens, ensure_running, supervisor_update, restart_program

wait_for_supervisord() {  # supervisord may still be opening its socket right after a start: up to 10 s
    local _
    for _ in $(seq 100); do
        supervisorctl pid >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "supervisord does not answer"
}

program_state() {  # RUNNING, STARTING, BACKOFF, FATAL, ... ("" when supervisor has no such program)
    supervisorctl status "$APP" 2>/dev/null | awk '{print $2}'
}

port_uids() {  # PORT_UIDS: the owners (uids) of the TCP sockets listening on the app's port, IPv4 and
    # IPv6, as ss asks the kernel's socket diagnostics for listening sockets only (/proc/net/tcp would make
    # the kernel walk its whole table of connections: ~8 ms a read); 1 when ss cannot tell
    local out line
    PORT_UIDS=()
    out=$(ss -Hltne "sport = :$APP_PORT" 2>/dev/null) || return 1
    while read -r line; do  # "LISTEN 0 2048 127.0.0.1:8080 0.0.0.0:* uid:999 ino:..." (root's: no uid:)
        [ -n "$line" ] || continue
        if [[ " $line " =~ \ uid:([0-9]+)\  ]]; then PORT_UIDS+=("${BASH_REMATCH[1]}"); else PORT_UIDS+=(0); fi
    done <<<"$out"
}

port_listeners() {  # "PID USER COMMAND" of each process listening on the app's port (from ss)
    local out pid user comm
    local -A seen=()
    out=$(ss -Hltnp "sport = :$APP_PORT" 2>/dev/null)
    while [[ $out =~ pid=([0-9]+) ]]; do
        seen[/proc/${BASH_REMATCH[1]}]=1
        out=${out#*"${BASH_REMATCH[0]}"}
    done
    [ ${#seen[@]} -gt 0 ] || return 0
    stat -c '%n %U' "${!seen[@]}" 2>/dev/null | while read -r pid user; do
        read -r comm 2>/dev/null <"$pid/comm"
        echo "${pid#/proc/} $user $comm"
    done
}

port_owners() {  # PORT_OURS, PORT_OTHERS: 1 when the app's user, another user listens on the app's port;
    # 1 when the kernel's tables cannot be read or the app's user is unknown
    local uid app_uid
    PORT_OURS="" PORT_OTHERS=""
    port_uids && app_uid=$(id -u "$APP" 2>/dev/null) || return 1
    for uid in "${PORT_UIDS[@]}"; do
        if [ "$uid" = "$app_uid" ]; then PORT_OURS=1; else PORT_OTHERS=1; fi
    done
}

port_taken_by_others() {  # who else listens on the app's port (true when someone does): ss names them
    # only when the kernel's tables show a socket of another user than the app's
    local others
    if port_owners && [ -z "$PORT_OTHERS" ]; then return 1; fi
    others=$(port_listeners | awk -v app="$APP" '$2 != app { printf "%s%s (pid %s, user %s)", sep, $3, $1, $2; sep = ", " }')
    [ -n "$others" ] && echo "$others"
}

listens() {  # whether the app's user listens on its port (true when the kernel's tables cannot tell)
    port_owners || return 0
    [ -n "$PORT_OURS" ]
}

ensure_running() {  # wait out STARTING, start the program unless it runs, wait until it listens on its
    # port; fail with the app's last errors, or with who else has the port
    local state others _
    for _ in $(seq 150); do
        state=$(program_state)
        case "$state" in STARTING | BACKOFF) sleep 0.1 ;; *) break ;; esac
    done
    if [ "$state" != RUNNING ]; then
        supervisorctl start "$APP" >/dev/null 2>&1
        changed
        state=$(program_state)
        [ "$state" = RUNNING ] || die "$APP is ${state:-unknown} in supervisor; $(app_errors)"
    fi
    for _ in $(seq 100); do
        listens && return 0
        others=$(port_taken_by_others) && die "port $APP_PORT is taken by $others: choose another app.port"
        sleep 0.1
    done
    die "$APP runs but does not listen on port $APP_PORT; $(app_errors)"
}

# A program of the app's name that the kit did not write (a server set up by hand) is kept (provision.sh
# keep_hand_made: as NAME.conf.bak, which supervisor does not load), and replaced by the kit's.
supervisor_update() {  # GUNICORN_FILE PROGRAM_FILE (in $W): both in place; a restart only when they changed
    local out before gunicorn_changed
    systemctl is-active -q "$SUPERVISOR_UNIT" || { quiet systemctl start "$SUPERVISOR_UNIT"; changed; }
    wait_for_supervisord
    before=$CHANGED CHANGED=0
    install_file "$W/$1" "$GUNICORN_CONF" 644
    gunicorn_changed=$CHANGED CHANGED=$before
    keep_hand_made "$SUPERVISOR_CONF" "$SUPERVISOR_CONF_MARK"
    install_file "$W/$2" "$SUPERVISOR_CONF" 644
    out=$(supervisorctl update "$APP" 2>&1) || die "supervisorctl update failed: $out"
    case "$out" in
        *added* | *updated*) changed ;;  # supervisor (re)started the program with its new definition
        *) if [ "$gunicorn_changed" = 1 ]; then quiet supervisorctl restart "$APP"; changed; fi ;;
    esac
    ensure_running
}

restart_program() {  # stop and start the app through supervisor (restart --hard): a short gap
    if [ "$(program_state)" = RUNNING ]; then
        quiet supervisorctl restart "$APP"
        changed
    fi
}
