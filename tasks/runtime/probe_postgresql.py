"""postgresql's part of the probe (runtime/probe.py runs it), with services.postgresql only: the
clusters and their units, and the app's role and database as the server's superuser sees them.

    asked: {} (services.postgresql off), or {"conf_dir": DIR, "unit": UNIT, "cluster_unit": PATTERN,
            "user": SUPERUSER, "app": NAME}
"""

import os

from probe import output, units

# Every role's and database's state, each row tagged: no value of the app's in the SQL (psql -c does not
# take variables); the app's rows are picked out here.
ROLES = "SELECT 'role', rolname, rolcanlogin, rolsuper, rolpassword IS NOT NULL FROM pg_authid"
DATABASES = (
    "SELECT 'database', datname, pg_get_userbyid(datdba), has_database_privilege('public', oid, 'CONNECT')"
    " FROM pg_database"
)


def gather(asked):
    if not asked:
        return {}
    clusters = [
        asked["cluster_unit"].format(version=version, cluster=cluster)
        for version in sorted(entries(asked["conf_dir"]))
        for cluster in sorted(entries(os.path.join(asked["conf_dir"], version)))
        if os.path.isfile(os.path.join(asked["conf_dir"], version, cluster, "postgresql.conf"))
    ]
    found = units([asked["unit"], *clusters])
    running = any(found[unit]["active"] == "active" for unit in clusters)
    facts = {
        "enabled": found[asked["unit"]]["enabled"],
        "clusters": {unit: found[unit]["active"] for unit in clusters},
    }
    if running:
        facts.update(catalog(asked["user"], asked["app"]))
    return {"postgresql": facts}


def entries(directory):
    try:
        return [name for name in os.listdir(directory) if not name.startswith(".")]
    except OSError:
        return []


def catalog(superuser, app):
    """The app's role and database, asked over the socket as the superuser (peer authentication)."""
    argv = ["runuser", "-u", superuser, "--", "psql", "-X", "-A", "-t", "-q", "-F", "\t"]
    argv += ["-d", "dbname=postgres connect_timeout=5"]  # a server that hangs holds the probe 5 s at most
    facts = {"answered": False, "role": None, "database": None}
    for row in output([*argv, "-c", ROLES, "-c", DATABASES]).splitlines():
        kind, _, rest = row.partition("\t")
        name, *rest = rest.split("\t")
        facts["answered"] = facts["answered"] or kind in ("role", "database")
        if name != app:
            continue
        if kind == "role" and len(rest) == 3:
            login, superuser_, password = (value == "t" for value in rest)
            facts["role"] = {"login": login, "superuser": superuser_, "password": password}
        elif kind == "database" and len(rest) == 2:
            facts["database"] = {"owner": rest[0], "public_connect": rest[1] == "t"}
    return facts
