# shellcheck shell=bash
# postgresql: the app's role and database in Debian's PostgreSQL, the cluster running and started at boot
# (tasks/steps/postgresql.py). The app connects over the Unix socket as its own system user: Debian's
# pg_hba.conf lets a local user in as the role of its name (peer), so there is no password to keep.
#
# Reads:   APP, POSTGRESQL_UNIT, POSTGRESQL_USER
# Defines: postgresql_ready, as_postgres, ensure_database

postgresql_ready() {  # the clusters enabled at boot and running; the server answering, within 30 s
    local _
    systemctl is-enabled -q "$POSTGRESQL_UNIT" || quiet systemctl enable -q "$POSTGRESQL_UNIT"
    quiet systemctl start "$POSTGRESQL_UNIT"
    for _ in $(seq 300); do
        as_postgres psql -X -q -A -t -d postgres -c "SELECT 1" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "PostgreSQL does not answer on its socket: is a cluster there? (pg_lsclusters; pg_createcluster VERSION main --start)"
}

as_postgres() {  # COMMAND...: as PostgreSQL's superuser account, from a directory it may enter
    (cd / && runuser -u "$POSTGRESQL_USER" -- "$@")
}

# The app's name reaches psql as a variable (-v), quoted by psql itself (:'app' a literal, :"app" a name).
ensure_database() {  # the role named after the app (login, nothing more, no password) and its database,
    # owned by it, that no other role may connect to
    local sql
    printf -v sql '%s\n' \
        "SELECT format('CREATE ROLE %I LOGIN', :'app') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app') \\gexec" \
        'ALTER ROLE :"app" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD NULL;' \
        "SELECT format('CREATE DATABASE %I OWNER %I', :'app', :'app') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'app') \\gexec" \
        'ALTER DATABASE :"app" OWNER TO :"app";' \
        'REVOKE ALL ON DATABASE :"app" FROM PUBLIC;'
    postgresql_ready
    quiet as_postgres psql -X -q -v ON_ERROR_STOP=1 -v app="$APP" -d postgres <<<"$sql"
    changed
}
