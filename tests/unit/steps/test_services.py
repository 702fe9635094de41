"""services.postgresql and services.redis: the settings, their packages, the postgresql and redis steps
planned from probed facts, and the services' URLs in the release's environment."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import replace

import pytest

from tasks import configs, runtime
from tasks import settings as settings_module
from tasks.facts import PathState
from tasks.settings import SettingError, Settings
from tasks.steps import postgresql, push, redis
from tasks.steps.postgresql import Database, Postgresql, Role
from tasks.steps.provision import Packages, packages
from tasks.steps.redis import Redis
from tests.unit.conftest import (
    PLATFORM,
    acting,
    amended,
    converged_facts,
    default_config,
    fresh_facts,
    paths_of,
    plan_one,
    plans,
)

DATABASE_URL = "postgresql:///flaskdemo?host=/run/postgresql"
REDIS_URL = "unix:///run/flaskdemo-redis/redis.sock"


def with_services(postgresql: bool = True, redis: bool = True, **env: str) -> Settings:
    config = default_config()
    config["services"] = {"postgresql": postgresql, "redis": redis}
    config["app"]["env"] = env
    return settings_module.parse(config)


def serving(s: Settings) -> object:
    """A converged server with both services as the steps leave them."""
    paths, app = paths_of(s), s.app.name
    facts = converged_facts(s)
    installed = facts.of(Packages).installed | {"postgresql", "redis-server"}
    facts = amended(facts, Packages, installed=installed).having(
        Postgresql(
            asked=True, enabled="enabled", clusters={"postgresql@15-main": "active"}, answered=True,
            role=Role(login=True, superuser=False, password=False),
            database=Database(owner=app, public_connect=False),
        ),
        Redis(True, "active", "enabled", "inactive", "disabled"),
    )  # fmt: skip
    written = {
        paths.redis_conf: configs.redis_conf(s, paths),
        paths.redis_dropin: configs.redis_dropin(s, paths, PLATFORM),
    }
    states = {path: PathState.file(configs.sha256(text)) for path, text in written.items()}
    states[paths.redis_data_dir] = PathState.dir("redis", "redis", "750")
    return replace(facts, paths={**facts.paths, **states})


@pytest.mark.parametrize("value", ["yes", 1, "on"])
def test_a_service_setting_is_true_or_false(value):
    config = default_config()
    config["services"] = {"redis": value}
    with pytest.raises(SettingError, match=r"^services\.redis: must be true or false, got "):
        settings_module.parse(config)


def test_both_services_are_off_by_default_and_their_steps_do_nothing(settings):
    assert (settings.services.postgresql, settings.services.redis) == (False, False)
    assert not {"postgresql", "redis"} & set(acting(plans(settings, fresh_facts())))
    assert json.loads(push.env_json(settings, PLATFORM)) == {}


def test_provision_installs_the_services_packages_when_set():
    assert packages(with_services(), PLATFORM) == ("nginx", "supervisor", "postgresql", "redis-server")
    assert packages(with_services(redis=False), PLATFORM) == ("nginx", "supervisor", "postgresql")
    found = {p.name: p for p in plans(with_services(), fresh_facts())}
    assert "install packages: nginx supervisor postgresql redis-server" in found["provision"].why


def test_a_fresh_server_gets_the_database_and_redis_before_push():
    found = plans(with_services(), fresh_facts())
    assert acting(found)[:4] == ["provision", "postgresql", "redis", "push"]
    steps = {p.name: p for p in found}
    assert steps["postgresql"].commands == ("ensure_database",)
    assert steps["redis"].commands == ("ensure_redis files/redis.conf files/redis-dropin.conf",)
    assert any("stop and disable it" in why for why in steps["redis"].why)  # the package's own server


def test_a_server_with_both_services_as_wanted_needs_nothing():
    s = with_services()
    assert acting(plans(s, serving(s))) == []


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"role": None}, "role flaskdemo: create it (login, no password)"),
        (
            {"role": Role(login=True, superuser=True, password=False)},
            "role flaskdemo: login only, no superuser",
        ),
        (
            {"role": Role(login=True, superuser=False, password=True)},
            "role flaskdemo: login only, no superuser",
        ),
        ({"database": None}, "database flaskdemo: create it, owned by flaskdemo"),
        ({"database": Database("postgres", False)}, "database flaskdemo: owned by flaskdemo, no other role"),
        ({"database": Database("flaskdemo", True)}, "database flaskdemo: owned by flaskdemo, no other role"),
        ({"enabled": "disabled"}, "PostgreSQL does not start at boot: enable it"),
        ({"clusters": {"postgresql@15-main": "failed"}}, "PostgreSQL is not running: start it"),
    ],
)
def test_the_database_step_acts_on_what_differs_and_says_why(change, why):
    s = with_services()
    facts = serving(s)
    found = plan_one(s, amended(facts, Postgresql, **change), postgresql.STEP)
    assert found.commands == ("ensure_database",)
    assert any(line.startswith(why) for line in found.why), found.why


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"enabled": "disabled"}, "enable redis-server@flaskdemo at boot"),
        ({"active": "failed"}, "redis-server@flaskdemo is failed: start it"),
        ({"shared_active": "active"}, "redis-server (the package's own server, on TCP, shared by every app)"),
    ],
)
def test_the_redis_step_acts_on_what_differs_and_says_why(change, why):
    s = with_services()
    found = plan_one(s, amended(serving(s), Redis, **change), redis.STEP)
    assert found.commands == ("ensure_redis files/redis.conf files/redis-dropin.conf",)
    assert any(line.startswith(why) for line in found.why), found.why


def test_a_changed_redis_config_is_shown_as_a_diff_and_restarts_it():
    s = with_services()
    paths = paths_of(s)
    facts = serving(s)
    stale = replace(facts, paths={**facts.paths, paths.redis_conf: PathState.file("old")})
    found = plan_one(s, stale, redis.STEP)
    assert found.why == (f"{paths.redis_conf} changes: restart redis-server@flaskdemo",)
    assert found.writes[paths.redis_conf] == configs.redis_conf(s, paths)


def test_redis_listens_on_the_apps_socket_only_with_persistence():
    s = with_services()
    paths = paths_of(s)
    conf = configs.redis_conf(s, paths).splitlines()
    assert {"port 0", f"unixsocket {paths.redis_socket}", "unixsocketperm 660", "appendonly yes"} <= set(conf)
    assert not [line for line in conf if line.startswith("bind")]
    dropin = configs.redis_dropin(s, paths, PLATFORM)
    assert "install -d -o redis -g flaskdemo -m 2750 /run/flaskdemo-redis" in dropin
    assert "ReadWritePaths=\n" in dropin  # Debian's template's list reset: not /etc/redis


def test_alone_without_the_package_the_steps_name_provision():
    s = with_services()
    assert plan_one(s, fresh_facts(), postgresql.STEP).blocked.startswith("postgresql is not installed")
    assert plan_one(s, fresh_facts(), redis.STEP).blocked.startswith("redis-server is not installed")


def test_the_release_environment_holds_the_services_urls_unless_app_env_sets_them():
    assert json.loads(push.env_json(with_services(), PLATFORM)) == {
        "DATABASE_URL": DATABASE_URL, "REDIS_URL": REDIS_URL,
    }  # fmt: skip
    mine = with_services(DATABASE_URL="postgresql://db.internal/app", SECRET_KEY="s")
    assert json.loads(push.env_json(mine, PLATFORM)) == {
        "DATABASE_URL": "postgresql://db.internal/app", "REDIS_URL": REDIS_URL, "SECRET_KEY": "s",
    }  # fmt: skip


def test_turning_a_service_on_makes_a_new_release_with_its_url(settings):
    s = with_services(redis=False)
    facts = serving(s)
    converged = converged_facts(settings)
    # The converged server's release was made without services: turning postgresql on changes its env.
    facts = replace(facts, paths=converged.paths | facts.paths).having(converged.of(push.Releases))
    found = {p.name: p for p in plans(s, facts)}
    assert found["push"].acts
    assert json.loads(found["push"].files["files/env.json"]) == {"DATABASE_URL": DATABASE_URL}


def probe_part(name: str, commands: dict[str, str], states: dict[str, str]) -> types.ModuleType:
    """A step's part of the probe (runtime/probe_NAME.py), its shared helpers stubbed: `output` answers
    from `commands` (by the psql queries' presence), `units` from `states`."""
    shared = types.ModuleType("probe")
    shared.output = lambda argv: next((out for key, out in commands.items() if key in " ".join(argv)), "")
    shared.units = lambda names: {
        n: {"active": states.get(n, "inactive"), "enabled": "enabled"} for n in names
    }
    part = types.ModuleType(name)
    saved = sys.modules.get("probe")
    sys.modules["probe"] = shared
    try:
        exec(compile(runtime.source(f"{name}.py"), f"{name}.py", "exec"), part.__dict__)
    finally:
        if saved is None:
            del sys.modules["probe"]
        else:
            sys.modules["probe"] = saved
    return part


def test_the_postgresql_probe_part_reads_the_apps_role_and_database_from_the_catalog(tmp_path):
    (tmp_path / "15" / "main").mkdir(parents=True)
    (tmp_path / "15" / "main" / "postgresql.conf").write_text("")
    catalog = (
        "role\tpostgres\tt\tt\tf\nrole\tapp\tt\tf\tf\nrole\tother\tt\tf\tf\n"
        "database\tpostgres\tpostgres\tt\ndatabase\tapp\tapp\tf\ndatabase\tother\tother\tf\n"
    )
    part = probe_part("probe_postgresql", {"pg_authid": catalog}, {"postgresql@15-main": "active"})
    asked = {
        "conf_dir": str(tmp_path), "unit": "postgresql", "cluster_unit": PLATFORM.postgresql_cluster_unit,
        "user": "postgres", "app": "app",
    }  # fmt: skip
    found = Postgresql.from_json(part.gather(asked))
    assert found == Postgresql(
        asked=True, enabled="enabled", clusters={"postgresql@15-main": "active"}, answered=True,
        role=Role(login=True, superuser=False, password=False), database=Database("app", False),
    )  # fmt: skip
    assert part.gather({}) == {}  # services.postgresql off: nothing asked, nothing run


def test_the_redis_probe_part_asks_systemd_of_the_apps_unit_and_the_packages_own():
    part = probe_part("probe_redis", {}, {"redis-server@app": "active"})
    found = Redis.from_json(part.gather({"unit": "redis-server@app", "shared": "redis-server"}))
    assert (found.active, found.shared_active, found.shared_runs) == ("active", "inactive", True)  # enabled
