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
    if getent passwd "$APP" >/dev/null; then
        quiet usermod -s "$NOLOGIN_SHELL" "$APP"
    else
        quiet useradd --system --user-group --no-create-home --home-dir "$BASE_DIR" \
            --shell "$NOLOGIN_SHELL" "$APP"
    fi
    changed
}

ensure_dir() {  # PATH OWNER GROUP MODE
    quiet install -d -o "$2" -g "$3" -m "$4" "$1"
    changed
}
