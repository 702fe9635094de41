# shellcheck shell=bash
# Static files (app.static): the directories of a release that nginx serves itself, readable by its workers.
#
# A release is root's and its group's only (build_release): app.src may hold config and secrets. nginx's
# workers (www-data) read as "others", so each static directory, and nothing else, is opened to them: the
# release directory and each directory on the way down only to pass through (o+x: no listing, no
# reading), the static directory's own tree to read (o+rX). The app's directory and releases/ are 755
# already (provision). Root never follows a symbolic link here: a directory reached through one is refused.
#
# Reads:   nothing global (the release and its directories are its arguments)
# Defines: open_static

open_static() {  # RELEASE_DIR DIR...: each DIR of the release readable by nginx's workers
    local release=$1 dir path part parts
    shift
    for dir in "$@"; do
        no_link_below "$release" "$dir" \
            || fail_release "app.static: $dir runs through a symbolic link in the release, which root will not\
 follow: remove it"
        # An empty directory travels as no file: the release lacks it, and there is nothing to serve.
        [ -d "$release/$dir" ] || continue
        chmod o+x "$release" || die "could not open $release to nginx"
        path=$release
        IFS=/ read -r -a parts <<<"$dir"
        for part in "${parts[@]}"; do
            path="$path/$part"
            chmod o+x "$path" || die "could not open $path to nginx"
        done
        # -R leaves the symbolic links it meets alone (never acting on what they point at).
        chmod -R o+rX "$release/$dir" || die "could not open $release/$dir to nginx"
    done
}
