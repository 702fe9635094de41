# shellcheck shell=bash
# The live release: `current` and `previous` switched atomically, the app reloaded without dropping a
# request, a release's own configs brought back, and the health gate that switches back on failure.
# Deploy, rollback and restart share one way of doing each of these.
#
# Reads:   CURRENT, PREVIOUS, RELEASES_DIR, META, APP, SUPERVISORD_PIDFILE, GUNICORN_CONF, NGINX_SITE,
#          SUPERVISOR_CONF, NGINX_UNIT, NGINX_LOADED_STAMP, ERROR_LOG, HEALTH_URL, HEALTH_HOST,
#          HEALTH_TIMEOUT, HEALTH_RULE, PY_RELOAD, PY_HEALTH; W (apply.sh)
# Defines: note_live_release, note_release, set_link, switch_to, app_errors, reload_app, reload_live_release,
#          restore_configs, go_live, roll_back_to, fail_release, gate, mark_failed, switch_back
# Sets:    LIVE_DIR, PREVIOUS_DIR (where current and previous pointed when the run began), RELEASE (the
#          release the run is about), BUILT (the release this run built), SWITCHED (set once this run
#          switched current), SWITCHING_BACK, RESTORED_NGINX_SITE, RESTORED_PROGRAM

RELOAD_TIMEOUT=60  # s: gunicorn's graceful_timeout (30 s) for old workers to finish, and new ones to boot

note_live_release() {  # at the start of a run
    LIVE_DIR=$(readlink "$CURRENT" || true)
    PREVIOUS_DIR=$(readlink "$PREVIOUS" || true)
    RELEASE=${LIVE_DIR##*/} BUILT="" SWITCHED="" SWITCHING_BACK=""
}

note_release() {  # RELEASE_ID: the release this run is about, as the history names it
    RELEASE=$1
}

set_link() {  # LINK TARGET: point LINK at TARGET atomically (an empty TARGET removes LINK)
    if [ -z "$2" ]; then rm -f "$1"; return 0; fi
    { ln -sfn "$2" "$1.tmp" && mv -T "$1.tmp" "$1"; } || die "could not switch $1"
}

switch_to() {  # RELEASE_DIR: current -> it; previous -> the release that was live
    local was
    was=$(readlink "$CURRENT" || true)
    if [ -n "$was" ] && [ "$was" != "$1" ]; then set_link "$PREVIOUS" "$was"; fi
    set_link "$CURRENT" "$1"
    SWITCHED=1
}

app_errors() {  # the app's last error lines, for a failure message, without gunicorn's [INFO] lines
    local lines
    lines=$(grep -v '\[INFO\]' "$ERROR_LOG" 2>/dev/null | tail -n 5 | tr '\n' '|')
    echo "last lines of $ERROR_LOG: ${lines:-none}"
}

# HUP the gunicorn master (its chdir is `current`: it starts new workers on the new release and stops the
# old ones gracefully) and wait until only new workers run; a new venv needs a new master: a restart.
reload_app() {  # FROM_DIR TO_DIR: the app, serving FROM_DIR, serves TO_DIR (what current points at)
    local out rc
    if [ -n "$1" ] && [ "$(readlink "$1/.venv")" = "$(readlink "$2/.venv")" ]; then
        out=$(run_py "$PY_RELOAD" "$SUPERVISORD_PIDFILE" "$GUNICORN_CONF" "$RELOAD_TIMEOUT" "$APP" 2>&1)
        rc=$?
        # Exit 3: no master runs, nothing to reload (supervisor_update or ensure_running starts one).
        [ $rc = 0 ] || [ $rc = 3 ] || die "graceful reload of $APP: $(error_line "$out"); $(app_errors)"
    elif ! out=$(supervisorctl restart "$APP" 2>&1); then
        case "$out" in
            *"not running"* | *"no such"* | *"refused"*) ;;
            *) die "supervisorctl restart $APP: $out" ;;
        esac
    else
        note "other dependencies: gunicorn restarted with the new venv (a gap of a second or two)"
    fi
}

reload_live_release() {  # new workers on the live release, without dropping a request (restart)
    reload_app "$LIVE_DIR" "$LIVE_DIR"
    changed
}

restore_configs() {  # RELEASE_DIR: bring back the configs it was deployed with, where they differ
    local out
    if ! cmp -s "$1/$META/nginx-site" "$NGINX_SITE"; then
        cp -p "$NGINX_SITE" "$W/site.live"
        install_file "$1/$META/nginx-site" "$NGINX_SITE" 644
        if ! out=$(nginx -t 2>&1); then
            cp -p "$W/site.live" "$NGINX_SITE"
            die "nginx -t rejects the site of ${1##*/}, nothing switched: $(printf '%s\n' "$out" | grep -m 1 emerg)"
        fi
        RESTORED_NGINX_SITE=1
    fi
    if ! cmp -s "$1/$META/supervisor.conf" "$SUPERVISOR_CONF"; then
        install_file "$1/$META/supervisor.conf" "$SUPERVISOR_CONF" 644
        RESTORED_PROGRAM=1
    fi
    # gunicorn reads its config again on the reload that follows (reload_app).
    install_file "$1/$META/gunicorn.conf.py" "$GUNICORN_CONF" 644
}

go_live() {  # RELEASE_DIR: make it the live release, with its own configs
    local from out
    from=$(readlink "$CURRENT" || true)
    RESTORED_NGINX_SITE=0 RESTORED_PROGRAM=0
    [ -f "$1/$META/release.json" ] && restore_configs "$1"
    switch_to "$1"
    if [ "$RESTORED_PROGRAM" = 1 ]; then
        out=$(supervisorctl update "$APP" 2>&1) || die "supervisorctl update failed: $out"
    else
        reload_app "$from" "$1"
    fi
    if [ "$RESTORED_NGINX_SITE" = 1 ]; then
        reload_nginx_config # nginx.sh
        touch "$NGINX_LOADED_STAMP"
    fi
}

roll_back_to() {  # RELEASE_ID: that release live again, with the configs it was deployed with
    local release="$RELEASES_DIR/$1"
    [ -f "$release/$META/release.json" ] \
        || die "release $1 keeps no record of its configs (it predates them); deploy it instead"
    note_release "$1"
    go_live "$release"
    restore_processes "$release"  # the app's processes move with the web (processes.sh)
    changed
}

fail_release() {  # REASON: the release of this run failed; say which is live, keep the reason with it
    local live=${LIVE_DIR##*/}
    mark_failed "$1"
    die "release $RELEASE failed: $1; live: ${live:-none}"
}

# A failure names the status and the rule it failed (health.py prints both), e.g. `GET URL (Host: H)
# answered 500 (no app.health_path: any answer below 500 passes); last lines of ...`.
gate() {  # the health gate: the health request through nginx; after a switch in this run, a failure
    # switches back
    local status back why others
    if others=$(port_taken_by_others); then
        why="port $APP_PORT is taken by $others, not by $APP's gunicorn: the check would ask another app"
    else
        status=$(run_py "$PY_HEALTH" "$HEALTH_URL" "$HEALTH_HOST" "$HEALTH_TIMEOUT" "$HEALTH_RULE") && return 0
        why="GET $HEALTH_URL (Host: $HEALTH_HOST) answered $status; $(app_errors)"
    fi
    [ -n "$SWITCHED" ] || die "$why"
    if switch_back; then
        back=$(run_py "$PY_HEALTH" "$HEALTH_URL" "$HEALTH_HOST" "$HEALTH_TIMEOUT" "$HEALTH_RULE") \
            || why="$why; ${LIVE_DIR##*/} fails too: $back"
    fi
    fail_release "$why"
}

mark_failed() {  # REASON: kept with the release this run built, for `releases` to show (masked: apply.sh)
    [ -z "$BUILT" ] || masked "$1" >"$BUILT/$META/failed"
}

switch_back() {  # after a failure in this run, the release that was live goes live again (once)
    { [ -n "$SWITCHED" ] && [ -n "$LIVE_DIR" ] && [ -z "$SWITCHING_BACK" ]; } || return 1
    SWITCHING_BACK=1  # a failure while switching back (go_live switches too) must not try again
    go_live "$LIVE_DIR"
    set_link "$PREVIOUS" "$PREVIOUS_DIR"
    SWITCHED=""
    restore_processes "$LIVE_DIR" --lenient  # the app's processes back on it too (processes.sh)
}
