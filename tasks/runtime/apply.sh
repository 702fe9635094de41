# shellcheck shell=bash
# The frame of every apply script (see tasks/converge.py): the lock held, the files sent unpacked into
# $W, each step reported, a failure reported (after this run switched releases, the live one put back),
# and the run recorded in the server's history.
#
# Reads:   HISTORY_FILE, ACTION (recorded in the history when not empty), WHO, PY_HISTORY, PY_MASK,
#          RELEASES_DIR, META; LIVE_DIR, RELEASE and BUILT (see switch.sh)
# Defines: begin_apply, begin_step, seconds_since, end_step, changed, note, die, masked, quiet, uncut,
#          error_line, install_file, record, finish_run
# Sets:    STEP, CHANGED (1 once the step changed the server: see `changed`), STEP_START (when the step
#          began: $EPOCHREALTIME), W (the files sent)
# Output:  marker lines, the only thing the control machine reads, each as it happens:
#          `::step NAME ok|changed SECONDS` (the step's time on the server, e.g. 3.142),
#          `::fail NAME message`, `::note NAME message`.

begin_apply() {  # the lock kept, the live release noted, the files on stdin unpacked into $W
    export DEBIAN_FRONTEND=noninteractive LC_ALL=C PATH=/usr/sbin:/usr/bin:/sbin:/bin
    umask 027  # what the run writes is root's and its group's: releases, history, configs it makes
    STEP=apply CHANGED=0
    hold_lock
    trap drop_lock EXIT
    note_live_release
    W=$(mktemp -d /tmp/flaskdeploy.XXXXXX) || die "mktemp failed"
    trap 'rm -rf "$W"; drop_lock' EXIT
    # The watchdog (lock.sh) ends a run whose connection is gone (Ctrl-C, a cut link): as any failure,
    # that puts back the release that was live, and is recorded.
    trap 'die "stopped: the connection was lost or the run was interrupted"' TERM HUP INT
    trap '' PIPE  # with the connection gone, output fails: the run goes on to put things back and record
    tar -x -C "$W" || die "could not unpack the files sent"
}

begin_step() {  # NAME
    STEP=$1 CHANGED=0 STEP_START=${EPOCHREALTIME:-}
}

seconds_since() {  # START (an $EPOCHREALTIME: bash 5): the seconds since, like 3.142; nothing without one
    local now=${EPOCHREALTIME:-} us
    [ -n "$1" ] && [ -n "$now" ] || return 0
    us=$((${now/[.,]/} - ${1/[.,]/}))
    printf '%d.%03d' $((us / 1000000)) $((us / 1000 % 1000))
}

end_step() {  # its line, with the step's time on the server in seconds
    local status=ok took
    [ "$CHANGED" = 1 ] && status=changed
    took=$(seconds_since "${STEP_START:-}")
    echo "::step $STEP $status${took:+ $took}"
}

changed() {  # this step changed the server (its line says `changed`, and the recap counts it)
    CHANGED=1
}

note() {  # MESSAGE: something the user should know about this step (shown after its line)
    echo "::note $STEP $*"
}

die() {  # MESSAGE: end the whole run (later steps depend on earlier ones), recorded in the history
    local message
    trap - TERM HUP INT  # once: a second signal must not start over what this one does
    stop_unit  # a command of the app's still running (units.sh) ends first, all of it
    message=$(masked "$*")
    # A package install still running (provision.sh) ends first: never cut off halfway.
    [ -n "${PACKAGES_PID:-}" ] && wait "$PACKAGES_PID"
    PACKAGES_PID=""
    if switch_back; then
        mark_failed "$STEP: $message"
        message="$message; switched back to ${LIVE_DIR##*/}"
    fi
    echo "::fail $STEP $message"
    record failed "$STEP: $message"
    exit 1
}

error_line() {  # TEXT: its last line that names an error (a Python exception, `Error: ...`), else its
    # last line that is not blank: the line above SQLAlchemy's closing "(Background on this error ...)"
    local found
    found=$(printf '%s\n' "$1" | grep -E '^[[:space:]]*([[:alnum:]_.]*(Error|Exception|Exit)|error|ERROR|fatal|FATAL)(: |:$| \()' | tail -n 1)
    [ -n "$found" ] || found=$(printf '%s\n' "$1" | grep -v '^[[:space:]]*$' | tail -n 1)
    printf '%s\n' "${found#"${found%%[![:space:]]*}"}"
}

masked() {  # TEXT: as it may be printed and recorded: app.env's values masked, no control characters
    # (mask.py), whatever the app printed into it; with the values of each release this run is about
    local env=$META/env.json
    MASK_TEXT=$1 run_py "$PY_MASK" "${W:+$W/files/env.json}" "${BUILT:+$BUILT/$env}" \
        "${LIVE_DIR:+$LIVE_DIR/$env}" "${RELEASE:+$RELEASES_DIR/$RELEASE/$env}" 2>/dev/null \
        || printf '%s\n' "(a message that could not be masked)"
}

quiet() {  # COMMAND...: run it, its output kept for the failure message
    local out
    out=$("$@" 2>&1) || die "$1 failed: $(error_line "$out")"
}

uncut() {  # COMMAND...: quiet, in a session of its own: when the connection goes, the watchdog's kill of
    # the run (lock.sh) does not cut it halfway (useradd writes passwd, group and shadow one by one)
    local out
    out=$(setsid --wait "$@" 2>&1) || die "$1 failed: $(error_line "$out")"
}

install_file() {  # SOURCE DEST MODE: replace DEST atomically (root-owned) when its content differs
    cmp -s "$1" "$2" && return 0
    { install -m "$3" -o root -g root "$1" "$2.tmp" && mv -f "$2.tmp" "$2"; } || die "could not write $2"
    changed
}

record() {  # RESULT DETAIL: one entry in the history (deploy, push, rollback and restart only)
    [ -z "$ACTION" ] && return 0
    run_py "$PY_HISTORY" "$HISTORY_FILE" "$WHO" "${RELEASE:--}" "$ACTION" "$1" "$2" 2>/dev/null || true
}

finish_run() {  # after every step and the health gate succeeded
    local live=${LIVE_DIR##*/}
    STEP=finish
    [ "$live" = "$RELEASE" ] && live=""
    record ok "${live:+from $live}"
}
