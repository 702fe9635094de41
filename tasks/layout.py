"""Where one app lives on one server: its directories, configs, logs and lock (settings x platform).

Everything the app owns lives under /srv/<name>, except its logs and runtime files. Server scripts read
these paths as globals from their assignment block (see runtime/__init__.py), named after the fields:
`current` is $CURRENT, `nginx_site` is $NGINX_SITE.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tasks.platform import Platform
    from tasks.settings import Settings

# Inside each release: what shaped it (release.json, fingerprint, rendered configs, env.json, failed).
META = ".deploy"
# In a release's META: its files (path -> sha256); a check run compares the next release's with them.
RELEASE_FILES = "files.json"
# nginx listens here for the site; the health request goes through it.
HTTP_PORT = 80


@dataclass(frozen=True)
class AppPaths:
    """The paths that are the kit's own choice, the same on every platform."""

    app: str  # the app's name: its supervisor program, its system user and group
    base_dir: str
    releases_dir: str
    current: str  # symlink to the live release
    previous: str  # symlink to the release live before the last switch: what `rollback` goes back to
    shared_dir: str  # what the app writes, outside the disposable releases
    venvs_dir: str
    wheels_dir: str  # every wheel a venv of the app was built from, shipped once
    tools_dir: str  # the kit's tools on the server: uv, which builds the venvs
    # The main process of the app's processes and scheduled jobs (runtime/app_command.py), as units.sh
    # install_app_command puts it.
    app_command: str
    # The command lines of the app's processes (app.processes), a file each: root's, the app's group reads.
    processes_dir: str
    jobs_dir: str  # the scheduled jobs' command lines (root's; the app's group reads them)
    acme_webroot: str  # https.mode acme: certbot writes the HTTP-01 challenges here, nginx serves them
    gunicorn_conf: str
    history_file: str
    log_dir: str
    error_log: str
    run_dir: str  # the app user's runtime directory (its sockets, PID files), recreated at boot by tmpfiles.d
    lock_root: str  # the deploy locks (runtime/lock.sh): a directory only root may use, gone at reboot
    # The import trial forked from the live gunicorn master (release.sh forked_trial): root's request
    # and the FIFO the trial answers on. Root's directory, which only the app's group may enter.
    trial_dir: str
    # Touched after every reload the kit does: nginx runs its config as of the later of this and its pidfile.
    nginx_loaded_stamp: str
    # services.redis: the app's Redis listens on this socket only, in a directory of redis's that only the
    # app's group (and redis) may enter.
    redis_socket_dir: str
    redis_socket: str
    # The system user that builds the venvs (runtime/units.sh): the kit's, one a server, owning nothing but
    # the build it runs, so that no dependency's code runs as root, nor as the app (which must not be able
    # to write its venv).
    builder: str

    def shared(self, directory: str) -> str:
        """Where a shared directory (deploy.shared_dirs) lives; releases link to it."""
        return f"{self.shared_dir}/{directory}"

    def values(self) -> dict[str, str]:
        """The paths as server-script globals: NAME -> path."""
        return {name.upper(): value for name, value in asdict(self).items()}


@dataclass(frozen=True)
class Layout(AppPaths):
    """Every path of the app on a server: the kit's own, and where the platform wants the rest."""

    tmpfiles_conf: str
    nginx_site: str
    nginx_link: str
    nginx_default: str  # the stock site the nginx package enables
    nginx_default_backup: str
    nginx_default_link: str
    nginx_access_log: str
    nginx_error_log: str
    supervisor_conf: str
    supervisor_conf_dir: str  # the app's processes' programs too (process_conf)
    systemd_unit_dir: str  # the scheduled jobs' units (tasks/steps/schedule.py)
    # HTTPS (tasks/https.py): the user's certificate and key (mode files); the CA bundle certbot trusts
    # for a private ACME directory, and the drop-in giving it to certbot's renewals; certbot's lineage.
    tls_cert: str
    tls_key: str
    acme_ca_bundle: str
    certbot_dropin: str
    certbot_fullchain: str
    certbot_privkey: str
    certbot_cert: str
    certbot_renewal: str
    # services.redis: the app's instance of Debian's redis-server@ unit, its config, the drop-in that
    # gives it the socket's directory, and its data.
    redis_unit: str
    redis_conf: str
    redis_dropin: str
    redis_data_dir: str

    def process_program(self, name: str) -> str:
        """The supervisor program of one of the app's processes (app.processes): APP.NAME. An app's name
        holds no dot, so it is never another app's program (app `shop`'s `api` and an app `shop-api`)."""
        return f"{self.app}.{name}"

    def process_conf(self, name: str) -> str:
        """Its program's file: APP.process-NAME.conf, which the kit's glob of the app's processes finds."""
        return f"{self.supervisor_conf_dir}/{self.app}.process-{name}.conf"

    def process_command(self, name: str) -> str:
        """The file holding its command line (runtime/app_command.py reads it)."""
        return f"{self.processes_dir}/{name}"

    def process_log(self, name: str) -> str:
        """Its log (stdout and stderr): one file a copy, `%(process_num)d` standing for the copy's number."""
        return f"{self.log_dir}/{name}-%(process_num)d.log"


def app_paths(s: Settings) -> AppPaths:
    base, name = f"/srv/{s.app.name}", s.app.name
    return AppPaths(
        app=name,
        base_dir=base,
        releases_dir=f"{base}/releases",
        current=f"{base}/current",
        previous=f"{base}/previous",
        shared_dir=f"{base}/shared",
        venvs_dir=f"{base}/venvs",
        wheels_dir=f"{base}/wheels",
        tools_dir=f"{base}/tools",
        app_command=f"{base}/tools/app_command.py",
        processes_dir=f"{base}/processes",
        jobs_dir=f"{base}/jobs",
        acme_webroot=f"{base}/acme",
        gunicorn_conf=f"{base}/gunicorn.conf.py",
        history_file=f"{base}/history.log",
        log_dir=f"/var/log/{name}",
        error_log=f"/var/log/{name}/error.log",
        run_dir=f"/run/{name}",
        lock_root="/run/flaskdeploy",
        # ".check": live masters' gunicorn configs name it so (renaming it would restart every app).
        trial_dir=f"/run/flaskdeploy-{name}.check",
        nginx_loaded_stamp="/run/flaskdeploy-nginx.loaded",
        redis_socket_dir=f"/run/{name}-redis",
        redis_socket=f"/run/{name}-redis/redis.sock",
        builder="flaskdeploy",
    )


def layout(s: Settings, p: Platform) -> Layout:
    name, default = s.app.name, p.nginx_default_site
    return Layout(
        **asdict(app_paths(s)),
        tmpfiles_conf=f"{p.tmpfiles_dir}/{name}.conf",
        nginx_site=f"{p.nginx_sites_available}/{name}",
        nginx_link=f"{p.nginx_sites_enabled}/{name}",
        nginx_default=f"{p.nginx_sites_available}/{default}",
        nginx_default_backup=f"{p.nginx_sites_available}/{default}.bak",
        nginx_default_link=f"{p.nginx_sites_enabled}/{default}",
        nginx_access_log=f"{p.nginx_log_dir}/{name}.access.log",
        nginx_error_log=f"{p.nginx_log_dir}/{name}.error.log",
        supervisor_conf=f"{p.supervisor_conf_dir}/{name}.conf",
        supervisor_conf_dir=p.supervisor_conf_dir,
        systemd_unit_dir=p.systemd_unit_dir,
        tls_cert=f"{p.tls_dir}/{name}.crt",
        tls_key=f"{p.tls_dir}/{name}.key",
        acme_ca_bundle=f"{p.tls_dir}/{name}.acme-ca.pem",
        certbot_dropin=f"{p.certbot_dropin_dir}/flaskdeploy-{name}.conf",
        certbot_fullchain=f"{p.letsencrypt_dir}/live/{name}/fullchain.pem",
        certbot_privkey=f"{p.letsencrypt_dir}/live/{name}/privkey.pem",
        certbot_cert=f"{p.letsencrypt_dir}/live/{name}/cert.pem",
        certbot_renewal=f"{p.letsencrypt_dir}/renewal/{name}.conf",
        redis_unit=p.redis_unit.format(app=name),
        redis_conf=f"{p.redis_conf_dir}/redis-{name}.conf",
        redis_dropin=f"{p.systemd_unit_dir}/{p.redis_unit.format(app=name)}.service.d/flaskdeploy.conf",
        redis_data_dir=f"{p.redis_lib_dir}/redis-{name}",
    )


def health_url(s: Settings) -> str:
    """The health request's URL, through nginx, as requested on the server itself: app.health_path, or /
    when the app has none."""
    return f"http://127.0.0.1:{HTTP_PORT}{s.app.health_path or '/'}"


def health_rule(s: Settings) -> str:
    """What passes the health request (runtime/health.py's RULE): `2xx` from app.health_path when it is
    set; with none, `answered`: GET / answering any status below 500 (the app answered)."""
    return "2xx" if s.app.health_path else "answered"


def health_host(s: Settings) -> str:
    """The Host header that reaches this site through nginx (`_` matches nothing, default_server does)."""
    first = s.app.server_name.split()[0]
    return "localhost" if first == "_" or "*" in first or first.startswith("~") else first
