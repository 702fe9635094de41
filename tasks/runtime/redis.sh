# shellcheck shell=bash
# redis: the app's own Redis server (services.redis), Debian's redis-server@APP unit on the kit's config
# and drop-in: a Unix socket only, in a directory only the app's group and redis may enter; persistence on
# (tasks/steps/redis.py). The package's own server (TCP on localhost, one keyspace for every app), which
# its install starts, is stopped and disabled.
#
# Reads:   REDIS_UNIT, REDIS_SHARED_UNIT, REDIS_CONF, REDIS_DROPIN, REDIS_DATA_DIR, REDIS_SOCKET, REDIS_USER;
#          W (apply.sh)
# Defines: ensure_redis

ensure_redis() {  # CONF DROPIN: the config and drop-in (among the run's files) in place, the data
    # directory made, the unit enabled at boot and running: restarted when its config or drop-in changed
    local restart=""
    if systemctl is-enabled -q "$REDIS_SHARED_UNIT" || systemctl is-active -q "$REDIS_SHARED_UNIT"; then
        quiet systemctl disable -q --now "$REDIS_SHARED_UNIT"
        note "$REDIS_SHARED_UNIT (the package's own server, on TCP, shared by every app) stopped and disabled"
        changed
    fi
    if [ "$(stat -c %U:%G:%a "$REDIS_DATA_DIR" 2>/dev/null)" != "$REDIS_USER:$REDIS_USER:750" ]; then
        [ -L "$REDIS_DATA_DIR" ] && die "$REDIS_DATA_DIR is a symbolic link, which root will not follow: remove it"
        quiet install -d -o "$REDIS_USER" -g "$REDIS_USER" -m 750 "$REDIS_DATA_DIR"
        changed
    fi
    if ! cmp -s "$W/$1" "$REDIS_CONF"; then  # redis reads it: root's, of redis's group
        { install -m 640 -o root -g "$REDIS_USER" "$W/$1" "$REDIS_CONF.tmp" && mv -f "$REDIS_CONF.tmp" "$REDIS_CONF"; } \
            || die "could not write $REDIS_CONF"
        restart=1
        changed
    fi
    if ! cmp -s "$W/$2" "$REDIS_DROPIN"; then
        mkdir -p "${REDIS_DROPIN%/*}" || die "could not make ${REDIS_DROPIN%/*}"
        install_file "$W/$2" "$REDIS_DROPIN" 644
        quiet systemctl daemon-reload
        restart=1
    fi
    systemctl is-enabled -q "$REDIS_UNIT" || { quiet systemctl enable -q "$REDIS_UNIT"; changed; }
    if [ -n "$restart" ]; then
        quiet systemctl restart "$REDIS_UNIT"
    elif ! systemctl is-active -q "$REDIS_UNIT"; then
        quiet systemctl start "$REDIS_UNIT"
        changed
    fi
    # Type=notify: started means ready, its socket made.
    [ -S "$REDIS_SOCKET" ] || die "$REDIS_UNIT runs without its socket $REDIS_SOCKET (journalctl -u $REDIS_UNIT)"
}
