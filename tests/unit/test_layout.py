"""Where the app lives on a server: the kit's own paths, the platform's, and references to them."""

from dataclasses import replace

import pytest

from tasks.layout import app_paths, health_host, health_rule, health_url
from tasks.shell import Var, ref
from tests.unit.conftest import paths_of


def test_the_apps_paths(settings):
    paths = paths_of(settings)
    assert paths.current == "/srv/flaskdemo/current" and paths.run_dir == "/run/flaskdemo"
    assert paths.shared("instance") == "/srv/flaskdemo/shared/instance"
    assert paths.nginx_site == "/etc/nginx/sites-available/flaskdemo"
    assert paths.nginx_default_link == "/etc/nginx/sites-enabled/default"
    assert paths.supervisor_conf == "/etc/supervisor/conf.d/flaskdemo.conf"
    assert paths.lock_root == "/run/flaskdeploy"  # root-only, gone at reboot
    assert app_paths(settings).history_file == paths.history_file  # the kit's own: no platform needed


def test_every_path_is_a_server_script_value(settings):
    values = paths_of(settings).values()
    assert values["CURRENT"] == "/srv/flaskdemo/current" and values["APP"] == "flaskdemo"
    assert values["NGINX_SITE"] == "/etc/nginx/sites-available/flaskdemo"


def test_a_path_is_referred_to_by_the_value_it_lies_under(settings):
    paths = paths_of(settings)
    assert ref(paths, paths.current) == Var("CURRENT")
    assert ref(paths, paths.shared("instance")) == Var("SHARED_DIR", "/instance")  # not BASE_DIR/shared/...
    assert ref(paths, paths.shared("instance")).word() == '"$SHARED_DIR"/instance'
    with pytest.raises(ValueError, match="not in the layout"):
        ref(paths, "/etc/passwd")


def test_the_health_request_goes_through_nginx_with_a_host_that_reaches_the_site(settings):
    assert health_url(settings) == "http://127.0.0.1:80/"  # no app.health_path: GET /
    assert health_host(settings) == "localhost"  # `_`: nginx's default server answers
    named = replace(settings, app=replace(settings.app, server_name="example.org www.example.org"))
    assert health_host(named) == "example.org"


def test_the_health_rule_follows_the_health_path(settings):
    # No health path: GET / passes on any answer below 500 (the app answered); a health path must answer 2xx.
    assert (settings.app.health_path, health_rule(settings)) == (None, "answered")
    with_path = replace(settings, app=replace(settings.app, health_path="/healthz"))
    assert (health_url(with_path), health_rule(with_path)) == ("http://127.0.0.1:80/healthz", "2xx")
