"""The live release: `current` and `previous` switched atomically, the app reloaded without dropping a
request, a release's own configs brought back, and the health gate that switches back on failure.

All of it is bash functions defined once at the top of an apply script (see `functions`), so deploy,
rollback and restart share one way of doing each thing, inside the run's single apply command.
"""

from __future__ import annotations

import shlex

from tasks import health
from tasks.facts import NGINX_LOADED_STAMP
from tasks.settings import META, Settings

SNAPSHOT = {
    "nginx-site": "nginx_site",
    "supervisor.conf": "supervisor_conf",
    "gunicorn.conf.py": "gunicorn_conf",
}

# HUP the gunicorn master (it re-reads its config, re-runs chdir on `current`, starts new workers and
# stops the old ones gracefully), then wait until none of the old workers is left and the configured
# number of new ones runs: from then on every request is served by the new release.
# Exit 3: no master runs (nothing to reload; supervisor_update or ensure_running starts one).
_RELOAD = r"""
import os, signal, sys, time
pidfile, conf, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
try:
    master = int(open(pidfile).read().split()[0])
    os.kill(master, 0)
except (OSError, ValueError, IndexError):
    sys.exit(3)
expected = 1
for line in open(conf):
    if line.startswith("workers ="):
        expected = int(line.split("=")[1])
def workers():
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            state, ppid = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue
        if int(ppid) == master and state != "Z":
            found.add(int(pid))
    return found
old = workers()
os.kill(master, signal.SIGHUP)
deadline = time.monotonic() + timeout
while True:
    time.sleep(0.05)
    if not os.path.exists(f"/proc/{master}"):
        sys.exit("the gunicorn master exited on reload")
    now = workers()
    if not now & old and len(now) >= expected:
        break
    if time.monotonic() > deadline:
        sys.exit(f"{len(now & old)} old workers still run {timeout:g} s after the reload")
"""
RELOAD_TIMEOUT = 60  # gunicorn's graceful_timeout (30 s) for old workers to finish, and new ones to boot


def functions(s: Settings) -> str:
    """Bash functions: set_link, switch_to, reload_app, restore_configs, go_live, fail_release, gate,
    mark_failed, switch_back."""
    q = shlex.quote
    current, previous, name = q(s.current), q(s.previous), q(s.name)
    restore = "\n".join(
        f'  cmp -s "$1/{META}/{snap}" {q(getattr(s, attr))} || '
        f'{{ install_file "$1/{META}/{snap}" {q(getattr(s, attr))} 644; changed_{attr}=1; }}'
        for snap, attr in SNAPSHOT.items()
        if attr != "nginx_site"
    )
    return f"""
set_link() {{  # LINK TARGET: point LINK at TARGET atomically (an empty TARGET removes LINK)
  if [ -z "$2" ]; then rm -f "$1"; return 0; fi
  ln -sfn "$2" "$1.tmp" && mv -T "$1.tmp" "$1" || die "could not switch $1"
}}
switch_to() {{  # RELEASE_DIR: current -> it; previous -> the release that was live
  local was; was=$(readlink {current} || true)
  if [ -n "$was" ] && [ "$was" != "$1" ]; then set_link {previous} "$was"; fi
  set_link {current} "$1"; SWITCHED=1
}}
# FROM_DIR TO_DIR: the running app serves `current` (TO_DIR): a graceful reload, or for a new venv a restart
reload_app() {{
  local out rc
  if [ -n "$1" ] && [ "$(readlink "$1/.venv")" = "$(readlink "$2/.venv")" ]; then
    out=$(python3 -c {q(_RELOAD)} {q(s.run_dir)}/gunicorn.pid {q(s.gunicorn_conf)} {RELOAD_TIMEOUT} 2>&1)
    rc=$?
    [ $rc = 0 ] || [ $rc = 3 ] || die "graceful reload of {s.name}: $(printf '%s\\n' "$out" | tail -n 1);\\
 {health.app_errors(s)}"
  elif ! out=$(supervisorctl restart {name} 2>&1); then
    case "$out" in
      *"not running"*|*"no such"*|*"refused"*) ;;
      *) die "supervisorctl restart {s.name}: $out" ;;
    esac
  else
    echo "::note $STEP other dependencies: gunicorn restarted with the new venv (a gap of a second or two)"
  fi
}}
restore_configs() {{  # RELEASE_DIR: bring back the configs it was deployed with where they differ from live
  changed_nginx_site=0 changed_supervisor_conf=0 changed_gunicorn_conf=0
  if ! cmp -s "$1/{META}/nginx-site" {q(s.nginx_site)}; then
    cp -p {q(s.nginx_site)} "$W/site.live"
    install_file "$1/{META}/nginx-site" {q(s.nginx_site)} 644
    if ! out=$(nginx -t 2>&1); then
      cp -p "$W/site.live" {q(s.nginx_site)}
      die "nginx -t rejects the site of ${{1##*/}}, nothing switched:\\
 $(printf '%s\\n' "$out" | grep -m 1 emerg)"
    fi
    changed_nginx_site=1
  fi
{restore}
}}
go_live() {{  # RELEASE_DIR: make it the live release, with its own configs
  local from; from=$(readlink {current} || true)
  [ -f "$1/{META}/release.json" ] && restore_configs "$1"
  switch_to "$1"
  if [ "${{changed_supervisor_conf:-0}}" = 1 ]; then
    out=$(supervisorctl update {name} 2>&1) || die "supervisorctl update failed: $out"
  else
    reload_app "$from" "$1"
  fi
  if [ "${{changed_nginx_site:-0}}" = 1 ]; then quiet systemctl reload nginx; touch {NGINX_LOADED_STAMP}; fi
}}
fail_release() {{  # REASON: the release of this run failed; say which is live, keep the reason with it
  local live=${{LIVE_DIR##*/}}
  mark_failed "$1"
  die "release $RELEASE failed: $1; live: ${{live:-none}}"
}}
gate() {{  # the health check through nginx; after a switch in this run, a failure switches back
  local status back
  status=$({health.check_command(s, s.health_timeout)}) && return 0
  why="GET {health.url(s)} (Host: {s.health_host}) answered $status for {s.health_timeout} s;\\
 {health.app_errors(s)}"
  [ -n "$SWITCHED" ] || die "$why"
  if switch_back; then
    back=$({health.check_command(s, s.health_timeout)}) || why="$why; ${{LIVE_DIR##*/}} fails too: $back"
  fi
  fail_release "$why"
}}
mark_failed() {{  # REASON: kept with the release this run built, for `releases` to show
  [ -z "$BUILT" ] || printf '%s\\n' "$1" > "$BUILT/{META}/failed"
}}
switch_back() {{  # after a failure in this run, the release that was live goes live again (once)
  [ -n "$SWITCHED" ] && [ -n "$LIVE_DIR" ] || return 1
  SWITCHED=""  # a failure while switching back must not try again
  go_live "$LIVE_DIR"; set_link {previous} "$PREVIOUS_DIR"; SWITCHED=""
}}
"""
