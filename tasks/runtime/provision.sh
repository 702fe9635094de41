# shellcheck shell=bash
# provision: system packages, the app's system user, its directories; a copy kept of each file at the
# paths of the app's configs that the kit did not write, before the kit writes over it.
#
# Reads:   PACKAGES_REPAIR, PACKAGES_UPDATE, PACKAGES_INSTALL (arrays: the platform's commands), APP,
#          BASE_DIR, NOLOGIN_SHELL, NGINX_SITE, NGINX_SITE_MARK, SUPERVISOR_CONF, SUPERVISOR_CONF_MARK;
#          W (apply.sh)
# Defines: install_packages, start_packages, await_packages, ensure_app_user, ensure_dir, kit_rendered,
#          keep_copy, keep_hand_made, keep_hand_made_configs
# Sets:    PACKAGES_PID (the package install running in the background, until awaited)

install_packages() {  # UPDATE PACKAGE...: what start_packages runs in the background
    local update=$1
    shift
    # A package manager cut off halfway (a reboot, a kill) leaves its work half-done, and apt refuses to
    # go on until dpkg finishes it (~10 ms when there is nothing to finish). dpkg does not wait for its
    # lock as apt does: while another dpkg runs it fails, and the install waits for that one, then says
    # what is still wrong, if anything.
    "${PACKAGES_REPAIR[@]}"
    if [ "$update" = 1 ]; then "${PACKAGES_UPDATE[@]}" || return; fi
    "${PACKAGES_INSTALL[@]}" "$@"
}

# The package manager takes seconds (a cold deploy's longest wait): it runs in the background while
# the steps after provision that need none of the packages go on (push uploads, builds the venv and
# the release); every other step, the health gate, the end of the run and a failure await it first.
# It is never signalled: a dpkg cut off halfway leaves the server's packages half-configured. The
# lock's watchdog ends the run's process group once the connection is gone (lock.sh), so the install
# starts in a process group of its own (job control: `set -m`), and goes on to its end, which `die`
# awaits (apply.sh).
start_packages() {  # UPDATE PACKAGE...: the package lists updated first when UPDATE is 1
    set -m
    install_packages "$@" >"$W/packages.log" 2>&1 </dev/null &
    PACKAGES_PID=$! PACKAGES_STARTED=${EPOCHREALTIME:-}
    set +m
    changed
}

await_packages() {  # the install start_packages began has ended, or the run fails with its reason
    local took
    [ -n "${PACKAGES_PID:-}" ] || return 0
    # PACKAGES_PID is kept while waiting: a run stopped meanwhile (the watchdog's TERM) awaits it in die.
    if ! wait "$PACKAGES_PID"; then
        PACKAGES_PID=""
        # shellcheck disable=SC2034 # read by die: the step whose work failed
        STEP=provision
        die "installing the packages failed: $(error_line "$(cat "$W/packages.log")")"
    fi
    PACKAGES_PID=""
    took=$(seconds_since "$PACKAGES_STARTED")
    echo "::note provision packages installed${took:+ in ${took%??} s}, beside the steps after it"
}

ensure_app_user() {  # a system user (and group) named like the app, that cannot log in
    local home
    if home=$(getent passwd "$APP" | cut -d: -f6) && [ -n "$home" ]; then
        # Only a user the kit made: its home is the app's directory (the guards refused another; again here).
        [ "$home" = "$BASE_DIR" ] || die "user $APP exists and is not the app's (its home is $home): choose another app.name"
        quiet usermod -s "$NOLOGIN_SHELL" "$APP"
    else
        uncut useradd --system --user-group --no-create-home --home-dir "$BASE_DIR" \
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

kit_rendered() {  # FILE MARK: whether FILE's first line names the template the kit rendered it from
    local first=""
    read -r first <"$1"
    [[ $first == *"$2"* ]]
}

keep_copy() {  # FILE DIR: a copy of FILE (one the kit did not write) in DIR, named like it with .bak
    # (.bak.2, ... when that name holds something else); once: none when one there holds the same
    local kept=$2/${1##*/}.bak n=1
    while [ -e "$kept" ] || [ -L "$kept" ]; do
        cmp -s "$1" "$kept" && return 0
        n=$((n + 1)) kept=$2/${1##*/}.bak.$n
    done
    cp -p "$1" "$kept" || die "could not keep a copy of $1"
    note "$1 was not written by flaskdeploy: a copy is kept as $kept"
    changed
}

keep_hand_made() {  # FILE MARK [DIR]: a copy of FILE kept in DIR (FILE's own by default), unless the kit
    # rendered FILE; the name of the copy is never one nginx, supervisor or certbot loads (*.bak)
    [ -f "$1" ] || return 0
    kit_rendered "$1" "$2" || keep_copy "$1" "${3:-${1%/*}}"
}

# Before the first release, on a server set up by hand: a site and a program of the app's name, whose
# copies enable_site and supervisor_update keep before they write over them; provision keeps them first,
# so that its line (and a check run's) says so before any step changes the server.
keep_hand_made_configs() {
    keep_hand_made "$NGINX_SITE" "$NGINX_SITE_MARK"
    keep_hand_made "$SUPERVISOR_CONF" "$SUPERVISOR_CONF_MARK"
}
