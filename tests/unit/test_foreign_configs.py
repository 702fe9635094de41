"""Files at the paths of the app's configs that the kit did not write (a server set up by hand: an nginx
site, a supervisor program, a certbot lineage of the app's name): a copy of each is kept beside it, once,
where nginx, supervisor and certbot do not load it, and a note says so; the kit's own files are written
over as before. Run by bash here under a scratch root, with stand-ins for nginx, supervisorctl and certbot.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from tasks import configs
from tasks.facts import PathState
from tasks.runtime import globals_for
from tasks.steps import provision
from tasks.steps.provision import Packages
from tests.unit.conftest import PLATFORM, converged_facts, fresh_facts, paths_of, plan_one
from tests.unit.serverside import run_functions

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the kit installs files as root's")

HAND_MADE_SITE = """\
server {
    listen 80;
    server_name _;
    location / { proxy_pass http://127.0.0.1:8000; }
}
"""
HAND_MADE_PROGRAM = """\
[program:app]
command=/home/alice/app/venv/bin/gunicorn -b 127.0.0.1:8000 app:app
user=alice
"""


@pytest.fixture
def marks(settings) -> dict[str, str]:
    values = globals_for(settings, paths_of(settings), PLATFORM)
    return {key: values[key] for key in ("NGINX_SITE_MARK", "SUPERVISOR_CONF_MARK")}


def test_the_configs_the_kit_renders_name_in_their_first_line_what_the_server_looks_for(settings, marks):
    paths = paths_of(settings)
    assert marks["NGINX_SITE_MARK"] in configs.nginx_site(settings, paths, PLATFORM).splitlines()[0]
    assert marks["SUPERVISOR_CONF_MARK"] in configs.supervisor_program(settings, paths).splitlines()[0]


# ---- keeping a copy ---------------------------------------------------------------------------------------


def keep(path: Path, mark: str, *more: str) -> tuple[int, list[str]]:
    done = run_functions(
        {"FILE": str(path), "MARK": mark}, ["begin_step enable_site", 'keep_hand_made "$FILE" "$MARK"', *more]
    )
    return done.returncode, done.stdout.splitlines()


def test_a_file_the_kit_did_not_write_is_copied_beside_it_once_and_said_so(tmp_path, marks):
    site = tmp_path / "app"
    site.write_text(HAND_MADE_SITE)
    site.chmod(0o640)
    mark = marks["NGINX_SITE_MARK"]
    code, said = keep(site, mark, 'echo "changed=$CHANGED"')
    kept = tmp_path / "app.bak"
    assert code == 0 and said == [
        f"::note enable_site {site} was not written by flaskdeploy: a copy is kept as {kept}",
        "changed=1",
    ]
    assert kept.read_text() == HAND_MADE_SITE and kept.stat().st_mode & 0o777 == 0o640
    assert keep(site, mark, 'echo "changed=$CHANGED"') == (0, ["changed=0"])  # kept already: not again
    site.write_text(HAND_MADE_SITE.replace("8000", "8001"))  # another hand-made version: a copy of its own
    assert keep(site, mark)[1] == [
        f"::note enable_site {site} was not written by flaskdeploy: a copy is kept as {kept}.2"
    ]
    assert kept.read_text() == HAND_MADE_SITE and "8001" in (tmp_path / "app.bak.2").read_text()


def test_a_file_the_kit_rendered_and_a_missing_one_are_left_alone(tmp_path, settings, marks):
    site = tmp_path / "app"
    assert keep(site, marks["NGINX_SITE_MARK"], 'echo "changed=$CHANGED"') == (0, ["changed=0"])
    site.write_text(configs.nginx_site(settings, paths_of(settings), PLATFORM))
    assert keep(site, marks["NGINX_SITE_MARK"], 'echo "changed=$CHANGED"') == (0, ["changed=0"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app"]


# ---- nginx: sites-available, and a site written into sites-enabled itself ------------------------------


def nginx_root(tmp_path: Path) -> dict[str, str]:
    available, enabled = tmp_path / "sites-available", tmp_path / "sites-enabled"
    available.mkdir()
    enabled.mkdir()
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "site").write_text("# nginx site for app, rendered from configs/nginx-site.conf.j2\n")
    return {
        "NGINX_SITE": str(available / "app"), "NGINX_LINK": str(enabled / "app"),
        "NGINX_SITES_AVAILABLE": str(available), "NGINX_SITES_ENABLED": str(enabled),
        "NGINX_DEFAULT_LINK": str(enabled / "default"), "W": str(tmp_path / "w"),
        # What a failure reads (die, apply.sh): no release here.
        "CURRENT": str(tmp_path / "current"), "PREVIOUS": str(tmp_path / "previous"),
        "RELEASES_DIR": str(tmp_path / "releases"), "META": ".deploy", "ACTION": "",
    }  # fmt: skip


def enable_site(values: dict[str, str], marks: dict[str, str], nginx_t: str = "return 0"):
    lines = [f"nginx() {{ {nginx_t}; }}  # stand-in: nginx -t", "note_live_release", "begin_step enable_site"]
    return run_functions(values | marks, [*lines, "enable_site site 1"])


@needs_root
def test_a_hand_made_site_in_sites_available_is_kept_there_and_the_kits_takes_its_place(tmp_path, marks):
    values = nginx_root(tmp_path)
    site, link = Path(values["NGINX_SITE"]), Path(values["NGINX_LINK"])
    site.write_text(HAND_MADE_SITE)
    link.symlink_to(site)  # as the recipe links it
    done = enable_site(values, marks)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        done.stdout
        == f"::note enable_site {site} was not written by flaskdeploy: a copy is kept as {site}.bak\n"
    )
    assert Path(f"{site}.bak").read_text() == HAND_MADE_SITE
    assert site.read_text().startswith("# nginx site for app, rendered") and os.readlink(link) == str(site)


@needs_root
def test_a_hand_made_site_in_sites_enabled_is_kept_in_sites_available_and_put_back_if_nginx_refuses(
    tmp_path, marks
):
    values = nginx_root(tmp_path)
    site, link = Path(values["NGINX_SITE"]), Path(values["NGINX_LINK"])
    link.write_text(HAND_MADE_SITE)  # written into sites-enabled itself: nginx loads every file there
    refused = enable_site(values, marks, nginx_t="echo 'nginx: [emerg] no' >&2; return 1")
    assert refused.returncode == 1 and "nginx -t rejected the new site" in refused.stdout
    assert not link.is_symlink() and link.read_text() == HAND_MADE_SITE and not site.exists()  # as it was
    done = enable_site(values, marks)
    assert done.returncode == 0, done.stdout + done.stderr
    assert Path(f"{site}.bak").read_text() == HAND_MADE_SITE  # kept once, out of sites-enabled
    assert sorted(os.listdir(values["NGINX_SITES_ENABLED"])) == ["app"] and os.readlink(link) == str(site)
    assert "a copy is kept" not in done.stdout  # said when it was made, by the refused run


# ---- supervisor --------------------------------------------------------------------------------------------


@needs_root
def test_a_hand_made_program_is_kept_as_a_file_supervisor_does_not_load_and_the_kits_replaces_it(
    tmp_path, marks
):
    conf_d, work = tmp_path / "conf.d", tmp_path / "w"
    conf_d.mkdir()
    work.mkdir()
    program = conf_d / "app.conf"
    program.write_text(HAND_MADE_PROGRAM)
    (work / "program").write_text(
        "; supervisor program for app, rendered from configs/supervisor-program.conf.j2\n"
    )
    (work / "gunicorn").write_text("bind = '127.0.0.1:8080'\n")
    done = run_functions(
        {"SUPERVISOR_CONF": str(program), "GUNICORN_CONF": str(tmp_path / "gunicorn.conf.py"), "W": str(work),
         "SUPERVISOR_UNIT": "supervisor", "APP": "app"} | marks,
        [
            "systemctl() { return 0; }", "wait_for_supervisord() { :; }", "ensure_running() { :; }",
            "supervisorctl() { echo 'app: stopped'; echo 'app: updated process group'; }",
            "begin_step supervisor_update", "supervisor_update gunicorn program", "end_step",
        ],
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    kept = conf_d / "app.conf.bak"
    assert (
        done.stdout.splitlines()[0]
        == f"::note supervisor_update {program} was not written by flaskdeploy: a copy is kept as {kept}"
    )
    assert kept.read_text() == HAND_MADE_PROGRAM and "rendered from" in program.read_text()
    assert [p.name for p in conf_d.glob("*.conf")] == ["app.conf"]  # what supervisor includes


# ---- certbot's lineage -------------------------------------------------------------------------------------

WEBROOT = "/srv/app/acme"
HOOK = "nginx -t -q && systemctl reload nginx"
# A lineage made with certbot's nginx plugin, as a hand-made server has it.
HAND_MADE_RENEWAL = """\
# renew_before_expiry = 30 days
version = 2.1.0
archive_dir = /etc/letsencrypt/archive/app
cert = /etc/letsencrypt/live/app/cert.pem
privkey = /etc/letsencrypt/live/app/privkey.pem
chain = /etc/letsencrypt/live/app/chain.pem
fullchain = /etc/letsencrypt/live/app/fullchain.pem

# Options used in the renewal process
[renewalparams]
account = 0123456789abcdef
authenticator = nginx
installer = nginx
server = https://acme-v02.api.letsencrypt.org/directory
"""
# What certbot makes of it when the kit asks (certonly --webroot ... --deploy-hook HOOK).
KIT_RENEWAL = (
    HAND_MADE_RENEWAL.replace(
        "authenticator = nginx\ninstaller = nginx\n",
        f"authenticator = webroot\nwebroot_path = {WEBROOT},\nrenew_hook = {HOOK}\n",
    )
    + f"[[webroot_map]]\napp.test = {WEBROOT}\n"
)


def obtain(tmp_path: Path) -> list[str]:
    """What obtain_certificate says, certbot standing in: it renews the lineage as the kit asks, rewriting
    its renewal config as certbot does."""
    kit, certbot = tmp_path / "kit-renewal.conf", tmp_path / "bin" / "certbot"
    kit.write_text(KIT_RENEWAL)
    certbot.parent.mkdir(exist_ok=True)
    certbot.write_text(f"#!/bin/sh\ncp {kit} {tmp_path / 'renewal' / 'app.conf'}\n")
    certbot.chmod(0o755)
    done = run_functions(
        {"CERTBOT_RENEWAL": str(tmp_path / "renewal" / "app.conf"), "ACME_WEBROOT": WEBROOT, "APP": "app",
         "NGINX_UNIT": "nginx", "ACME_CA_BUNDLE": str(tmp_path / "none.pem"), "ACME_EMAIL": "ops@example.org",
         "ACME_DIRECTORY": "https://acme.test/dir", "BIN": str(certbot.parent)},
        ['PATH="$BIN:$PATH"', "begin_step certificate", "obtain_certificate app.test"],
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


def lineage(tmp_path: Path, renewal: str) -> Path:
    """A lineage of the app's name as certbot lays it out: its renewal config, live links into its archive."""
    for part in ("renewal", "archive/app", "live/app"):
        (tmp_path / part).mkdir(parents=True)
    (tmp_path / "archive" / "app" / "cert1.pem").write_text("the user's certificate\n")
    (tmp_path / "live" / "app" / "cert.pem").symlink_to("../../archive/app/cert1.pem")
    path = tmp_path / "renewal" / "app.conf"
    path.write_text(renewal)
    return path


def test_a_lineage_someone_else_asked_certbot_for_keeps_a_copy_of_its_renewal_config(tmp_path):
    renewal = lineage(tmp_path, HAND_MADE_RENEWAL)
    kept = renewal.parent / "app.conf.bak"
    assert obtain(tmp_path) == [
        f"::note certificate {renewal} was not written by flaskdeploy: a copy is kept as {kept}"
    ]
    assert kept.read_text() == HAND_MADE_RENEWAL and renewal.read_text() == KIT_RENEWAL
    assert [p.name for p in renewal.parent.glob("*.conf")] == ["app.conf"]  # what certbot loads
    assert (tmp_path / "live" / "app" / "cert.pem").read_text() == "the user's certificate\n"


def test_the_kits_own_lineage_and_no_lineage_at_all_keep_nothing(tmp_path):
    renewal = lineage(tmp_path, KIT_RENEWAL)
    assert obtain(tmp_path) == []
    assert sorted(p.name for p in renewal.parent.iterdir()) == ["app.conf"]
    renewal.unlink()
    assert obtain(tmp_path) == []


# ---- before the first release ---------------------------------------------------------------------------


def test_before_the_first_release_provision_keeps_what_push_would_write_over(settings):
    paths = paths_of(settings)
    hand_made = replace(
        fresh_facts(),
        paths={paths.nginx_site: PathState.file("1" * 64), paths.supervisor_conf: PathState.file("2" * 64)},
    ).having(Packages(frozenset(PLATFORM.packages.all())))
    step = plan_one(settings, hand_made, provision.STEP)
    assert "keep_hand_made_configs" in step.commands
    assert f"no release yet: keep a copy of {paths.nginx_site} and {paths.supervisor_conf}" in " ".join(
        step.why
    )
    # Once a release is live, what is at those paths is the kit's: push and rollback write their own.
    assert (
        "keep_hand_made_configs" not in plan_one(settings, converged_facts(settings), provision.STEP).commands
    )
