# shellcheck shell=bash
# provision: system packages, the app's system user, its directories.
#
# Reads:   PACKAGES_UPDATE, PACKAGES_INSTALL (arrays: the platform's commands), APP, BASE_DIR,
#          NOLOGIN_SHELL
# Defines: update_package_lists, install_packages, ensure_app_user, ensure_dir

update_package_lists() {
    quiet "${PACKAGES_UPDATE[@]}"
}

install_packages() {  # PACKAGE...
    quiet "${PACKAGES_INSTALL[@]}" "$@"
    changed
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
