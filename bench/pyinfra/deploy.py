"""The kit's deploy job, written as a pyinfra deploy. The bench generates the inventory (hosts and the
data below) per run; `release` is a hash of the app's files, so a run with nothing new changes nothing.
Configs are the kit's own, rendered once by the bench (tasks.configs).

    pyinfra -y inventory.py deploy.py
"""

from pyinfra import host
from pyinfra.operations import apt, files, pip, server, systemd

name = host.data.app_name
base = f"/srv/{name}"
release_dir = f"{base}/releases/{host.data.release}"
configs = host.data.configs

apt.packages(name="Packages", packages=["nginx", "supervisor", "python3-venv"], update=True, cache_time=3600)
server.user(name="App user", user=name, system=True, home=base, ensure_home=False, shell="/usr/sbin/nologin")
for path, owner in (
    (base, "root"),
    (f"{base}/releases", "root"),
    (f"{base}/wheels", "root"),
    (release_dir, "root"),
    (f"/var/log/{name}", name),
    (f"/run/{name}", name),
):
    files.directory(name=f"Directory {path}", path=path, user=owner, mode="755")
files.sync(name="Wheels (the server has no package index)", src=host.data.wheels_dir, dest=f"{base}/wheels")
files.sync(name="Release files", src=host.data.app_src, dest=release_dir)
pip.venv(name="Venv", path=f"{base}/venv", python="python3")
pip.packages(
    name="Venv from the wheels",
    requirements=f"{release_dir}/requirements.txt",
    virtualenv=f"{base}/venv",
    extra_install_args=f"--no-index --find-links {base}/wheels",
)
files.link(name="The release's venv", path=f"{release_dir}/.venv", target=f"{base}/venv")
gunicorn = files.put(
    name="gunicorn config", src=f"{configs}/gunicorn.conf.py", dest=f"{base}/gunicorn.conf.py"
)
program = files.put(
    name="supervisor program", src=f"{configs}/supervisor.conf", dest=f"/etc/supervisor/conf.d/{name}.conf"
)
site = files.put(name="nginx site", src=f"{configs}/nginx-site", dest=f"/etc/nginx/sites-available/{name}")
enabled = files.link(
    name="nginx site enabled",
    path=f"/etc/nginx/sites-enabled/{name}",
    target=f"/etc/nginx/sites-available/{name}",
)
default = files.link(
    name="nginx default site disabled", path="/etc/nginx/sites-enabled/default", present=False
)
for service in ("nginx", "supervisor"):
    systemd.service(name=f"{service} running and enabled", service=service, running=True, enabled=True)
current = files.link(name="Switch current", path=f"{base}/current", target=release_dir)

server.shell(name="Update supervisor", commands=["supervisorctl update"], _if=program.did_change)
systemd.service(
    name="Reload nginx",
    service="nginx",
    reloaded=True,
    _if=lambda: site.did_change() or enabled.did_change() or default.did_change(),
)
server.shell(
    name="Reload app",
    commands=[f"supervisorctl signal HUP {name} || true"],
    _if=lambda: gunicorn.did_change() or current.did_change(),
)
server.shell(
    name="Health check through nginx",
    commands=[
        "python3 -c 'import time, urllib.request, urllib.error\n"
        "for _ in range(30):\n"
        "    try:\n"
        '        urllib.request.urlopen("http://127.0.0.1/", timeout=5); break\n'
        "    except urllib.error.HTTPError as e:\n"
        "        if e.code < 500: break\n"
        "    except OSError: pass\n"
        "    time.sleep(1)\n"
        "else: raise SystemExit(1)'"
    ],
)
