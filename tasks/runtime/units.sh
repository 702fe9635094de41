# shellcheck shell=bash
# Third-party code never runs as a child of a kit's script: the app's release command, its import trial
# and `exec` (as the app's user), and the venv builds, where every dependency's .pth file runs whenever
# the venv's python starts (as the builder, a system user that owns nothing), each run in a transient
# systemd service of its own. So it gets none of the script's descriptors (the lock), its own user from
# the start (never root), and a cgroup that systemd ends whole once the command ended or timed out:
# nothing it starts (a daemon, a grandchild keeping its output open) outlives it, or holds up the run.
# Its output goes to a file or to the script's own output, never to a pipe the script waits on.
#
# Reads:   APP, META, BASE_DIR, BUILDER, LOCK_ROOT, NOLOGIN_SHELL, APP_COMMAND, PY_BOUNDED, PY_APP_COMMAND;
#          W (apply.sh)
# Defines: run_unit, stop_unit, unit_journal, in_release_unit, ensure_builder, build_unit,
#          install_app_command, write_command
# Sets:    UNIT (the unit running now: what stop_unit stops), LAST_UNIT (the one that ran last)

UNIT_GRACE=30     # s after a command's own time limit (bounded.py's) before systemd stops its unit
BUILD_TIMEOUT=600 # s a venv build or an app wheel's install may take

# The main process of every unit is bounded.py, which turns a command's end into an exit code:
# `systemd-run --wait` exits with that code.
run_unit() {  # NAME TIMEOUT OPTION... -- ENV_JSON COMMAND ARG...: bounded.py's COMMAND (`-`: a shell line
    # on stdin) in a transient service with these systemd-run options (--uid=, --property=, ...), within
    # TIMEOUT seconds (0: none), with this function's stdin, stdout and stderr; its exit code (124: timed out)
    local name=$1 timeout=$2 options=() command=() word rc
    shift 2
    while [ "$1" != -- ]; do
        options+=("$1")
        shift
    done
    shift
    # systemd expands a dollar sign and a name in a command line, and $$: every $ is doubled, so that the
    # command gets its words as they are.
    for word in /usr/bin/python3 -I -S -c "$PY_BOUNDED" "$timeout" "$@"; do command+=("${word//\$/\$\$}"); done
    local max=infinity
    [ "$timeout" = 0 ] || max=$((timeout + UNIT_GRACE))
    UNIT="flaskdeploy-$APP-$name-$$-${EPOCHREALTIME/[.,]/}.service"
    systemd-run --quiet --wait --collect --pipe --service-type=exec --unit="$UNIT" \
        --description="flaskdeploy: $name of $APP" --property=RuntimeMaxSec="$max" \
        --property=TimeoutStopSec=10 "${options[@]}" -- "${command[@]}"
    rc=$?
    LAST_UNIT=$UNIT UNIT=""
    return "$rc"
}

unit_journal() {  # systemd's own words on why the last unit could not run its command (a user, a group
    # or a directory it could not set up: exit codes 200-243, and the command wrote nothing), if any
    local line
    line=$(journalctl --quiet --no-pager -o cat -u "${LAST_UNIT:-}" 2>/dev/null \
        | grep -m 1 -E ': Failed (to|at step) |status=2[0-4][0-9]/')
    printf '%s' "${line#*.service: }"
}

stop_unit() {  # the unit this run waits on, stopped with every process of it (a failure, a lost link)
    [ -n "${UNIT:-}" ] || return 0
    systemctl stop "$UNIT" >/dev/null 2>&1
    UNIT=""
}

in_release_unit() {  # NAME TIMEOUT RELEASE_DIR COMMAND ARG...: COMMAND (`-`: the shell line on stdin) in
    # the release as the app user, with app.env (the release's env.json) and the release's venv first on PATH
    local name=$1 timeout=$2 release=$3
    shift 3
    run_unit "$name" "$timeout" --uid="$APP" --gid="$APP" --working-directory="$release" --property=UMask=0027 \
        --setenv=HOME="$BASE_DIR" --setenv=LANG=C.UTF-8 --setenv=PATH="$release/.venv/bin:/usr/local/bin:/usr/bin:/bin" \
        --setenv=VIRTUAL_ENV="$release/.venv" --setenv=PYTHONPATH="$release/$META/site" \
        -- "$META/env.json" "$@"
}

ensure_builder() {  # the system user that builds venvs: no home, no login, in no group but its own
    local comment="flaskdeploy builds venvs, owns nothing" entry
    if entry=$(getent passwd "$BUILDER"); then
        [ "$(cut -d: -f5 <<<"$entry")" = "$comment" ] \
            || die "user $BUILDER exists and is not flaskdeploy's builder: remove it, or rename it"
        return 0
    fi
    uncut useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell "$NOLOGIN_SHELL" --comment "$comment" "$BUILDER"
}

# One build at a time on a server (a lock of root's), so that no two builds, of two apps, ever run as the
# builder at once: a build writes only its own directory, and everything of it has ended before the next.
build_unit() {  # NAME DIR COMMAND ARG...: COMMAND as the builder, which writes nowhere but DIR (made its
    # own by the caller), reads what the app's group may read (the wheels), has no network
    local name=$1 dir=$2 rc lock
    shift 2
    exec {lock}>>"$LOCK_ROOT/builds"
    flock -w "$BUILD_TIMEOUT" "$lock" || die "another build on this server did not end within $BUILD_TIMEOUT s"
    run_unit "$name" "$BUILD_TIMEOUT" --uid="$BUILDER" --gid="$BUILDER" --property=SupplementaryGroups="$APP" \
        --property=ProtectSystem=strict --property=ReadWritePaths="$dir" --property=ProtectHome=yes \
        --property=PrivateTmp=yes --property=PrivateNetwork=yes --property=NoNewPrivileges=yes \
        --property=RestrictSUIDSGID=yes --working-directory="$dir" --setenv=HOME=/nonexistent \
        --setenv=PATH=/usr/bin:/bin -- - "$@"
    rc=$?
    exec {lock}>&-
    return "$rc"
}

# The app's own processes (supervisor's programs) and scheduled jobs (systemd's timers) each start
# $APP_COMMAND (runtime/app_command.py) on a command file of root's (runtime/app_command.py): a command line of the
# user's reaches bash as an argument, never through supervisor's or systemd's config syntax.
install_app_command() {  # $APP_COMMAND, as this run has it
    printf '%s' "$PY_APP_COMMAND" >"$W/app_command.py"
    install_file "$W/app_command.py" "$APP_COMMAND" 644
}

write_command() {  # FILE COMMAND: the command line in FILE, root's, which the app's group reads (changed
    # when it differs)
    printf '%s\n' "$2" >"$W/command.new"
    cmp -s "$W/command.new" "$1" && return 0
    { install -m 640 -o root -g "$APP" "$W/command.new" "$1.tmp" && mv -f "$1.tmp" "$1"; } \
        || die "could not write $1"
    changed
}
