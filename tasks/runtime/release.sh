# shellcheck shell=bash
# push: a release of the app beside the others, its venv, its checks, the switch to it, and pruning.
#
# A release is built under a hidden `.partial-<id>` name and renamed into `releases/<id>` only when
# complete, so nothing half-built is ever listed or pointed at. It keeps what shaped it in $META
# (release.json, the rendered configs, env.json) so that a rollback brings all of it back. The app user
# imports it, and runs its release command, before `current` moves: a broken release never goes live.
#
# Reads:   RELEASES_DIR, VENVS_DIR, WHEELS_DIR, TOOLS_DIR, UV_VERSION, SHARED_DIR, SHARED_DIRS (array),
#          SUPERVISOR_CONF, META, APP, BASE_DIR, APP_MODULE, RELEASE_COMMAND, RELEASE_TIMEOUT,
#          PY_WITH_ENV, PY_IMPORT_CHECK, SUPERVISORD_PIDFILE, CHECK_DIR; W (apply.sh), LIVE_DIR (switch.sh)
# Defines: install_uv, uv, build_venv, prune_wheels, no_link_below, shared_dir, build_release,
#          in_release, as_app, check_release, forked_check, run_release_command, switch_to_built, prune
# Sets:    BUILT (see switch.sh)

install_uv() {  # uv ($TOOLS_DIR/uv-$UV_VERSION), taken out of its wheel ($W/tools/uv.whl): it builds the venvs
    local dest="$TOOLS_DIR/uv-$UV_VERSION"
    quiet python3 -m zipfile -e "$W/tools/uv.whl" "$W/tools/uv"
    quiet install -m 755 -o root -g root "$W/tools/uv/uv-$UV_VERSION.data/scripts/uv" "$dest.tmp"
    mv -f "$dest.tmp" "$dest" || die "could not install $dest"
}

uv() {  # ARG...: the kit's uv, offline, reading no config and no cache of anyone's
    env -i PATH=/usr/bin:/bin HOME=/nonexistent UV_NO_CONFIG=1 UV_NO_CACHE=1 UV_OFFLINE=1 \
        UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy "$TOOLS_DIR/uv-$UV_VERSION" "$@"
}

build_venv() {  # VENV_ID: a venv of exactly the wheels in $W/wheels/manifest (kept in $WHEELS_DIR)
    local venv="$VENVS_DIR/$1" name wheels=()
    # Built where it stays: a venv's scripts hard-code its path. `.complete` marks it usable. Readable by
    # all (public packages, nothing secret), written by root only; so are the wheels kept for the next.
    rm -rf "$venv"
    umask 022
    while IFS= read -r name; do
        [[ $name =~ ^[A-Za-z0-9_.+!-]+\.whl$ ]] || die "no wheel name in the manifest: $name"
        if [ -f "$W/wheels/$name" ]; then
            mv -f "$W/wheels/$name" "$WHEELS_DIR/$name" || die "could not keep $name in $WHEELS_DIR"
        fi
        [ -f "$WHEELS_DIR/$name" ] || die "wheel $name was neither sent nor kept in $WHEELS_DIR"
        wheels+=("$WHEELS_DIR/$name")
    done <"$W/wheels/manifest"
    quiet uv venv --quiet --python "$(command -v python3)" "$venv"
    # --no-deps: the wheels are the resolved set already (resolved for this server on the control machine).
    # Compiled now: the app's user cannot write __pycache__ here, and every worker would compile again.
    quiet uv pip install --quiet --no-deps --compile-bytecode --python "$venv/bin/python" "${wheels[@]}"
    cp "$W/wheels/manifest" "$venv/.wheels"
    # uv leaves its lock file writable by all: nothing under the venv may be another user's to change.
    rm -f "$venv/.lock"
    chmod -R go-w "$venv"
    touch "$venv/.complete"
    umask 027
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

shared_dir() {  # DIR: the shared directory DIR (deploy.shared_dirs), app-owned; its parents root's
    local path=$SHARED_DIR part
    no_link_below "$SHARED_DIR" "$1" \
        || die "$SHARED_DIR/$1 runs through a symbolic link, which root will not follow: remove the link"
    local IFS=/
    for part in $1; do
        path="$path/$part"
        [ -d "$path" ] && continue
        if [ "$path" = "$SHARED_DIR/$1" ]; then
            quiet install -d -o "$APP" -g "$APP" -m 750 "$path"
        else
            quiet install -d -o root -g "$APP" -m 750 "$path"
        fi
    done
}

build_release() {  # RELEASE_ID VENV_ID: the files sent ($W/release) as releases/RELEASE_ID, on that venv
    local partial="$RELEASES_DIR/.partial-$1" release="$RELEASES_DIR/$1" dir wheel
    rm -rf "$RELEASES_DIR"/.partial-*  # what an interrupted run left
    note_release "$1"
    quiet cp -a "$W/release" "$partial"
    # The app as a package (an installable project), in the release: a code change keeps the venv.
    for wheel in "$W"/app/*.whl; do
        [ -f "$wheel" ] && quiet uv pip install --quiet --no-deps --compile-bytecode \
            --python "$VENVS_DIR/$2/bin/python" --target "$partial/$META/site" "$wheel"
    done
    # Root's, readable by the app's group only: app.src may hold config and secrets.
    chown -R root:"$APP" "$partial"
    chmod -R u=rwX,g=rX,o= "$partial"
    chmod 600 "$partial/$META/fingerprint"  # a hash over app.env: no one but root reads it
    quiet install -m 640 -o root -g "$APP" "$W/files/env.json" "$partial/$META/env.json"
    ln -sfn "$VENVS_DIR/$2" "$partial/.venv"
    # The shared directories, linked in after chown and chmod, which would act on what the links point at.
    for dir in "${SHARED_DIRS[@]}"; do
        shared_dir "$dir"
        no_link_below "$partial" "$dir" || die "$dir in the app's files runs through a symbolic link: remove it"
        rm -rf "${partial:?}/$dir"
        mkdir -p "$(dirname "$partial/$dir")"
        ln -sfn "$SHARED_DIR/$dir" "$partial/$dir"
    done
    [ -e "$release" ] && die "release $1 exists already"
    mv -T "$partial" "$release" || die "could not rename $partial"
    BUILT=$release
}

in_release() {  # RELEASE_DIR COMMAND ARG...: run COMMAND in the release as the app user, with its venv
    # on PATH and nothing of root's environment
    local release=$1
    shift
    # Without the lock's descriptors: a process the app leaves behind must not hold the lock.
    (cd "$release" && runuser -u "$APP" -- env -i HOME="$BASE_DIR" LANG=C.UTF-8 \
        PATH="$release/.venv/bin:/usr/local/bin:/usr/bin:/bin" VIRTUAL_ENV="$release/.venv" \
        PYTHONPATH="$release/$META/site" "$@" 8>&- 9>&-)
}

as_app() {  # RELEASE_DIR COMMAND ARG...: in_release, with app.env (read from the release's env.json:
    # never on a command line, where `ps` shows it)
    in_release "$1" /usr/bin/python3 -I -S - "$META/env.json" "${@:2}" <<<"$PY_WITH_ENV"
}

check_release() {  # the release this run built imports, as the app user: else it fails
    local out
    forked_check && return 0
    out=$(in_release "$BUILT" "$BUILT/.venv/bin/python" - "$META/env.json" "$APP_MODULE" \
        <<<"$PY_IMPORT_CHECK" 2>&1) || fail_release "it does not load: $(error_line "$out")"
}

# The check forked from the live gunicorn master, Flask imported already (configs/gunicorn.conf.py.j2 says
# how), when that master runs the venv of the release this run built and has the handler; else (no master,
# another venv, a master from an older config, no start within 10 s) it returns 1 and check_release runs
# the check apart.
forked_check() {
    local supervisord master key mask fd line child="" result="" token="$$-$EPOCHREALTIME" asked limit=10
    [ -n "$LIVE_DIR" ] && [ "$(readlink "$LIVE_DIR/.venv")" = "$(readlink "$BUILT/.venv")" ] || return 1
    read -r supervisord _ <"$SUPERVISORD_PIDFILE" 2>/dev/null || return 1
    master=$(pgrep -P "$supervisord" -u "$APP") && [[ $master =~ ^[0-9]+$ ]] || return 1
    { while read -r key mask; do [ "$key" = SigCgt: ] && break; done <"/proc/$master/status"; } 2>/dev/null
    [ "$key" = SigCgt: ] && ((0x$mask & 1 << 22)) || return 1 # it catches SIGURG (23)
    if [ ! -d "$CHECK_DIR" ]; then mkdir -m 710 "$CHECK_DIR" && chgrp "$APP" "$CHECK_DIR" || return 1; fi
    if [ ! -p "$CHECK_DIR/result" ]; then  # the request readable, the FIFO writable, by the app's group
        : >"$CHECK_DIR/request" && mkfifo -m 620 "$CHECK_DIR/result" \
            && chgrp "$APP" "$CHECK_DIR/request" "$CHECK_DIR/result" || return 1
    fi
    printf '%s\n' "$token" "$BUILT" "$APP_MODULE" "$RELEASE_TIMEOUT" >"$CHECK_DIR/request" || return 1
    exec {fd}<>"$CHECK_DIR/result" # read and write: the open never waits for a writer
    kill -URG "$master" || { exec {fd}<&-; return 1; }
    asked=$SECONDS
    # A second at a time: the child may die without a word (its alarm at deploy.release_timeout, a crash).
    # What it writes is the app's: a PID is taken as digits only, never evaluated (bash arithmetic would
    # run a command substitution in an array subscript).
    while [ -z "$result" ] && ((SECONDS - asked < limit)); do
        if read -r -t 1 -u "$fd" key line; then
            [ "$key" = "$token" ] || continue # a line of an earlier check, late
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
    local out rc
    out=$(as_app "$BUILT" timeout -k 10 "$RELEASE_TIMEOUT" /bin/sh -c "$RELEASE_COMMAND" 2>&1) || {
        rc=$?
        [ "$rc" = 124 ] && fail_release "release command '$RELEASE_COMMAND' did not end within $RELEASE_TIMEOUT s\
 (deploy.release_timeout): $(error_line "$out")"
        fail_release "release command '$RELEASE_COMMAND' exited $rc: $(error_line "$out")"
    }
}

switch_to_built() {  # current -> the release this run built; the app reloaded onto it
    if [ -f "$SUPERVISOR_CONF" ] && ! cmp -s "$BUILT/$META/supervisor.conf" "$SUPERVISOR_CONF"; then
        # Its program differs (another app.module): a reload would start the old command on the new code.
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
