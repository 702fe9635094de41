"""The probe: one round trip that finds out what the steps need to know about a server.

Its parts, each its own runtime code, are put together here: taking the deploy lock (for runs that
change the server: runtime/lock.sh), the facts (runtime/probe.py: the shared ones, and each step's by
the step's part, runtime/probe_*.py, whose source travels in the questions), and the health request
through nginx (runtime/health.py, run by probe.py in its interpreter) for runs that end with the health
gate. It prints a JSON line (the facts, the health), parsed into Facts, or a lock's `::fail lock` marker.

Every probe asks what all the steps of the pipeline ask (steps.PROBES), whatever the run plans: status,
the guards and rollback read the facts of steps that do not run.
"""

from __future__ import annotations

import base64
import json
import marshal
import zlib
from dataclasses import dataclass

from fabric import Connection

from tasks import lock, recap, remote, runtime, settings
from tasks.facts import Facts
from tasks.layout import META, RELEASE_FILES, Layout, app_paths, health_host, health_rule, health_url, layout
from tasks.platform import (
    MIN_PYTHON,
    PLATFORMS,
    SSHD_PROCESS_NAMES,
    Platform,
    UnsupportedPlatform,
    by_id,
    python_refusal,
)
from tasks.settings import Settings
from tasks.shell import Script, Var, line
from tasks.steps import KINDS, PARTS, PROBES

OS_RELEASE = "/etc/os-release"
# Seconds the probe may take on the server, its health request's one try included (runtime/health.py's
# TRY_LIMIT): past them it stops, and the run reports it as the probe's failure.
TIME_LIMIT = 30


def described_paths(s: Settings, paths: Layout) -> list[str]:
    """The paths whose state the steps compare with what they want (or must not find): the app's
    directories and releases, which several steps, the guards and status read, then each step's own."""
    shared = {
        paths.shared("/".join(d.split("/")[: n + 1]))
        for d in ("instance", *s.deploy.shared_dirs) for n in range(d.count("/") + 1)
    }  # fmt: skip
    return list(dict.fromkeys([
        paths.base_dir, paths.releases_dir, paths.venvs_dir, paths.wheels_dir, paths.tools_dir,
        paths.shared_dir, *sorted(shared), paths.log_dir, paths.run_dir, paths.current,
        f"{paths.current}/.venv", paths.previous,
        *(path for probe in PROBES for path in probe.paths(s, paths)),
        *hashed_paths(s, paths),
    ]))  # fmt: skip


def hashed_paths(s: Settings, paths: Layout) -> list[str]:
    """Of the described paths, the files whose content the steps compare with theirs (Facts.sha256): the
    kit's configs and the certificate files it installs, where only root writes (each step says which).
    Of the others the probe (root) reads the state only: where the app's user may write, a FIFO or a file
    of a terabyte may be."""
    return list(dict.fromkeys(path for probe in PROBES for path in probe.hashed(s, paths)))


def _entry(s: Settings, platform: Platform) -> dict:
    paths = layout(s, platform)
    return {
        **platform.probe_entry(),
        "paths": described_paths(s, paths),
        "hashed": hashed_paths(s, paths),
        "base_dir": paths.base_dir,  # free space under it
        "current": paths.current,
        "configs": [
            paths.nginx_site,
            paths.supervisor_conf,
            paths.gunicorn_conf,
            paths.tmpfiles_conf,
            *(path for probe in PROBES for path in probe.shown(s, paths)),
        ],  # fmt: skip
        # What each step's part is asked here (its `gather(asked)`), by the part's name.
        "asks": {
            part_name(probe.part): dict(probe.asks(s, paths, platform) if probe.asks else {})
            for probe in PROBES
            if probe.part
        },
    }


def part_name(part: str) -> str:
    """A part's name, as the questions hold its source and what it is asked: probe_nginx.py -> probe_nginx."""
    return part.removesuffix(".py")


def part_sources() -> dict[str, str]:
    """The steps' parts of the probe (runtime/probe_*.py), by name: their source, which runtime/probe.py
    compiles and runs."""
    return {part_name(part): runtime.source(part) for part in PARTS}


def questions(s: Settings, salt: str = "") -> dict:
    """What runtime/probe.py is asked: the app, and each platform's questions (it answers one's). With a
    salt (a check run), also the configs' text, the live release's files and app.env's salted digests."""
    asked = {
        "os_release": OS_RELEASE,
        "app": {"name": s.app.name, "meta": META, "files": RELEASE_FILES, "port": s.app.port},
        "platforms": [_entry(s, platform) for platform in PLATFORMS],
        # Who holds the deploy lock, if anyone: read from its records, never taken (runtime/lock.sh).
        "lock": {"root": app_paths(s).lock_root, "sshd_process_names": list(SSHD_PROCESS_NAMES)},
        "time_limit": TIME_LIMIT,
        # Below it, the probe answers its python3's version only (see run).
        "python_min": list(MIN_PYTHON),
        "parts": part_sources(),
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
    return Facts.from_json(document, KINDS)


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
    """Probe c's host; report a failure (unreachable, locked, no python3 or too old a one) for the recap
    and return None."""
    probed = send(c, host, script(s, holder=holder, action=action, health=health, salt=salt))
    if probed is None:
        return None
    if probed.code == 0:
        facts = parse(probed.stdout)
        # Here, once for every task: a python3 older than MIN_PYTHON answers nothing else to go on.
        refused = python_refusal(facts.python)
        if refused:
            recap.report(host, "probe", "failed", refused)
            return None
        return facts
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
