"""The probe: one round trip that finds out what the steps need to know about a server.

Its parts, each its own runtime code, are put together here: taking the deploy lock (for runs that
change the server: runtime/lock.sh), the facts (runtime/probe.py), and the health request through nginx
(runtime/health.py, run by probe.py in its interpreter) for runs that end with the health gate. It
prints a JSON line (the facts, the health), parsed into Facts, or a lock's `::fail lock` marker.
"""

from __future__ import annotations

import base64
import json
import marshal
import zlib
from dataclasses import dataclass

from fabric import Connection

from tasks import https, lock, recap, remote, settings
from tasks.facts import Facts
from tasks.layout import META, RELEASE_FILES, Layout, app_paths, health_host, health_rule, health_url, layout
from tasks.platform import PLATFORMS, SSHD_PROCESS_NAMES, Platform, UnsupportedPlatform, by_id
from tasks.settings import Settings
from tasks.shell import Script, Var, line

OS_RELEASE = "/etc/os-release"
# Seconds the probe may take on the server, its health request's one try included (runtime/health.py's
# TRY_LIMIT): past them it stops, and the run reports it as the probe's failure.
TIME_LIMIT = 30


def described_paths(s: Settings, paths: Layout) -> list[str]:
    """The paths whose state the steps compare with what they want (or must not find)."""
    shared = {
        paths.shared("/".join(d.split("/")[: n + 1]))
        for d in ("instance", *s.shared_dirs) for n in range(d.count("/") + 1)
    }  # fmt: skip
    return [
        paths.base_dir, paths.releases_dir, paths.venvs_dir, paths.wheels_dir, paths.tools_dir,
        paths.shared_dir, *sorted(shared),
        paths.log_dir, paths.run_dir, paths.tmpfiles_conf, paths.gunicorn_conf, paths.current,
        f"{paths.current}/.venv", paths.previous, paths.nginx_site, paths.nginx_link, paths.nginx_default,
        paths.nginx_default_backup, paths.nginx_default_link, paths.supervisor_conf,
        *https_paths(s, paths),
    ]  # fmt: skip


def hashed_paths(s: Settings, paths: Layout) -> list[str]:
    """Of the described paths, the files whose content the steps compare with theirs (Facts.sha256): the
    kit's configs and the certificate files it installs, where only root writes. Of the others the probe
    (root) reads the state only: where the app's user may write, a FIFO or a file of a terabyte may be."""
    configs = [paths.tmpfiles_conf, paths.gunicorn_conf, paths.nginx_site, paths.supervisor_conf]
    if s.https_mode == "files":
        return [*configs, paths.tls_cert, paths.tls_key]
    if s.https_mode == "acme":
        return [*configs, paths.acme_ca_bundle]
    return configs


def https_paths(s: Settings, paths: Layout) -> list[str]:
    """What the https steps compare: the user's certificate files, certbot's lineage, the CA it trusts."""
    if s.https_mode == "files":
        return [paths.tls_cert, paths.tls_key]
    if s.https_mode == "acme":
        return [paths.acme_webroot, paths.certbot_fullchain, paths.acme_ca_bundle, paths.certbot_dropin]
    return []


def _entry(s: Settings, platform: Platform) -> dict:
    paths = layout(s, platform)
    return {
        **platform.probe_entry(),
        "paths": described_paths(s, paths),
        "hashed": hashed_paths(s, paths),
        "releases_dir": paths.releases_dir,
        "venvs_dir": paths.venvs_dir,
        "wheels_dir": paths.wheels_dir,
        "tools_dir": paths.tools_dir,
        "base_dir": paths.base_dir,  # free space under it
        "current": paths.current,
        "nginx_loaded_stamp": paths.nginx_loaded_stamp,
        "configs": [paths.nginx_site, paths.supervisor_conf, paths.gunicorn_conf, paths.tmpfiles_conf],
        "tls": {"cert": tls.cert, "renewal": paths.certbot_renewal if s.https_mode == "acme" else ""}
        if (tls := https.tls(s, paths))
        else None,
    }


def questions(s: Settings, salt: str = "") -> dict:
    """What runtime/probe.py is asked: the app, and each platform's questions (it answers one's). With a
    salt (a check run), also the configs' text, the live release's files and app.env's salted digests."""
    asked = {
        "os_release": OS_RELEASE,
        "app": {"name": s.name, "meta": META, "files": RELEASE_FILES, "port": s.port},
        "platforms": [_entry(s, platform) for platform in PLATFORMS],
        # Who holds the deploy lock, if anyone: read from its records, never taken (runtime/lock.sh).
        "lock": {"root": app_paths(s).lock_root, "sshd_process_names": list(SSHD_PROCESS_NAMES)},
        "time_limit": TIME_LIMIT,
    }
    return {**asked, "salt": salt} if salt else asked


def encoded(asked: dict) -> str:
    """The questions as runtime/probe.py reads them: in marshal's format (version 4: what every python3
    since 3.4 reads, whatever the server's version), compressed, in base64 (~1 KB where JSON was ~5)."""
    return base64.b64encode(zlib.compress(marshal.dumps(asked, 4))).decode()


def script(
    s: Settings, *, holder: str = "", action: str = "", health: bool = False, salt: str = ""
) -> Script:
    """The probe; with a holder it first takes the app's deploy lock for `action` (exit 75 if held); with
    a salt, it also answers what a check run shows (see `questions`)."""
    values: dict = {"PROBE_QUESTIONS": encoded(questions(s, salt))}
    includes, lines = ["python.sh", "probe.py"], []
    if holder:
        paths = app_paths(s)
        values |= lock.values(paths.lock_root, paths.app, holder, action)
        includes.append("lock.sh")
        lines.append(line("take_lock"))
    probed = [Var("PY_PROBE"), Var("PROBE_QUESTIONS")]
    if health:  # one try, run by probe.py itself: one python3 less
        values |= {"HEALTH_URL": health_url(s), "HEALTH_HOST": health_host(s), "HEALTH_RULE": health_rule(s)}
        includes.append("health.py")
        probed += [Var("PY_HEALTH"), Var("HEALTH_URL"), Var("HEALTH_HOST"), Var("HEALTH_RULE")]
    # Last: its exit code is the probe's.
    lines.append(line("run_py", *probed))
    return Script(f"probe for {action or 'a look'}", values, includes, lines)


def parse(stdout: str) -> Facts:
    """Facts from the probe's output: its JSON lines, merged (other lines are ignored)."""
    document: dict = {}
    for text in stdout.splitlines():
        try:
            document.update(json.loads(text) if text.startswith("{") else {})
        except ValueError:
            continue
    return Facts.from_json(document)


def reach(c: Connection, host: str) -> bool:
    """Connect to c's host (its key checked); report a new key recorded, or why it could not connect."""
    try:
        recorded = remote.connect(c)
    except remote.RemoteError as error:
        recap.report(host, "connect", "failed", str(error))
        return False
    if recorded:
        recap.note(host, f"trusted: {recorded}")
    return True


def send(c: Connection, host: str, sent: Script) -> remote.Result | None:
    """Run a script on c's host, connected first; report why it could not, and return None then."""
    if not reach(c, host):
        return None
    try:
        return remote.execute(c, sent.render())
    except remote.RemoteError as error:
        recap.report(host, "connect", "failed", str(error))
        return None


def run(
    c: Connection,
    host: str,
    s: Settings,
    *,
    holder: str = "",
    action: str = "",
    health: bool = False,
    salt: str = "",
) -> Facts | None:
    """Probe c's host; report a failure (unreachable, locked, no python3) for the recap and return None."""
    probed = send(c, host, script(s, holder=holder, action=action, health=health, salt=salt))
    if probed is None:
        return None
    if probed.code == 0:
        return parse(probed.stdout)
    failure = next((m for m in remote.parse_markers(probed.stdout) if m.kind == "fail"), None)
    if failure:
        recap.report_failure(host, failure)
    elif "python3" in probed.stderr and "not found" in probed.stderr:
        recap.report(host, "probe", "failed", "python3 is missing on the server: install it first")
    else:
        recap.report(host, "probe", "failed", probed.last_error())
    return None


@dataclass(frozen=True)
class Found:
    """What a read-only task finds on a server."""

    facts: Facts
    platform: Platform
    paths: Layout


def look(c: Connection, step: str, *, health: bool = False) -> Found | None:
    """For a read-only task: what the probe finds on c's host (no lock taken; with `health`, the health
    check through nginx too, once), reported as `step`; None, with the reason reported, when it finds
    nothing."""
    s, host = settings.load(c), remote.host_name(c)
    facts = run(c, host, s, health=health)
    if facts is None:
        return None
    try:
        platform = by_id(facts.platform, facts.system)
    except UnsupportedPlatform as error:
        recap.report(host, step, "failed", str(error))
        return None
    recap.report(host, step, "ok")
    return Found(facts, platform, layout(s, platform))
