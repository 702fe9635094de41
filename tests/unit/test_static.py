"""Static files nginx serves itself: which directories (tasks/static.py), the refusal of a missing one,
the nginx locations (configs/nginx-site.conf.j2) and the permissions a release gives them
(runtime/static.sh)."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from tasks import configs, static
from tasks.shell import Var, line
from tasks.steps import guards
from tasks.steps.model import Situation
from tasks.steps.provision import directories
from tests.unit.conftest import NOW, PLATFORM, fresh_facts, paths_of, plans
from tests.unit.serverside import run_functions


def app_dir(root: Path, *files: str) -> Path:
    """A local app directory holding `files` (paths relative to it) and a requirements.txt."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "requirements.txt").write_text("flask\n")
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x\n")
    return root


# ---- which directories -----------------------------------------------------------------------------


def test_a_module_apps_static_folder_is_served_at_static(settings, tmp_path):
    src = app_dir(tmp_path, "app.py", "static/style.css")
    s = replace(settings, app=replace(settings.app, src=src, module="app:app", static={}))
    assert static.folders(s, src) == {"/static/": "static"}


def test_an_app_without_a_static_folder_has_no_static_location(settings, tmp_path):
    src = app_dir(tmp_path, "app.py", "templates/index.html")
    s = replace(settings, app=replace(settings.app, src=src, module="app:app", static={}))
    assert static.folders(s, src) == {}
    assert static.commands(s, src) == []
    assert "location ^~" not in configs.nginx_site(s, paths_of(s), PLATFORM)


def test_a_package_apps_static_folder_is_the_packages(settings, tmp_path):
    # Flask's tutorial: flaskr/__init__.py with create_app(); its root path is the package's directory.
    src = app_dir(tmp_path, "flaskr/__init__.py", "flaskr/static/style.css", "static/not-this.css")
    s = replace(settings, app=replace(settings.app, src=src, module="flaskr:create_app()", static={}))
    assert static.folders(s, src) == {"/static/": "flaskr/static"}


def test_a_module_in_a_package_has_the_packages_directory_as_its_root(settings, tmp_path):
    src = app_dir(tmp_path, "site/__init__.py", "site/web.py", "site/static/a.js")
    s = replace(settings, app=replace(settings.app, src=src, module="site.web:app", static={}))
    assert static.folders(s, src) == {"/static/": "site/static"}


def test_a_src_layout_is_found_under_src(settings, tmp_path):
    src = app_dir(tmp_path, "pyproject.toml", "src/flaskr/__init__.py", "src/flaskr/static/app.js")
    s = replace(settings, app=replace(settings.app, src=src, module="flaskr:create_app()", static={}))
    assert static.folders(s, src) == {"/static/": "src/flaskr/static"}


def test_an_explicit_mapping_is_served_as_given_and_nothing_else(settings, tmp_path):
    src = app_dir(tmp_path, "app.py", "static/a.css", "assets/img/logo.png", "media/b.png")
    s = replace(
        settings, app=replace(settings.app, src=src, static={"/media/": "media", "/assets/": "assets/img"})
    )
    assert static.folders(s, src) == {"/assets/": "assets/img", "/media/": "media"}  # sorted by prefix
    assert static.refusal(s, src) is None
    assert static.commands(s, src) == [line("open_static", Var("BUILT"), "assets/img", "media")]
    # An empty mapping is the Flask static folder again.
    assert static.folders(replace(s, app=replace(s.app, static={})), src) == {"/static/": "static"}


# ---- refused before anything changes ---------------------------------------------------------------


def test_a_directory_the_app_lacks_is_refused_in_one_line(settings, tmp_path):
    src = app_dir(tmp_path, "app.py")
    s = replace(settings, app=replace(settings.app, src=src, static={"/assets/": "assets"}))
    assert static.refusal(s, src) == (
        f"app.static: assets is not a directory of the app (in {src}): create it, or map /assets/ to a"
        " directory the app has"
    )


def test_a_file_a_link_a_shared_directory_or_the_root_prefix_is_refused(settings, tmp_path):
    src = app_dir(tmp_path, "app.py", "notes.txt", "elsewhere/a.css", "instance/up/b.png")
    (src / "linked").symlink_to(src / "elsewhere")
    s = replace(
        settings,
        app=replace(settings.app, src=src),
        deploy=replace(settings.deploy, shared_dirs=("instance",)),
    )
    for mapping, why in [
        ({"/n/": "notes.txt"}, "notes.txt is not a directory of the app"),
        ({"/l/": "linked"}, "linked is not a directory of the app"),
        ({"/up/": "instance/up"}, "instance/up is in the shared directory instance (deploy.shared_dirs)"),
        ({"/": "elsewhere"}, "/ would take every request from the app"),
    ]:
        refusal = static.refusal(replace(s, app=replace(s.app, static=mapping)), src)
        assert refusal is not None and refusal.startswith(f"app.static: {why}"), refusal
        assert "\n" not in refusal


def test_runs_that_serve_static_files_refuse_a_missing_directory_after_the_probe(settings, tmp_path):
    src = app_dir(tmp_path, "app.py")
    s = replace(settings, app=replace(settings.app, src=src, static={"/assets/": "assets"}))

    def refused(steps: tuple[str, ...]) -> list[str]:
        # No app read: enable_site alone does not read it, and the refusal needs only app.src.
        found = guards.refusals(Situation(s, fresh_facts(), PLATFORM, paths_of(s), steps, NOW))
        return [r for r in found if r.startswith("app.static:")]

    for steps in (("provision", "push", "enable_site"), ("enable_site",), ("push",)):
        assert refused(steps) == [static.refusal(s, src)], steps
    # A rollback brings back a release's own site, a restart renders none: the local app has no say.
    assert refused(("rollback",)) == refused(("restart",)) == []


# ---- the nginx site ----------------------------------------------------------------------------------


def locations(site: str) -> dict[str, str]:
    return dict(re.findall(r"location \^~ (\S+) \{\n(.*?)\n    \}", site, re.DOTALL))


def test_nginx_serves_each_directory_from_the_live_release_with_caching_headers(settings, tmp_path):
    src = app_dir(tmp_path, "app.py", "static/a.css", "assets/img/logo.png")
    s = replace(
        settings, app=replace(settings.app, src=src, static={"/static/": "static", "/img/": "assets/img"})
    )
    site = configs.nginx_site(s, paths_of(s), PLATFORM)
    found = locations(site)
    assert list(found) == ["/img/", "/static/"]
    for prefix, directory in (("/static/", "static"), ("/img/", "assets/img")):
        body = [part.strip() for part in found[prefix].splitlines()]
        # Through `current`, resolved per request: a switch of releases needs no reload of nginx.
        assert f"alias /srv/flaskdemo/current/{directory}/;" in body
        assert "expires 1h;" in body
        assert 'add_header Cache-Control "public";' in body
        assert not any("proxy" in part for part in body), "gunicorn must never see these requests"
    assert site.count("proxy_pass") == 1  # the app's own location / is still there


def test_the_default_apps_site_is_unchanged_without_a_static_folder(settings):
    assert not (settings.app.src / "static").exists()  # the sample app has none
    assert "location ^~" not in configs.nginx_site(settings, paths_of(settings), PLATFORM)


# ---- permissions on the server -----------------------------------------------------------------------


def test_the_way_to_every_release_is_open_to_nginx(settings):
    # open_static opens the release and below: the app's directory and releases/ are traversable already.
    paths = paths_of(settings)
    modes = {path: int(mode, 8) for path, _, _, mode in directories(settings, paths, PLATFORM)}
    assert modes[paths.base_dir] & 0o001 and modes[paths.releases_dir] & 0o001


def scratch_release(root: Path) -> Path:
    """A release as build_release leaves it: u=rwX,g=rX,o= throughout."""
    release = root / "releases" / "20261126T100000Z-aaaaaaaaaaaa"
    for name in ("app.py", "config.py", "assets/img/logo.png", "assets/img/icons/a.svg", "assets/other.txt",
                 "static/a.css"):  # fmt: skip
        (release / name).parent.mkdir(parents=True, exist_ok=True)
        (release / name).write_text("x\n")
    for path in [release, *release.rglob("*")]:
        path.chmod(0o750 if path.is_dir() else 0o640)
    return release


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_open_static_opens_the_static_directories_and_nothing_else(tmp_path):
    release = scratch_release(tmp_path)
    done = run_functions({}, [f"open_static {release} assets/img static"])
    assert done.returncode == 0, done.stdout + done.stderr
    # On the way down: traverse only.
    assert mode(release) == mode(release / "assets") == 0o751
    # Inside: readable, directories traversable.
    for directory in ("assets/img", "assets/img/icons", "static"):
        assert mode(release / directory) == 0o755, directory
    for file in ("assets/img/logo.png", "assets/img/icons/a.svg", "static/a.css"):
        assert mode(release / file) == 0o644, file
    # The rest stays closed to others.
    for file in ("app.py", "config.py", "assets/other.txt"):
        assert mode(release / file) == 0o640, file


def test_open_static_refuses_a_directory_through_a_link_and_skips_an_absent_one(tmp_path):
    release = scratch_release(tmp_path)
    (release / "shared").symlink_to(tmp_path)
    values = {
        "RELEASES_DIR": str(release.parent), "META": ".deploy", "APP": "app", "CURRENT": "", "PREVIOUS": "",
        "HISTORY_FILE": str(tmp_path / "history.log"), "WHO": "t", "ACTION": "",
    }  # fmt: skip
    (release / ".deploy").mkdir()
    done = run_functions(values, [
        "note_live_release", "begin_step push", f"BUILT={release}", f"open_static {release} empty shared/x",
    ])  # fmt: skip
    assert done.returncode == 1
    assert "app.static: shared/x runs through a symbolic link in the release" in done.stdout
    assert mode(release) == 0o750, "an absent directory, or one through a link, opens nothing"


@pytest.mark.parametrize("directory", ["static", "assets/img"])
def test_push_opens_the_static_directories_of_the_release_it_built(settings, tmp_path, directory):
    src = app_dir(tmp_path, "app.py", f"{directory}/a.css")
    s = replace(settings, app=replace(settings.app, src=src, static={"/s/": directory}))
    (push,) = [p for p in plans(s, fresh_facts()) if p.name == "push"]
    names = [c.split()[0] for c in push.commands]
    assert line("open_static", Var("BUILT"), directory) in push.commands
    assert names.index("build_release") < names.index("open_static") < names.index("switch_to_built")
