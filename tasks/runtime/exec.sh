# shellcheck shell=bash
# exec: one command line of the user's, run in the live release as the release command runs (units.sh
# in_release_unit: a unit of its own, as the app user, with app.env, the release's venv first on PATH),
# its output going back as it comes.
#
# The probe before this script took the deploy lock for this connection; the script holds it as an apply
# command does (lock.sh's hold_lock) for as long as the command runs, so no deploy, rollback or restart
# runs beside it, and the command ends, all of it, when the connection goes (Ctrl-C, a cut link).
#
# Reads:   CURRENT, EXEC_COMMAND (the command line, run with /bin/sh -c)
# Defines: exec_in_live_release
# Output:  the command's stdout and stderr, nothing else; the script exits with the command's exit code.
#          What stops it before the command runs goes to stderr: no live release (exit 1), or the lock,
#          taken over since the probe (lock.sh's `::fail lock` line, exit 75).

exec_in_live_release() {  # EXEC_COMMAND in the release `current` points at, as the app user
    local release
    export PATH=/usr/sbin:/usr/bin:/sbin:/bin
    release=$(readlink -e "$CURRENT")
    if [ -z "$release" ] || [ ! -d "$release" ]; then
        echo "no live release ($CURRENT): run fab deploy first" >&2
        exit 1
    fi
    hold_lock >&2
    trap drop_lock EXIT
    # Once the watchdog stops the run, the lock stays held (APP.run) until the command has ended.
    trap 'stop_unit; exit 143' TERM HUP INT
    in_release_unit exec 0 "$release" - <<<"$EXEC_COMMAND"
}
