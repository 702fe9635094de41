# shellcheck shell=bash
# processes: the app's processes (app.processes), supervisor programs APP.NAME (their files
# $SUPERVISOR_CONF_DIR/APP.process-NAME.conf, their commands $PROCESSES_DIR/NAME), on the web's release:
# moved (SIGTERM, app.stop_timeout, started again) after the health gate, on a rollback, a switch back.
#
# Reads:   APP, META, CURRENT, SUPERVISOR_UNIT, SUPERVISOR_CONF_DIR, PROCESSES_DIR, LOG_DIR; W (apply.sh)
# Defines: process_programs, process_copies, processes_off_release, process_errors, await_processes,
#          restart_processes, follow_release, restart_app_processes, install_process, update_processes,
#          remove_processes, keep_processes, restore_processes
# Sets:    COPIES (process_copies: "PROCESS STATE PID" of each copy of a program), PROCESS_FAILURE (why
#          await_processes, restart_processes failed), PROCESS_UPDATE (install_process)

process_programs() {  # the app's processes whose program file is on the server
    local file
    for file in "$SUPERVISOR_CONF_DIR/$APP".process-*.conf; do
        [ -f "$file" ] || continue
        file=${file##*/"$APP".process-}
        echo "${file%.conf}"
    done
}

process_copies() {  # NAME: COPIES, "PROCESS STATE PID" of each copy of its program as supervisor has it
    local out
    out=$(supervisorctl status "$APP.$1:*" 2>/dev/null)
    COPIES=()
    while read -r process state _ pid _; do  # "APP.NAME:APP.NAME-0  RUNNING  pid 123, uptime 0:00:05"
        [ -n "$process" ] || continue
        COPIES+=("${process#*:} $state ${pid%,}")
    done <<<"$out"
}

processes_off_release() {  # the programs with a copy not RUNNING in the live release
    local name live copy state pid
    live=$(readlink -f "$CURRENT") || return 0
    while read -r name; do
        process_copies "$name"
        [ ${#COPIES[@]} -gt 0 ] || { echo "$name"; continue; }
        for copy in "${COPIES[@]}"; do
            read -r _ state pid <<<"$copy"
            if [ "$state" != RUNNING ] || [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" != "$live" ]; then
                echo "$name"
                break
            fi
        done
    done < <(process_programs)
}

process_errors() {  # NAME: its log's last lines
    local lines
    lines=$(tail -q -n 3 "$LOG_DIR/$1"-*.log 2>/dev/null | tail -n 5 | tr '\n' '|')
    echo "last lines of $LOG_DIR/$1-*.log: ${lines:-none}"
}

await_processes() {  # NAME...: once no copy is STARTING (startsecs): true when all run, else false
    local name copy process state waiting _
    for _ in $(seq 300); do
        waiting=""
        for name; do
            process_copies "$name"
            if [ ${#COPIES[@]} = 0 ]; then
                PROCESS_FAILURE="process $name is no program of supervisor"
                return 1
            fi
            for copy in "${COPIES[@]}"; do
                read -r process state _ <<<"$copy"
                case "$state" in
                    RUNNING) ;;
                    STARTING) waiting=1 ;;
                    *)
                        PROCESS_FAILURE="process $process did not stay up ($state); $(process_errors "$name")"
                        return 1
                        ;;
                esac
            done
        done
        [ -n "$waiting" ] || return 0
        sleep 0.2
    done
    PROCESS_FAILURE="processes $* still STARTING after a minute"
    return 1
}

restart_processes() {  # NAME...: stopped gracefully, started in the live release; as await_processes
    local name groups=()
    [ $# -gt 0 ] || return 0
    for name; do groups+=("$APP.$name:*"); done
    supervisorctl stop "${groups[@]}" >/dev/null 2>&1
    supervisorctl start "${groups[@]}" >/dev/null 2>&1
    CHANGED=1
    await_processes "$@"
}

follow_release() {  # [--lenient]: those off the live release restarted there (--lenient: a failure
    # is a note, as on a switch back)
    local names
    mapfile -t names < <(processes_off_release)
    restart_processes "${names[@]}" && return 0
    [ "${1:-}" = --lenient ] || die "$PROCESS_FAILURE"
    note "$PROCESS_FAILURE"
}

restart_app_processes() {  # [NAME...]: these (default: all) restarted in the live release
    local names=("$@")
    [ $# -gt 0 ] || mapfile -t names < <(process_programs)
    restart_processes "${names[@]}" || die "$PROCESS_FAILURE"
}

install_process() {  # NAME PROGRAM_FILE COMMAND_FILE: in place, supervisor updated; PROCESS_UPDATE:
    # "started" (a new or changed program, started anew), "command" (to restart) or ""
    local before=$CHANGED out
    CHANGED=0
    write_command "$PROCESSES_DIR/$1" "$(cat "$3")"
    PROCESS_UPDATE=""
    [ "$CHANGED" = 1 ] && PROCESS_UPDATE="command"
    install_file "$2" "$SUPERVISOR_CONF_DIR/$APP.process-$1.conf" 644
    [ "$before" = 1 ] && CHANGED=1
    out=$(supervisorctl update "$APP.$1" 2>&1) || die "supervisorctl update failed: $out"
    case "$out" in *added* | *updated*) PROCESS_UPDATE="started" && changed ;; esac
}

update_processes() {  # NAME...: each one's files (from $W/processes/) in place, restarted if changed
    local name restart=() started=()
    systemctl is-active -q "$SUPERVISOR_UNIT" || { quiet systemctl start "$SUPERVISOR_UNIT"; changed; }
    wait_for_supervisord
    install_app_command
    if [ ! -d "$PROCESSES_DIR" ]; then
        install -d -m 750 -o root -g "$APP" "$PROCESSES_DIR" || die "could not make $PROCESSES_DIR"
        changed
    fi
    for name; do
        install_process "$name" "$W/processes/$name.conf" "$W/processes/$name.command"
        case "$PROCESS_UPDATE" in
            started) started+=("$name") ;;
            command) restart+=("$name") ;;
        esac
    done
    if [ ${#started[@]} -gt 0 ]; then await_processes "${started[@]}" || die "$PROCESS_FAILURE"; fi
    restart_processes "${restart[@]}" || die "$PROCESS_FAILURE"
    follow_release
}

remove_processes() {  # NAME...: stopped gracefully, their programs removed
    local name out
    for name; do
        rm -f "$SUPERVISOR_CONF_DIR/$APP.process-$name.conf"
        out=$(supervisorctl update "$APP.$name" 2>&1) || die "supervisorctl update failed: $out"
        rm -f "$PROCESSES_DIR/$name"
        changed
    done
}

# A release keeps the processes it last ran with (.deploy/processes), for a rollback to bring back.
keep_processes() {
    local kept name
    kept="$(readlink -f "$CURRENT")/$META/processes"
    rm -rf "$kept.new"
    mkdir -p "$kept.new" || die "could not write $kept"
    while read -r name; do
        cp -p "$SUPERVISOR_CONF_DIR/$APP.process-$name.conf" "$kept.new/$name.conf" \
            && cp -p "$PROCESSES_DIR/$name" "$kept.new/$name.command" || die "could not keep $name in $kept"
    done < <(process_programs)
    rm -rf "$kept" && mv -T "$kept.new" "$kept"
}

restore_processes() {  # RELEASE_DIR [--lenient]: the processes it kept, then each in the live release
    local kept="$1/$META/processes" name file
    if [ -d "$kept" ]; then
        while read -r name; do
            [ -f "$kept/$name.conf" ] || remove_processes "$name"
        done < <(process_programs)
        for file in "$kept"/*.conf; do
            [ -f "$file" ] || continue
            name=${file##*/}
            name=${name%.conf}
            install_process "$name" "$file" "$kept/$name.command"
        done
    fi
    follow_release "${@:2}"
}
