# shellcheck shell=bash
# provision: system packages, the app's system user, its directories.
#
# Reads:   PACKAGES_UPDATE, PACKAGES_INSTALL (arrays: the platform's commands), APP, BASE_DIR,
#          NOLOGIN_SHELL; W (apply.sh)
# Defines: start_packages, await_packages, ensure_app_user, ensure_dir
# Sets:    PACKAGES_PID (the package install running in the background, until awaited)

# The package manager takes seconds (a cold deploy's longest wait): it runs in the background while
# the steps after provision that need none of the packages go on (push uploads, builds the venv and
# the release); every other step, the health gate, the end of the run and a failure await it first.
start_packages() {  # UPDATE PACKAGE...: the package lists updated first when UPDATE is 1
    local update=$1
    shift
    (
        if [ "$update" = 1 ]; then "${PACKAGES_UPDATE[@]}" || exit; fi
        "${PACKAGES_INSTALL[@]}" "$@"
    ) >"$W/packages.log" 2>&1 </dev/null &
    PACKAGES_PID=$! PACKAGES_STARTED=${EPOCHREALTIME:-}
    changed
}

await_packages() {  # the install start_packages began has ended, or the run fails with its reason
    local pid=${PACKAGES_PID:-} took
    [ -n "$pid" ] || return 0
    PACKAGES_PID=""
    if ! wait "$pid"; then
        # shellcheck disable=SC2034 # read by die: the step whose work failed
        STEP=provision
        die "installing the packages failed: $(error_line "$(cat "$W/packages.log")")"
    fi
    took=$(seconds_since "$PACKAGES_STARTED")
    echo "::note provision packages installed${took:+ in ${took%??} s}, beside the steps after it"
}

ensure_app_user() {  # a system user (and group) named like the app, that cannot log in
    local home
    if home=$(getent passwd "$APP" | cut -d: -f6) && [ -n "$home" ]; then
        # Only a user the kit made: its home is the app's directory (the probe checked it; again here).
        [ "$home" = "$BASE_DIR" ] || die "user $APP exists and is not the app's (its home is $home): choose another app.name"
        quiet usermod -s "$NOLOGIN_SHELL" "$APP"
    else
        quiet useradd --system --user-group --no-create-home --home-dir "$BASE_DIR" \
            --shell "$NOLOGIN_SHELL" --comment "flaskdeploy app $APP" "$APP"
    fi
    changed
}

ensure_dir() {  # PATH OWNER GROUP MODE: never through a link (root must not follow what the app planted)
    local before
    [ -L "$1" ] && die "$1 is a symbolic link, which root will not follow: remove it (the app user may have made it)"
    before=$(stat -c %U "$1" 2>/dev/null)
    quiet install -d -o "$2" -g "$3" -m "$4" "$1"
    # Taken back by root from another user (the app's log directory, as older versions left it): what
    # that user may have planted there for root to open (links, pipes) goes.
    if [ "$2" = root ] && [ -n "$before" ] && [ "$before" != root ]; then
        find "$1" -mindepth 1 -maxdepth 1 ! -type f ! -type d -delete
    fi
    changed
}
