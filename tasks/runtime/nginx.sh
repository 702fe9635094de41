# shellcheck shell=bash
# nginx: keep the stock default site, enable the app's site (validated before it goes live), reload.
#
# Reads:   NGINX_SITE, NGINX_SITE_MARK, NGINX_LINK, NGINX_SITES_AVAILABLE, NGINX_SITES_ENABLED,
#          NGINX_DEFAULT, NGINX_DEFAULT_BACKUP, NGINX_DEFAULT_LINK, NGINX_UNIT, NGINX_PID, NGINX_LOADED_STAMP;
#          W (apply.sh)
# Defines: nginx_error, backup_default_site, enable_site, nginx_workers, accepting, reload_nginx_config,
#          reload_nginx
# Sets:    NGINX_CHANGED (1 once enable_site changed nginx's config in this run)

nginx_error() {  # NGINX_T_OUTPUT: the line naming the culprit (nginx -t reports it first)
    printf '%s\n' "$1" | grep -m 1 -E "emerg|error|failed" || printf '%s\n' "$1" | head -n 1
}

backup_default_site() {  # a copy of the stock default site, once: a backup is never overwritten
    [ ! -e "$NGINX_DEFAULT_BACKUP" ] && [ -f "$NGINX_DEFAULT" ] || return 0
    { cp -p "$NGINX_DEFAULT" "$NGINX_DEFAULT_BACKUP.tmp" && mv "$NGINX_DEFAULT_BACKUP.tmp" "$NGINX_DEFAULT_BACKUP"; } \
        || die "could not copy $NGINX_DEFAULT"
    changed
}

# Put the new state in place, validate the whole config, and put the old state back on failure: nginx
# reads files only on reload, so it keeps serving the old config throughout. A site the kit did not
# write is kept (provision.sh keep_hand_made), one written into sites-enabled itself (not a link, as
# some recipes do) in sites-available: nginx loads every file of sites-enabled.
enable_site() {  # SITE_FILE REPLACES_DEFAULT: the site from $W/SITE_FILE, linked; 1: the default unlinked
    local had_site=0 had_file=0 link_before default_before out
    touch -r "$NGINX_SITES_AVAILABLE" "$W/available.mtime"
    touch -r "$NGINX_SITES_ENABLED" "$W/enabled.mtime"
    keep_hand_made "$NGINX_SITE" "$NGINX_SITE_MARK"
    if [ -f "$NGINX_LINK" ] && [ ! -L "$NGINX_LINK" ]; then
        keep_hand_made "$NGINX_LINK" "$NGINX_SITE_MARK" "$NGINX_SITES_AVAILABLE"
        cp -p "$NGINX_LINK" "$W/enabled.before" && had_file=1
    fi
    [ -f "$NGINX_SITE" ] && cp -p "$NGINX_SITE" "$W/site.before" && had_site=1
    link_before=$(readlink "$NGINX_LINK" || true)
    default_before=$(readlink "$NGINX_DEFAULT_LINK" || true)
    install_file "$W/$1" "$NGINX_SITE" 644
    if [ "$(readlink "$NGINX_LINK")" != "$NGINX_SITE" ]; then
        set_link "$NGINX_LINK" "$NGINX_SITE"
        changed
    fi
    if [ "$2" = 1 ] && [ -e "$NGINX_DEFAULT_LINK" ]; then
        rm -f "$NGINX_DEFAULT_LINK"
        changed
    fi
    if ! out=$(nginx -t 2>&1); then
        if [ $had_site = 1 ]; then cp -p "$W/site.before" "$NGINX_SITE"; else rm -f "$NGINX_SITE"; fi
        if [ -n "$link_before" ]; then ln -sfn "$link_before" "$NGINX_LINK"; else rm -f "$NGINX_LINK"; fi
        [ $had_file = 1 ] && cp -p "$W/enabled.before" "$NGINX_LINK"
        [ -n "$default_before" ] && ln -sfn "$default_before" "$NGINX_DEFAULT_LINK"
        # As it was, times included: the probe must not take the rejected attempt for a config change.
        touch -r "$W/available.mtime" "$NGINX_SITES_AVAILABLE"
        touch -r "$W/enabled.mtime" "$NGINX_SITES_ENABLED"
        die "nginx -t rejected the new site, the old config stays: $(nginx_error "$out")"
    fi
    NGINX_CHANGED=$CHANGED
}

nginx_workers() {  # the PIDs of nginx's workers now: its master's children, as the kernel lists them
    local master
    read -r master 2>/dev/null <"$NGINX_PID" && [[ $master =~ ^[0-9]+$ ]] || return 0
    cat "/proc/$master/task/$master/children" 2>/dev/null
}

accepting() {  # PID...: whether one of these workers still runs and has not begun its graceful exit
    local pid title
    for pid in "$@"; do
        title=$(tr -d '\0' 2>/dev/null <"/proc/$pid/cmdline") || continue # gone
        [ -z "$title" ] || [[ $title == *"is shutting down"* ]] || return 0
    done
    return 1
}

reload_nginx_config() {  # nginx reloaded, and back once its old workers take no new connection: each has
    # begun its graceful exit (its title says so) or is gone, up to 5 s. `systemctl reload` returns once
    # the master has the signal: until it has started the new workers and told the old ones to go, a
    # client (the health gate's request among them) still meets the old config, and a connection an old
    # worker accepted then is closed under it as it leaves (HTTP/2: a GOAWAY, curl's "framing layer" error).
    local old _
    read -r -a old <<<"$(nginx_workers | tr '\n' ' ')"
    quiet systemctl reload "$NGINX_UNIT"
    for _ in $(seq 100); do
        accepting "${old[@]}" || return 0
        sleep 0.05
    done
}

reload_nginx() {  # STALE: start nginx if it is down; else reload it (after nginx -t) if its config
    # changed since it loaded it: STALE=1 (the probe saw so) or enable_site changed it in this run
    local out
    if ! systemctl is-active -q "$NGINX_UNIT"; then
        out=$(nginx -t 2>&1) || die "nginx -t failed: $(nginx_error "$out")"
        quiet systemctl start "$NGINX_UNIT"
    elif [ "$1" = 1 ] || [ "${NGINX_CHANGED:-0}" = 1 ]; then
        out=$(nginx -t 2>&1) || die "nginx -t failed, nginx keeps its running config: $(nginx_error "$out")"
        reload_nginx_config
    else
        return 0
    fi
    touch "$NGINX_LOADED_STAMP"
    changed
}
