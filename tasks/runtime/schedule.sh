# shellcheck shell=bash
# schedule: the app's scheduled jobs (app.schedule), a systemd service and timer each (tasks/steps/schedule.py).
#
# Reads:   APP, JOBS_DIR, SYSTEMD_UNIT_DIR; W (apply.sh)
# Sets:    JOBS_RELOAD (1 once a unit file changed or went), JOBS_TIMERS (the timers to have enabled and
#          running), JOBS_RESTART (the timers whose file changed: restarted on their new calendar)
# Defines: schedule_begin, schedule_job, unschedule_job, schedule_end

schedule_begin() {  # WANTED (1: some jobs are wanted): the jobs' directory, root's, which the app's group
    # reads, and app_command.py, their main process
    JOBS_RELOAD="" JOBS_TIMERS=() JOBS_RESTART=()
    [ "$1" = 1 ] || return 0
    if [ "$(stat -c '%F %U:%G %a' "$JOBS_DIR" 2>/dev/null)" != "directory root:$APP 750" ]; then
        [ -L "$JOBS_DIR" ] && die "$JOBS_DIR is a link: remove it, the kit makes the directory"
        install -d -m 750 -o root -g "$APP" "$JOBS_DIR" || die "could not make $JOBS_DIR"
        changed
    fi
    install_app_command
}

schedule_job() {  # NAME COMMAND_FILE SERVICE_FILE TIMER_FILE (in $W): the job's command line and units
    # in place; its timer enabled and running after schedule_end
    local unit=$APP-job.$1 was command
    command=$(cat "$W/$2") || die "could not read the command of job $1"
    write_command "$JOBS_DIR/$1.command" "$command"
    was=$CHANGED CHANGED=0
    install_file "$W/$3" "$SYSTEMD_UNIT_DIR/$unit.service" 644
    [ "$CHANGED" = 1 ] && JOBS_RELOAD=1
    CHANGED=0
    install_file "$W/$4" "$SYSTEMD_UNIT_DIR/$unit.timer" 644
    [ "$CHANGED" = 1 ] && JOBS_RELOAD=1 JOBS_RESTART+=("$unit.timer")
    [ "$was" = 1 ] || [ "$JOBS_RELOAD" = 1 ] && CHANGED=1
    JOBS_TIMERS+=("$unit.timer")
}

unschedule_job() {  # NAME: a job no longer in the settings: its timer stopped and disabled, a run of it
    # ended, its units and command file gone
    local unit=$APP-job.$1
    systemctl disable --now -q "$unit.timer" >/dev/null 2>&1
    systemctl stop "$unit.service" >/dev/null 2>&1
    systemctl reset-failed "$unit.service" "$unit.timer" >/dev/null 2>&1
    rm -f "$SYSTEMD_UNIT_DIR/$unit.timer" "$SYSTEMD_UNIT_DIR/$unit.service" "$JOBS_DIR/$1.command" \
        || die "could not remove the units of job $1"
    JOBS_RELOAD=1
    changed
}

schedule_end() {  # systemd reloaded once when units changed; every wanted timer enabled and running, a
    # changed one restarted
    local timer
    [ -n "$JOBS_RELOAD" ] && quiet systemctl daemon-reload
    for timer in "${JOBS_RESTART[@]}"; do
        quiet systemctl restart "$timer"
    done
    for timer in "${JOBS_TIMERS[@]}"; do
        systemctl is-enabled -q "$timer" || { quiet systemctl enable -q "$timer"; changed; }
        systemctl is-active -q "$timer" || { quiet systemctl start "$timer"; changed; }
    done
}
