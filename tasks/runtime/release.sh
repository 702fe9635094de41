# shellcheck shell=bash
# push: a release of the app beside the others, its venv, its import trial and release command, the switch
# to it, and pruning.
#
# A release is built under a hidden `.partial-<id>` name and renamed into `releases/<id>` only when
# complete, so nothing half-built is ever listed or pointed at. It keeps what shaped it in $META
# (release.json, the rendered configs, env.json) so that a rollback brings all of it back. The app user
# imports it, and runs its release command, before `current` moves: a broken release never goes live.
# Whatever comes with the app runs in a unit of its own (units.sh), never as root: its dependencies'
# code as the builder, its own as the app's user.
#
# Reads:   RELEASES_DIR, VENVS_DIR, WHEELS_DIR, TOOLS_DIR, UV_VERSION, SHARED_DIR, SHARED_DIRS (array),
#          SUPERVISOR_CONF, META, APP, BUILDER, APP_MODULE, RELEASE_COMMAND, RELEASE_TIMEOUT,
#          PY_IMPORT_TRIAL, PY_SHARED_DIRS, SUPERVISORD_PIDFILE, TRIAL_DIR; W (apply.sh), LIVE_DIR
#          (switch.sh)
# Defines: install_uv, uv_as_builder, keep_wheel, hand_to_root, build_venv, prune_wheels, no_link_below,
#          make_shared_dirs, build_release, install_app_wheel, unit_reason, try_import, forked_trial,
#          run_release_command, switch_to_built, prune
# Sets:    BUILT (see switch.sh)

install_uv() {  # uv ($TOOLS_DIR/uv-$UV_VERSION), taken out of its wheel ($W/tools/uv.whl): it builds the venvs
    local dest="$TOOLS_DIR/uv-$UV_VERSION"
    quiet python3 -I -m zipfile -e "$W/tools/uv.whl" "$W/tools/uv"
    quiet install -m 755 -o root -g root "$W/tools/uv/uv-$UV_VERSION.data/scripts/uv" "$dest.tmp"
    mv -f "$dest.tmp" "$dest" || die "could not install $dest"
}

uv_as_builder() {  # NAME DIR ARG...: the kit's uv as the builder (units.sh build_unit), writing DIR only:
    # offline, reading no config and no cache of anyone's; a failure fails the run with uv's reason
    local out="$W/$1.out"
    build_unit "$1" "$2" env UV_NO_CONFIG=1 UV_NO_CACHE=1 UV_OFFLINE=1 UV_PYTHON_DOWNLOADS=never \
        UV_LINK_MODE=copy "$TOOLS_DIR/uv-$UV_VERSION" "${@:3}" </dev/null >"$out" 2>&1 \
        || die "uv ${3:-} failed$(unit_reason "$out")"
}

keep_wheel() {  # FILE: a wheel sent, kept in $WHEELS_DIR for the venvs to come (the app's group reads it)
    local kept="$WHEELS_DIR/${1##*/}"
    { install -m 640 -o root -g "$APP" "$1" "$kept.tmp" && mv -f "$kept.tmp" "$kept"; } \
        || die "could not keep ${1##*/} in $WHEELS_DIR"
}

hand_to_root() {  # DIR: the builder's work root's, readable by the app's group only, nobody's to change.
    # chown -R and chmod -R act on a link itself, never on what it names; the builder's processes are gone.
    { chown -R root:"$APP" "$1" && chmod -R u=rwX,g=rX,o= "$1"; } || die "could not hand $1 to root"
}

build_venv() {  # VENV_ID: a venv of exactly the wheels in $W/wheels/manifest (kept in $WHEELS_DIR)
    local venv="$VENVS_DIR/$1" name wheels=()
    # Built where it stays (a venv's scripts hard-code its path), by the builder: a dependency's .pth file
    # runs whenever the venv's python starts, and uv starts it. `.complete` marks it usable.
    rm -rf "$venv"
    while IFS= read -r name; do
        [[ $name =~ ^[A-Za-z0-9_.+!-]+\.whl$ ]] || die "no wheel name in the manifest: $name"
        if [ -f "$W/wheels/$name" ]; then keep_wheel "$W/wheels/$name"; fi
        [ -f "$WHEELS_DIR/$name" ] || die "wheel $name was neither sent nor kept in $WHEELS_DIR"
        wheels+=("$WHEELS_DIR/$name")
    done <"$W/wheels/manifest"
    ensure_builder
    { mkdir -m 750 "$venv" && chown "$BUILDER:$APP" "$venv"; } || die "could not make $venv"
    uv_as_builder venv "$venv" venv --quiet --allow-existing --python "$(command -v python3)" "$venv"
    # --no-deps: the wheels are the resolved set already (resolved for this server on the control machine).
    # Compiled now: the app's user cannot write __pycache__ here, and every worker would compile again.
    uv_as_builder venv "$venv" pip install --quiet --no-deps --compile-bytecode --python "$venv/bin/python" \
        "${wheels[@]}"
    # Where root writes next, nothing the builder left (a link) stays.
    rm -rf "$venv/.lock" "$venv/.wheels" "$venv/.complete"
    hand_to_root "$venv"
    cp "$W/wheels/manifest" "$venv/.wheels"
    touch "$venv/.complete"
}

prune_wheels() {  # the kept wheels that no venv left was built from, gone (after venvs were pruned)
    local list name wheel
    local -A used=()
    for list in "$VENVS_DIR"/*/.wheels; do
        [ -f "$list" ] || continue
        while IFS= read -r name; do used[$name]=1; done <"$list"
    done
    for wheel in "$WHEELS_DIR"/*.whl; do
        name=${wheel##*/}
        [ -f "$wheel" ] && [ -z "${used[$name]:-}" ] && rm -f "$wheel"
    done
    return 0
}

no_link_below() {  # BASE REL: whether no part of BASE/REL below BASE is a symbolic link (or it is absent)
    local path=$1 part
    local IFS=/
    for part in $2; do
        path="$path/$part"
        [ -L "$path" ] && return 1
    done
    return 0
}

make_shared_dirs() {  # DIR...: the shared directories (deploy.shared_dirs) the server lacks, each the
    # app's, its parents root's: made by shared_dirs.py, never through a link, whoever may write a parent
    local out
    out=$(run_py "$PY_SHARED_DIRS" "$SHARED_DIR" "$APP" "$@" 2>&1) || die "$(error_line "$out")"
}

build_release() {  # RELEASE_ID VENV_ID: the files sent ($W/release) as releases/RELEASE_ID, on that venv
    local partial="$RELEASES_DIR/.partial-$1" release="$RELEASES_DIR/$1" dir wheel
    rm -rf "$RELEASES_DIR"/.partial-*  # what an interrupted run left
    note_release "$1"
    quiet cp -a "$W/release" "$partial"
    for dir in "${SHARED_DIRS[@]}"; do  # their places, the directories above them made with the rest
        no_link_below "$partial" "$dir" || die "$dir in the app's files runs through a symbolic link: remove it"
        rm -rf "${partial:?}/$dir"
        mkdir -p "$(dirname "$partial/$dir")"
    done
    # Root's, readable by the app's group only: app.src may hold config and secrets.
    chown -R root:"$APP" "$partial"
    chmod -R u=rwX,g=rX,o= "$partial"
    chmod 600 "$partial/$META/fingerprint"  # a hash over app.env: no one but root reads it
    # The app as a package (an installable project), in the release: a code change keeps the venv.
    for wheel in "$W"/app/*.whl; do
        if [ -f "$wheel" ]; then install_app_wheel "$partial" "$VENVS_DIR/$2" "$wheel"; fi
    done
    quiet install -m 640 -o root -g "$APP" "$W/files/env.json" "$partial/$META/env.json"
    ln -sfn "$VENVS_DIR/$2" "$partial/.venv"
    # The shared directories, linked in after chown and chmod, which would act on what the links point at.
    for dir in "${SHARED_DIRS[@]}"; do
        ln -sfn "$SHARED_DIR/$dir" "$partial/$dir"
    done
    [ -e "$release" ] && die "release $1 exists already"
    mv -T "$partial" "$release" || die "could not rename $partial"
    BUILT=$release
}

install_app_wheel() {  # RELEASE_DIR VENV_DIR WHEEL: the app's wheel installed into RELEASE_DIR/$META/site,
    # by the builder (its build hooks ran on the control machine; its .pth files run with the venv's python)
    local site="$1/$META/site" copy="$1/$META/${3##*/}"
    ensure_builder
    quiet install -m 640 -o root -g "$APP" "$3" "$copy"  # where the builder reads it ($W is root's alone)
    { mkdir -m 750 "$site" && chown "$BUILDER:$APP" "$site"; } || die "could not make $site"
    uv_as_builder app-wheel "$site" pip install --quiet --no-deps --compile-bytecode --python "$2/bin/python" \
        --target "$site" "$copy"
    rm -f "$copy"
    hand_to_root "$site"
}

unit_reason() {  # FILE: ": LINE", LINE naming the error in what a unit wrote there (its end: an app may
    # print on); when it wrote nothing, systemd's reason if it could not start the command, else nothing
    local line
    line=$(error_line "$(tail -c 65536 "$1" 2>/dev/null)")
    [ -n "$line" ] || line=$(unit_journal)
    printf '%s' "${line:+: $line}"
}

try_import() {  # the release this run built imports, as the app user, within RELEASE_TIMEOUT: else it fails
    local out="$W/import-trial.out" rc
    forked_trial && return 0
    in_release_unit import-trial "$RELEASE_TIMEOUT" "$BUILT" "$BUILT/.venv/bin/python" -c "$PY_IMPORT_TRIAL" \
        "$APP_MODULE" </dev/null >"$out" 2>&1
    rc=$?
    [ "$rc" = 124 ] && fail_release "it did not load within $RELEASE_TIMEOUT s (deploy.release_timeout)$(unit_reason "$out")"
    [ "$rc" = 0 ] || fail_release "it does not load$(unit_reason "$out")"
}

# The import trial forked from the live gunicorn master, Flask imported already (configs/gunicorn.conf.py.j2
# says how), when that master runs the venv of the release this run built and has the handler; else (no
# master, another venv, a master from an older config, no start within 10 s) it returns 1 and try_import
# runs the trial apart.
forked_trial() {
    local supervisord master key mask fd line child="" result="" token="$$-$EPOCHREALTIME" asked limit=10
    [ -n "$LIVE_DIR" ] && [ "$(readlink "$LIVE_DIR/.venv")" = "$(readlink "$BUILT/.venv")" ] || return 1
    read -r supervisord _ <"$SUPERVISORD_PIDFILE" 2>/dev/null || return 1
    master=$(pgrep -P "$supervisord" -u "$APP") && [[ $master =~ ^[0-9]+$ ]] || return 1
    { while read -r key mask; do [ "$key" = SigCgt: ] && break; done <"/proc/$master/status"; } 2>/dev/null
    [ "$key" = SigCgt: ] && ((0x$mask & 1 << 22)) || return 1 # it catches SIGURG (23)
    if [ ! -d "$TRIAL_DIR" ]; then mkdir -m 710 "$TRIAL_DIR" && chgrp "$APP" "$TRIAL_DIR" || return 1; fi
    if [ ! -p "$TRIAL_DIR/result" ]; then  # the request readable, the FIFO writable, by the app's group
        : >"$TRIAL_DIR/request" && mkfifo -m 620 "$TRIAL_DIR/result" \
            && chgrp "$APP" "$TRIAL_DIR/request" "$TRIAL_DIR/result" || return 1
    fi
    printf '%s\n' "$token" "$BUILT" "$APP_MODULE" "$RELEASE_TIMEOUT" >"$TRIAL_DIR/request" || return 1
    exec {fd}<>"$TRIAL_DIR/result" # read and write: the open never waits for a writer
    kill -URG "$master" || { exec {fd}<&-; return 1; }
    asked=$SECONDS
    # A second at a time: the child may die without a word (its alarm at deploy.release_timeout, a crash).
    # What it writes is the app's: a PID is taken as digits only, never evaluated (bash arithmetic would
    # run a command substitution in an array subscript).
    while [ -z "$result" ] && ((SECONDS - asked < limit)); do
        if read -r -t 1 -u "$fd" key line; then
            [ "$key" = "$token" ] || continue # a line of an earlier trial, late
            if [ -z "$child" ] && [[ $line =~ ^started\ ([0-9]{1,9})$ ]]; then
                child=${BASH_REMATCH[1]} limit=$((RELEASE_TIMEOUT + 5))
            else
                result=$line
            fi
        elif [ -n "$child" ] && [ ! -e "/proc/$child/status" ]; then
            break
        fi
    done
    exec {fd}<&-
    if [ -z "$result" ]; then
        [ -z "$child" ] && return 1
        fail_release "it did not load: the check ended without an answer after $((SECONDS - asked)) s\
 (deploy.release_timeout: $RELEASE_TIMEOUT s); $(app_errors)"
    fi
    [ "$result" = ok ] || fail_release "it does not load: $result"
}

run_release_command() {  # deploy.release_command in the release this run built, within RELEASE_TIMEOUT
    local out="$W/release-command.out" rc
    in_release_unit release-command "$RELEASE_TIMEOUT" "$BUILT" - <<<"$RELEASE_COMMAND" >"$out" 2>&1
    rc=$?
    [ "$rc" = 124 ] && fail_release "release command '$RELEASE_COMMAND' did not end within $RELEASE_TIMEOUT s\
 (deploy.release_timeout)$(unit_reason "$out")"
    [ "$rc" = 0 ] || fail_release "release command '$RELEASE_COMMAND' exited $rc$(unit_reason "$out")"
}

switch_to_built() {  # current -> the release this run built; the app reloaded onto it
    if [ -n "$LIVE_DIR" ] && [ -f "$SUPERVISOR_CONF" ] \
        && ! cmp -s "$BUILT/$META/supervisor.conf" "$SUPERVISOR_CONF"; then
        # Its program differs (another app.module): a reload would start the old command on the new code.
        # Not on a first deploy: a program there is not the kit's (a server set up by hand), and the steps
        # after push put the site and the program in place, the stock site out of the way.
        go_live "$BUILT"
    else
        switch_to "$BUILT"
        reload_app "$LIVE_DIR" "$BUILT"
    fi
    changed
}

prune() {  # DIR ID...: releases or venvs (DIR/ID) gone, at the end of a successful run only
    local dir=$1 id
    shift
    for id in "$@"; do
        # Only names the kit gives: a release (20261126T101500Z-0123456789ab) or a venv (16 hex digits).
        [[ $id =~ ^([0-9]{8}T[0-9]{6}Z-[0-9a-f]{12}|[0-9a-f]{16})$ ]] || continue
        rm -rf "${dir:?}/$id"
    done
}
